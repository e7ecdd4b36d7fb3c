#!/usr/bin/env bash
# Point-in-time recovery benchmark (issue 21's targets), one run, etcd 3.5.1 on 127.0.0.1:
#
#   scripts/bench-pitr.sh              # base db of 200000 keys x 500 B, 60 s at 1000 writes/s
#   PITR_BASE_KEYS=2000000 PITR_SECONDS=300 scripts/bench-pitr.sh
#
# For a local directory and for S3 (s3s-fs on loopback), each with its own capture run:
#   RPO      time from a write's acknowledgement until `list --capture` shows its revision
#            durable (a poller runs `list --capture` back to back, 20 ms apart, during the
#            load; a sample's durable time is the end of the first listing that shows it, so
#            each includes up to one listing): about 4 writes a second during the load and
#            the last one, as median, max and the last write
#   capture  CPU (user + system over the load, % of one core) and peak RSS of `lifeboat capture`
#   storage  segment bytes per event vs the Gardener sidecar's delta snapshots of the same
#            events (JSON with base64 values; plain and zstd-3: examples/pitr_load)
#   restore  `restore test --to-revision LAST` (backup + every captured event) vs `restore test`
#            of the backup alone (both boot etcd and compare hashkv)
# Prints a Markdown table (and writes it to PITR_OUT when set).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE_KEYS=${PITR_BASE_KEYS:-200000}
SECONDS_=${PITR_SECONDS:-60}
RATE=${PITR_RATE:-1000}
VALUE=${PITR_VALUE:-1024}
WORK=$(realpath -m "${PITR_WORK:-$ROOT/bench-work/pitr}")   # absolute: topologies need it

[ "${BENCH_SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh
cargo build --release --locked --bin lifeboat --example fill --example pitr_load
LB=$ROOT/target/release/lifeboat
FILL=$ROOT/target/release/examples/fill
LOAD=$ROOT/target/release/examples/pitr_load
E=$(scripts/etcd35-dir.sh)

rm -rf "$WORK"; mkdir -p "$WORK"
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
now_ms() { date +%s%3N; }
# The highest to_revision `list --capture` shows in DEST (0 when none).
durable_of() {
  "$LB" list --from "$1" --capture -o json 2>/dev/null |
    { grep -o '"to_revision": *[0-9]*' || true; } | grep -o '[0-9]*$' | sort -n | tail -1 | sed 's/^$/0/'
}
# Appends `UNIX_MS DURABLE_REVISION` lines to FILE until killed.
poll_durable() { # DEST FILE
  while :; do
    local d
    d=$(durable_of "$1") || d=0
    echo "$(now_ms) ${d:-0}" >>"$2"
    sleep 0.02
  done
}

start_etcd

s3p=$(free_port)
mkdir -p "$WORK/s3/bench"
"${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" --host 127.0.0.1 --port "$s3p" \
  --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3.log" 2>&1 &
PIDS+=($!)
export LIFEBOAT_S3_ENDPOINT="http://127.0.0.1:$s3p" AWS_ACCESS_KEY_ID=bench \
  AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$s3p))" 2>/dev/null && break; sleep 0.2; done

echo "filling the base: $BASE_KEYS keys x 500 B" >&2
"$FILL" "$EP" "$BASE_KEYS" 500

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); echo "$1: $2" >&2; }

