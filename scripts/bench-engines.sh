#!/usr/bin/env bash
# Issue 13, item 2: `earthcatalog search`'s own path against DataFusion (iceberg-datafusion,
# the same Iceberg pruning, the rows collected by DataFusion) on the table scripts/bench-search.sh
# built, in one process and warm, RUNS times per query (default 7); checks both find the same
# items. DataFusion is built only here (scripts/engine-compare is a workspace of its own).
#   WORK=/tmp/bench-search RUNS=7 ./scripts/bench-engines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:?the folder where scripts/bench-search.sh built its table}
RUNS=${RUNS:-7}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/engine-compare}
cargo build --quiet --release --manifest-path scripts/engine-compare/Cargo.toml
echo "table: $WORK/table ($(find "$WORK/table/warehouse" -name '*.parquet' | wc -l) data files)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$CARGO_TARGET_DIR/release/engine-compare" "$WORK/table/catalog.db" "$WORK/table/warehouse" "$RUNS"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
