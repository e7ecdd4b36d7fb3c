#!/usr/bin/env bash
# Soak `lifeboat run` for as long as asked (issue 17): a 3-member etcd 3.5.1 cluster with a
# writer, a 1 s schedule, a local and an S3 destination (s3s-fs on 127.0.0.1), retention and
# scrubbing, and the faults of the CI soak (tests/it/soak.rs), each every N slots (0: never):
# the S3 server killed and restarted (SOAK_RESTART_EVERY, 50), stopped (SIGSTOP) for 10 s
# and continued (SOAK_PAUSE_EVERY, 0), a SIGHUP with a valid config (SOAK_HUP_EVERY, 100),
# the local destination read-only for 5 slots (SOAK_RO_EVERY, 0; a read-only bind mount as
# root, else chmod), the leader killed and restarted 5 slots later (SOAK_LEADER_EVERY, 0).
# Samples RSS each slot (rss.tsv) and prints the benchmark row: RSS after SOAK_SLOTS slots
# <= 1.1 x RSS after 50 slots (each the median of that slot's and the 9 before's samples),
# and at most 96 MiB at every sample.
#
#   scripts/soak.sh                      # 500 slots (~11 min), release build: the benchmark
#   SOAK_SLOTS=3600 SOAK_PAUSE_EVERY=300 SOAK_RO_EVERY=200 SOAK_LEADER_EVERY=250 scripts/soak.sh
#   SOAK_PROFILE=debug SOAK_SLOTS=120 scripts/soak.sh
#
# Exit 0 when the daemon stayed up, every listed backup verifies, no scrub failed and the
# RSS bound holds; 1 otherwise. The work dir (log, rss.tsv) is kept on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PROFILE=${SOAK_PROFILE:-release}
SLOTS=${SOAK_SLOTS:-500}
RESTART_EVERY=${SOAK_RESTART_EVERY:-50}
PAUSE_EVERY=${SOAK_PAUSE_EVERY:-0}
HUP_EVERY=${SOAK_HUP_EVERY:-100}
RO_EVERY=${SOAK_RO_EVERY:-0}
LEADER_EVERY=${SOAK_LEADER_EVERY:-0}
BASE_SLOT=${SOAK_BASE_SLOT:-50}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked --bin lifeboat
else
  cargo build --locked --bin lifeboat
