#!/usr/bin/env bash
# Runs every test, after installing what the tests need (the Python checkers venv).
# This is the command README.md names and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-python.sh
./scripts/setup-chromium.sh
# The checkers were just installed: a test that cannot find one fails instead of skipping.
export EARTHCATALOG_REQUIRE_CHECKERS=1
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
