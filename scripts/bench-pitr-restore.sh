#!/usr/bin/env bash
# Restore to a revision long after a backup (issue 21's restore target), one run, etcd 3.5.1
# on 127.0.0.1:
#
#   scripts/bench-pitr-restore.sh                      # 1.6 M keys x 500 B (~1 GiB db), 1 h at 1000 puts/s of 1 KiB
#   PITR_BASE_KEYS=20000 PITR_SECONDS=60 scripts/bench-pitr-restore.sh   # a quick run
#   PITR_BASE_SNAPSHOT=bench-work/big.snap.db PITR_BASE_KEYS=0 scripts/bench-pitr-restore.sh
#                     # the base restored from an etcd snapshot (plus PITR_BASE_KEYS more keys)
#   PITR_REUSE=1 scripts/bench-pitr-restore.sh         # measure again on the previous run's data
#
# The base is filled and backed up; the capture window is then written straight into the
# destination by examples/pitr_synth (the segments `lifeboat capture` writes, without
# waiting an hour: one segment per simulated second, a clock mark in each). Measured with
# GNU time (wall, peak RSS), page cache dropped before each command where permitted:
#   restore test                      the backup alone (restore, boot etcd, compare hashkv)
#   restore test --to-revision LAST   the backup plus every event of the window
#   restore plan + apply (1 member)   both ways, without booting etcd
#   both --to-revision rows again with --compact (the window compacted at R-1 as replayed)
# Prints a Markdown table (and writes it to PITR_OUT when set).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE_KEYS=${PITR_BASE_KEYS:-1600000}
SECONDS_=${PITR_SECONDS:-3600}
RATE=${PITR_RATE:-1000}
VALUE=${PITR_VALUE:-1024}
KEYS=${PITR_KEYS:-10000}
WORK=$(realpath -m "${PITR_WORK:-$ROOT/bench-work/pitr-restore}")   # absolute: topologies need it

