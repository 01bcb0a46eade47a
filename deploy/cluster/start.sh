#!/usr/bin/env bash
# Starts a Flowcast cluster on this machine: one coordinator (REST API on 127.0.0.1:8081)
# and three nodes with two slots each, every one a background process whose PID is
# recorded; deploy/cluster/stop.sh stops exactly those. The API token is
# FLOWCAST_COORDINATOR_TOKEN(_FILE) if set, else a fresh one written to
# $RUN/token (mode 600) — export FLOWCAST_COORDINATOR_TOKEN_FILE=$RUN/token for the CLI.
#
#   deploy/cluster/start.sh [--nodes 3] [--slots 2] [--port 8081] [--first-node-port 7100]
#   FLOWCAST_BIN: the flowcast binary (default: the release build; built if missing)
#   FLOWCAST_RUN_DIR: where state, logs and PIDs go (default: .flowcast-run)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NODES=3; SLOTS=2; PORT=8081; FIRST=7100
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --slots) SLOTS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --first-node-port) FIRST="$2"; shift 2 ;;
    *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/cluster-$PORT"
BIN="${FLOWCAST_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/flowcast}"
if [[ ! -x "$BIN" ]]; then
  echo "[cluster] building flowcast (release)" >&2
  (cd "$REPO" && cargo build --release -q -p flowcast-engine -p flowcast-torch)
fi
if [[ -f "$RUN/coordinator.pid" ]] && kill -0 "$(cat "$RUN/coordinator.pid")" 2>/dev/null; then
  echo "a cluster is already running from $RUN (deploy/cluster/stop.sh --port $PORT)" >&2; exit 1
fi
mkdir -p "$RUN"
if [[ -z "${FLOWCAST_COORDINATOR_TOKEN:-}" && -z "${FLOWCAST_COORDINATOR_TOKEN_FILE:-}" ]]; then
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/token")
  export FLOWCAST_COORDINATOR_TOKEN_FILE="$RUN/token"
fi
URL="http://127.0.0.1:$PORT"
nohup "$BIN" coordinator --listen "127.0.0.1:$PORT" --state "$RUN/state" \
  > "$RUN/coordinator.log" 2>&1 < /dev/null &
echo $! > "$RUN/coordinator.pid"
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$(cat "$RUN/coordinator.pid")" 2>/dev/null || { cat "$RUN/coordinator.log" >&2; exit 1; }
  sleep 0.1
done
for i in $(seq 0 $((NODES - 1))); do
  lo=$((FIRST + i * 100)); hi=$((lo + 99))
  nohup "$BIN" worker --coordinator "$URL" --slots "$SLOTS" --id "node-$i" \
    --ports "$lo-$hi" --work-dir "$RUN/node-$i" > "$RUN/node-$i.log" 2>&1 < /dev/null &
  echo $! > "$RUN/node-$i.pid"
done
for _ in $(seq 1 100); do
  alive="$("$BIN" nodes --coordinator "$URL" --json 2>/dev/null | grep -c '"alive": true' || true)"
  [[ "$alive" -ge "$NODES" ]] && break
  sleep 0.1
done
[[ "${alive:-0}" -ge "$NODES" ]] || { echo "only ${alive:-0} of $NODES nodes registered" >&2; tail "$RUN"/*.log >&2; exit 1; }
echo "cluster ready: coordinator $URL, $NODES nodes × $SLOTS slots (state, logs and PIDs in $RUN)"
echo "token: FLOWCAST_COORDINATOR_TOKEN_FILE=${FLOWCAST_COORDINATOR_TOKEN_FILE:-(from FLOWCAST_COORDINATOR_TOKEN)}"
