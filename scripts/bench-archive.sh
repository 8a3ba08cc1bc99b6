#!/usr/bin/env bash
# Archive-scale backfill: N generated ITS_LIVE-shaped items (default 1,000,000) from local
# files through `earthcatalog backfill --local-workers WORKERS --worker-slots SLOTS`. Prints the
# coordinator's phase lines with their times, the peak RSS of the coordinator and of each worker
# (sampled every 0.5 s), the objects staged between Phase 2 and Phase 3, and the run's summary.
#   N=1000000 WORKERS=2 SLOTS=2 CHUNK=50000 ./scripts/bench-archive.sh
# (SAMPLE=DIR reuses items made by `earthcatalog sample --out DIR`; WORK=DIR keeps the outputs.)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
WORKERS=${WORKERS:-2}
SLOTS=${SLOTS:-2}
CHUNK=${CHUNK:-50000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --quiet --release -p earthcatalog-coordinator -p earthcatalog-worker
fi
bin="$CARGO_TARGET_DIR/release/earthcatalog"
work=${WORK:-$(mktemp -d)}
sample=${SAMPLE:-$work/sample}
if [ ! -f "$sample/inventory.csv" ]; then
  "$bin" sample --out "$sample" --items "$N" 2>/dev/null
fi
out="$work/out"
rm -rf "$out"; mkdir -p "$out"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
RUST_LOG=info "$bin" backfill --json \
  --inventory "$sample/inventory.csv" --source "its-live-data=$sample/items" \
  --catalog "$out/catalog.db" --warehouse "$out/warehouse" --staging "$out/staging" \
  --h3-resolution 1 --chunk-size "$CHUNK" --local-workers "$WORKERS" --worker-slots "$SLOTS" \
  > "$work/summary.json" 2> "$work/log" &
coordinator=$!

# Peak RSS per process (KB), and the staged objects once Phase 3 starts.
declare -A peak
staged=""
while kill -0 "$coordinator" 2> /dev/null; do
  for p in "$coordinator" $(pgrep -P "$coordinator" || true); do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2> /dev/null || true)
    [ -n "$rss" ] && [ "$rss" -gt "${peak[$p]:-0}" ] && peak[$p]=$rss
  done
  if [ -z "$staged" ] && grep -q "leasing phase phase=compact" "$work/log" 2> /dev/null; then
    staged=$(find "$out/staging" -name '*.parquet' -path '*/ingest/*' | wc -l)
  fi
  sleep 0.5
done
wait "$coordinator" || { tail -50 "$work/log"; exit 1; }
end=$(date +%s.%N)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wall: $(echo "$end - $start" | bc) s"
grep -E "Phase 1 done|leasing phase|registering|committed|catalog uploaded|staging cleaned|done:" "$work/log" \
  | grep -v "earthcatalog_worker" | cut -c1-220
for p in "${!peak[@]}"; do
  role=worker; [ "$p" = "$coordinator" ] && role=coordinator
  echo "peak RSS $role (pid $p): $((peak[$p] / 1024)) MB"
done
echo "staged objects at the start of Phase 3: ${staged:-unknown}"
python3 -c "import json; s=json.load(open('$work/summary.json')); print({k: s[k] for k in ['chunks','items','failed_items','partitions','files','rows','snapshots','seconds']})"
