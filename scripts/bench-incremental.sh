#!/usr/bin/env bash
# Incremental pipeline benchmark: N generated ITS_LIVE-shaped items (default 20,000) ingested
# end to end from local files, and from the moto S3 test server when the Python venv has moto.
# Prints items/s and peak memory (max RSS) per run, then the median of RUNS runs.
#   N=20000 RUNS=3 ./scripts/bench-incremental.sh      (CHUNK=5000 for larger chunks, S3=0 to skip S3)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
RUNS=${RUNS:-3}
CHUNK=${CHUNK:-5000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p earthcatalog-coordinator
bin="$CARGO_TARGET_DIR/release/earthcatalog"
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${moto_pid:-}" ] && kill "$moto_pid" 2>/dev/null || true' EXIT
"$bin" sample --out "$work/sample" --items "$N" 2>/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

run_case() { # name, then incremental args; RUN in an argument becomes the run number, so that
  # every run starts from an empty table (a rerun would skip every item and measure nothing)
  local name=$1; shift
  local rates=() rss=()
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$work/out"; mkdir -p "$work/out"
    local args=("${@//RUN/$i}")
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" incremental --no-progress --json \
      --chunk-size "$CHUNK" --catalog "$work/out/catalog.db" "${args[@]}" > "$work/summary.json" 2>"$work/log" \
      || { cat "$work/log"; exit 1; }
    read -r secs kb < "$work/time"
    items=$(python3 -c "import json;print(json.load(open('$work/summary.json'))['items_ingested'])")
    rate=$(python3 -c "print(round($items/$secs))")
    echo "$name run $i: $items items in ${secs}s = $rate items/s, max RSS $((kb / 1024)) MB"
    rates+=("$rate"); rss+=("$((kb / 1024))")
  done
  echo "$name median: $(printf '%s\n' "${rates[@]}" | median) items/s, max RSS median $(printf '%s\n' "${rss[@]}" | median) MB"
}

run_case local --inventory "$work/sample/inventory.csv" \
  --source "its-live-data=$work/sample/items" --warehouse "$work/out/warehouse"

py=.venv/bin/python
if [ "${S3:-1}" != 0 ] && [ -x "$py" ] && "$py" -c "import moto" 2>/dev/null; then
  port=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
  "$py" tests/s3/moto_serialized.py -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test \
    AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  curl -sf -X PUT "http://127.0.0.1:$port/bench" > /dev/null
  "$bin" sample --out s3://bench/sample --items "$N" 2>/dev/null
  run_case s3 --inventory s3://bench/sample/inventory.csv \
    --source its-live-data=s3://bench/sample/items --warehouse s3://bench/runRUN/warehouse \
    --catalog-store s3://bench/runRUN/catalog
fi
