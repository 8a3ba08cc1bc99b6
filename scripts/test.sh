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
# cargo-nextest runs the tests of all binaries side by side (.config/nextest.toml); without it,
# cargo test runs every test too, one binary after another (slower: 31 minutes against 23 on this 2-core machine).
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "test.sh: cargo-nextest not found; running the tests with cargo test" >&2
  cargo test --workspace --no-fail-fast
fi
