#!/usr/bin/env bash
# Backfill benchmark: N generated ITS_LIVE-shaped items (default 20,000) backfilled end to end
# from local files by `earthcatalog backfill --local-workers W` (W earthcatalog-worker processes
# beside the coordinator) for each W in WORKERS, RUNS runs
# each. Prints items/s and peak memory (max RSS) per run, then the median per worker count.
#   N=20000 RUNS=3 WORKERS="1 2 4" CHUNK=1000 SLOTS=2 ./scripts/bench-backfill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
RUNS=${RUNS:-3}
WORKERS=${WORKERS:-1 2 4}
CHUNK=${CHUNK:-1000}
SLOTS=${SLOTS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p earthcatalog-coordinator -p earthcatalog-worker
bin="$CARGO_TARGET_DIR/release/earthcatalog"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" sample --out "$work/sample" --items "$N" 2>/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for w in $WORKERS; do
  rates=() rss=()
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$work/out"; mkdir -p "$work/out"
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" backfill --json \
      --inventory "$work/sample/inventory.csv" --source "its-live-data=$work/sample/items" \
      --catalog "$work/out/catalog.db" --warehouse "$work/out/warehouse" \
      --staging "$work/out/staging" --h3-resolution 1 --chunk-size "$CHUNK" \
      --local-workers "$w" --worker-slots "$SLOTS" > "$work/summary.json" 2>"$work/log" \
      || { cat "$work/log"; exit 1; }
    read -r secs kb < "$work/time"
    read -r items rows files < <(python3 -c "import json;s=json.load(open('$work/summary.json'));print(s['items'],s['rows'],s['files'])")
    rate=$(python3 -c "print(round($items/$secs))")
    echo "workers=$w run $i: $items items → $rows rows in $files files, ${secs}s = $rate items/s, max RSS $((kb / 1024)) MB"
    rates+=("$rate"); rss+=("$((kb / 1024))")
  done
  echo "workers=$w median: $(printf '%s\n' "${rates[@]}" | median) items/s, max RSS median $(printf '%s\n' "${rss[@]}" | median) MB"
done
