#!/usr/bin/env bash
# Benchmarks lifeboat side by side with etcd's own tools, in one run, alternating, and
# writes medians and ratios to BENCHMARKS.md.
#
#   scripts/bench.sh                 # 2M keys x 500 B (about 1 GiB db) + a 100 MB db
#   BENCH_KEYS=200000 scripts/bench.sh   # smaller, for a quick look
#   BENCH_ONLY=backup BENCH_OUT=bench-work/backup.md scripts/bench.sh
#                                    # only the backup rows (local, S3, etcdctl), table elsewhere
#
# What is measured (wall time and peak RSS from GNU time -v, median of BENCH_ROUNDS):
#   backup:  lifeboat backup (adaptive zstd level, local dir; and --zstd-level 3)
#                                                  vs  etcdctl snapshot save
#                                                  vs  etcdctl snapshot save && zstd -3
#            lifeboat backup to S3 (s3s-fs on 127.0.0.1)  vs  the local-dir backup
#                (its read-back spools the db to $TMPDIR for the hashkv walk: room for
#                the db there, or it falls back to ranged GETs, the slower path)
#            lifeboat backup --encrypt-to (age, one X25519 recipient)  vs  the same, plain
#            the snapshot streamed and discarded (examples/stream_floor): the member's own
#                send rate, the floor under both lifeboat and etcdctl
#   inspect: lifeboat inspect (check + both hashes) vs etcdutl snapshot status
#   wal:     lifeboat check-member on the member's data dir (WAL throughput)
#   restore: native restore of the snapshot into 3 member dirs (examples/native_restore, one
#            read of the snapshot)  vs  3 x etcdutl snapshot restore
#   restore: lifeboat restore test; the restore drill (plan, apply on 3 members, start,
#            until healthy), target < 60 s for the 1 GiB db
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEYS=${BENCH_KEYS:-2000000}
VALUE=${BENCH_VALUE:-500}
SMALL_KEYS=${BENCH_SMALL_KEYS:-200000}
ROUNDS=${BENCH_ROUNDS:-3}
WORK=$(realpath -m "${BENCH_WORK:-$ROOT/bench-work}")   # absolute: topologies need it

