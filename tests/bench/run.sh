#!/usr/bin/env bash
# Side-by-side benchmark (issues 7 and 18): Flowcast against the limit loop, Apache Flink and
# Spark Structured Streaming on the same Kafka topic, in one run, on this machine.
#
#   tests/bench/run.sh                                  # 10 M readings, 10 k devices, 3 repeats
#   tests/bench/run.sh --readings 200000 --devices 200 --live-secs 10 --repeats 2 --out /tmp/B.md
#   tests/bench/run.sh --bin-dir DIR ...                # prebuilt binaries: no cargo at all
#
# 1. installs what it needs (deploy/setup.sh; tests/bench/setup.sh: Flink, PySpark and both
#    Kafka connectors into ~/.cache/flowcast), builds flowcast, flowcast-fill and the limit
#    loop (engine/examples/limit.rs) in release, and notes the commit, the versions (read from
#    the build files) and the binaries' hashes (harness/versions.py);
# 2. starts a one-broker Kafka (KRaft), fills topic DHT11-bench (3 partitions) once with
#    flowcast-fill's seeded readings, records every engine must dead-letter and readings
#    every engine with a late-data output must route there (harness/inputs.py);
# 3. timed bounded drains of that topic, each measured by harness/procstat.py, in REPEATS
#    interleaved rounds so that machine noise hits all alike - round k: limit, flowcast-w1,
#    flowcast-lstm-w1 (Flowcast with the LSTM), flink-w1, the same at 2 workers, then the
#    exactly-once pair flowcast-eo-w1, flink-eo-w1, flowcast-eo-w2, flink-eo-w2 - every run
#    of round k writing to fresh topics rK-RUN-{out,dead,late} (Flowcast under a fresh job
#    name, so a fresh consumer group); then once each: Flowcast as a cluster of 2 processes
#    of 1 worker on this machine (flowcast-p2, harness/cluster.sh: the exchange over TCP
#    instead of in memory) and Spark (far behind and slow: minutes per drain);
# 4. after the last timed drain, checks round 1's outputs of every run against flowcast-w1's
#    (harness/check.py): sequences, dead letters and late records, duplicates counted,
#    exactly-once outputs read read_committed - no numbers otherwise;
# 5. end-to-end latency on paced live input (harness/live.py), once per run, not per repeat;
#    the exactly-once rows' latency is when a read_committed reader first sees each output;
# 6. writes the tables (medians and min-max of the repeats, ratios Flowcast / limit, / Flink,
#    / Spark) between the bench markers of BENCHMARKS.md (or --out) via harness/report.py.
#
# The limit loop is a bare consumer with Flowcast's librdkafka settings that decodes and
# validates every record and does nothing else. Exactly-once rows: Flowcast with every Kafka
# output exactly-once and checkpoints every CHECKPOINT_SECS; Flink with checkpoints at the
# same interval and KafkaSink EXACTLY_ONCE on all three outputs.
#
# Options (defaults in brackets):
#   --readings N [10000000]  --devices N [10000]   the filled topic
#   --workers "1 2"          worker counts of the Flowcast, Flink and Spark rows
#   --eo-workers "1 2"       worker counts of the exactly-once rows
#   --engines "limit flowcast flowcast-p2 flowcast-lstm flink spark eo"   rows to run (flowcast is the
#                            reference the check compares with: always include it)
#   --repeats N [3]          rounds of the repeated rows (limit, flowcast, flowcast-lstm, flink, eo)
#   --checkpoint-secs S [10] checkpoint interval of the exactly-once rows
#   --late N [0]             late readings appended to the topic. Off by default: which of
#                            them an engine routes late depends on how far the other
#                            partitions' watermarks have come when each is read, so at 1 and 2
#                            workers the late topics differ (200 k-reading run of 2026-12-02:
#                            Flowcast 10 at 1 worker, 0 at 2; Flink 10 and 20) and the check
#                            fails on them. With 0 the late topics are still compared (empty).
#   --live-secs S [45] --live-grace S [45] --live-rate R [2500] --live-devices N [500]
#   --no-live                no latency stage
#   --bin-dir DIR            take flowcast, flowcast-fill, limit (or examples/limit) and the
#                            model plugin libflowcast_torch.so (for flowcast-lstm) from
#                            DIR: no cargo, no deploy/setup.sh. Without it they are built into
#                            $CARGO_TARGET_DIR [~/.cache/flowcast/target]/release
#   --out FILE [BENCHMARKS.md]   where the tables go (a test run: always a file in /tmp)
#
# Duration at full size on the 2-core machine (from the drains measured so far: a Flowcast
# drain of 10 M readings 12-15 s, Flink 25-40 s, Spark 2.5-4 min, the fill ~30 s; a live run
# is its start-up + warm-up + LIVE_GRACE + LIVE_SECS, ~115 s): setup and fill ~2 min; 3
# rounds of 11 drains (~5 min a round) ~15 min; the 2-process row and Spark ~7 min; the
# check ~3 min; 13 live runs ~25 min - about 53 min (50 min on 2026-12-03 with the LSTM
# once, at 2 workers). Live runs are therefore once per row, not per repeat: live runs of
# the 10 repeated rows in every round would add ~40 min, past the hour. A live run's p99 is
# about its worst window's (each window closes 500 outputs at once): 45 s measure ~30
# windows, where 30 s measured 20 and gave p99s 23-47 ms for one binary on one day.
#
# Not part of cargo test or CI: it wants the machine alone.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/bench"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
READINGS=10000000
DEVICES=10000
WORKERS="1 2"
EO_WORKERS="1 2"
ENGINES="limit flowcast flowcast-p2 flowcast-lstm flink spark eo"
REPEATS=3
CKPT_SECS=10
LATE=0
LIVE_SECS=45
LIVE_GRACE=45
LIVE_RATE=2500
LIVE_DEVICES=500
BIN_DIR=""
OUT="$REPO/BENCHMARKS.md"
COMMAND="tests/bench/run.sh"
(($# == 0)) || COMMAND+="$(printf ' %q' "$@")"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --readings) READINGS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --eo-workers) EO_WORKERS="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --checkpoint-secs) CKPT_SECS="$2"; shift 2 ;;
    --late) LATE="$2"; shift 2 ;;
    --live-secs) LIVE_SECS="$2"; shift 2 ;;
    --live-grace) LIVE_GRACE="$2"; shift 2 ;;
    --live-rate) LIVE_RATE="$2"; shift 2 ;;
    --live-devices) LIVE_DEVICES="$2"; shift 2 ;;
    --no-live) LIVE_SECS=0; shift ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,69p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ " $ENGINES " == *" flowcast "* ]] || { echo "run.sh: --engines must include flowcast (the reference)" >&2; exit 2; }
