#!/usr/bin/env bash
# Stops the Mosquitto broker deploy/mosquitto/start.sh recorded.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/mosquitto"
[[ -f "$RUN/pid" ]] || { echo "mosquitto is not running"; exit 0; }
pid="$(cat "$RUN/pid")"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null || true
rm -f "$RUN/pid"
echo "mosquitto stopped"
