#!/usr/bin/env bash
# Drain benchmark of the Flowcast job (issue: engine core): pre-fills a 3-partition topic
# on a real one-broker Kafka with a fixed, seeded set of readings, then drains it with
# `flowcast run` (bounded, release build) at 1 and 2 workers, with the model stage off,
# with the persistence baseline and with the LSTM. Prints one line per run: readings/s,
# CPU seconds, peak RSS, and the window close → producer latency.
#
#   tests/bench/drain.sh [READINGS] [DEVICES]        # default 5000000 10000
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
READINGS="${1:-5000000}"
DEVICES="${2:-10000}"
PORT="${FLOWCAST_BENCH_PORT:-9300}"
BROKERS="127.0.0.1:$PORT"
deploy/setup.sh
cargo build --release -q -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
cargo build --release -q -p flowcast-torch
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
trap 'deploy/kafka/stop.sh --name bench >&2 || true' EXIT
deploy/kafka/start.sh --name bench --port "$PORT"
TOPIC="DHT11-bench"
"$BIN/flowcast" topics create "$TOPIC" --partitions 3 --brokers "$BROKERS"
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$TOPIC" --readings "$READINGS" --devices "$DEVICES"

WORK="$(mktemp -d)"
results="$WORK/results.txt"
for model in off persistence torchscript; do
  for workers in 1 2; do
    name="bench-$model-w$workers-$$"
    bench_job "$WORK/$name.toml" "$name" "$BROKERS" "$TOPIC" latest "$model"
    summary="$(/usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
      "$BIN/flowcast" run "$WORK/$name.toml" --workers "$workers" --brokers "$BROKERS" 2>"$WORK/$name.log" | tail -n1)"
    read -r wall user sys rss_kb < "$WORK/time"
    line="model=$model workers=$workers wall=${wall}s cpu=$(python3 -c "print(round($user+$sys,2))")s peak_rss=$((rss_kb / 1024))MiB :: ${summary#flowcast: job $name }"
    echo "$line" | tee -a "$results"
  done
done
echo
echo "readings=$READINGS devices=$DEVICES machine: $(nproc) cores, $(uname -m)"
cat "$results"
