#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while:  scripts/fuzz.sh TARGET SECONDS [JOBS]
#   targets: bolt_reader (page reader, cursors, get/diff), checker (strict check + etcd
#   report + hashkv), proto (protobuf/JSON decoders of bucket values), wal (WAL framing,
#   records, etcd's read model, wal dump), snap (*.snap files)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only stable Rust is assumed:
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags cargo-fuzz passes. The sanitizer
# defaults to none (lifeboat has no unsafe code; panics and hangs are what we look for);
# FUZZ_SANITIZER=address to use ASan. Crashes land in fuzz/artifacts/TARGET/: copy them to
# tests/fuzz-regressions/ so `cargo test --test robustness` replays them forever.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: scripts/fuzz.sh TARGET SECONDS [JOBS]}
SECONDS_=${2:-60}
JOBS=${3:-1}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz not installed; run: cargo install cargo-fuzz" >&2
  exit 2
fi
if [ ! -d "fuzz/corpus/$TARGET" ] || [ -z "$(ls -A "fuzz/corpus/$TARGET" 2>/dev/null)" ]; then
  cargo test --quiet --test robustness write_fuzz_seeds -- --ignored >/dev/null
fi
mkdir -p "fuzz/corpus/$TARGET"
export RUSTC_BOOTSTRAP=1
PAR=()
if [ "$JOBS" -gt 1 ]; then PAR=(-jobs="$JOBS" -workers="$JOBS"); fi
exec cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" --release "$TARGET" \
  "fuzz/corpus/$TARGET" -- -max_total_time="$SECONDS_" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 "${PAR[@]}"
