#!/usr/bin/env bash
# kill -9 → restart (issue 13's target): how long until the restarted job is processing
# again (its first source record, read from its /metrics) and until its first prediction
# after the restart reaches Kafka, while readings keep arriving at 1000/s. A streaming job
# (persistence model, 2 workers) checkpointing every 2 s; 100 devices with 40 h of history.
# Needs a running cluster (deploy/services.sh start); not part of cargo test or CI.
#
# With --exactly-once every output is exactly-once and the first prediction is the first a
# read_committed reader sees (issue 14's target: ≤ checkpoint interval + 3 s).
#
#   tests/bench/restart.sh [--brokers 127.0.0.1:9092] [--runs 3] [--exactly-once] [--interval 2s]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
BROKERS=127.0.0.1:9092
RUNS=3
EO=0
INTERVAL=2s
while [[ $# -gt 0 ]]; do
  case "$1" in
    --brokers) BROKERS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --exactly-once) EO=1; shift ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    *) echo "restart.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf '[restart] %s\n' "$*" >&2; }
log "building (release)"
cargo build --release -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
cargo build --release -p flowcast-torch
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-restart.XXXXXX")"
name="restart-$(date +%s)"
topic="$name-in"
for t in "$topic" "$name-out" "$name-dead" "$name-late"; do
  "$BIN/flowcast" topics create "$t" --partitions 3 --brokers "$BROKERS" >/dev/null
done
START=1700000000
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 48000 --devices 100 \
  --period-secs 300 --start-time "$START" >/dev/null
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$topic" --readings 100000000 --devices 100 \
  --period-secs 300 --start-time $((START + 480 * 300)) --rate 1000 >/dev/null 2>&1 &
FEED=$!
JOB=""
trap 'kill $FEED ${JOB:-} 2>/dev/null || true' EXIT
bench_job "$WORK/job.toml" "$name" "$BROKERS" "$topic" never persistence
TAIL_ARGS=()
if ((EO)); then
  bench_exactly_once "$WORK/job.toml"
  TAIL_ARGS=(--read-committed)
fi
printf '\n[checkpoint]\nlocation = "%s"\ninterval = "%s"\n' "$WORK/ckpt" "$INTERVAL" >> "$WORK/job.toml"
ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_job() {
  PORT=$(free_port)
  "$BIN/flowcast" run "$WORK/job.toml" --workers 2 --metrics-addr "127.0.0.1:$PORT" 2>>"$WORK/job.log" >/dev/null &
  JOB=$!
}
# until_ok TIMEOUT_S CMD...: runs CMD every 20 ms until it succeeds.
until_ok() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || { log "timed out: $*"; exit 1; }
    sleep 0.02
  done
}
processing() {
  curl -sf "127.0.0.1:$PORT/metrics" 2>/dev/null \
    | awk '/^flowcast_source_records_total/ {s += $NF} END {exit !(s > 0)}'
}
manifest() { compgen -G "$WORK/ckpt/chk-*/_MANIFEST" >/dev/null; }
start_job
until_ok 120 manifest
log "job running, checkpoints in $WORK/ckpt"
echo "| restart | processing again | first prediction after the restart |"
echo "| --- | --- | --- |"
for r in $(seq 1 "$RUNS"); do
  # Let it run past a few checkpoints (a benchmark's pacing, not a test's condition).
  sleep 5
  kill -9 "$JOB"; wait "$JOB" 2>/dev/null || true
  # A reader from the end of the output, started while the job is down (so it cannot
  # miss the first record); the clock starts when the job is started again.
  "$BIN/flowcast" tail "$name-out" --brokers "$BROKERS" --from-end --max-messages 1 "${TAIL_ARGS[@]}" >/dev/null 2>&1 &
  TAIL=$!
  sleep 1
  t0=$(ms)
  start_job
  until_ok 60 processing
  t1=$(ms)
  wait "$TAIL"
  t2=$(ms)
  echo "| $r | $((t1 - t0)) ms | $((t2 - t0)) ms |"
done
grep -c "restoring from the latest complete checkpoint" "$WORK/job.log" | xargs -I{} echo "(restores logged: {})"
