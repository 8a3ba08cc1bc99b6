#!/usr/bin/env bash
# The cost of a day of an archive in which a share of the items was re-processed. A table of N
# generated items (local files) is built by `incremental` and compacted (as the weekly
# maintenance leaves it); then two days are run against copies of it:
#   updates  UPDATES items re-processed (a newer `updated`, the same footprint and date): each
#            replaces its old rows, which rewrites the files holding them (copy-on-write)
#   appends  UPDATES items the table has never seen (the cost of a day without updates)
# Prints wall, CPU and peak RSS of each day's `incremental` and what its summary says.
#   N=1000000 UPDATES=10000 ./scripts/bench-updates.sh      (WORK=DIR keeps the files)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
UPDATES=${UPDATES:-$((N / 100))}
CHUNK=${CHUNK:-50000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --locked --bin earthcatalog --bin earthcatalog-worker
bin="$CARGO_TARGET_DIR/release/earthcatalog"
work=${WORK:-$(mktemp -d)}
[ -z "${WORK:-}" ] && trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
export RUST_LOG=${RUST_LOG:-warn}

timed() { # label, then the command; prints the time line and keeps the JSON summary
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" > "$work/$label.json" 2> "$work/$label.log" \
    || { tail -20 "$work/$label.log"; exit 1; }
  read -r wall user sys kb < "$work/time"
  echo "$label: ${wall} s wall, $(python3 -c "print(round($user + $sys, 1))") s CPU, $((kb / 1024)) MB peak RSS"
}

# N table items, then UPDATES more for the appends day.
if [ ! -f "$work/sample/inventory.csv" ]; then
  "$bin" sample --out "$work/sample" --items "$((N + UPDATES))" 2>/dev/null
fi
head -n "$((N + 1))" "$work/sample/inventory.csv" > "$work/table.csv"
{ head -n 1 "$work/sample/inventory.csv"; tail -n "$UPDATES" "$work/sample/inventory.csv"; } > "$work/appends.csv"

# The re-processed copies: UPDATES items spread over the table, `updated` one day later.
python3 - "$work" "$N" "$UPDATES" <<'PY'
import csv, json, os, sys
work, n, updates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.reader(open(f"{work}/table.csv")))
header, rows = rows[0], rows[1:]
step = max(1, n // updates)
chosen = rows[::step][:updates]
os.makedirs(f"{work}/reprocessed", exist_ok=True)
with open(f"{work}/updates.csv", "w", newline="") as out:
    w = csv.writer(out)
    w.writerow(header)
    for bucket, key, _ in chosen:
        item = json.load(open(f"{work}/sample/items/{key}"))
        item["properties"]["updated"] = "2026-12-04T00:00:00.000000Z"
        path = f"{work}/reprocessed/{key}"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        json.dump(item, open(path, "w"))
        w.writerow([bucket, key, "2026-12-04T00:00:00Z"])
PY

common=(--no-progress --json --chunk-size "$CHUNK" --h3-resolution 1 --update-hash-index)
if [ ! -f "$work/base/catalog.db" ]; then
  rm -rf "$work/base"; mkdir -p "$work/base"
  timed build-table "$bin" incremental "${common[@]}" --inventory "$work/table.csv" \
    --source "its-live-data=$work/sample/items" \
    --catalog "$work/base/catalog.db" --warehouse "$work/base/warehouse"
  timed compact "$bin" compact --json --catalog "$work/base/catalog.db" \
    --warehouse "$work/base/warehouse"
fi
"$bin" info --json --catalog "$work/base/catalog.db" --warehouse "$work/base/warehouse" 2>/dev/null |
  python3 -c "import json, sys; t = json.load(sys.stdin); print(f\"table: {t['rows']} rows in {t['files']} live files\")"

load=$(cut -d' ' -f1-3 /proc/loadavg)
for day in updates appends; do
  # Each day starts from the same table: the catalog's paths are absolute, so the copy keeps
  # its place (the table folder is restored after).
  rm -rf "$work/saved"; cp -a "$work/base" "$work/saved"
  source_dir=$([ "$day" = updates ] && echo "$work/reprocessed" || echo "$work/sample/items")
  timed "$day" "$bin" incremental "${common[@]}" --inventory "$work/$day.csv" \
    --source "its-live-data=$source_dir" \
    --catalog "$work/base/catalog.db" --warehouse "$work/base/warehouse"
  python3 -c "import json; s = json.load(open('$work/$day.json')); print('  ', {k: s[k] for k in ('items_ingested', 'items_updated', 'rows_replaced', 'items_skipped', 'rows', 'files', 'snapshots') if k in s})"
  rm -rf "$work/base"; mv "$work/saved" "$work/base"
done
echo "(load average before the days: $load, $(nproc) cores)"
