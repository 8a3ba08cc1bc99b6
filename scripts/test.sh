#!/usr/bin/env bash
# Runs every test, after installing what the tests need (the Python checkers venv).
# This is the command README.md names and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-python.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins
cargo test --workspace
