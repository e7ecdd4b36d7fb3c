#!/usr/bin/env bash
# Builds etcd, etcdctl and etcdutl 3.6.16 and 3.7.3 from the released Go modules
# (go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3 through the Go module proxy) into
# <cache>/etcd-<version>/, the cache root the tests use (LIFEBOAT_ETCD_CACHE or
# ~/.cache/lifeboat). One wrapper module per tool lives in tools/etcd-build/v<version>/<tool>/:
# a go.mod + go.sum pinning the release and its dependencies, and a main.go of a few lines
# calling the release's entry point (the server module's own replace lines keep
# `go install …@version` from working). No etcd source in the repository.
# Idempotent: skips every binary already there. Prints one line per version:
# "<dir> <etcd --version first line>".
# GOMODCACHE is shared by the six builds (Go's own, or whatever is set). GOCACHE, unless set,
# is a temp dir removed afterwards: the six binaries are all that is kept, and a build cache
# would leave a gigabyte on a CI machine's disk for nothing.
set -euo pipefail
if [ -z "${GOCACHE:-}" ]; then
  GOCACHE="$(mktemp -d)"
  export GOCACHE
  trap 'chmod -R u+w "$GOCACHE" 2>/dev/null; rm -rf "$GOCACHE"' EXIT
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${LIFEBOAT_ETCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
versions=("$@"); [ ${#versions[@]} -gt 0 ] || versions=(3.6.16 3.7.3)
for v in "${versions[@]}"; do
  out="$cache/etcd-$v"
  mkdir -p "$out"
  for tool in server etcdctl etcdutl; do
    bin=$tool; [ "$tool" = server ] && bin=etcd
    [ -x "$out/$bin" ] && continue
    src="$root/tools/etcd-build/v$v/$tool"
    [ -f "$src/go.mod" ] || { echo "etcd-go: no wrapper module $src" >&2; exit 2; }
    [ -x "$GO" ] || { echo "etcd-go: go not found (install Go >= 1.26 or set GO=/path/to/go)" >&2; exit 2; }
    echo "etcd-go: building $bin $v" >&2
    # -mod=readonly: go.sum in the repository decides every dependency; a build never edits it.
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$GO" build -trimpath -o "$out/$bin.tmp" .)
    mv "$out/$bin.tmp" "$out/$bin"
  done
  echo "$out $("$out/etcd" --version | head -1)"
done