((REPEATS >= 1)) || { echo "run.sh: --repeats must be at least 1" >&2; exit 2; }
for e in $ENGINES; do
  case "$e" in limit|flowcast|flowcast-p2|flowcast-lstm|flink|spark|eo) ;; *) echo "run.sh: unknown engine $e" >&2; exit 2 ;; esac
done
# Progress: numbered stages and runs ("stage 3/6", "drain 2/8"), bold on a terminal only.
log() {
  if [[ -t 2 ]]; then printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; else printf '[bench] %s\n' "$*" >&2; fi
}
STAGES=6
STAGE=0
stage() { STAGE=$((STAGE + 1)); log "stage $STAGE/$STAGES: $* ($((SECONDS / 60)) min so far)"; }
has() { [[ " $ENGINES " == *" $1 "* ]]; }
PORT="${FLOWCAST_BENCH_PORT:-9350}"
# The 2-process row's processes talk to each other on this port and the next.
CLUSTER_PORT="${FLOWCAST_BENCH_CLUSTER_PORT:-9360}"
BROKERS="127.0.0.1:$PORT"
TOPIC="DHT11-bench"
BAD=$((READINGS / 10000 + 11))
H="$HERE/harness"

if [[ -n "$BIN_DIR" ]]; then
  stage "install the peers (tests/bench/setup.sh); Flowcast's binaries from $BIN_DIR"
  BIN="$(cd "$BIN_DIR" && pwd)"
  LIMIT_BIN="$BIN/limit"
  [[ -x "$LIMIT_BIN" ]] || LIMIT_BIN="$BIN/examples/limit"
  BUILT=()
