#!/usr/bin/env bash
# Epoch-interval sweep (issue 18, "latency near the work"): one build of Flowcast, the
# reference job with the model off, at several epoch intervals. For each interval and
# worker count: drains of one pre-filled topic (readings/s and peak RSS, rounds
# interleaved across intervals, medians and ranges) and one paced live run measured by
# harness/live.py the way run.sh measures every engine (broker log-append time of the
# input that closes a window → of its output). Prints a markdown table.
#
#   tests/bench/epoch_sweep.sh [--intervals "200ms 100ms 50ms 20ms 10ms"] [--workers "1 2"]
#     [--readings 10000000] [--devices 10000] [--rounds 3] [--live-secs 30] [--live-grace 20]
#     [--live-rate 2500] [--live-devices 500] [--bin-dir DIR] [--out FILE]
#   (the first interval is the baseline of the "÷ first" column)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
INTERVALS="200ms 100ms 50ms 20ms 10ms"
WORKERS="1 2"
READINGS=10000000
DEVICES=10000
ROUNDS=3
LIVE_SECS=30
LIVE_GRACE=20
LIVE_RATE=2500
LIVE_DEVICES=500
BIN_DIR=""
OUT=""
while (($#)); do
  case "$1" in
    --intervals) INTERVALS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --readings) READINGS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --live-secs) LIVE_SECS="$2"; shift 2 ;;
    --live-grace) LIVE_GRACE="$2"; shift 2 ;;
    --live-rate) LIVE_RATE="$2"; shift 2 ;;
    --live-devices) LIVE_DEVICES="$2"; shift 2 ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "epoch_sweep.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf '[sweep] %s\n' "$*" >&2; }
if [[ -z "$BIN_DIR" ]]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowcast/target}"
  deploy/setup.sh
  cargo build --release -q -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill
  cargo build --release -q -p flowcast-torch
  BIN_DIR="$CARGO_TARGET_DIR/release"
fi
FLOWCAST="$BIN_DIR/flowcast"
eval "$("$HERE/setup.sh")"
PY="$SPARK_PY"
PORT="${FLOWCAST_BENCH_PORT:-9300}"
BROKERS="127.0.0.1:$PORT"
TOPIC="DHT11-sweep"
# --rounds 0: the live runs alone (no fill, no drains).
((ROUNDS > 0)) || READINGS=0
bench_broker sweep "$PORT" "$FLOWCAST" "$BIN_DIR/flowcast-fill" "$TOPIC" "$READINGS" "$DEVICES"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-sweep.XXXXXX")"
log "work dir $WORK"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine operators || echo '+changes')"
[[ -n "${BUILT_FROM:-}" ]] && commit="$BUILT_FROM (binaries in $BIN_DIR)"

# drain INTERVAL WORKERS NAME: one drain; appends "interval workers readings/s rss_mib".
drain() {
  local interval=$1 workers=$2 name=$3 summary
  bench_job "$WORK/$name.toml" "$name" "$BROKERS" "$TOPIC" latest off "$interval"
  summary="$(/usr/bin/time -f %M -o "$WORK/$name.rss" \
    "$FLOWCAST" run "$WORK/$name.toml" --workers "$workers" --brokers "$BROKERS" 2>"$WORK/$name.log" | tail -n1)"
  local rate
  rate="$(sed -E 's/.*\(([0-9]+) records\/s\).*/\1/' <<<"$summary")"
  [[ $rate =~ ^[0-9]+$ ]] || { log "drain $name failed: $summary"; tail -n 20 "$WORK/$name.log" >&2; exit 1; }
  echo "$interval $workers $rate $(($(cat "$WORK/$name.rss") / 1024))" >> "$WORK/drains"
  log "drain $name: $rate readings/s, $(($(cat "$WORK/$name.rss") / 1024)) MiB"
}