[ "${BENCH_SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh   # BENCH_SKIP_SETUP=1: already installed
cargo build --release --locked --bin lifeboat --example fill --example native_restore --example stream_floor
LB=$ROOT/target/release/lifeboat
FILL=$ROOT/target/release/examples/fill
NATIVE=$ROOT/target/release/examples/native_restore
FLOOR=$ROOT/target/release/examples/stream_floor
E=$(scripts/etcd35-dir.sh)
TIME=/usr/bin/time

rm -rf "$WORK"; mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
export DRILL_PHASES=$WORK/drill-phases.tsv
: > "$RESULTS"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_s3() { # -> sets S3_EP; s3s-fs on loopback with a bucket "bench"
  local port; port=$(free_port)
  mkdir -p "$WORK/s3/bench"
  "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" --host 127.0.0.1 --port "$port" \
    --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3.log" 2>&1 &
  PIDS+=($!)
  S3_EP="http://127.0.0.1:$port"
  for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && return 0; sleep 0.2; done
  echo "s3s-fs did not start" >&2; exit 1
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

start_etcd() { # name -> sets EP
  local name=$1 cp pp
  cp=$(free_port); pp=$(free_port)
  "$E/etcd" --name "$name" --data-dir "$WORK/$name" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$name=http://127.0.0.1:$pp" --quota-backend-bytes=8589934592 \
    --log-level=warn >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  EP="http://127.0.0.1:$cp"
  for _ in $(seq 100); do "$E/etcdctl" --endpoints "$EP" endpoint health >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "etcd $name did not start" >&2; exit 1
}

# measure LABEL SIZE_LABEL CMD...: one timed run, appended to results.tsv. The page cache is
# dropped first (cold member, as after a restart) unless WARM=1.
measure() {
  local label=$1 size=$2; shift 2
  sync
  [ "${WARM:-0}" = 1 ] || echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  $TIME -v -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/cmd.err" || { echo "FAILED: $*" >&2; cat "$WORK/cmd.err" >&2; exit 1; }
  local wall rss
  wall=$(python3 - "$WORK/time.txt" <<'PY'
import sys,re
t=open(sys.argv[1]).read()
m=re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.*)",t).group(1).split(":")
s=0.0
for p in m: s=s*60+float(p)
print(f"{s:.3f}")
PY
)
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time.txt")
  printf '%s\t%s\t%s\t%s\n' "$size" "$label" "$wall" "$rss" | tee -a "$RESULTS"
}

# One restore drill from backup dir $3: plan 3 members on loopback, apply all three in
# parallel (one per node in a real restore), start them with the plan's flags, wait until
# the cluster is healthy, stop them. Timed as a whole by `measure`.
# Each phase's wall time goes to $DRILL_PHASES (tag, plan, apply, start): where the time goes.
drill_once() { # LB E DEST WORKDIR [TAG]
  local lb=$1 e=$2 dest=$3 w=$4 tag=${5:-} i t0 t1 t2 t3
  rm -rf "$w"; mkdir -p "$w"
  { echo 'cluster_token = "generate"'; echo 'etcd_version = "3.5.1"'
    for i in 0 1 2; do
      printf '[[member]]\nname = "r%s"\npeer_urls = ["http://127.0.0.1:%s"]\nclient_urls = ["http://127.0.0.1:%s"]\ndata_dir = "%s/r%s"\n' \
        "$i" "$(free_port)" "$(free_port)" "$w" "$i"
    done; } > "$w/topology.toml"
  t0=$(date +%s.%N)
  "$lb" restore plan -q --from "$dest" --topology "$w/topology.toml" --out "$w/plan" --no-bump-revision
  t1=$(date +%s.%N)
  for i in 0 1 2; do "$lb" restore apply -q --plan "$w/plan" --node "r$i" & done
  wait
  t2=$(date +%s.%N)
  local pids=() eps
  # Every member's flags read before the first starts, so the three start together (a
  # python start-up between them staggered the starts by ~0.4 s each).
  python3 -c "import json,sys
for i, m in enumerate(json.load(open(sys.argv[1]))['members']):
    open(sys.argv[2] + '/r%d.flags' % i, 'w').write(chr(10).join(m['etcd_flags']) + chr(10))" \
    "$w/plan/plan.json" "$w"
  for i in 0 1 2; do
    mapfile -t flags <"$w/r$i.flags"
    "$e/etcd" "${flags[@]}" --log-level=warn >"$w/r$i.log" 2>&1 &
    pids+=($!)
  done
  eps=$(python3 -c "import json,sys;print(','.join(m['client_urls'][0] for m in json.load(open(sys.argv[1]))['members']))" "$w/plan/plan.json")
  until "$e/etcdctl" --endpoints "$eps" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; do sleep 0.1; done
  t3=$(date +%s.%N)
  [ -z "${DRILL_PHASES:-}" ] || printf '%s\t%s\t%s\t%s\n' "$tag" "$(awk "BEGIN{print $t1 - $t0}")" \
    "$(awk "BEGIN{print $t2 - $t1}")" "$(awk "BEGIN{print $t3 - $t2}")" >> "$DRILL_PHASES"
  kill -9 "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true   # healthy is the end point; no graceful stop timed
}

# restore test, and the drill (start restore → cluster healthy), on the last stored backup.
bench_restore() { # tag
  local tag=$1 dest=$WORK/out/lb r
  for r in $(seq "$ROUNDS"); do
    measure "lifeboat restore test" "$tag" "$LB" restore test -q --from "$dest" --etcd "$E/etcd"
    measure "restore drill: plan + apply x3 + start -> healthy" "$tag" \
      bash -c "$(declare -f drill_once free_port); drill_once '$LB' '$E' '$dest' '$WORK/drill' '$tag'"
  done
  rm -rf "$WORK/drill"
}

bench_db() { # name keys
  local name=$1 keys=$2
  start_etcd "$name"
  echo "filling $name with $keys keys x $VALUE B" >&2
  "$FILL" "$EP" "$keys" "$VALUE"
  local size
  size=$("$E/etcdctl" --endpoints "$EP" endpoint status -w json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
  local tag="$name ($((size / 1048576)) MiB db)"
  echo "$tag" >&2
  for r in $(seq "$ROUNDS"); do
    rm -rf "$WORK/out"; mkdir -p "$WORK/out"
    # The backup and etcdctl, the pair the headline ratio compares, run next to each other
    # in an order that alternates between rounds: the first command after a round's
    # clean-up (ext4 still freeing the last round's outputs) is not always the same one.
    if [ $((r % 2)) = 0 ]; then
      measure "etcdctl snapshot save" "$tag" "$E/etcdctl" --endpoints "$EP" snapshot save "$WORK/out/snap.db"
      rm -f "$WORK/out/snap.db"
    fi
    measure "lifeboat backup" "$tag" "$LB" backup -q --to "$WORK/out/lb" --endpoints "$EP"
    if [ $((r % 2)) = 1 ]; then
      measure "etcdctl snapshot save" "$tag" "$E/etcdctl" --endpoints "$EP" snapshot save "$WORK/out/snap.db"
      rm -f "$WORK/out/snap.db"
    fi
    measure "lifeboat backup --zstd-level 3" "$tag" "$LB" backup -q --to "$WORK/out/lb3" --endpoints "$EP" --zstd-level 3
    measure "lifeboat backup encrypted (age, 1 recipient)" "$tag" "$LB" backup -q --to "$WORK/out/lb-age" \
      --endpoints "$EP" --encrypt-to "$AGE_RECIPIENT"
    measure "lifeboat backup to S3" "$tag" env LIFEBOAT_S3_ENDPOINT="$S3_EP" AWS_ACCESS_KEY_ID=bench \
      AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
      "$LB" backup -q --to "s3://bench/$name-$r" --endpoints "$EP"
    measure "etcdctl snapshot save && zstd -3" "$tag" bash -c "'$E/etcdctl' --endpoints '$EP' snapshot save '$WORK/out/snap.db' && zstd -q -3 -f '$WORK/out/snap.db'"
    measure "snapshot streamed and discarded (the member's send rate)" "$tag" "$FLOOR" "$EP"
  done
  if [ "${BENCH_ONLY:-}" = backup ]; then
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
    return 0
  fi
  # Offline inspection of the same snapshot file.
  "$E/etcdctl" --endpoints "$EP" snapshot save "$WORK/$name.snap.db" >/dev/null 2>&1
  if "$LB" inspect -o json "$WORK/$name.snap.db" >/dev/null 2>&1; then
    for r in $(seq "$ROUNDS"); do
      measure "lifeboat inspect" "$tag" "$LB" inspect -o json "$WORK/$name.snap.db"
      measure "etcdutl snapshot status" "$tag" "$E/etcdutl" snapshot status -w json "$WORK/$name.snap.db"
    done
  fi
  # Restore of 3 members from the same snapshot: native (one read) vs 3 x etcdutl.
  local cluster="m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2381,m2=http://127.0.0.1:2382"
  for r in $(seq "$ROUNDS"); do
    rm -rf "$WORK/restore"; mkdir -p "$WORK/restore"
    measure "lifeboat native restore (3 members)" "$tag" "$NATIVE" "$WORK/$name.snap.db" "$WORK/restore/native" 3
    rm -rf "$WORK/restore"; mkdir -p "$WORK/restore"
    measure "3 x etcdutl snapshot restore" "$tag" bash -c "for i in 0 1 2; do '$E/etcdutl' snapshot restore '$WORK/$name.snap.db' --name m\$i --initial-cluster '$cluster' --initial-advertise-peer-urls http://127.0.0.1:238\$i --data-dir '$WORK/restore/m'\$i || exit 1; done"
  done
  rm -rf "$WORK/restore"
  # WAL verification on the member's data dir (stopped first: a live WAL keeps changing).
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  if "$LB" check-member -o json "$WORK/$name" >/dev/null 2>&1; then
    local walbytes
    walbytes=$(du -sb "$WORK/$name/member/wal" | cut -f1)
    cat "$WORK/$name"/member/wal/*.wal "$WORK/$name"/member/snap/* >/dev/null
    for r in $(seq "$ROUNDS"); do
      WARM=1 measure "lifeboat check-member ($((walbytes / 1048576)) MiB WAL)" "$tag" "$LB" check-member --quick -o json "$WORK/$name" || true
    done
  fi
  bench_restore "$tag"
}

# A throwaway age recipient (its secret key is never needed: the backup reads back with
# a key of its own run).
AGE_RECIPIENT=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
start_s3
bench_db big "$KEYS"
bench_db small "$SMALL_KEYS"

python3 - "$RESULTS" "${BENCH_OUT:-$ROOT/BENCHMARKS.md}" "$KEYS" "$VALUE" "$SMALL_KEYS" "$ROUNDS" "$DRILL_PHASES" <<'PY'
import sys, os, statistics, collections, platform, subprocess, datetime
res, out, keys, value, small, rounds, phases_file = sys.argv[1:]
rows = collections.OrderedDict()
for line in open(res):
    size, label, wall, rss = line.rstrip("\n").split("\t")
    rows.setdefault((size, label), []).append((float(wall), int(rss)))
med = {k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v)) for k, v in rows.items()}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
L = []
L.append("# Benchmarks\n")
L.append(f"Measured by `scripts/bench.sh` on {datetime.date.today()}, {cpu}, {subprocess.run(['nproc'],capture_output=True,text=True).stdout.strip()} cores; "
         f"etcd 3.5.1 on 127.0.0.1; {keys} keys x {value} B (and {small} keys); medians of {rounds} alternating runs; "
         "page cache dropped before each run where permitted. Wall time and peak RSS from GNU time -v.\n")
L.append("| db | command | wall (s) | peak RSS (MiB) |")
L.append("|---|---|---:|---:|")
for (size, label), (w, r) in med.items():
    L.append(f"| {size} | {label} | {w:.2f} | {r/1024:.1f} |")
L.append("")
L.append("## Ratios (lifeboat / reference; lower is better)\n")
L.append("| db | ratio | value | target |")
L.append("|---|---|---:|---|")
sizes = list(dict.fromkeys(s for s, _ in med))
for s in sizes:
    def g(l): return med.get((s, l))
    lb, ctl, ctlz = g("lifeboat backup"), g("etcdctl snapshot save"), g("etcdctl snapshot save && zstd -3")
    if lb and ctl:
        L.append(f"| {s} | backup wall / etcdctl snapshot save | {lb[0]/ctl[0]:.2f} | ≤ 0.9 |")
    fl = g("snapshot streamed and discarded (the member's send rate)")
    if lb and ctl and fl:
        L.append(f"| {s} | backup wall / the member's send rate; etcdctl's | {lb[0]/fl[0]:.2f}; {ctl[0]/fl[0]:.2f} | (the floor: what the member alone takes) |")
    lb3 = g("lifeboat backup --zstd-level 3")
    if lb3 and ctl:
        L.append(f"| {s} | backup --zstd-level 3 wall / etcdctl snapshot save | {lb3[0]/ctl[0]:.2f} | (fixed level, for comparison) |")
    if lb and ctlz:
        L.append(f"| {s} | backup wall / (etcdctl snapshot save && zstd -3) | {lb[0]/ctlz[0]:.2f} | ≤ 0.5 |")
    if lb:
        L.append(f"| {s} | backup peak RSS (MiB) | {lb[1]/1024:.1f} | ≤ 64 |")
    lbage = g("lifeboat backup encrypted (age, 1 recipient)")
    if lb and lbage:
        L.append(f"| {s} | encrypted backup wall / plain backup | {lbage[0]/lb[0]:.2f} | ≤ 1.10 |")
        L.append(f"| {s} | encrypted backup peak RSS (MiB) | {lbage[1]/1024:.1f} | ≤ 64 |")
    lbs3 = g("lifeboat backup to S3")
    if lb and lbs3:
        L.append(f"| {s} | backup to S3 wall / backup to local dir | {lbs3[0]/lb[0]:.2f} | ≤ 1.2 |")
        L.append(f"| {s} | backup to S3 peak RSS (MiB) | {lbs3[1]/1024:.1f} | ≤ 64 + 4 parts × 8 MiB |")
    ins, st = g("lifeboat inspect"), g("etcdutl snapshot status")
    if ins and st:
        L.append(f"| {s} | inspect wall / etcdutl snapshot status | {ins[0]/st[0]:.2f} | ≤ 0.33 |")
        L.append(f"| {s} | inspect RSS / etcdutl RSS | {ins[1]/st[1]:.2f} | well under 1 |")
    nr, eu = g("lifeboat native restore (3 members)"), g("3 x etcdutl snapshot restore")
    if nr and eu:
        L.append(f"| {s} | native restore of 3 members / 3 x etcdutl snapshot restore | {nr[0]/eu[0]:.2f} | ≤ 0.5 |")
        L.append(f"| {s} | native restore peak RSS (MiB) | {nr[1]/1024:.1f} | ≤ 64 |")
    for (sz, label), (w, r) in med.items():
        if sz == s and label.startswith("lifeboat check-member (") and w > 0:
            mib = float(label.split("(")[1].split()[0])
            L.append(f"| {s} | WAL verification throughput (MiB/s) | {mib / w:.0f} | ≥ 1000 (warm cache) |")
    dr = g("restore drill: plan + apply x3 + start -> healthy")
    gib = float(s.split("(")[1].split()[0]) / 1024 if "(" in s else 0
    if dr:
        L.append(f"| {s} | restore drill RTO, 3 members (s) | {dr[0]:.1f} | < 60 |")
        if gib > 0:
            L.append(f"| {s} | restore drill, s per GiB | {dr[0]/gib:.1f} | ≤ 20 |")
        ph = [l.split("\t") for l in open(phases_file).read().splitlines()] if os.path.exists(phases_file) else []
        ph = [[float(x) for x in p[1:4]] for p in ph if p[0] == s and len(p) == 4]
        if ph:
            m = [statistics.median(p[i] for p in ph) for i in range(3)]
            L.append(f"| {s} | drill phases (s): plan / apply x3 in parallel / etcd start -> healthy | {m[0]:.1f} / {m[1]:.1f} / {m[2]:.1f} | (where the time goes) |")
    rt = g("lifeboat restore test")
    if rt and gib > 0:
        L.append(f"| {s} | restore test, s per GiB | {rt[0]/gib:.1f} | ≤ 12 |")
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
