#!/usr/bin/env bash
# Stops the SeaweedFS process deploy/seaweedfs/start.sh recorded and deletes its data.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/seaweedfs"
[[ -f "$RUN/pid" ]] || { echo "seaweedfs is not running"; exit 0; }
pid="$(cat "$RUN/pid")"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null || true
rm -f "$RUN/pid"
if [[ -f "$RUN/data-dir" ]]; then rm -rf "$(cat "$RUN/data-dir")" "$RUN/data-dir"; fi
echo "seaweedfs stopped"
