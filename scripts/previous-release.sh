#!/usr/bin/env bash
# Builds the previous release's `switchboard` binary once (git tag SWITCHBOARD_PREVIOUS_RELEASE,
# default v0.1.0) and prints its path. The upgrade test runs it before this build, on the same
# Redis. The build has a target directory of its own, so it never replaces this build's binary
# while other tests run; once built it is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${SWITCHBOARD_PREVIOUS_RELEASE:-v0.1.0}
out="$PWD/target/previous-release/$tag"
if [ -x "$out/switchboard" ]; then
  echo "$out/switchboard"
  exit 0
fi
if ! git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
  git fetch -q --tags 2>/dev/null || true
fi
git rev-parse -q --verify "refs/tags/$tag" >/dev/null \
  || { echo "the previous release's tag $tag is not in this clone (git fetch --tags)" >&2; exit 1; }
src="$out/src"
rm -rf "$src"
mkdir -p "$src"
git archive "$tag" | tar -x -C "$src"
echo "building the previous release ($tag) for the upgrade test" >&2
CARGO_TARGET_DIR="$out/target" cargo build --quiet --locked --manifest-path "$src/Cargo.toml" --bin switchboard >&2
cp "$out/target/debug/switchboard" "$out/switchboard"
rm -rf "$src" "$out/target"
echo "$out/switchboard"
