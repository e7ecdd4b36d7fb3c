#!/usr/bin/env bash
# Issue 10's daemon targets: `lifeboat run` idle between slots (RSS <= 20 MiB, CPU ~ 0) with
# the listener up and a scrubbing rotation configured, and retention planning over 10,000
# backups (< 1 s). No etcd needed: the slot is an hour away.
#
#   scripts/bench-daemon.sh              # release build
#   BENCH_PROFILE=debug scripts/bench-daemon.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${BENCH_PROFILE:-release}
IDLE=${BENCH_IDLE_SECONDS:-20}
if [ "$PROFILE" = release ]; then
  cargo build --release --bin lifeboat --example prune_bench
else
  cargo build --bin lifeboat --example prune_bench
fi
LB=target/$PROFILE/lifeboat
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$WORK/backups"
cat > "$WORK/lifeboat.toml" <<TOML
[etcd]
endpoints = ["http://127.0.0.1:1"]
[[destination]]
url = "$WORK/backups"
[schedule]
every = "1h"
[verify]
every = "24h"
[metrics]
listen = "127.0.0.1:$PORT"
TOML
"$LB" run --config "$WORK/lifeboat.toml" 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null && break; sleep 0.1; done
curl -s "http://127.0.0.1:$PORT/metrics" >/dev/null
ticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
sleep 2
T0=$(ticks)
sleep "$IDLE"
T1=$(ticks)
RSS=$(awk '/VmRSS/{print $2}' "/proc/$PID/status")
HWM=$(awk '/VmHWM/{print $2}' "/proc/$PID/status")
echo "daemon idle ($PROFILE): RSS $((RSS / 1024)).$(( (RSS % 1024) * 10 / 1024 )) MiB (peak $((HWM / 1024)) MiB), CPU over ${IDLE}s: $((T1 - T0)) ticks"
"target/$PROFILE/examples/prune_bench" 10000