# One capture run into DEST while the load writes; fills the rows for LABEL.
run() { # LABEL DEST
  local label=$1 dest=$2 out pid t0 t1 ticks0 ticks1 hz last ack durable poller
  local acks=$WORK/acks.txt polls=$WORK/durable.txt
  "$LB" backup -q --to "$dest" --endpoints "$EP"
  "$LB" capture -o json --endpoints "$EP" --to "$dest" >"$WORK/capture.json" 2>"$WORK/capture.err" &
  pid=$!
  sleep 2
  rm -f "$acks" "$polls"
  poll_durable "$dest" "$polls" &
  poller=$!
  PIDS+=("$poller")
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  t0=$(now_ms)
  out=$("$LOAD" write "$EP" "$RATE" "$SECONDS_" "$VALUE" 10000 "$acks")
  ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  t1=$(now_ms)
  echo "$out" >&2
  last=$(sed 's/.*last_revision=\([0-9]*\).*/\1/' <<<"$out")
  first=$(sed 's/.*first_revision=\([0-9]*\).*/\1/' <<<"$out")
  ack=$(sed 's/.*last_ack_unix_ms=\([0-9]*\).*/\1/' <<<"$out")
  durable=0
  until [ "$durable" -ge "$last" ]; do
    sleep 0.05
    durable=$(tail -n 1 "$polls" 2>/dev/null | awk '{print $2 + 0}')
    durable=${durable:-0}
    [ $(( $(now_ms) - ack )) -lt 120000 ] || { echo "capture never reached $last" >&2; cat "$WORK/capture.err" >&2; exit 1; }
  done
  kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true
  local hwm rpo
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  # Each sample: the first poll showing its revision durable, minus its acknowledgement.
  rpo=$(python3 - "$acks" "$polls" "$last" <<'PY'
import sys
acks = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
polls = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
last = int(sys.argv[3])
out = {}
for rev, ack in acks:
    t = next((ms for ms, d in polls if d >= rev and ms >= ack), None)
    if t is not None:
        out.setdefault(rev, t - ack)
xs = sorted(out.values())
print(len(xs), xs[len(xs) // 2] if xs else -1, xs[-1] if xs else -1, out.get(last, -1))
PY
)
  read -r n med max lastrpo <<<"$rpo"
  row "$label" "RPO: last write acknowledged → durable (ms)" "$lastrpo"
  row "$label" "RPO over $n writes during the load: median / max (ms)" "$med / $max"
  row "$label" "capture CPU during the load (% of one core)" \
    "$(awk "BEGIN{printf \"%.1f\", 100 * ($ticks1 - $ticks0) / $hz / (($t1 - $t0) / 1000)}")"
  row "$label" "capture peak RSS (MiB)" "$(awk "BEGIN{printf \"%.1f\", $hwm / 1024}")"
  local bytes events
  bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$WORK/capture.json")
  events=$(( last - first + 1 ))
  row "$label" "segment bytes per event ($events events)" "$(awk "BEGIN{printf \"%.1f\", $bytes / $events}")"
  LAST=$last FIRST=$first DEST_LAST=$dest
}

run "local dir" "$WORK/dest"
g=$("$LOAD" gardener-size "$EP" "$FIRST" "$LAST")
echo "$g" >&2
gj=$(sed 's/.*json_bytes=\([0-9]*\).*/\1/' <<<"$g")
gz=$(sed 's/.*json_zstd3_bytes=\([0-9]*\).*/\1/' <<<"$g")
ev=$(sed 's/events=\([0-9]*\).*/\1/' <<<"$g")
row "Gardener" "delta JSON bytes per event, plain / zstd-3 ($ev events)" \
  "$(awk "BEGIN{printf \"%.1f / %.1f\", $gj / $ev, $gz / $ev}")"

# Restore: the backup alone vs the backup plus every captured event.
t0=$(now_ms); "$LB" restore test -q --from "$WORK/dest" --etcd "$E/etcd"; t1=$(now_ms)
t2=$(now_ms); "$LB" restore test -q --from "$WORK/dest" --etcd "$E/etcd" --to-revision "$LAST"; t3=$(now_ms)
row "local dir" "restore test: backup alone (s)" "$(awk "BEGIN{printf \"%.2f\", ($t1 - $t0) / 1000}")"
row "local dir" "restore test --to-revision (backup + $(( LAST - FIRST + 1 )) events) (s)" \
  "$(awk "BEGIN{printf \"%.2f\", ($t3 - $t2) / 1000}")"
row "local dir" "ratio, to-revision / backup alone" "$(awk "BEGIN{printf \"%.2f\", ($t3 - $t2) / ($t1 - $t0)}")"

run "S3 (s3s-fs)" "s3://bench/pitr"

size=$("$E/etcdctl" --endpoints "$EP" endpoint status -w json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
{
  echo "PITR benchmark on $(date -u +%F), $(nproc) cores, etcd 3.5.1; base db $((size / 1048576)) MiB after the runs; load: $RATE puts/s of $VALUE B for $SECONDS_ s over 10000 keys."
  echo
  echo "| destination | figure | value |"
  echo "|---|---|---:|"
  printf '%s\n' "${ROWS[@]}"
} | tee "${PITR_OUT:-/dev/null}"
