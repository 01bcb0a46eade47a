#!/usr/bin/env bash
# Stops what deploy/cluster/start.sh started (by its recorded PIDs): the coordinator first
# (so that no job is restarted on the nodes being stopped), then the nodes — their job
# processes exit with them.
#
#   deploy/cluster/stop.sh [--port 8081]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT=8081
[[ "${1:-}" == --port ]] && PORT="$2"
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/cluster-$PORT"
stop_pid() {
  local f=$1 pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}
shopt -s nullglob
stop_pid "$RUN/coordinator.pid"
for f in "$RUN"/node-*.pid; do stop_pid "$f"; done
echo "cluster on port $PORT stopped"
