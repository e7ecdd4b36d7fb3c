#!/usr/bin/env bash
# Installs what the tests need, then runs the whole suite: formatting, clippy, unit tests and
# the integration tests against real etcd 3.4 and 3.5 servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# One build per run: incremental caches would only add gigabytes to a fresh machine's disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . "${TMPDIR:-/tmp}" | sed 's/^/disk before tests: /'
cargo fmt --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Integration tests start several etcd processes each; two at a time suits a 2-core machine.
# Unit, integration and doc tests; the summary line at the end adds up every binary's counts.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --all-targets --no-fail-fast -- --test-threads="${LIFEBOAT_TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?
cargo test --workspace --locked --doc 2>&1 | tee -a "$log" || status=$?
df -h . "${TMPDIR:-/tmp}" | sed 's/^/disk after tests: /'
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
