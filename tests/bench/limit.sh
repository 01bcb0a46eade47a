#!/usr/bin/env bash
# The limit row (issue 18), on its own: Flowcast's drain of a pre-filled topic (model off)
# against the bare consumer loop that decodes and validates every record with the
# source's own librdkafka settings and nothing else (engine/examples/limit.rs), interleaved
# (limit, Flowcast, limit, …) so machine noise hits both alike; one line per run, the
# medians and Flowcast ÷ limit. Starts its own one-broker Kafka; release builds.
#
#   tests/bench/limit.sh [READINGS] [DEVICES] [ROUNDS] [WORKERS]
#     defaults: 3000000 readings, 3000 devices, 3 rounds, 1 worker.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
READINGS="${1:-3000000}"; DEVICES="${2:-3000}"; ROUNDS="${3:-3}"; WORKERS="${4:-1}"
PORT="${FLOWCAST_BENCH_PORT:-9300}"
BROKERS="127.0.0.1:$PORT"
log() { printf '\033[1m[limit]\033[0m %s\n' "$*" >&2; }
log "building (release)"
cargo build --release -p flowcast-engine -p flowcast-tests --bin flowcast --bin flowcast-fill >&2
cargo build --release -p flowcast-torch >&2
cargo build --release -p flowcast-engine --example limit >&2
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
TOPIC="DHT11-limit"
bench_broker limit "$PORT" "$BIN/flowcast" "$BIN/flowcast-fill" "$TOPIC" "$READINGS" "$DEVICES"
WORK="$(mktemp -d)"
for round in $(seq 1 "$ROUNDS"); do
  name="limit-$round-$$"
  bench_job "$WORK/$name.toml" "$name" "$BROKERS" "$TOPIC" latest off
  line="$("$BIN/examples/limit" "$WORK/$name.toml")"
  rate="$(sed -E 's/.*\(([0-9]+) records\/s\).*/\1/' <<<"$line")"
  echo "limit round=$round readings/s=$rate ($line)"
  echo "limit $rate" >> "$WORK/rates"
  summary="$("$BIN/flowcast" run "$WORK/$name.toml" --workers "$WORKERS" 2>"$WORK/$name.log" | tail -n1)"
  rate="$(sed -E 's/.*\(([0-9]+) records\/s\).*/\1/' <<<"$summary")"
  echo "flowcast round=$round workers=$WORKERS readings/s=$rate"
  echo "flowcast $rate" >> "$WORK/rates"
done
med() { awk -v s="$1" '$1 == s {print $2}' "$WORK/rates" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
l="$(med limit)"; f="$(med flowcast)"
echo "medians: limit $l readings/s, flowcast $f readings/s, flowcast / limit $(awk -v f="$f" -v l="$l" 'BEGIN {printf "%.2f", f / l}')"