[ "${BENCH_SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh
cargo build --release --locked --bin lifeboat --example fill --example pitr_synth
LB=$ROOT/target/release/lifeboat
FILL=$ROOT/target/release/examples/fill
SYNTH=$ROOT/target/release/examples/pitr_synth
E=$(scripts/etcd35-dir.sh)

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

if [ "${PITR_REUSE:-0}" = 1 ] && [ -f "$WORK/synth.txt" ]; then
  # PITR_REUSE=1: the backup and window of the previous run in PITR_WORK, as they are (the
  # sizes asked for now are not checked: they are those of that run).
  echo "reusing $WORK/dest" >&2
  rm -rf "$WORK/alone" "$WORK/alone.plan" "$WORK/pitr" "$WORK/pitr.plan"
else
rm -rf "$WORK"; mkdir -p "$WORK"
start_etcd "${PITR_BASE_SNAPSHOT:-}"
if [ "$BASE_KEYS" -gt 0 ]; then
  echo "filling the base: $BASE_KEYS keys x 500 B" >&2
  "$FILL" "$EP" "$BASE_KEYS" 500
fi
"$LB" backup -q --to "$WORK/dest" --endpoints "$EP"
kill "$ETCD"; wait "$ETCD" 2>/dev/null || true
rm -rf "$WORK/etcd"

read -r CLUSTER BASE_REV DB_BYTES < <("$LB" list --from "$WORK/dest" -o json |
  python3 -c 'import json,sys; m=json.load(sys.stdin)[0]; print(m["cluster_id"], m["revision"], m["db_size"])')
echo "writing $SECONDS_ s x $RATE puts of $VALUE B after revision $BASE_REV" >&2
synth=$("$SYNTH" "$WORK/dest" "$CLUSTER" "$BASE_REV" "$SECONDS_" "$RATE" "$VALUE" "$KEYS")
echo "$synth" >&2
# What a later PITR_REUSE=1 run needs of this one (beside the store, not in it).
printf '%s\n%s %s %s %s %s\n' "$synth" "$BASE_KEYS" "$SECONDS_" "$RATE" "$VALUE" "$KEYS" > "$WORK/synth.txt"
fi
read -r CLUSTER BASE_REV DB_BYTES < <("$LB" list --from "$WORK/dest" -o json |
  python3 -c 'import json,sys; m=json.load(sys.stdin)[0]; print(m["cluster_id"], m["revision"], m["db_size"])')
synth=$(sed -n 1p "$WORK/synth.txt")
read -r BASE_KEYS SECONDS_ RATE VALUE KEYS < <(sed -n 2p "$WORK/synth.txt")
LAST=$(sed 's/.*last_revision=\([0-9]*\).*/\1/' <<<"$synth")
SEG_BYTES=$(sed 's/.*bytes=\([0-9]*\).*/\1/' <<<"$synth")

ROWS=()
# measure LABEL CMD...: wall seconds and peak RSS MiB of one run, cold page cache.
measure() {
  local label=$1; shift
  drop_caches
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    echo "$label failed:" >&2; cat "$WORK/err" >&2; exit 1; }
  read -r wall rss <"$WORK/time"
  ROWS+=("| $label | $wall | $(awk "BEGIN{printf \"%.1f\", $rss / 1024}") |")
  echo "$label: $wall s, $((rss / 1024)) MiB" >&2
}
topo() { # DIR
  printf 'cluster_token = "generate"\netcd_version = "3.5.1"\n[[member]]\nname = "r0"\npeer_urls = ["http://127.0.0.1:%s"]\nclient_urls = ["http://127.0.0.1:%s"]\ndata_dir = "%s/r0"\n' \
    "$(free_port)" "$(free_port)" "$1" > "$1.toml"
}
apply_one() { # DIR [--to-revision R]
  local d=$1; shift
  rm -rf "$d" "$d.plan"; topo "$d"
  "$LB" restore plan -q --from "$WORK/dest" --topology "$d.toml" --out "$d.plan" --no-bump-revision "$@"
  "$LB" restore apply -q --plan "$d.plan" --node r0
}

measure "restore test: backup alone" "$LB" restore test -q --from "$WORK/dest" --etcd "$E/etcd"
T_ALONE=$(cut -d' ' -f1 "$WORK/time")
measure "restore test --to-revision $LAST" "$LB" restore test -q --from "$WORK/dest" --etcd "$E/etcd" --to-revision "$LAST"
T_PITR=$(cut -d' ' -f1 "$WORK/time")
measure "restore plan + apply, 1 member: backup alone" \
  bash -c "$(declare -f apply_one topo free_port); LB='$LB' WORK='$WORK' apply_one '$WORK/alone'"
A_ALONE=$(cut -d' ' -f1 "$WORK/time")
rm -rf "$WORK/alone" "$WORK/alone.plan"
measure "restore plan + apply, 1 member: --to-revision $LAST" \
  bash -c "$(declare -f apply_one topo free_port); LB='$LB' WORK='$WORK' apply_one '$WORK/pitr' --to-revision '$LAST'"
A_PITR=$(cut -d' ' -f1 "$WORK/time")
restored=$(stat -c %s "$WORK/pitr/r0/member/snap/db")
rm -rf "$WORK/pitr" "$WORK/pitr.plan"
# --compact: the window compacted at R-1 as it is replayed (each key's newest change only).
measure "restore test --to-revision $LAST --compact" "$LB" restore test -q --from "$WORK/dest" --etcd "$E/etcd" --to-revision "$LAST" --compact
T_COMPACT=$(cut -d' ' -f1 "$WORK/time")
measure "restore plan + apply, 1 member: --to-revision $LAST --compact" \
  bash -c "$(declare -f apply_one topo free_port); LB='$LB' WORK='$WORK' apply_one '$WORK/pitr' --to-revision '$LAST' --compact"
A_COMPACT=$(cut -d' ' -f1 "$WORK/time")
compacted=$(stat -c %s "$WORK/pitr/r0/member/snap/db")
rm -rf "$WORK/pitr" "$WORK/pitr.plan"

{
  echo "PITR restore benchmark on $(date -u +%F), $(nproc) cores, etcd 3.5.1: base db $((DB_BYTES / 1048576)) MiB (${PITR_BASE_SNAPSHOT:+$PITR_BASE_SNAPSHOT plus }$BASE_KEYS keys x 500 B, revision $BASE_REV); window $SECONDS_ s x $RATE puts/s of $VALUE B over $KEYS keys ($(( LAST - BASE_REV )) events, $((SEG_BYTES / 1048576)) MiB of segments); restored db $((restored / 1048576)) MiB ($((compacted / 1048576)) MiB with --compact). Cold page cache before each command where permitted."
  echo
  echo "| command | wall (s) | peak RSS (MiB) |"
  echo "|---|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo "| ratio, restore test to revision / backup alone | $(awk "BEGIN{printf \"%.2f\", $T_PITR / $T_ALONE}") | |"
  echo "| ratio, plan + apply to revision / backup alone | $(awk "BEGIN{printf \"%.2f\", $A_PITR / $A_ALONE}") | |"
  echo "| ratio, restore test to revision --compact / backup alone | $(awk "BEGIN{printf \"%.2f\", $T_COMPACT / $T_ALONE}") | |"
  echo "| ratio, plan + apply to revision --compact / backup alone | $(awk "BEGIN{printf \"%.2f\", $A_COMPACT / $A_ALONE}") | |"
} | tee "${PITR_OUT:-/dev/null}"
