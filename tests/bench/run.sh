#!/usr/bin/env bash
# Side-by-side benchmark (issue 7): Flowcast vs Apache Flink vs Spark Structured Streaming on
# the same Kafka topic, in one run, on this machine. One command on a fresh machine:
#
#   tests/bench/run.sh                                  # 10 M readings, 10 k devices
#   tests/bench/run.sh --readings 200000 --devices 200 --live-secs 10 --out /tmp/B.md   # a quick look
#
# 1. installs what it needs (deploy/setup.sh; tests/bench/setup.sh: Flink, PySpark and both
#    Kafka connectors from Maven Central and PyPI into ~/.cache/flowcast), builds Flowcast;
# 2. starts a one-broker Kafka (KRaft), fills topic DHT11-bench (3 partitions) once with
#    flowcast-fill's seeded readings plus records every engine must dead-letter;
# 3. drains it (bounded) with Flowcast (model off, 1 and 2 workers; the LSTM on, 2 workers),
#    Flink and Spark at the same parallelism, each measured by harness/procstat.py;
# 4. checks that every output equals Flowcast's (harness/check.py) - no numbers otherwise;
# 5. measures end-to-end latency per engine on paced live input (harness/live.py);
# 6. writes the tables into BENCHMARKS.md (between its bench markers) via harness/report.py.
#
# Not part of cargo test or CI: it runs for tens of minutes and wants the machine alone.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/bench"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
READINGS=10000000
DEVICES=10000
WORKERS="1 2"
ENGINES="flowcast flowcast-lstm flink spark"
LIVE_SECS=30
LIVE_GRACE=45
LIVE_RATE=2500
LIVE_DEVICES=500
OUT="$REPO/BENCHMARKS.md"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --readings) READINGS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --live-secs) LIVE_SECS="$2"; shift 2 ;;
    --live-grace) LIVE_GRACE="$2"; shift 2 ;;
    --live-rate) LIVE_RATE="$2"; shift 2 ;;
    --live-devices) LIVE_DEVICES="$2"; shift 2 ;;
    --no-live) LIVE_SECS=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# Progress: numbered stages and runs ("stage 3/6", "drain 2/8"), bold on a terminal only.
log() {
  if [[ -t 2 ]]; then printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; else printf '[bench] %s\n' "$*" >&2; fi
}
STAGES=6
STAGE=0
stage() { STAGE=$((STAGE + 1)); log "stage $STAGE/$STAGES: $* ($((SECONDS / 60)) min so far)"; }
PORT="${FLOWCAST_BENCH_PORT:-9350}"
BROKERS="127.0.0.1:$PORT"
TOPIC="DHT11-bench"
BAD=$((READINGS / 10000 + 11))

stage "install (deploy/setup.sh, tests/bench/setup.sh) and build Flowcast (release)"
deploy/setup.sh
eval "$("$HERE/setup.sh")"
cargo build --release -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
PY="$SPARK_PY"
H="$HERE/harness"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-bench.XXXXXX")"
RES="$WORK/results"
mkdir -p "$RES"
log "work dir $WORK"

stage "start Kafka, fill $TOPIC with $READINGS readings of $DEVICES devices"
trap 'deploy/kafka/stop.sh --name bench-peers >&2 || true' EXIT
FLOWCAST_KAFKA_HEAP="${FLOWCAST_KAFKA_HEAP:-1g}" deploy/kafka/start.sh --name bench-peers --port "$PORT"
topic() { "$BIN/flowcast" topics create "$1" --partitions 3 --brokers "$BROKERS" "${@:2}" >/dev/null; }
topic "$TOPIC"
"$BIN/flowcast-fill" --brokers "$BROKERS" --topic "$TOPIC" --readings "$READINGS" --devices "$DEVICES" | tee "$RES/fill.txt"
"$PY" "$H/inputs.py" bad --brokers "$BROKERS" --topic "$TOPIC" --count "$BAD" | tee -a "$RES/fill.txt"

# The runs: id engine workers model. Flowcast's LSTM row runs at the largest worker count.
RUNS=()
max_w=0
for w in $WORKERS; do ((w > max_w)) && max_w=$w; done
for e in $ENGINES; do
  case "$e" in
    flowcast) for w in $WORKERS; do RUNS+=("flowcast-w$w flowcast $w off"); done ;;
    flowcast-lstm) RUNS+=("flowcast-lstm-w$max_w flowcast $max_w torchscript") ;;
    flink|spark) for w in $WORKERS; do RUNS+=("$e-w$w $e $w -"); done ;;
    *) echo "run.sh: unknown engine $e" >&2; exit 2 ;;
  esac
done

