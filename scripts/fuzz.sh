#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while:  scripts/fuzz.sh TARGET SECONDS [JOBS]
#   targets: bolt_reader (page reader, cursors, get/diff), bolt_writer (the copy-on-write
#   writer), checker (strict check + etcd report + hashkv), proto (protobuf/JSON decoders of
#   bucket values), wal (WAL framing, records, etcd's read model, wal dump), snap (*.snap files),
#   capture (capture segments: decoder with a round-trip oracle), edit_log (the transactions a
#   compacted restore plan keeps for apply: decoder with a round-trip oracle)
# FUZZ_RUNS=N stops after N executions (libFuzzer's -runs) or SECONDS, whichever comes first.
# FUZZ_TIMEOUT=S: an input running longer than S seconds of wall time is a finding (10; also
# the bar for libFuzzer's slow-unit reports, which would otherwise count as findings). A
# run that is paused (SIGSTOP, to measure something else on the same cores) needs more than
# the pause, or every paused input is reported as a timeout.
# Each run's libFuzzer output is kept in fuzz/artifacts/logs/, and one line is appended to
# fuzz/artifacts/runs.tsv: start (UTC), commit, target, seconds, executions, exec/s, outcome
# (`ok`, `stopped`, or the file of a crash, timeout or out-of-memory input).
# `scripts/fuzz.sh summary` adds up the executions per target from that file (sessions add up:
# the corpus in fuzz/corpus/TARGET carries over from one run to the next).
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only stable Rust is assumed:
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags cargo-fuzz passes. The sanitizer
# defaults to none (lifeboat has no unsafe code; panics and hangs are what we look for);
# FUZZ_SANITIZER=address to use ASan. Crashes land in fuzz/artifacts/TARGET/: copy them to
# tests/fuzz-regressions/ so `cargo test --test it robustness::` replays them forever.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS_FILE=fuzz/artifacts/runs.tsv
if [ "${1:-}" = summary ]; then
  [ -f "$RUNS_FILE" ] || { echo "fuzz: no runs recorded yet ($RUNS_FILE)" >&2; exit 1; }
  awk -F'\t' 'NR > 1 { n[$3] += $5; s[$3] += $4; r[$3]++; if ($7 != "ok" && $7 != "stopped") f[$3] = f[$3] " " $7 }
    END { printf "%-12s %5s %9s %15s  %s\n", "target", "runs", "seconds", "executions", "findings";
          for (t in n) printf "%-12s %5d %9d %15d  %s\n", t, r[t], s[t], n[t], (f[t] == "" ? "none" : f[t]) }' "$RUNS_FILE"
  exit 0
fi
TARGET=${1:?usage: scripts/fuzz.sh TARGET SECONDS [JOBS]   or: scripts/fuzz.sh summary}
SECONDS_=${2:-60}
JOBS=${3:-1}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz not installed; run: cargo install cargo-fuzz" >&2
  exit 2
fi
if [ ! -d "fuzz/corpus/$TARGET" ] || [ -z "$(ls -A "fuzz/corpus/$TARGET" 2>/dev/null)" ]; then
  case "$TARGET" in
    # A small WAL and snap file written by a real etcd 3.5.
    wal | snap) cargo test --quiet --test it wal_robustness::write_fuzz_seeds -- --ignored --exact >/dev/null ;;
    *) cargo test --quiet --test it robustness::write_fuzz_seeds -- --ignored --exact >/dev/null ;;
  esac
