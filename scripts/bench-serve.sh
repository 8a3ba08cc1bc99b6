#!/usr/bin/env bash
# `earthcatalog serve` latency under concurrent clients: N generated ITS_LIVE-shaped items
# (default 100,000) ingested with `earthcatalog incremental` at H3 resolution RES (default 1) —
# the same table `scripts/bench-search.sh` builds, reused when WORK holds it — served on a
# loopback port, then CLIENTS threads (default 8) each send every query RUNS times (default 5)
# as GET /search. Prints p50/p95 of the request latency per query, and checks each answer holds
# the ids `earthcatalog search` returns for the same query.
#   N=100000 CLIENTS=8 RUNS=5 WORK=/tmp/bench-search ./scripts/bench-serve.sh
# (PROFILE=debug uses the debug build; SKIP_BUILD=1 skips the build.)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
RUNS=${RUNS:-5}
CLIENTS=${CLIENTS:-8}
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
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --catalog "$work/table/catalog.db" --warehouse "$work/table/warehouse" \
  --listen "127.0.0.1:$port" 2>"$work/serve.log" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; wait $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/" >/dev/null && break
  sleep 0.1
done
echo "table: $work/table ($(find "$work/table/warehouse" -name '*.parquet' | wc -l) data files), $CLIENTS clients"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python - "$bin" "$work/table" "http://127.0.0.1:$port" "$RUNS" "$CLIENTS" <<'EOF'
import json, statistics, subprocess, sys, time, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor
bin, table, url, runs, clients = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

# name, CLI flags, GET parameters (the queries of scripts/bench-search.sh)
queries = [
    ("point", ["--intersects", '{"type":"Point","coordinates":[-40,70]}'],
     {"intersects": '{"type":"Point","coordinates":[-40,70]}'}),
    ("bbox", ["--bbox=-146,60,-142,62"], {"bbox": "-146,60,-142,62"}),
    ("one cell-year", ["--bbox=-40.5,69.5,-39.5,70.5", "--datetime", "2019-01-01T00:00:00Z/2019-12-31T23:59:59Z"],
     {"bbox": "-40.5,69.5,-39.5,70.5", "datetime": "2019-01-01T00:00:00Z/2019-12-31T23:59:59Z"}),
    ("cql2", ["--bbox=-55,70,-22,80", "--filter", "platform = 'LC08' AND percent_valid_pixels >= 50"],
     {"bbox": "-55,70,-22,80", "filter": "platform = 'LC08' AND percent_valid_pixels >= 50"}),
]

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

def ask(params):
    t = time.perf_counter()
    with urllib.request.urlopen(f"{url}/search?{urllib.parse.urlencode(params)}") as r:
        body = json.load(r)
    return time.perf_counter() - t, body

for name, flags, params in queries:
    params = {**params, "limit": 10000}
    out = subprocess.run([bin, "search", "--format", "ndjson", "--catalog", f"{table}/catalog.db",
                          "--warehouse", f"{table}/warehouse", *flags],
                         check=True, capture_output=True, text=True).stdout
    want = {json.loads(l)["id"] for l in out.splitlines()}
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(lambda _: ask(params), range(runs * clients)))
    for _, body in done:
        got = {f["id"] for f in body["features"]}
        assert got == want, (name, len(got), len(want))
    lat = [t for t, _ in done]
    print(f"{name:14} {len(want):6} items | serve, {clients} clients, {len(lat)} requests:"
          f" p50 {statistics.median(lat)*1000:8.0f} ms p95 {pct(lat, 95)*1000:8.0f} ms")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