# engine_cmd ID ENGINE WORKERS MODEL INPUT PREFIX BOUNDED: prints nothing, sets CMD.
engine_cmd() {
  local id=$1 engine=$2 workers=$3 model=$4 input=$5 prefix=$6 bounded=$7
  case "$engine" in
    flowcast)
      local toml="$WORK/$prefix.toml"
      bench_job "$toml" "$prefix" "$BROKERS" "$input" "$([[ $bounded == true ]] && echo latest || echo never)" "$model"
      CMD=("$BIN/flowcast" run "$toml" --workers "$workers" --brokers "$BROKERS") ;;
    flink)
      CMD=(java -Xmx2g -cp "$FLINK_CP" dev.flowcast.bench.FlinkJob --brokers "$BROKERS"
        --topic "$input" --output "$prefix-out" --dead-letters "$prefix-dead" --late "$prefix-late"
        --parallelism "$workers" --bounded "$bounded") ;;
    spark)
      rm -rf "$WORK/$prefix.checkpoint"
      CMD=(env PYSPARK_PYTHON="$PY" "$PY" "$HERE/spark/job.py" --brokers "$BROKERS"
        --topic "$input" --output "$prefix-out" --dead-letters "$prefix-dead"
        --parallelism "$workers" --checkpoint "$WORK/$prefix.checkpoint" --jars "$SPARK_JARS"
        --driver-memory 2g --bounded "$bounded") ;;
  esac
  for s in out dead late; do topic "$prefix-$s" --config message.timestamp.type=LogAppendTime; done
}

# Drains.
stage "drain the topic with ${#RUNS[@]} runs"
n=0
for run in "${RUNS[@]}"; do
  read -r id engine workers model <<< "$run"
  engine_cmd "$id" "$engine" "$workers" "$model" "$TOPIC" "$id" true
  n=$((n + 1))
  log "drain $n/${#RUNS[@]}: $id"
  "$PY" "$H/procstat.py" --out "$RES/$id.drain.json" -- "${CMD[@]}" \
    > "$RES/$id.drain.stdout" 2> "$RES/$id.drain.stderr" \
    || { tail -n 30 "$RES/$id.drain.stderr" >&2; log "drain $id failed"; exit 1; }
  tail -n 1 "$RES/$id.drain.stdout" >&2
done

# Outputs equal before any time counts.
stage "check that every output equals Flowcast's"
checks=()
for run in "${RUNS[@]}"; do
  read -r id engine workers model <<< "$run"
  [[ "$model" == torchscript ]] && continue
  spec="$id=$id-out,$id-dead"
  [[ "$engine" == spark ]] && spec+=",upto-watermark"
  checks+=("$spec")
done
if ! "$PY" "$H/check.py" --brokers "$BROKERS" --input "$TOPIC" --result "$RES/check.json" "${checks[@]}"; then
  log "outputs differ: no numbers are reported (details in $RES/check.json)"
  exit 1
fi

# Latency on paced live input, one fresh input topic per run.
stage "latency on paced live input (${LIVE_SECS}s + ${LIVE_GRACE}s grace per run)"
if ((LIVE_SECS > 0)); then
  n=0
  for run in "${RUNS[@]}"; do
    read -r id engine workers model <<< "$run"
    topic "$id-live-in" --config message.timestamp.type=LogAppendTime
    engine_cmd "$id" "$engine" "$workers" "$model" "$id-live-in" "$id-live" false
    n=$((n + 1))
    log "live $n/${#RUNS[@]}: $id"
    rm -f "$WORK/stop"
    "$PY" "$H/procstat.py" --out "$RES/$id.live-proc.json" --stop-file "$WORK/stop" -- "${CMD[@]}" \
      > "$RES/$id.live.stdout" 2> "$RES/$id.live.stderr" &
    probe=0
    "$PY" "$H/live.py" --brokers "$BROKERS" --topic "$id-live-in" --output "$id-live-out" \
      --result "$RES/$id.live.json" --rate "$LIVE_RATE" --devices "$LIVE_DEVICES" --grace "$LIVE_GRACE" \
      --measure-secs "$LIVE_SECS" || probe=$?
    touch "$WORK/stop"
    wait || true
    ((probe == 0)) || log "live $id: no latency measured (exit $probe)"
  done
fi

stage "write the report"
"$PY" "$H/report.py" --results "$RES" --out "$OUT" --readings "$READINGS" --devices "$DEVICES" \
  --dead "$BAD" --live-rate "$LIVE_RATE" --live-devices "$LIVE_DEVICES" --live-secs "$LIVE_SECS" --live-grace "$LIVE_GRACE" \
  --flink-version "$FLINK_VERSION" --spark-version "$SPARK_VERSION" \
  --command "tests/bench/run.sh --readings $READINGS --devices $DEVICES --workers \"$WORKERS\""
log "wrote $OUT (raw results in $RES)"