else
  stage "install (deploy/setup.sh, tests/bench/setup.sh), build Flowcast and the limit loop (release)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowcast/target}"
  deploy/setup.sh
  cargo build --release -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
  cargo build --release -p flowcast-torch
  cargo build --release -p flowcast-engine --example limit
  BIN="$CARGO_TARGET_DIR/release"
  LIMIT_BIN="$BIN/examples/limit"
  BUILT=(--built-here)
fi
for b in "$BIN/flowcast" "$BIN/flowcast-fill" "$LIMIT_BIN"; do
  [[ -x "$b" ]] || { echo "run.sh: $b is missing" >&2; exit 1; }
done
# The LSTM row's model comes from the plugin beside the flowcast binary.
if has flowcast-lstm && [[ ! -f "$BIN/libflowcast_torch.so" ]]; then
  echo "run.sh: $BIN/libflowcast_torch.so (the LibTorch model plugin) is missing" >&2; exit 1
fi
eval "$("$HERE/setup.sh")"
PY="$SPARK_PY"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-bench.XXXXXX")"
RES="$WORK/results"
mkdir -p "$RES"
log "work dir $WORK"
"$PY" "$H/versions.py" --repo "$REPO" --out "$RES/provenance.json" "${BUILT[@]}" \
  --binary "flowcast=$BIN/flowcast" --binary "flowcast-fill=$BIN/flowcast-fill" \
  --binary "limit=$LIMIT_BIN" >/dev/null

stage "start Kafka, fill $TOPIC with $READINGS readings of $DEVICES devices"
trap 'deploy/kafka/stop.sh --name bench-peers >&2 || true' EXIT
FLOWCAST_KAFKA_HEAP="${FLOWCAST_KAFKA_HEAP:-1g}" deploy/kafka/start.sh --name bench-peers --port "$PORT"
topic() { "$BIN/flowcast" topics create "$1" --partitions 3 --brokers "$BROKERS" "${@:2}" >/dev/null; }
topic "$TOPIC"
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$TOPIC" --readings "$READINGS" --devices "$DEVICES" | tee "$RES/fill.txt"
"$PY" "$H/inputs.py" bad --brokers "$BROKERS" --topic "$TOPIC" --count "$BAD" | tee -a "$RES/fill.txt"
"$PY" "$H/inputs.py" late --brokers "$BROKERS" --topic "$TOPIC" --count "$LATE" | tee -a "$RES/fill.txt"
if has eo; then
  topic txn-warmup
  "$PY" "$H/inputs.py" txn-warmup --brokers "$BROKERS" --topic txn-warmup >&2
fi

# The runs: id engine workers model guarantee. REPEATED run REPEATS times, interleaved, in
# this order; ONCE run once, after them.
REPEATED=()
ONCE=()
has limit && REPEATED+=("limit limit 1 off -")
for w in $WORKERS; do
  has flowcast && REPEATED+=("flowcast-w$w flowcast $w off at-least-once")
  has flowcast-lstm && REPEATED+=("flowcast-lstm-w$w flowcast $w torchscript at-least-once")
  has flink && REPEATED+=("flink-w$w flink $w - at-least-once")
done
if has eo; then
  for w in $EO_WORKERS; do
    REPEATED+=("flowcast-eo-w$w flowcast $w off exactly-once" "flink-eo-w$w flink $w - exactly-once")
  done
