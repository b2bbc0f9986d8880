#!/usr/bin/env bash
# Builds the previous release's `switchboard` binary once and prints its path. The upgrade test
# runs it before this build, on the same Redis. The release is a git revision
# (SWITCHBOARD_PREVIOUS_RELEASE, default: v0.1.0). A clone does not always carry tags, so v0.1.0 is
# also pinned here by its commit, which is part of main's history. The build has a target
# directory of its own, so it never replaces this build's binary while other tests run; once
# built it is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
release=${SWITCHBOARD_PREVIOUS_RELEASE:-v0.1.0}
out="$PWD/target/previous-release/$release"
if [ -x "$out/switchboard" ]; then
  echo "$out/switchboard"
  exit 0
fi
declare -A pinned=([v0.1.0]=a9e91d399001167112d77515edfeabcb2e37c276)
rev=$release
if ! git rev-parse -q --verify "$rev^{commit}" >/dev/null; then
  rev=${pinned[$release]:-$release}
fi
if ! git rev-parse -q --verify "$rev^{commit}" >/dev/null; then
  git fetch -q --tags origin 2>/dev/null || true
  git fetch -q --unshallow origin 2>/dev/null || true
fi
git rev-parse -q --verify "$rev^{commit}" >/dev/null \
  || { echo "the previous release $release ($rev) is not in this clone (git fetch --tags --unshallow)" >&2; exit 1; }
src="$out/src"
rm -rf "$src"
mkdir -p "$src"
git archive "$rev" | tar -x -C "$src"
echo "building the previous release ($release) for the upgrade test" >&2
CARGO_TARGET_DIR="$out/target" cargo build --quiet --locked --manifest-path "$src/Cargo.toml" --bin switchboard >&2
cp "$out/target/debug/switchboard" "$out/switchboard"
rm -rf "$src" "$out/target"
echo "$out/switchboard"
