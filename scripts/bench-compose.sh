#!/usr/bin/env bash
# Backfill through docker compose: deploy/compose with the local-S3 override, N sample items,
# for each worker-container count in WORKERS. Prints per run the coordinator's own run time
# (from its "done: … in X s" line: Phase 1 to the catalog upload, not the sample writing),
# items/s, and the largest memory use `docker stats` saw for the coordinator and for any worker.
#   N=20000 WORKERS="1 2 4" CHUNK=1000 SLOTS=2 PROFILE=release ./scripts/bench-compose.sh
# PROFILE=debug packs the debug binaries (no release build; much slower per item).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
N=${N:-20000}
WORKERS=${WORKERS:-1 2 4}
CHUNK=${CHUNK:-1000}
SLOTS=${SLOTS:-2}
PROFILE=${PROFILE:-release}
flags=(--tag bench)
[ "$PROFILE" = debug ] && flags+=(--debug)
"$root/scripts/build-images.sh" "${flags[@]}" >/dev/null
cd "$root/deploy/compose"
export EARTHCATALOG_IMAGE=earthcatalog:bench EARTHCATALOG_S3_IMAGE=earthcatalog-s3:bench
export EARTHCATALOG_TOKEN=bench-token MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench
export SAMPLE_ITEMS=$N CHUNK_SIZE=$CHUNK WORKER_SLOTS=$SLOTS
export S3_PORT=39000 S3_CONSOLE_PORT=39001 COORDINATOR_PORT=39051 COORDINATOR_METRICS_PORT=39100 COORDINATOR_STATUS_PORT=39080 COMPOSE_PROJECT_NAME=ec-bench
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}
dc() { compose -f docker-compose.yml -f docker-compose.local-s3.yml "$@"; }
trap 'dc down -v --timeout 0 >/dev/null 2>&1 || true' EXIT

# Memory in MiB from `docker stats` ("12.3MiB / 23GiB").
mib() { awk '{v=$1; u=v; gsub(/[0-9.]/,"",u); gsub(/[^0-9.]/,"",v); f=(u=="GiB")?1024:(u=="KiB")?1/1024:(u=="B")?1/1048576:1; printf "%d\n", v*f}'; }

for w in $WORKERS; do
  dc down -v --timeout 0 >/dev/null 2>&1 || true
  # A project just taken down may still hold its network for a moment: one retry.
  dc up -d --scale "worker=$w" >/dev/null 2>"$root/.cache/bench-compose-up.log" || {
    sleep 5
    dc up -d --scale "worker=$w" >/dev/null || { cat "$root/.cache/bench-compose-up.log"; exit 1; }
  }
  coordinator="$(dc ps -q coordinator)"
  max_c=0 max_w=0
  while [ "$(docker inspect -f '{{.State.Running}}' "$coordinator")" = true ]; do
    while read -r name usage; do
      m=$(echo "$usage" | mib)
      case "$name" in
        *coordinator*) [ "$m" -gt "$max_c" ] && max_c=$m ;;
        *worker*) [ "$m" -gt "$max_w" ] && max_w=$m ;;
      esac
    done < <(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' 2>/dev/null | awk '{print $1, $2}')
    sleep 1
  done
  code="$(docker inspect -f '{{.State.ExitCode}}' "$coordinator")"
  done_line="$(docker logs "$coordinator" 2>&1 | grep 'done: ' | tail -1)"
  [ "$code" = 0 ] || { docker logs "$coordinator" 2>&1 | tail -20; exit 1; }
  secs="$(echo "$done_line" | grep -oE '[0-9.]+ s' | tail -1 | cut -d' ' -f1)"
  echo "workers=$w: ${done_line##*done: } = $(python3 -c "print(round($N/$secs))") items/s; peak memory coordinator ${max_c} MiB, worker ${max_w} MiB"
done
