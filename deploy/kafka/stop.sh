#!/usr/bin/env bash
# Stops exactly the Kafka processes deploy/kafka/start.sh recorded for an instance
# (SIGTERM, then SIGKILL after a grace period) and removes that run's data.
#
#   deploy/kafka/stop.sh [--name NAME]     # default: default
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NAME=default
GRACE="${FLOWCAST_KAFKA_STOP_GRACE:-30}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    *) echo "stop.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/kafka-$NAME"
[[ -f "$RUN/pids" ]] || { echo "kafka '$NAME' is not running"; exit 0; }
mapfile -t PIDS < "$RUN/pids"
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
deadline=$((SECONDS + GRACE))
for pid in "${PIDS[@]}"; do
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka pid $pid did not stop in ${GRACE}s: killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
if [[ -f "$RUN/data-dir" ]]; then rm -rf "$(cat "$RUN/data-dir")"; fi
rm -f "$RUN/pids"
echo "kafka '$NAME' stopped"
