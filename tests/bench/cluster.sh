#!/usr/bin/env bash
# The cluster's targets (issue 15), on a coordinator and 3 nodes × 2 slots started by
# deploy/cluster/start.sh on this machine, release build. Needs a running Kafka cluster
# (deploy/services.sh start); not part of cargo test or CI.
#
#   1. submit → first prediction, the input already in Kafka (100 devices, 40 h of history),
#      with the LSTM (its load included) and with persistence;
#   2. kill -9 of a job process → the job running again (the coordinator's state) and the
#      first new committed prediction a read_committed reader sees (every output
#      exactly-once, checkpoints every 10 s, readings arriving at 1000/s), --runs times;
#   3. rescale of a job holding DEVICES devices' state (60 windows each): the output pause
#      the coordinator measures (stop with a savepoint requested → every new process running),
#      2 → 3 → 2 workers, --runs times.
#
#   tests/bench/cluster.sh [--brokers 127.0.0.1:9092] [--runs 3] [--devices 100000]
#                          [--parts "submit kill rescale"]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
BROKERS=127.0.0.1:9092
RUNS=3
DEVICES=100000
PARTS="submit kill rescale"
PORT=18181
while [[ $# -gt 0 ]]; do
  case "$1" in
    --brokers) BROKERS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --parts) PARTS="$2"; shift 2 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf '[cluster-bench] %s\n' "$*" >&2; }
log "building (release)"
cargo build --release -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
cargo build --release -p flowcast-torch
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-cluster-bench.XXXXXX")"
export FLOWCAST_RUN_DIR="$WORK/run" FLOWCAST_BIN="$BIN/flowcast"
FEED=""
trap 'kill ${FEED:-} 2>/dev/null || true; deploy/cluster/stop.sh --port $PORT >&2 || true' EXIT
deploy/cluster/start.sh --port "$PORT" --first-node-port 17100 >&2
export FLOWCAST_COORDINATOR="http://127.0.0.1:$PORT"
export FLOWCAST_COORDINATOR_TOKEN_FILE="$WORK/run/cluster-$PORT/token"
fc() { "$BIN/flowcast" "$@"; }
ms() { date +%s%3N; }
# field JOB KEY: a field of the job's JSON detail.
field() { fc job show "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"; }
until_ok() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || { log "timed out: $*"; exit 1; }
    sleep 0.02
  done
}
topics() { for t in "$@"; do fc topics create "$t" --partitions 3 --brokers "$BROKERS" >/dev/null; done; }
# spec NAME TOPIC MODEL [EXTRA…]: a bench job, unbounded, checkpoints in $WORK.
spec() {
  local name=$1 topic=$2 model=$3
  bench_job "$WORK/$name.toml" "$name" "$BROKERS" "$topic" never "$model"
  topics "$name-out" "$name-dead" "$name-late"
}
START=1700000000
part() { [[ " $PARTS " == *" $1 "* ]]; }
# running: the job $name runs (every process reports its workers running).
running() { [[ "$(field "$name" state)" == running ]]; }

if part submit; then
echo "### submit → first prediction (input already in Kafka)"
echo
echo "| model | first prediction after the submit |"
echo "| --- | --- |"
topic="sub-$(date +%s)-in"; topics "$topic"
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 48000 --devices 100 \
  --period-secs 300 --start-time "$START" >/dev/null
for model in torchscript persistence; do
  name="sub-$model-$(date +%s)"
  spec "$name" "$topic" "$model"
  fc tail "$name-out" --brokers "$BROKERS" --from-end --max-messages 1 >/dev/null 2>&1 &
  tail=$!
  sleep 1 # the reader is assigned its partitions before the clock starts
  extra=()
  [[ $model == torchscript ]] && extra=(--model "$REPO/models/dht11_lstm.pt")
  t0=$(ms)
  fc job submit "$WORK/$name.toml" --parallelism 3 "${extra[@]}" >/dev/null
  wait "$tail"
  echo "| $model | $(($(ms) - t0)) ms |"
  fc job cancel "$name" >/dev/null
done

fi

