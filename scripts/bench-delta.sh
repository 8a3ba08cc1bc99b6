#!/usr/bin/env bash
# `earthcatalog delta` at archive scale: an inventory of KEYS keys (Parquet, as S3 Inventory
# writes) against a hash index of the ids of all but NEW of them (the original's format,
# xxh3-128 seed 42). Prints wall time, CPU time and peak memory of the delta, and checks that it
# lists exactly NEW keys.
#   KEYS=10000000 NEW=100000 ./scripts/bench-delta.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-10000000}
NEW=${NEW:-100000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --locked --bin earthcatalog --bin earthcatalog-worker
./scripts/setup-python.sh > /dev/null
bin="$CARGO_TARGET_DIR/release/earthcatalog"
py=.venv/bin/python
"$py" -m pip install --quiet --disable-pip-version-check xxhash
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" - "$work" "$KEYS" "$NEW" <<'PY'
import sys
import pyarrow as pa, pyarrow.parquet as pq
import xxhash
work, keys, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batch = 1_000_000
inv = pq.ParquetWriter(f"{work}/inventory.parquet", pa.schema([
    ("bucket", pa.string()), ("key", pa.string()), ("last_modified_date", pa.timestamp("ms", "UTC"))]))
hashes = []
for start in range(0, keys, batch):
    ids = [f"LC08_L1TP_{i:012d}_X_LC08_L1TP_G0120V02_P{i % 100:03d}" for i in range(start, min(keys, start + batch))]
    keys_ = [f"velocity_image_pair/landsatOLI/v02/N60W040/{i}.stac.json" for i in ids]
    inv.write_table(pa.table({"bucket": ["its-live-data"] * len(ids), "key": keys_,
                              "last_modified_date": pa.array([1_700_000_000_000] * len(ids), pa.timestamp("ms", "UTC"))}))
    indexed = ids if start + batch <= keys - new else ids[: max(0, keys - new - start)]
    hashes.extend(xxhash.xxh3_128_digest(i.encode(), seed=42) for i in indexed)
inv.close()
hashes.sort()
pq.write_table(pa.table({"id_hash": pa.array(hashes, pa.binary(16))}), f"{work}/index.parquet",
               compression="zstd")
PY

load=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/time -f "%e s wall, %U s user, %S s system, %M KB peak" -o "$work/time" \
  "$bin" delta --inventory "$work/inventory.parquet" --hash-index "$work/index.parquet" \
  --delta-prefix "$work/deltas" --date 2026-12-04 --json > "$work/summary.json" 2> "$work/log"
"$py" - "$work/summary.json" "$NEW" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["new_keys"] == int(sys.argv[2]), s
print(f"inventory {s['inventory_keys']} keys, index {s['indexed_ids']} ids, delta {s['new_keys']} keys")
PY
echo "delta: $(cat "$work/time")   (load average before: $load, $(nproc) cores)"
