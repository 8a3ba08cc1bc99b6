#!/usr/bin/env bash
# Search latency benchmark: N generated ITS_LIVE-shaped items (default 100,000) ingested with
# `earthcatalog incremental` at H3 resolution RES (default 1), then each query RUNS times
# (default 7) with `earthcatalog search` (a whole CLI run: process start, catalog open, plan,
# read, print) and with the anchor: DuckDB 1.4 `read_parquet` over every data file of the table
# with the same spatial (ST_Intersects on the WKB), datetime and property filters, no pruning
# (DuckDB's `iceberg_scan` cannot be used with the spatial extension loaded on our tables, see
# `../shared/reference/python-original.md` §4.7). Ours runs twice per query: returning whole
# items, and with `--fields id` (ids only, as the anchor returns). Prints p50/p95 per query and
# engine, and checks that all return the same ids.
#   N=100000 RUNS=7 RES=1 ./scripts/bench-search.sh
# (PROFILE=debug uses the debug build; WORK=DIR keeps the table between runs; SKIP_BUILD=1.)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
RUNS=${RUNS:-7}
RES=${RES:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
PROFILE=${PROFILE:-release}
if [ -z "${SKIP_BUILD:-}" ]; then
  if [ "$PROFILE" = release ]; then
    cargo build --quiet --release -p earthcatalog-coordinator
  else
    cargo build --quiet -p earthcatalog-coordinator
  fi
fi
bash scripts/setup-python.sh
bin="$CARGO_TARGET_DIR/$PROFILE/earthcatalog"
work=${WORK:-$(mktemp -d)}
if [ ! -f "$work/table/catalog.db" ]; then
  "$bin" sample --out "$work/sample" --items "$N" 2>/dev/null
  "$bin" incremental --inventory "$work/sample/inventory.csv" \
    --source "its-live-data=$work/sample/items" --h3-resolution "$RES" \
    --catalog "$work/table/catalog.db" --warehouse "$work/table/warehouse" 2>"$work/ingest.log"
fi
echo "table: $work/table ($(find "$work/table/warehouse" -name '*.parquet' | wc -l) data files)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python - "$bin" "$work/table" "$RUNS" <<'EOF'
import json, os, statistics, subprocess, sys, sysconfig, time
import duckdb
bin, table, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ext = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
con = duckdb.connect(config={"extension_directory": ext, "autoinstall_known_extensions": "false"})
con.sql("LOAD spatial")
files = f"{table}/warehouse/**/*.parquet"

def box(w, s, e, n):
    return f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"

# name, CLI flags, DuckDB condition
queries = [
    ("point", ["--intersects", '{"type":"Point","coordinates":[-40,70]}'],
     "ST_Intersects(geometry, ST_Point(-40, 70))"),
    ("bbox", ["--bbox=-146,60,-142,62"],
     f"ST_Intersects(geometry, ST_GeomFromText('{box(-146, 60, -142, 62)}'))"),
    ("one cell-year", ["--bbox=-40.5,69.5,-39.5,70.5", "--datetime", "2019-01-01T00:00:00Z/2019-12-31T23:59:59Z"],
     f"ST_Intersects(geometry, ST_GeomFromText('{box(-40.5, 69.5, -39.5, 70.5)}'))"
     " AND ((datetime BETWEEN '2019-01-01T00:00:00Z' AND '2019-12-31T23:59:59Z')"
     " OR (start_datetime <= '2019-12-31T23:59:59Z' AND end_datetime >= '2019-01-01T00:00:00Z'))"),
    ("cql2", ["--bbox=-55,70,-22,80", "--filter", "platform = 'LC08' AND percent_valid_pixels >= 50"],
     f"ST_Intersects(geometry, ST_GeomFromText('{box(-55, 70, -22, 80)}'))"
     " AND platform = 'LC08' AND percent_valid_pixels >= 50"),
]

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

def search(flags):
    t = time.perf_counter()
    out = subprocess.run([bin, "search", "--format", "ndjson", "--catalog", f"{table}/catalog.db",
                          "--warehouse", f"{table}/warehouse", *flags],
                         check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, {json.loads(l)["id"] for l in out.splitlines()}

for name, flags, cond in queries:
    ours, ours_ids, anchor = [], [], []
    for _ in range(runs):
        took, ids = search(flags)
        ours.append(took)
        # What the anchor returns: ids only.
        took, just_ids = search([*flags, "--fields", "id"])
        ours_ids.append(took)
        assert just_ids == ids, name
        t = time.perf_counter()
        rows = con.sql(f"SELECT DISTINCT id FROM read_parquet('{files}') WHERE {cond}").fetchall()
        anchor.append(time.perf_counter() - t)
        want = {r[0] for r in rows}
        assert ids == want, (name, len(ids), len(want))
    p50 = lambda xs: statistics.median(xs) * 1000
    p95 = lambda xs: pct(xs, 95) * 1000
    print(f"{name:14} {len(ids):6} items | search, items p50 {p50(ours):6.0f} p95 {p95(ours):6.0f} ms"
          f" | search --fields id p50 {p50(ours_ids):6.0f} p95 {p95(ours_ids):6.0f} ms"
          f" | DuckDB ids, no pruning p50 {p50(anchor):6.0f} p95 {p95(anchor):6.0f} ms"
          f" | ratio items {p50(anchor)/p50(ours):4.1f}x, ids {p50(anchor)/p50(ours_ids):4.1f}x")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
