#!/usr/bin/env bash
# Starts a Prometheus server (Debian package `prometheus`) that finds every process of a
# Flowcast cluster through the coordinator's HTTP service discovery, with short intervals
# (a test or a demo; a real deployment uses deploy/prometheus/prometheus.yml). Records its
# PID; deploy/prometheus/stop.sh stops it.
#
#   deploy/prometheus/start.sh [--port 9090] [--coordinator http://127.0.0.1:8081]
#                              [--interval 1s] [--token-file FILE]
#   The token file defaults to FLOWCAST_COORDINATOR_TOKEN_FILE (no token if unset).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PORT=9090; COORD="http://127.0.0.1:8081"; INTERVAL=1s; TOKEN="${FLOWCAST_COORDINATOR_TOKEN_FILE:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --coordinator) COORD="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --token-file) TOKEN="$2"; shift 2 ;;
    *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN="$(command -v prometheus || echo /usr/bin/prometheus)"
[[ -x "$BIN" ]] || { echo "prometheus is not installed: run deploy/setup.sh" >&2; exit 1; }
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/prometheus-$PORT"
if [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
  echo "prometheus already running (pid $(cat "$RUN/pid"))" >&2; exit 1
fi
rm -rf "$RUN/data"; mkdir -p "$RUN/data"
auth=""
if [[ -n "$TOKEN" ]]; then
  # The type is spelled out: Debian's Prometheus (2.42) sends the bare credentials in
  # service discovery requests without it.
  auth="        authorization:
          type: Bearer
          credentials_file: $TOKEN"
fi
cat > "$RUN/prometheus.yml" <<YAML
global:
  scrape_interval: $INTERVAL
  evaluation_interval: $INTERVAL
rule_files:
  - $HERE/rules.yml
scrape_configs:
  - job_name: flowcast
    # Series name their Flowcast job in `flowcast_job` (the discovery labels each target
    # with it too); Prometheus's own `job` label stays `flowcast`.
    http_sd_configs:
      - url: $COORD/v1/prometheus/sd
        refresh_interval: $INTERVAL
$auth
YAML
nohup "$BIN" --config.file="$RUN/prometheus.yml" --storage.tsdb.path="$RUN/data" \
  --web.listen-address="127.0.0.1:$PORT" > "$RUN/prometheus.log" 2>&1 < /dev/null &
echo $! > "$RUN/pid"
for _ in $(seq 1 200); do
  if curl -fsS "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; then
    echo "prometheus ready on http://127.0.0.1:$PORT (service discovery: $COORD)"; exit 0
  fi
  kill -0 "$(cat "$RUN/pid")" 2>/dev/null || break
  sleep 0.1
done
tail -20 "$RUN/prometheus.log" >&2
echo "prometheus did not start" >&2
exit 1
