#!/usr/bin/env bash
# Stops the Prometheus server deploy/prometheus/start.sh recorded.
#   deploy/prometheus/stop.sh [--port 9090]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT=9090
[[ "${1:-}" == --port ]] && PORT="$2"
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/prometheus-$PORT"
[[ -f "$RUN/pid" ]] || { echo "prometheus is not running"; exit 0; }
pid="$(cat "$RUN/pid")"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null || true
rm -f "$RUN/pid"
echo "prometheus stopped"