fi
has flowcast-p2 && ONCE+=("flowcast-p2 flowcast-cluster 2 off at-least-once")
if has spark; then
  for w in $WORKERS; do ONCE+=("spark-w$w spark $w - at-least-once"); done
fi
{
  for run in "${REPEATED[@]}"; do echo "$run $REPEATS"; done
  for run in "${ONCE[@]}"; do echo "$run 1"; done
} > "$RES/runs.txt"

# engine_cmd ENGINE WORKERS MODEL GUARANTEE INPUT PREFIX BOUNDED: sets CMD, creates the
# run's output topics PREFIX-{out,dead,late}.
engine_cmd() {
  local engine=$1 workers=$2 model=$3 guarantee=$4 input=$5 prefix=$6 bounded=$7
  local toml="$WORK/$prefix.toml" stop=never
  [[ $bounded == true ]] && stop=latest
  case "$engine" in
    limit)
      bench_job "$toml" "$prefix" "$BROKERS" "$input" latest off
      CMD=("$LIMIT_BIN" "$toml" --brokers "$BROKERS")
      return ;;
    flowcast)
      bench_job "$toml" "$prefix" "$BROKERS" "$input" "$stop" "$model"
      if [[ $guarantee == exactly-once ]]; then
        bench_exactly_once "$toml"
        printf '\n[checkpoint]\nlocation = "%s"\ninterval = "%ss"\n' "$WORK/$prefix.checkpoints" "$CKPT_SECS" >> "$toml"
      fi
      CMD=("$BIN/flowcast" run "$toml" --workers "$workers" --brokers "$BROKERS") ;;
    flowcast-cluster)
      # WORKERS processes of 1 worker each.
      bench_job "$toml" "$prefix" "$BROKERS" "$input" "$stop" "$model"
      CMD=(bash "$H/cluster.sh" "$workers" "$CLUSTER_PORT" "$BIN/flowcast" "$toml" --workers 1
        --brokers "$BROKERS") ;;
    flink)
      CMD=(java -Xmx2g -cp "$FLINK_CP" dev.flowcast.bench.FlinkJob --brokers "$BROKERS"
        --topic "$input" --output "$prefix-out" --dead-letters "$prefix-dead" --late "$prefix-late"
        --parallelism "$workers" --bounded "$bounded")
      if [[ $guarantee == exactly-once ]]; then
        CMD+=(--exactly-once true --checkpoint-interval-ms "$((CKPT_SECS * 1000))"
          --checkpoint-dir "$WORK/$prefix.checkpoints")
      fi ;;
    spark)
      rm -rf "$WORK/$prefix.checkpoint"
      CMD=(env PYSPARK_PYTHON="$PY" "$PY" "$HERE/spark/job.py" --brokers "$BROKERS"
        --topic "$input" --output "$prefix-out" --dead-letters "$prefix-dead"
        --parallelism "$workers" --checkpoint "$WORK/$prefix.checkpoint" --jars "$SPARK_JARS"
        --driver-memory 2g --bounded "$bounded") ;;
  esac
  for s in out dead late; do topic "$prefix-$s" --config message.timestamp.type=LogAppendTime; done
}

