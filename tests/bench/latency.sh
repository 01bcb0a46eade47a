#!/usr/bin/env bash
# Latency benchmark of the Flowcast job: a live stream, not a drain. The job runs as a
# stream (start = latest) while flowcast-fill produces at a steady rate for 10 000 devices
# (one reading per device every 10 simulated minutes, so a 30-minute window closes for all
# devices every 0.3 s of wall time at 100 k readings/s, and forecasts start once 60 windows
# exist, after 1.8 M readings). The job's summary reports the
# window close → Kafka producer hand-off quantiles (p50/p99, bucket upper bounds) and the
# model's time per batch, so the target "p99 ≤ 20 ms plus the model's batch time" can be
# read off directly.
#
#   tests/bench/latency.sh [RATE] [SECONDS] [MODEL] [WORKERS]   # default 100000 40 torchscript 1
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
RATE="${1:-100000}"
SECS="${2:-40}"
MODEL="${3:-torchscript}"
WORKERS="${4:-1}"
PORT="${FLOWCAST_BENCH_PORT:-9300}"
BROKERS="127.0.0.1:$PORT"
deploy/setup.sh
cargo build --release -q -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
cargo build --release -q -p flowcast-torch
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
trap 'deploy/kafka/stop.sh --name latency >&2 || true' EXIT
deploy/kafka/start.sh --name latency --port "$PORT"
TOPIC="DHT11-live"
"$BIN/flowcast" topics create "$TOPIC" --partitions 3 --brokers "$BROKERS"
WORK="$(mktemp -d)"
bench_job "$WORK/job.toml" "latency-$MODEL" "$BROKERS" "$TOPIC" never "$MODEL" 20ms 30s 10s
"$BIN/flowcast" run "$WORK/job.toml" --workers "$WORKERS" > "$WORK/summary" 2> "$WORK/job.log" &
JOB=$!
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$TOPIC" --devices 10000 \
  --readings "$((RATE * SECS))" --rate "$RATE" --period-secs 600
kill -TERM "$JOB"
wait "$JOB" || true
echo "rate=$RATE/s for ${SECS}s, 10000 devices, model=$MODEL, $WORKERS worker(s):"
cat "$WORK/summary"