# One untimed drain first, so no timed one pays for a cold broker or binary.
: > "$WORK/drains"
if ((ROUNDS > 0)); then
  drain 200ms 1 "sweep-warmup-$$"
  : > "$WORK/drains"
fi
for round in $(seq 1 "$ROUNDS"); do
  for w in $WORKERS; do
    for i in $INTERVALS; do drain "$i" "$w" "sweep-$i-w$w-r$round-$$"; done
  done
done

# live INTERVAL WORKERS: one paced live run, its p50/p99 into WORK/live.
: > "$WORK/live"
for w in $WORKERS; do
  for i in $INTERVALS; do
    id="sweep-live-$i-w$w-$$"
    "$FLOWCAST" topics create "$id-in" --partitions 3 --brokers "$BROKERS" \
      --config message.timestamp.type=LogAppendTime >/dev/null
    for s in out dead late; do
      "$FLOWCAST" topics create "$id-$s" --partitions 3 --brokers "$BROKERS" \
        --config message.timestamp.type=LogAppendTime >/dev/null
    done
    bench_job "$WORK/$id.toml" "$id" "$BROKERS" "$id-in" never off "$i"
    "$FLOWCAST" run "$WORK/$id.toml" --workers "$w" --brokers "$BROKERS" \
      > "$WORK/$id.stdout" 2> "$WORK/$id.log" &
    job=$!
    probe=0
    "$PY" "$HERE/harness/live.py" --brokers "$BROKERS" --topic "$id-in" --output "$id-out" \
      --result "$WORK/$id.json" --rate "$LIVE_RATE" --devices "$LIVE_DEVICES" \
      --grace "$LIVE_GRACE" --measure-secs "$LIVE_SECS" >&2 || probe=$?
    kill -TERM "$job"
    wait "$job" || true
    ((probe == 0)) || { log "live $id: no latency measured (exit $probe)"; exit 1; }
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], r["p50_ms"], r["p99_ms"], r["windows_measured"])' \
      "$WORK/$id.json" "$i" "$w" >> "$WORK/live"
  done
done

table() {
  echo "Epoch sweep, \`tests/bench/epoch_sweep.sh --intervals \"$INTERVALS\" --workers \"$WORKERS\" --readings $READINGS --devices $DEVICES --rounds $ROUNDS --live-secs $LIVE_SECS --live-rate $LIVE_RATE --live-devices $LIVE_DEVICES\`, build $commit, $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores; model off."
  echo
  echo "| epoch interval | workers | drain readings/s, median (range) | ÷ ${INTERVALS%% *} | peak RSS MiB, median | live p50 ms | live p99 ms | windows measured |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  "$PY" - "$WORK/drains" "$WORK/live" "$INTERVALS" "$WORKERS" <<'PYEOF'
import statistics, sys
drains, live = {}, {}
for line in open(sys.argv[1]):
    i, w, rate, rss = line.split()
    drains.setdefault((i, w), []).append((int(rate), int(rss)))
for line in open(sys.argv[2]):
    i, w, p50, p99, n = line.split()
    live[(i, w)] = (p50, p99, n)
intervals, workers = sys.argv[3].split(), sys.argv[4].split()
for w in workers:
    base = [r for r, _ in drains.get((intervals[0], w), [])]
    for i in intervals:
        p50, p99, n = live.get((i, w), ("-", "-", "-"))
        rates = [r for r, _ in drains.get((i, w), [])]
        if not rates:
            print(f"| {i} | {w} | - | - | - | {p50} | {p99} | {n} |")
            continue
        med = statistics.median(rates)
        rss = statistics.median(m for _, m in drains[(i, w)])
        ratio = f"{med / statistics.median(base):.2f}" if base else "-"
        print(f"| {i} | {w} | {med:,.0f} ({min(rates):,}–{max(rates):,}) | {ratio} | {rss:.0f} | {p50} | {p99} | {n} |")
PYEOF
}
if [[ -n "$OUT" ]]; then table | tee "$OUT"; else table; fi