if part kill; then
echo
echo "### kill -9 of a job process → running again → first new committed prediction"
echo
name="kill-$(date +%s)"; topic="$name-in"; topics "$topic"
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 48000 --devices 100 \
  --period-secs 300 --start-time "$START" >/dev/null
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 100000000 --devices 100 \
  --period-secs 300 --start-time $((START + 480 * 300)) --rate 1000 >/dev/null 2>&1 &
FEED=$!
spec "$name" "$topic" persistence
bench_exactly_once "$WORK/$name.toml"
printf '\n[checkpoint]\nlocation = "%s"\ninterval = "10s"\n' "$WORK/$name-ckpt" >> "$WORK/$name.toml"
fc job submit "$WORK/$name.toml" --parallelism 3 >/dev/null
until_ok 120 running
echo "| kill | running again | first committed prediction |"
echo "| --- | --- | --- |"
for r in $(seq 1 "$RUNS"); do
  until_ok 60 running
  sleep 12 # a benchmark's pacing: past a checkpoint of the running attempt
  attempt=$(field "$name" attempt)
  pid=$(pgrep -f "jobs/$name/attempt-$attempt-process-1/" | head -1)
  t0=$(ms)
  kill -9 "$pid"
  # Once the coordinator has placed the new attempt, every old process is gone: a reader
  # started now sees only what the new attempt commits.
  placed() { [[ "$(field "$name" attempt)" != "$attempt" ]]; }
  until_ok 60 placed
  fc tail "$name-out" --brokers "$BROKERS" --from-end --max-messages 1 --read-committed >/dev/null 2>&1 &
  tail=$!
  until_ok 60 running
  t1=$(ms)
  wait "$tail"
  t2=$(ms)
  echo "| $r | $((t1 - t0)) ms | $((t2 - t0)) ms |"
done
fc job cancel "$name" >/dev/null
kill "$FEED"; FEED=""

fi

if part rescale; then
echo
echo "### rescale of a job holding $DEVICES devices' state"
echo
name="rescale-$(date +%s)"; topic="$name-in"; topics "$topic"
# 61 windows of every device: each holds a full 60-window sequence.
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings $((DEVICES * 61)) \
  --devices "$DEVICES" --period-secs 1800 --start-time "$START" >/dev/null
spec "$name" "$topic" off
printf '\n[checkpoint]\nlocation = "%s"\ninterval = "10s"\n' "$WORK/$name-ckpt" >> "$WORK/$name.toml"
fc job submit "$WORK/$name.toml" --parallelism 2 >/dev/null
until_ok 300 running
drained() {
  local n
  n=$(for p in $(fc job show "$name" --json | python3 -c "import json,sys; [print(p['metrics_port']) for p in json.load(sys.stdin)['placement']]"); do
    curl -s "127.0.0.1:$p/metrics" | awk '/^flowcast_source_records_total/ {s += $NF} END {print s + 0}'
  done | awk '{s += $1} END {print s}')
  ((n >= DEVICES * 61))
}
until_ok 600 drained
# Read is not done: the job is caught up when checkpoints complete again (each completes
# when the frontier passes it), so the pause below is the state's, not a backlog's.
completed() {
  local p
  p=$(fc job show "$name" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['placement'][0]['metrics_port'])")
  curl -s "127.0.0.1:$p/metrics" | awk '/^flowcast_checkpoint_completed_total/ {s += $NF} END {print s + 0}'
}
c0=$(completed)
caught_up() { (($(completed) >= c0 + 2)); }
until_ok 600 caught_up
echo "| rescale | output pause |"
echo "| --- | --- |"
for to in $(for _ in $(seq 1 "$RUNS"); do echo 3 2; done); do
  from=$(field "$name" workers)
  fc job rescale "$name" "$to" >/dev/null
  rescaled() { [[ "$(field "$name" state)" == running && "$(field "$name" workers)" == "$to" ]]; }
  until_ok 300 rescaled
  echo "| $from → $to | $(field "$name" last_rescale_pause_ms) ms |"
done
fc job cancel "$name" >/dev/null
fi
