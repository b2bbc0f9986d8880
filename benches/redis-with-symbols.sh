#!/usr/bin/env bash
# Builds the machine's Redis release again, with symbols, into target/redis-with-symbols/, for
# part (i) of the benchmark. Debian's redis-server is stripped: callgrind then names only
# `main`, and part (i) can say how many instructions a creation costs but not where they go.
# With this build first in PATH it names them (the Lua interpreter, cjson, the commands, Lua's
# garbage collector), and `BENCH_KEEP_CALLGRIND=1` keeps the dumps for `callgrind_annotate`:
#
#   bash benches/redis-with-symbols.sh
#   PATH=$PWD/target/redis-with-symbols:$PATH cargo bench --bench throughput -- --only i
#
# The source is Debian's source package of the installed version (from deb.debian.org, read
# with a sources list of its own: the machine's apt configuration is left as it is), built with
# Redis's own makefile (its bundled jemalloc and Lua, where Debian links the system's jemalloc):
# counts differ from Debian's binary by about 1%, so compare counts of one build only. About
# two minutes on two cores. Needs gcc and make.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/target/redis-with-symbols
version=$(dpkg-query -W -f='${Version}' redis-server 2>/dev/null || true)
if [ -z "$version" ]; then
  echo "redis-server is not installed from Debian's packages: build Redis from its own source" >&2
  exit 1
fi
if [ -x "$out/redis-server" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$version" ]; then
  echo "$out/redis-server is already built from redis $version"
  exit 0
fi
. /etc/os-release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
cat > "$work/sources.list" <<EOF
deb-src http://deb.debian.org/debian $VERSION_CODENAME main
deb-src http://deb.debian.org/debian-security $VERSION_CODENAME-security main
deb-src http://deb.debian.org/debian $VERSION_CODENAME-updates main
EOF
apt_options=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
apt-get "${apt_options[@]}" -qq update
(cd "$work" && apt-get "${apt_options[@]}" -qq source --download-only "redis=$version")
tar -xzf "$work"/redis_*.orig.tar.gz -C "$work"
make -C "$work"/redis-*/ -j"$(nproc)" USE_SYSTEMD=no redis-server > "$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; exit 1; }
mkdir -p "$out"
cp "$work"/redis-*/src/redis-server "$out/redis-server"
echo "$version" > "$out/version"
echo "built $out/redis-server (redis $version, with symbols)"
