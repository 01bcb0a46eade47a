#!/usr/bin/env bash
# The web UI with DEVICES devices (issue 16), on a coordinator and 3 nodes started by
# deploy/cluster/start.sh, release build. Needs a running Kafka cluster
# (deploy/services.sh start) and Debian's chromium (deploy/browser/install.sh); not part of
# cargo test or CI.
#
#   1. DEVICES devices × 122 windows of 30 min (flowcast-fill, one reading per window) and
#      a persistence job over them: every device gets 61 forecasts on its output topic;
#   2. the coordinator's resident memory (VmRSS) with the job running, before the UI
#      follows the output, and once it holds the last 61 windows of every device;
#   3. page times in headless chromium (tests/bench/ui_page.py): the job page, a device
#      search, a device chart.
#
#   tests/bench/ui.sh [--brokers 127.0.0.1:9092] [--devices 10000] [--runs 3]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
BROKERS=127.0.0.1:9092
DEVICES=10000
RUNS=3
PORT=18281
while [[ $# -gt 0 ]]; do
  case "$1" in
    --brokers) BROKERS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "ui.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf '[ui-bench] %s\n' "$*" >&2; }
log "building (release)"
cargo build --release -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
cargo build --release -p flowcast-torch
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-ui-bench.XXXXXX")"
export FLOWCAST_RUN_DIR="$WORK/run" FLOWCAST_BIN="$BIN/flowcast"
trap 'deploy/cluster/stop.sh --port $PORT >&2 || true' EXIT
deploy/cluster/start.sh --port "$PORT" --first-node-port 17400 >&2
export FLOWCAST_COORDINATOR="http://127.0.0.1:$PORT"
TOKEN_FILE="$WORK/run/cluster-$PORT/token"
export FLOWCAST_COORDINATOR_TOKEN_FILE="$TOKEN_FILE"
fc() { "$BIN/flowcast" "$@"; }
api() { curl -fsS -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "$FLOWCAST_COORDINATOR$1"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$WORK/run/cluster-$PORT/coordinator.pid")/status"; }

name="ui-$(date +%s)"; topic="$name-in"
for t in "$topic" "$name-out" "$name-dead" "$name-late"; do
  fc topics create "$t" --partitions 3 --brokers "$BROKERS" >/dev/null
done
log "filling $topic: $DEVICES devices × 122 windows"
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings $((DEVICES * 122)) \
  --devices "$DEVICES" --period-secs 1800 --start-time 1700000000 >/dev/null
bench_job "$WORK/$name.toml" "$name" "$BROKERS" "$topic" never persistence
fc job submit "$WORK/$name.toml" --parallelism 2 >/dev/null
log "waiting for $((DEVICES * 61)) forecasts"
forecasts() {
  fc job show "$name" --json | python3 -c "import json,sys; [print(p['metrics_port']) for p in json.load(sys.stdin).get('placement', [])]" |
    while read -r p; do curl -s "127.0.0.1:$p/metrics"; done |
    awk '/^flowcast_forecast_predictions_total/ {s += $NF} END {print s + 0}'
}
deadline=$((SECONDS + 900))
until [[ "$(forecasts)" -ge $((DEVICES * 61)) ]]; do
  ((SECONDS < deadline)) || { log "timed out waiting for the forecasts"; exit 1; }
  sleep 1
done
before=$(rss_kb)
t0=$(date +%s%3N)
api "/v1/jobs/$name/devices?limit=1" >/dev/null # starts the follower
deadline=$((SECONDS + 600))
until api "/v1/jobs/$name/devices?limit=1" | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if d['total'] >= $DEVICES and d['records'] >= $DEVICES * 61 else 1)"; do
  ((SECONDS < deadline)) || { log "timed out waiting for the follower"; exit 1; }
  sleep 0.5
done
t1=$(date +%s%3N)
after=$(rss_kb)
echo "### The web UI with $DEVICES devices"
echo
echo "| coordinator | value |"
echo "| --- | --- |"
echo "| resident memory, the job running, before the UI follows its output | $((before / 1024)) MiB |"
echo "| resident memory, holding 61 windows of $DEVICES devices | $((after / 1024)) MiB |"
echo "| reading the $((DEVICES * 61)) forecasts from the topic's beginning | $((t1 - t0)) ms |"
echo
echo "| view (headless chromium, $RUNS runs) | median | max |"
echo "| --- | --- | --- |"
python3 tests/bench/ui_page.py "$FLOWCAST_COORDINATOR" "$TOKEN_FILE" "$name" dev-00042 dev-0999 "$RUNS"
fc job cancel "$name" >/dev/null
