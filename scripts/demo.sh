#!/usr/bin/env bash
# The main job on the embedded default: ingest the sample items shipped in examples/ into a local
# catalog and warehouse under demo/, then show what landed. No server, nothing to install.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p earthcatalog-coordinator
bin=target/debug/earthcatalog
rm -rf demo
"$bin" incremental \
  --inventory examples/itslive/inventory.csv \
  --source its-live-data=examples/itslive/items \
  --catalog demo/catalog.db \
  --warehouse demo/warehouse
"$bin" info --catalog demo/catalog.db --warehouse demo/warehouse
