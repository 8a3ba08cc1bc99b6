#!/usr/bin/env bash
# Table maintenance benchmark: a table made by RUNS incremental runs of ITEMS generated
# ITS_LIVE-shaped items each (local files), measured before and after `compact` and
# `expire-snapshots`: live data files, manifests, snapshots and metadata files; wall time of each
# command; DuckDB `iceberg_scan` query time (median of QUERIES) for one (cell, year) and for a
# full count. Compaction throughput (rows/s) is also taken with 1 and 2 local workers
# (`--local-workers`), each on a copy of the same table, before the in-process compaction.
#   RUNS=30 ITEMS=2000 ./scripts/bench-maintenance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
ITEMS=${ITEMS:-2000}
QUERIES=${QUERIES:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p earthcatalog-coordinator -p earthcatalog-worker
./scripts/setup-python.sh > /dev/null
bin="$CARGO_TARGET_DIR/release/earthcatalog"
py=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" sample --out "$work/sample" --items $((RUNS * ITEMS)) 2>/dev/null
W=(--catalog "$work/catalog.db" --warehouse "$work/warehouse")

# One inventory per run: the header, then that run's ITEMS rows.
head -1 "$work/sample/inventory.csv" > "$work/header"
tail -n +2 "$work/sample/inventory.csv" | split -l "$ITEMS" -d -a 3 - "$work/part-"

stats() { # label
  "$py" - "$work" "$1" "$QUERIES" <<'PY'
import glob, json, os, statistics, sys, sysconfig, time
import duckdb
from pyiceberg.catalog.sql import SqlCatalog
work, label, queries = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = SqlCatalog("earthcatalog", uri=f"sqlite:///{work}/catalog.db",
               warehouse=f"file://{work}/warehouse").load_table("earthcatalog.stac_items")
meta_dir = f"{work}/warehouse/earthcatalog/stac_items/metadata"
avro = glob.glob(f"{meta_dir}/*.avro")
manifests = len(t.current_snapshot().manifests(t.io))
files = t.inspect.files()
cells = files.column("partition").to_pylist()
# The (cell, year) with the most rows: the query a user of one glacier asks.
by = {}
for p, n in zip(cells, files.column("record_count").to_pylist()):
    key = (p["grid_partition"], p["year"])
    by[key] = by.get(key, 0) + n
(cell, year), rows = max(by.items(), key=lambda kv: kv[1])
year = 1970 + year
ext = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
con = duckdb.connect(config={"extension_directory": ext, "autoinstall_known_extensions": "false"})
con.sql("LOAD avro"); con.sql("LOAD iceberg")
def timed(sql):
    out = []
    for _ in range(queries):
        s = time.perf_counter(); r = con.sql(sql).fetchall(); out.append(time.perf_counter() - s)
    return statistics.median(out), r[0][0]
m = t.metadata_location
one, n_one = timed(f"SELECT count(*) FROM iceberg_scan('{m}') WHERE grid_partition = '{cell}' "
                   f"AND datetime >= TIMESTAMPTZ '{year}-01-01 00:00:00+00' AND datetime < TIMESTAMPTZ '{year + 1}-01-01 00:00:00+00'")
full, n_all = timed(f"SELECT count(*) FROM iceberg_scan('{m}')")
print(f"{label}: {files.num_rows} data files, {manifests} manifests in the current snapshot "
      f"({len(avro)} avro files in metadata/), {len(t.snapshots())} snapshots, "
      f"{len(glob.glob(meta_dir + '/*.metadata.json'))} metadata files; DuckDB median of {queries}: "
      f"one (cell, year) {one * 1000:.0f} ms ({n_one} rows of {cell}/{year}), full count {full * 1000:.0f} ms ({n_all} rows)")
PY
}

start=$(date +%s.%N)
for part in "$work"/part-*; do
  cat "$work/header" "$part" > "$part.csv"
  "$bin" incremental --no-progress --inventory "$part.csv" --source "its-live-data=$work/sample/items" \
    "${W[@]}" --h3-resolution 1 > /dev/null 2> "$work/log" || { cat "$work/log"; exit 1; }
done
echo "$RUNS incremental runs of $ITEMS items: $(echo "$(date +%s.%N) - $start" | bc) s"
stats before
# The same table, compacted by leasing workers: restored from this copy before each run.
cp -a "$work/catalog.db" "$work/catalog.db.before"
cp -a "$work/warehouse" "$work/warehouse.before"
restore() {
  rm -rf "$work/catalog.db" "$work/warehouse" "$work/staging"
  cp -a "$work/catalog.db.before" "$work/catalog.db"
  cp -a "$work/warehouse.before" "$work/warehouse"
}
for workers in 1 2; do
  /usr/bin/time -f "%e s, max RSS %M KB" -o "$work/time" "$bin" compact "${W[@]}" --json \
    --local-workers "$workers" --worker-slots 2 --staging "$work/staging" > "$work/compact.json" 2> "$work/log" \
    || { cat "$work/log"; exit 1; }
  "$py" -c "import json,sys; s=json.load(open('$work/compact.json')); print(f\"compact with $workers local worker(s): {s['partitions']} partitions, {s['input_files']} -> {s['output_files']} files, {s['input_rows']} rows, {s['input_rows']/s['seconds']:.0f} rows/s\")"
  echo "compact with $workers local worker(s) wall time (coordinator's RSS): $(cat "$work/time")"
  restore
done
/usr/bin/time -f "%e s, max RSS %M KB" -o "$work/time" "$bin" compact "${W[@]}" --json > "$work/compact.json" 2> "$work/log" \
  || { cat "$work/log"; exit 1; }
"$py" -c "import json,sys; s=json.load(open('$work/compact.json')); print(f\"compact in process: {s['partitions']} partitions, {s['input_files']} -> {s['output_files']} files, {s['input_rows']} rows, {s['input_rows']/s['seconds']:.0f} rows/s\")"
echo "compact wall time: $(cat "$work/time")"
/usr/bin/time -f "%e s, max RSS %M KB" -o "$work/time" "$bin" expire-snapshots "${W[@]}" --older-than 0s --json > "$work/expire.json" 2> "$work/log" \
  || { cat "$work/log"; exit 1; }
"$py" -c "import json; s=json.load(open('$work/expire.json')); print(f\"expire-snapshots: {len(s['expired_snapshots'])} snapshots, deleted {len(s['data_files'])} data files, {len(s['manifests'])} manifests, {len(s['manifest_lists'])} manifest lists, {len(s['metadata_files'])} metadata files\")"
echo "expire-snapshots wall time: $(cat "$work/time")"
stats after
