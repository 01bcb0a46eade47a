#!/usr/bin/env bash
# How long after its window closes an exactly-once prediction becomes visible to a
# read_committed reader (issue 14's target: ≤ checkpoint interval + 1 s). A streaming job
# (persistence model, 2 workers, every output exactly-once, checkpoints every INTERVAL)
# runs while flowcast-fill feeds 100 devices at 1000 readings/s (a reading per device every
# 5 simulated minutes: a round of 30-minute windows closes every 0.6 s); `flowcast tail
# --read-committed --latency` reads the predictions as they are committed and reports,
# from the `flowcast.window-closed-ms` header each carries, how long after its window
# closed each became visible: p50, p99, max over MESSAGES predictions.
# Needs a running cluster (deploy/services.sh start); not part of cargo test or CI.
#
#   tests/bench/eo_latency.sh [--brokers 127.0.0.1:9092] [--interval-secs 10] [--messages 3000]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
BROKERS=127.0.0.1:9092
INTERVAL=10
MESSAGES=3000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --brokers) BROKERS="$2"; shift 2 ;;
    --interval-secs) INTERVAL="$2"; shift 2 ;;
    --messages) MESSAGES="$2"; shift 2 ;;
    *) echo "eo_latency.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf '[eo-latency] %s\n' "$*" >&2; }
log "building (release)"
cargo build --release -q -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
cargo build --release -q -p flowcast-torch
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-eo-latency.XXXXXX")"
name="eolat-$(date +%s)"
topic="$name-in"
for t in "$topic" "$name-out" "$name-dead" "$name-late"; do
  "$BIN/flowcast" topics create "$t" --partitions 3 --brokers "$BROKERS" >/dev/null
done
START=1700000000
# 40 h of history, so that every device has 60 windows when the live feed starts.
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 48000 --devices 100 \
  --period-secs 300 --start-time "$START" >/dev/null
bench_job "$WORK/job.toml" "$name" "$BROKERS" "$topic" never persistence
bench_exactly_once "$WORK/job.toml"
printf '\n[checkpoint]\nlocation = "%s"\ninterval = "%ss"\n' "$WORK/ckpt" "$INTERVAL" >> "$WORK/job.toml"
"$BIN/flowcast" run "$WORK/job.toml" --workers 2 2>"$WORK/job.log" >/dev/null &
JOB=$!
FEED=""
trap 'kill $JOB ${FEED:-} 2>/dev/null || true' EXIT
# The history's predictions first: the reader starts once they are committed.
"$BIN/flowcast" tail "$name-out" --brokers "$BROKERS" --read-committed --max-messages 1 >/dev/null
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 100000000 --devices 100 \
  --period-secs 300 --start-time $((START + 480 * 300)) --rate 1000 >/dev/null 2>&1 &
FEED=$!
# Benchmark pacing, not a test's condition: two checkpoint intervals, so that the history's
# last predictions are committed before the measuring reader starts at the end.
sleep $((2 * INTERVAL))
log "job and feed running; reading $MESSAGES committed predictions (interval ${INTERVAL}s)"
"$BIN/flowcast" tail "$name-out" --brokers "$BROKERS" --read-committed --from-end \
  --latency --max-messages "$MESSAGES"
