#!/usr/bin/env bash
# S3 at real latency: N generated items (default 20,000) in a fast S3-compatible server (s3s-fs,
# built once with `cargo install` into a cache folder) reached through `latency-proxy`, which adds
# RTT_MS (default 30) of round-trip time to every connection (this kernel has no netem). Measures
# items/s of `earthcatalog incremental` and of backfill Phase 2 (one local worker, SLOTS slots)
# for each fetch concurrency in CONCURRENCY, and counts the S3 requests of each run by operation
# from the server's log. The catalog and its lock stay on local disk (s3s-fs has no conditional
# writes); items, inventory, warehouse and backfill staging are in S3.
#   N=20000 RTT_MS=30 CONCURRENCY="16 64 256" SLOTS=2 CHUNK=5000 ./scripts/bench-s3-latency.sh
# (CASES="incremental backfill" picks the pipelines; WORK=DIR keeps the outputs and logs.)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
RTT_MS=${RTT_MS:-30}
CONCURRENCY=${CONCURRENCY:-16 64 256 512}
SLOTS=${SLOTS:-2}
CHUNK=${CHUNK:-5000}
CASES=${CASES:-incremental backfill}
S3S_VERSION=0.14.1 # the last s3s-fs that builds with the workspace's Rust (1.95)
S3S_ROOT=${S3S_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/earthcatalog/s3s-fs-$S3S_VERSION}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --quiet --release -p earthcatalog-coordinator -p earthcatalog-worker \
    -p earthcatalog-tests --bin earthcatalog --bin earthcatalog-worker --bin latency-proxy
fi
if [ ! -x "$S3S_ROOT/bin/s3s-fs" ]; then
  echo "building s3s-fs $S3S_VERSION into $S3S_ROOT (once)"
  cargo install --quiet --locked s3s-fs --version "$S3S_VERSION" --features binary --root "$S3S_ROOT"
fi
bin="$CARGO_TARGET_DIR/release/earthcatalog"
proxy_bin="$CARGO_TARGET_DIR/release/latency-proxy"
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  [ -z "${WORK:-}" ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT
free_port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }

# The server logs one "resolved route, op: <Operation>" line per request at this level.
port=$(free_port)
mkdir -p "$work/s3/bench"
RUST_LOG=s3s::ops=debug "$S3S_ROOT/bin/s3s-fs" --host 127.0.0.1 --port "$port" \
  --access-key test --secret-key test "$work/s3" > "$work/s3s.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
export AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

# Items are uploaded straight to the server; only the measured runs go through the proxy.
AWS_ENDPOINT_URL=http://127.0.0.1:$port "$bin" sample --out s3://bench/sample --items "$N" 2> /dev/null
"$proxy_bin" --upstream "127.0.0.1:$port" --rtt-ms "$RTT_MS" > "$work/proxy.addr" 2> "$work/proxy.log" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$work/proxy.addr" ] && break; sleep 0.1; done
export AWS_ENDPOINT_URL=http://$(cat "$work/proxy.addr")
echo "S3: s3s-fs $S3S_VERSION at 127.0.0.1:$port behind $RTT_MS ms RTT ($AWS_ENDPOINT_URL); $N items"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# CPU seconds (user + system) the server and the proxy have used so far: on one machine they
# share the cores with the measured run, so each run's line says how much they took.
helpers_cpu() {
  local ticks=0 t
  for p in "${pids[@]}"; do
    t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || echo 0)
    ticks=$((ticks + t))
  done
  python3 -c "print(round($ticks / $(getconf CLK_TCK), 2))"
}
# Requests the server handled since the mark, by operation, per item.
log_mark() { wc -l < "$work/s3s.log"; }
requests_since() {
  tail -n +"$(($1 + 1))" "$work/s3s.log" | grep -o 'resolved route, op: [A-Za-z]*' \
    | awk -v n="$N" '{c[$4]++} END {for (op in c) printf "%s %d (%.3f/item)  ", op, c[op], c[op]/n; print ""}'
}
# Seconds between the first log lines matching two patterns (RFC 3339 timestamps).
seconds_between() {
  python3 - "$1" "$2" "$3" << 'EOF'
import re, sys
from datetime import datetime
log, first, second = sys.argv[1:]
def at(pattern):
    for line in open(log):
        if pattern in line:
            stamp = re.search(r"\d{4}-\d\d-\d\dT[\d:.]+Z", re.sub(r"\x1b\[[0-9;]*m", "", line))
            return datetime.fromisoformat(stamp.group(0).replace("Z", "+00:00"))
    sys.exit(f"no line with {pattern!r} in {log}")
print(f"{(at(second) - at(first)).total_seconds():.2f}")
EOF
}

for c in $CONCURRENCY; do
  if [[ " $CASES " == *" incremental "* ]]; then
    out="$work/inc-$c"; rm -rf "$out"; mkdir -p "$out"
    mark=$(log_mark)
    helpers_before=$(helpers_cpu)
    /usr/bin/time -f "%e %U %S %M" -o "$out/time" "$bin" incremental --no-progress --json \
      --inventory s3://bench/sample/inventory.csv --source its-live-data=s3://bench/sample/items \
      --warehouse "s3://bench/inc-$c/warehouse" --catalog "$out/catalog.db" \
      --max-workers "$c" > "$out/summary.json" 2> "$out/log" || { tail -20 "$out/log"; exit 1; }
    read -r secs user sys kb < "$out/time"
    items=$(python3 -c "import json;print(json.load(open('$out/summary.json'))['items_ingested'])")
    echo "incremental, fetch concurrency $c: $items items in ${secs}s = $(python3 -c "print(round($items/$secs))") items/s," \
      "CPU ${user}+${sys}s, max RSS $((kb / 1024)) MB;" \
      "server and proxy CPU $(python3 -c "print(round($(helpers_cpu) - $helpers_before, 2))")s"
    echo "  requests: $(requests_since "$mark")"
  fi
  if [[ " $CASES " == *" backfill "* ]]; then
    out="$work/bf-$c"; rm -rf "$out"; mkdir -p "$out"
    mark=$(log_mark)
    helpers_before=$(helpers_cpu)
    /usr/bin/time -f "%e %M" -o "$out/time" env RUST_LOG=info "$bin" backfill --json \
      --inventory s3://bench/sample/inventory.csv --source its-live-data=s3://bench/sample/items \
      --warehouse "s3://bench/bf-$c/warehouse" --staging "s3://bench/bf-$c/staging" \
      --catalog "$out/catalog.db" --h3-resolution 1 --chunk-size "$CHUNK" \
      --local-workers 1 --worker-slots "$SLOTS" --fetch-concurrency "$c" \
      > "$out/summary.json" 2> "$out/log" || { tail -20 "$out/log"; exit 1; }
    read -r secs kb < "$out/time"
    phase2=$(seconds_between "$out/log" "leasing phase phase=ingest" "leasing phase phase=compact")
    echo "backfill, 1 worker x $SLOTS slots x fetch concurrency $c: Phase 2 ${phase2}s =" \
      "$(python3 -c "print(round($N/$phase2))") items/s; whole run ${secs}s;" \
      "server and proxy CPU $(python3 -c "print(round($(helpers_cpu) - $helpers_before, 2))")s"
    echo "  requests: $(requests_since "$mark")"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
