#!/usr/bin/env bash
# The latency tail's profile: what makes one window in 30 slower than the rest in the
# harness's live runs. Each run is the harness's live measurement of Flowcast (same job
# spec, live.py with the same rate, devices, grace and measured interval; a one-broker
# Kafka of its own, 1 GiB heap as in run.sh) with three records beside it:
#   - every measured window's close time and its outputs' latency (live.py's `windows`);
#   - the machine's scheduler over the measured interval: `perf record -a -k mono` of
#     sched_switch, sched_wakeup and sched_stat_runtime (who ran on which core, who waited
#     for one, and how much of a thread's time on a core the hypervisor took: this kernel
#     has PARAVIRT_TIME_ACCOUNTING, so a thread's runtime leaves out steal), and the
#     cores' steal time in /proc/stat before and after;
#   - the broker JVM's stop-the-world pauses (deploy/kafka/start.sh's safepoint log);
#   - the job's /metrics at the end (window fired -> hand-off to the producer).
# harness/tail.py then lays each window's interval (its close -> its median output) over
# them and compares the slowest windows with the rest; its report is OUT/tail.md.
#
#   tests/bench/latency_tail.sh --bin-dir B [--workers "1 2"] [--runs 2] [--perf "on off"]
#       [--model off] [--out DIR] [--live-secs 45] [--live-grace 45]
#
# --perf "on off" alternates runs with and without the scheduler record, so that the
# record's own cost on the tail can be seen. Needs root for perf's system-wide tracepoints
# (it mounts tracefs if missing). Not part of CI: it wants the machine alone.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/bench"
H="$HERE/harness"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
BIN_DIR=""
WORKERS="1 2"
RUNS=2
PERF_MODES="on off"
MODEL=off
OUT=""
LIVE_SECS=45
LIVE_GRACE=45
LIVE_RATE=2500
LIVE_DEVICES=500
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --perf) PERF_MODES="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --live-secs) LIVE_SECS="$2"; shift 2 ;;
    --live-grace) LIVE_GRACE="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "latency_tail.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$BIN_DIR" && -x "$BIN_DIR/flowcast" ]] || { echo "latency_tail.sh: --bin-dir with a release flowcast is required" >&2; exit 2; }
for m in $PERF_MODES; do [[ $m == on || $m == off ]] || { echo "latency_tail.sh: --perf takes on and off" >&2; exit 2; }; done
if [[ " $PERF_MODES " == *" on "* ]]; then
  command -v perf >/dev/null || { echo "latency_tail.sh: perf is missing" >&2; exit 2; }
  [[ -f /sys/kernel/tracing/available_events ]] || mount -t tracefs nodev /sys/kernel/tracing
fi
log() { printf '[tail] %s\n' "$*" >&2; }
eval "$("$HERE/setup.sh")"
PY="$SPARK_PY"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/flowcast-tail.XXXXXX")}"
mkdir -p "$OUT"
PORT="${FLOWCAST_BENCH_PORT:-9350}"
METRICS_PORT=$((PORT + 20))
BROKERS="127.0.0.1:$PORT"
KAFKA_RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/kafka-bench-tail"
trap 'deploy/kafka/stop.sh --name bench-tail >&2 || true' EXIT
FLOWCAST_KAFKA_HEAP="${FLOWCAST_KAFKA_HEAP:-1g}" deploy/kafka/start.sh --name bench-tail --port "$PORT"
head -n1 "$KAFKA_RUN/pids" > "$OUT/broker-pid"
BROKER_PID="$(cat "$OUT/broker-pid")"
topic() { "$BIN_DIR/flowcast" topics create "$1" --partitions 3 --brokers "$BROKERS" "${@:2}" >/dev/null; }
# The scripts' commit, "-dirty" when the work tree had changes.
{ git -C "$REPO" rev-parse HEAD | tr -d '\n'; [[ -z "$(git -C "$REPO" status --porcelain)" ]] || printf -- '-dirty'; echo; } > "$OUT/commit"
"$BIN_DIR/flowcast" --version > "$OUT/flowcast-version" 2>&1 || true

n=0
for r in $(seq 1 "$RUNS"); do
  for w in $WORKERS; do
    for perf_mode in $PERF_MODES; do
      n=$((n + 1))
      id="w$w-r$r-perf-$perf_mode"
      log "run $n: $id"
      for s in live-in live-out live-dead live-late; do topic "$id-$s" --config message.timestamp.type=LogAppendTime; done
      bench_job "$OUT/$id.toml" "$id-live" "$BROKERS" "$id-live-in" never "$MODEL"
      rm -f "$OUT/$id.measuring"
      "$BIN_DIR/flowcast" run "$OUT/$id.toml" --workers "$w" --brokers "$BROKERS" \
        --metrics-addr "127.0.0.1:$METRICS_PORT" > "$OUT/$id.stdout" 2> "$OUT/$id.stderr" &
      job=$!
      "$PY" "$H/live.py" --brokers "$BROKERS" --topic "$id-live-in" --output "$id-live-out" \
        --result "$OUT/$id.live.json" --rate "$LIVE_RATE" --devices "$LIVE_DEVICES" \
        --grace "$LIVE_GRACE" --measure-secs "$LIVE_SECS" --measuring-file "$OUT/$id.measuring" &
      live=$!
      if [[ $perf_mode == on ]]; then
        # The record covers the measured interval: it starts when live.py says the interval
        # has started (or live.py has ended without one).
        while [[ ! -s "$OUT/$id.measuring" ]] && kill -0 "$live" 2>/dev/null; do sleep 0.05; done
        if [[ -s "$OUT/$id.measuring" ]]; then
          "$PY" -c 'import time; print(time.time() - time.monotonic())' > "$OUT/$id.clock-offset"
          grep '^cpu' /proc/stat > "$OUT/$id.stat-before"
          perf record -q -a -k mono -m 8192 -e sched:sched_switch -e sched:sched_wakeup \
            -e sched:sched_wakeup_new -e sched:sched_stat_runtime -o "$OUT/$id.perf.data" \
            -- sleep "$((LIVE_SECS + 1))" 2> "$OUT/$id.perf.stderr"
          grep '^cpu' /proc/stat > "$OUT/$id.stat-after"
          "$PY" -c 'import time; print(time.time() - time.monotonic())' >> "$OUT/$id.clock-offset"
        fi
      fi
      probe=0
      wait "$live" || probe=$?
      curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" > "$OUT/$id.metrics" || true
      ps -L -o tid=,comm= -p "$job" > "$OUT/$id.threads" || true
      ps -L -o tid=,comm= -p "$BROKER_PID" > "$OUT/$id.broker-threads" || true
      kill -TERM "$job"
      wait "$job" || true
      ((probe == 0)) || { log "run $id: live.py failed (exit $probe)"; exit 1; }
      echo "$job" > "$OUT/$id.job-pid"
      cp "$KAFKA_RUN/safepoint-0.log" "$OUT/$id.safepoint.log"
      if [[ -f "$OUT/$id.perf.data" ]]; then
        perf script -i "$OUT/$id.perf.data" -F pid,tid,cpu,time,event,trace > "$OUT/$id.sched.txt" 2>/dev/null
        rm -f "$OUT/$id.perf.data"
      fi
    done
  done
done
"$PY" "$H/tail.py" --dir "$OUT" | tee "$OUT/tail.md"
log "wrote $OUT/tail.md"
