#!/usr/bin/env bash
# Cost per written file: `earthcatalog incremental` on N generated ITS_LIVE-shaped items whose
# dates spread over YEARS years (default 2,000 items over 40 years: nearly one (cell, year) file
# per item), on tmpfs and on local disk. Prints wall time, CPU time (user + system) and CPU per
# written file of every run, then medians per case. Runs of the binaries are interleaved so that
# the machine's load falls on each alike.
#   ./scripts/bench-files.sh                               (the release build of this tree)
#   BINS="/path/before/earthcatalog target/release/earthcatalog" RUNS=5 ./scripts/bench-files.sh
#   ARGS="--batch-add-files" adds flags to every run; DISK=/path sets the local-disk folder.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
YEARS=${YEARS:-40}
RUNS=${RUNS:-5}
CHUNK=${CHUNK:-5000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${BINS:-}" ]; then
  cargo build --quiet --release -p earthcatalog-coordinator
  BINS="$CARGO_TARGET_DIR/release/earthcatalog"
fi
read -r -a bins <<< "$BINS"
read -r -a extra <<< "${ARGS:-}"
shm=$(mktemp -d -p /dev/shm)
disk=$(mktemp -d -p "${DISK:-/var/tmp}")
trap 'rm -rf "$shm" "$disk"' EXIT
"${bins[-1]}" sample --out "$shm/sample" --items "$N" --years "$YEARS" 2>/dev/null
cp -r "$shm/sample" "$disk/sample"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

results="$shm/results"
: > "$results"
for run in $(seq 1 "$RUNS"); do
  for where in tmpfs disk; do
    root=$shm; [ "$where" = disk ] && root=$disk
    for b in "${!bins[@]}"; do
      bin=${bins[$b]}
      # A fresh folder per run, all removed at the end: on ext4, deleting one run's ~7,500
      # files and folders right before the next made its inode allocation skip every inode
      # freed in the last 30 s ("recently deleted"), which took most of the disk runs' CPU.
      out="$root/out-$run-$b"; mkdir -p "$out"
      sync
      /usr/bin/time -f "%e %U %S %M" -o "$root/time" "$bin" incremental --no-progress --json \
        --no-lock --chunk-size "$CHUNK" --inventory "$root/sample/inventory.csv" \
        --source "its-live-data=$root/sample/items" --catalog "$out/catalog.db" \
        --warehouse "$out/warehouse" "${extra[@]}" > "$root/summary.json" 2> "$root/log" \
        || { cat "$root/log"; exit 1; }
      read -r wall user sys kb < "$root/time"
      files=$(python3 -c "import json;print(json.load(open('$root/summary.json'))['files'])")
      cpu=$(python3 -c "print(round($user + $sys, 2))")
      per_file=$(python3 -c "print(round(1000 * ($user + $sys) / max($files, 1), 3))")
      echo "$where bin$b run $run: $files files, wall ${wall}s, cpu ${cpu}s (${per_file} ms/file), max RSS $((kb / 1024)) MB"
      echo "$where $b $wall $cpu $per_file $((kb / 1024))" >> "$results"
    done
  done
done

echo "medians over $RUNS runs ($N items over $YEARS years, load average now: $(cut -d' ' -f1-3 /proc/loadavg)):"
for where in tmpfs disk; do
  for b in $(awk -v w="$where" '$1 == w {print $2}' "$results" | sort -u); do
    col() { awk -v w="$where" -v b="$b" -v c="$1" '$1 == w && $2 == b {print $c}' "$results" | median; }
    echo "  $where ${bins[$b]}: wall $(col 3) s, cpu $(col 4) s, $(col 5) ms cpu/file, max RSS $(col 6) MB"
  done
done