# drain ROUND ID ENGINE WORKERS MODEL GUARANTEE: one timed drain of the topic.
n=0
total=$((${#REPEATED[@]} * REPEATS + ${#ONCE[@]}))
drain() {
  local round=$1 id=$2 engine=$3 workers=$4 model=$5 guarantee=$6
  local out="$RES/$id.r$round.drain"
  engine_cmd "$engine" "$workers" "$model" "$guarantee" "$TOPIC" "r$round-$id" true
  n=$((n + 1))
  log "drain $n/$total (round $round): $id"
  "$PY" "$H/procstat.py" --out "$out.json" -- "${CMD[@]}" > "$out.stdout" 2> "$out.stderr" \
    || { tail -n 30 "$out.stderr" >&2; log "drain $id (round $round) failed"; exit 1; }
  tail -n 1 "$out.stdout" >&2
}

stage "drain the topic: ${#REPEATED[@]} runs x $REPEATS rounds, interleaved, then ${#ONCE[@]} once"
for round in $(seq 1 "$REPEATS"); do
  for run in "${REPEATED[@]}"; do
    # shellcheck disable=SC2086 # the run's fields, split on purpose
    drain "$round" $run
  done
done
for run in "${ONCE[@]}"; do
  # shellcheck disable=SC2086
  drain 1 $run
done
date -u '+%Y-%m-%d %H:%M:%S' > "$RES/drains-ended.txt"

# After every timed drain: round 1's outputs of each run against flowcast-w1's (the first
# Flowcast run, model off), which must come first.
stage "check round 1's outputs of every run against Flowcast's"
checks=()
for run in "${REPEATED[@]}" "${ONCE[@]}"; do
  read -r id engine _ model guarantee <<< "$run"
  [[ $engine == limit || $model == torchscript ]] && continue
  p="r1-$id"
  if [[ $engine == spark ]]; then
    spec="$id=$p-out,$p-dead,-,upto-watermark"
  else
    spec="$id=$p-out,$p-dead,$p-late"
  fi
  [[ $guarantee == exactly-once ]] && spec+=",read-committed"
  checks+=("$spec")
done
if ! "$PY" "$H/check.py" --brokers "$BROKERS" --input "$TOPIC" --result "$RES/check.json" "${checks[@]}"; then
  log "outputs differ: no numbers are reported (details in $RES/check.json)"
  exit 1
fi

# Latency on paced live input, once per run, one fresh input topic per run.
stage "latency on paced live input (${LIVE_SECS}s + ${LIVE_GRACE}s grace per run)"
if ((LIVE_SECS > 0)); then
  live_runs=()
  for run in "${REPEATED[@]}" "${ONCE[@]}"; do [[ $run == limit\ * ]] || live_runs+=("$run"); done
  n=0
  for run in "${live_runs[@]}"; do
    read -r id engine workers model guarantee <<< "$run"
    topic "$id-live-in" --config message.timestamp.type=LogAppendTime
    engine_cmd "$engine" "$workers" "$model" "$guarantee" "$id-live-in" "$id-live" false
    n=$((n + 1))
    log "live $n/${#live_runs[@]}: $id"
    rm -f "$WORK/stop"
    "$PY" "$H/procstat.py" --out "$RES/$id.live-proc.json" --stop-file "$WORK/stop" -- "${CMD[@]}" \
      > "$RES/$id.live.stdout" 2> "$RES/$id.live.stderr" &
    committed=()
    [[ $guarantee == exactly-once ]] && committed=(--read-committed)
    probe=0
    "$PY" "$H/live.py" --brokers "$BROKERS" --topic "$id-live-in" --output "$id-live-out" \
      --result "$RES/$id.live.json" --rate "$LIVE_RATE" --devices "$LIVE_DEVICES" --grace "$LIVE_GRACE" \
      --measure-secs "$LIVE_SECS" "${committed[@]}" || probe=$?
    touch "$WORK/stop"
    wait || true
    ((probe == 0)) || log "live $id: no latency measured (exit $probe)"
  done
fi

stage "write the report"
"$PY" "$H/report.py" --results "$RES" --out "$OUT" --readings "$READINGS" --devices "$DEVICES" \
  --dead "$BAD" --late "$LATE" --repeats "$REPEATS" --checkpoint-secs "$CKPT_SECS" \
  --live-rate "$LIVE_RATE" --live-devices "$LIVE_DEVICES" --live-secs "$LIVE_SECS" --live-grace "$LIVE_GRACE" \
  --command "$COMMAND"
log "wrote $OUT (raw results in $RES) in $((SECONDS / 60)) min"