fi
LB=$ROOT/target/$PROFILE/lifeboat
E=$(scripts/etcd35-dir.sh)
S3S=${LIFEBOAT_S3S_FS:-${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs}
WORK=$(mktemp -d)
PIDS=()
OK=0
RO_MOUNT=0
cleanup() {
  [ "$RO_MOUNT" = 1 ] && umount "$WORK/local" 2>/dev/null || true
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && { kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; } || true; done
  if [ "$OK" = 1 ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# etcd, three members, and a writer (a key a slot).
CPS=(); PPS=(); EPIDS=()
for i in 0 1 2; do CPS+=("$(free_port)"); PPS+=("$(free_port)"); done
INITIAL="m0=http://127.0.0.1:${PPS[0]},m1=http://127.0.0.1:${PPS[1]},m2=http://127.0.0.1:${PPS[2]}"
start_member() {
  local i=$1
  "$E/etcd" --name "m$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${CPS[$i]}" --advertise-client-urls "http://127.0.0.1:${CPS[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${PPS[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PPS[$i]}" \
    --initial-cluster "$INITIAL" --initial-cluster-token soak --log-level=warn >>"$WORK/etcd$i.log" 2>&1 &
  EPIDS[$i]=$!
  PIDS+=($!)
}
for i in 0 1 2; do start_member "$i"; done
EP="http://127.0.0.1:${CPS[0]},http://127.0.0.1:${CPS[1]},http://127.0.0.1:${CPS[2]}"
for _ in $(seq 150); do "$E/etcdctl" --endpoints "$EP" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
# The index of the member that leads now (empty if none answers).
leader() {
  "$E/etcdctl" --endpoints "$EP" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
ports = sys.argv[1:]
for s in json.load(sys.stdin):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(ports.index(s["Endpoint"].rsplit(":", 1)[1]))
        break' "${CPS[@]}" || true
}
KILLED=""; KILLED_AT=0

# The local destination read-only (a read-only bind mount where this may mount, else the
# permission bits), and writable again.
mkdir -p "$WORK/local"
RO_AT=0
read_only() {
  if mount --bind "$WORK/local" "$WORK/local" 2>/dev/null; then
    RO_MOUNT=1
    mount -o remount,ro,bind "$WORK/local"
  else
    chmod 555 "$WORK/local"
  fi
  if touch "$WORK/local/.probe" 2>/dev/null; then
    rm -f "$WORK/local/.probe"; echo "cannot make $WORK/local read-only (root without mount rights?)" >&2; exit 1
  fi
}
writable() {
  if [ "$RO_MOUNT" = 1 ]; then umount "$WORK/local"; RO_MOUNT=0; else chmod 755 "$WORK/local"; fi
}

# s3s-fs, restartable on the same port and storage.
S3P=$(free_port)
mkdir -p "$WORK/s3/soak"
start_s3() {
  "$S3S" --host 127.0.0.1 --port "$S3P" --access-key soak --secret-key soak-secret \
    "$WORK/s3" >>"$WORK/s3.log" 2>&1 &
  S3PID=$!
  PIDS+=("$S3PID")
  for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$S3P))" 2>/dev/null && return 0; sleep 0.1; done
  echo "s3s-fs did not start" >&2; exit 1
}
start_s3

MP=$(free_port)
cat >"$WORK/lifeboat.toml" <<TOML
[etcd]
endpoints = ["http://127.0.0.1:${CPS[0]}", "http://127.0.0.1:${CPS[1]}", "http://127.0.0.1:${CPS[2]}"]

[[destination]]
url = "$WORK/local"

[[destination]]
url = "s3://soak/p"
s3_endpoint = "http://127.0.0.1:$S3P"
s3_first_byte_timeout = "5s"
s3_stall_timeout = "5s"

[schedule]
every = "1s"
when = "always"

[retention]
keep_last = 5

[verify]
every = "10s"
budget = "64M"

[metrics]
listen = "127.0.0.1:$MP"
TOML
export AWS_ACCESS_KEY_ID=soak AWS_SECRET_ACCESS_KEY=soak-secret AWS_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
"$LB" run --config "$WORK/lifeboat.toml" 2>"$WORK/daemon.log" &
PID=$!
PIDS+=("$PID")
rss() { awk '/VmRSS/{print $2}' "/proc/$PID/status"; }
echo -e "slot\trss_kib" >"$WORK/rss.tsv"
for slot in $(seq 1 "$SLOTS"); do
  sleep 1
  kill -0 "$PID" 2>/dev/null || { echo "the daemon died at slot $slot" >&2; tail -20 "$WORK/daemon.log" >&2; exit 1; }
  "$E/etcdctl" --endpoints "$EP" put "/soak/$((slot % 100))" "$(head -c 512 /dev/urandom | base64 -w0)" >/dev/null 2>&1 \
    || echo "slot $slot: the writer's put failed (leader election?)" >&2
  R=$(rss)
  echo -e "$slot\t$R" >>"$WORK/rss.tsv"
  if [ "$RESTART_EVERY" -gt 0 ] && [ $((slot % RESTART_EVERY)) = 0 ]; then
    kill -9 "$S3PID"; wait "$S3PID" 2>/dev/null || true; sleep 2; start_s3
  fi
  if [ "$PAUSE_EVERY" -gt 0 ] && [ $((slot % PAUSE_EVERY)) = 0 ]; then
    kill -STOP "$S3PID"; sleep 10; kill -CONT "$S3PID"
  fi
  if [ "$HUP_EVERY" -gt 0 ] && [ $((slot % HUP_EVERY)) = 0 ]; then kill -HUP "$PID"; fi
  if [ "$RO_EVERY" -gt 0 ] && [ $((slot % RO_EVERY)) = 0 ]; then read_only; RO_AT=$slot; fi
  if [ "$RO_AT" -gt 0 ] && [ "$slot" = $((RO_AT + 5)) ]; then writable; RO_AT=0; fi
  if [ "$LEADER_EVERY" -gt 0 ] && [ $((slot % LEADER_EVERY)) = 0 ] && [ -z "$KILLED" ]; then
    KILLED=$(leader)
    if [ -n "$KILLED" ]; then kill -9 "${EPIDS[$KILLED]}"; wait "${EPIDS[$KILLED]}" 2>/dev/null || true; KILLED_AT=$slot; fi
  fi
  if [ -n "$KILLED" ] && [ "$slot" = $((KILLED_AT + 5)) ]; then start_member "$KILLED"; KILLED=""; fi
done
[ "$RO_AT" -gt 0 ] && writable
[ -n "$KILLED" ] && start_member "$KILLED"
# RSS "after N slots": the median of the samples of slots N-9..N, each taken before that
# slot's faults (a single sample lands anywhere in a backup or a reload: +-2 MiB here).
after() { awk -v n="$1" 'NR>1 && $1>n-10 && $1<=n {print $2}' "$WORK/rss.tsv" | sort -n | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : 0)}'; }
BASE=$(after "$BASE_SLOT"); END=$(after "$SLOTS")
MAX=$(awk 'NR>1 && $2>m {m=$2} END{print m+0}' "$WORK/rss.tsv")
kill -TERM "$PID"; wait "$PID" || { echo "the daemon exited non-zero" >&2; exit 1; }
FAIL=0
for d in "$WORK/local" s3://soak/p; do
  LIFEBOAT_S3_ENDPOINT="http://127.0.0.1:$S3P" "$LB" verify -q --from "$d" --all >/dev/null || { echo "verify $d failed" >&2; FAIL=1; }
done
grep -q "FAILED verification" "$WORK/daemon.log" && { echo "a scrub failed" >&2; FAIL=1; }
grep -q "panicked" "$WORK/daemon.log" && { echo "the daemon panicked" >&2; FAIL=1; }
STORED=$(grep -c "backup stored" "$WORK/daemon.log" || true)
[ "$BASE" -gt 0 ] || BASE=$(awk 'NR==2{print $2}' "$WORK/rss.tsv")
[ "$END" -gt 0 ] || END=$BASE
ROW=$(python3 -c "print(f'RSS {$BASE/1024:.1f} MiB after $BASE_SLOT slots, {$END/1024:.1f} MiB after $SLOTS (medians of 10 slots; ratio {$END/$BASE:.3f}, bound 1.1), max {$MAX/1024:.1f} MiB (bound 96)')")
echo "soak ($PROFILE): $SLOTS slots at 1 s, local + S3 (s3s-fs restarted every $RESTART_EVERY slots, stopped every $PAUSE_EVERY, SIGHUP every $HUP_EVERY, local read-only every $RO_EVERY, leader killed every $LEADER_EVERY; 0: never): $ROW; $STORED backups stored"
python3 -c "import sys; sys.exit(0 if $END <= 1.1*$BASE and $MAX <= 96*1024 else 1)" || { echo "RSS bound exceeded" >&2; FAIL=1; }
[ "$FAIL" = 0 ] && OK=1
exit "$FAIL"
