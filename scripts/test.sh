#!/usr/bin/env bash
# Installs what the tests need, then runs the whole suite: formatting, clippy, unit tests and
# the integration tests against real etcd 3.4 and 3.5 servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# Integration tests start several etcd processes each; two at a time suits a 2-core machine.
cargo test --locked -- --test-threads="${LIFEBOAT_TEST_THREADS:-2}"