fi
mkdir -p "fuzz/corpus/$TARGET" fuzz/artifacts/logs
export RUSTC_BOOTSTRAP=1
# Inputs up to 64 KiB, except where a smaller bound explores the same states much faster:
# pitr_replay decodes two bytes into one record and replays every stream twice (whole and
# in chunks) with the strict checker after each, so 2 KiB (up to ~1,000 records across
# several transactions) is already more than any of its states needs. FUZZ_MAX_LEN overrides.
# pitr_replay is also built without compare tracing (-sanitizer-coverage-trace-compares):
# its input is decoded by modulo arithmetic, so the compares libFuzzer would learn from
# are the oracle's own, and their hooks took 43 % of its time (replaying its 1,500-input
# corpus: 9.2 s with them, 5.6 s without, the same coverage: 2,298 edges either way). It
# gets its own target dir, so the other targets' builds are not redone each time.
# For the same reason it links a libFuzzer built without its interceptors: libFuzzer
# replaces memcmp to learn from the compares, and that hook took 16 % of the time (the
# bolt reader compares keys), and its target uses mimalloc, as glibc's malloc took 20 %
# (the oracle copies small databases): its corpus replays in 11.2 s, was 17.6 s, with the
# same coverage.
BUILD=()
# libFuzzer's sources from libfuzzer-sys (the version fuzz/Cargo.lock pins) built without
# FuzzerInterceptors.cpp into $1, once per version; libfuzzer-sys links it through
# CUSTOM_LIBFUZZER_PATH.
libfuzzer_without_interceptors() {
  local src out tmp
  src=$(cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml |
    python3 -c 'import json, os, sys
print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "libfuzzer-sys"))')
  [ -n "$src" ] && [ -d "$src/libfuzzer" ] || {
    echo "fuzz: libfuzzer-sys's sources not found (cargo metadata --manifest-path fuzz/Cargo.toml)" >&2
    exit 2
  }
  command -v c++ >/dev/null && command -v ar >/dev/null || {
    echo "fuzz: building libFuzzer for $TARGET needs c++ and ar (apt-get install g++ binutils)" >&2
    exit 2
  }
  out="$1/$(basename "$src")/libfuzzer.a"
  if [ ! -f "$out" ]; then
    tmp=$(mktemp -d)
    for f in "$src"/libfuzzer/*.cpp; do
      case "$f" in */FuzzerInterceptors.cpp) continue ;; esac
      echo "$f"
    done | xargs -P "$(nproc)" -I{} sh -c 'c++ -std=c++17 -O2 -fno-omit-frame-pointer -fPIC -w -c "$1" -o "$2/$(basename "$1" .cpp).o"' _ {} "$tmp" || {
      echo "fuzz: building libFuzzer from $src failed (see above)" >&2
      exit 2
    }
    mkdir -p "$(dirname "$out")"
    ar rcs "$tmp/libfuzzer.a" "$tmp"/*.o && mv "$tmp/libfuzzer.a" "$out" || {
      echo "fuzz: could not write $out" >&2
      exit 2
    }
    rm -rf "$tmp"
  fi
  echo "$out"
}
case "$TARGET" in
  pitr_replay)
    MAX_LEN=${FUZZ_MAX_LEN:-2048}
    BUILD=(--no-trace-compares --target-dir "$PWD/fuzz/target-no-cmp")
    CUSTOM_LIBFUZZER_PATH=$(libfuzzer_without_interceptors "$PWD/fuzz/target-no-cmp/libfuzzer")
    export CUSTOM_LIBFUZZER_PATH
    ;;
  *) MAX_LEN=${FUZZ_MAX_LEN:-65536} ;;
esac
PAR=()
if [ "$JOBS" -gt 1 ]; then PAR=(-jobs="$JOBS" -workers="$JOBS"); fi
# Build first, so the seconds recorded are fuzzing time only.
cargo fuzz build --sanitizer "${FUZZ_SANITIZER:-none}" --release "${BUILD[@]}" "$TARGET"
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# The commit the binary was built from (the tree may move on while it runs).
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then COMMIT="$COMMIT+dirty"; fi
LOG="fuzz/artifacts/logs/$TARGET-$(date -u +%Y%m%dT%H%M%S).log"
T0=$(date +%s)
set +e
# tee -i: an interrupt (Ctrl-C) stops libFuzzer, which prints its final stats; tee keeps them.
cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" --release "${BUILD[@]}" "$TARGET" \
  "fuzz/corpus/$TARGET" -- -max_total_time="$SECONDS_" -runs="${FUZZ_RUNS:--1}" \
  -max_len="$MAX_LEN" -timeout="${FUZZ_TIMEOUT:-10}" -report_slow_units="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1 "${PAR[@]}" 2>&1 |
  tee -i "$LOG"
RC=${PIPESTATUS[0]}
set -e
STATS=$LOG
if [ "$JOBS" -gt 1 ]; then
  # With -jobs, libFuzzer writes each worker's output to fuzz-N.log in the current directory.
  # Their final stats are counted from those files alone: an interrupted run also echoes
  # them into the main output, and counting both doubled the executions.
  STATS=$(mktemp)
  for f in fuzz-[0-9]*.log; do
    [ -f "$f" ] && cat "$f" >>"$STATS" && cat "$f" >>"$LOG" && rm -f "$f"
  done
fi
ELAPSED=$(($(date +%s) - T0))
# With several jobs, each worker prints its own stats: add them up.
EXECS=$(awk '/^stat::number_of_executed_units:/ { n += $2; seen = 1 } END { if (seen) print n }' "$STATS")
[ "$STATS" = "$LOG" ] || rm -f "$STATS"
if [ -z "$EXECS" ]; then
  # No final stats (killed): the last status line says how far it got.
  EXECS=$(grep -aoE '^#[0-9]+' "$LOG" | tail -n 1 | tr -d '#' || true)
fi
EXECS=${EXECS:-0}
RATE=$((ELAPSED > 0 ? EXECS / ELAPSED : 0))
FOUND=$(grep -aoE 'Test unit written to [^ ]+' "$LOG" | sed 's/^Test unit written to //' | tr '\n' ' ' | sed 's/ $//' || true)
if [ -n "$FOUND" ]; then
  OUTCOME=$FOUND
elif [ "$RC" -eq 0 ]; then
  OUTCOME=ok
else
  OUTCOME=stopped
fi
[ -f "$RUNS_FILE" ] || printf 'start\tcommit\ttarget\tseconds\texecutions\texec_per_s\toutcome\n' >"$RUNS_FILE"
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$START" "$COMMIT" "$TARGET" "$ELAPSED" "$EXECS" "$RATE" "$OUTCOME" >>"$RUNS_FILE"
echo "fuzz: $TARGET: $EXECS executions in ${ELAPSED}s ($RATE/s), outcome: $OUTCOME (log: $LOG; totals: scripts/fuzz.sh summary)" >&2
exit "$RC"
