#!/usr/bin/env bash
# A/B drain: two builds of `flowcast` drain the same pre-filled topic, interleaved
# (A B A B …) so machine noise hits both alike; one line per run (readings/s and peak RSS,
# from /usr/bin/time) and the medians of each. Used to check that an engine change keeps throughput.
#
#   tests/bench/ab.sh A_BIN B_BIN [READINGS] [DEVICES] [ROUNDS] [WORKERS]
#     defaults: 3000000 readings, 3000 devices, 3 rounds, 1 worker; model off.
#   FILL_BIN (default: flowcast-fill next to B_BIN's build) fills the topic.
#   AB_A_EXTRA / AB_B_EXTRA: TOML appended to A's / B's job spec (it lands in the spec's
#   last table, the Kafka sink, until a new table starts; `{dir}` becomes a fresh
#   directory); AB_A_TOP / AB_B_TOP: top-level keys put before the spec. E.g. a drain with
#   checkpoints against without, with one build as A and B:
#     AB_B_EXTRA=$'[checkpoint]\nlocation = "{dir}"\ninterval = "10s"' tests/bench/ab.sh BIN BIN 25000000
#   AB_A_EPOCH / AB_B_EPOCH: each side's epoch interval (default 10ms, the job default).
#   AB_MODEL (default off): both sides' model, off | persistence | torchscript (the LSTM:
#   each build needs its libflowcast_torch.so beside it).
#   AB_WARMUP (default 200000): readings of a separate topic each side drains once, untimed,
#   before the rounds, so no timed drain pays for what a broker in service already has
#   (the first transactional producer on a fresh broker creates __transaction_state and
#   waits for its coordinator) or for a cold binary; 0 skips it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
# shellcheck source=tests/bench/job.sh
source tests/bench/job.sh
A="$1"; B="$2"
READINGS="${3:-3000000}"; DEVICES="${4:-3000}"; ROUNDS="${5:-3}"; WORKERS="${6:-1}"
FILL="${FILL_BIN:-$(dirname "$B")/flowcast-fill}"
PORT="${FLOWCAST_BENCH_PORT:-9300}"
BROKERS="127.0.0.1:$PORT"
log() { printf '\033[1m[ab]\033[0m %s\n' "$*" >&2; }
TOPIC="DHT11-ab"
bench_broker ab "$PORT" "$B" "$FILL" "$TOPIC" "$READINGS" "$DEVICES"
WORK="$(mktemp -d)"
WARMUP="${AB_WARMUP:-200000}"
if ((WARMUP > 0)); then
  "$B" topics create "$TOPIC-warmup" --partitions 3 --brokers "$BROKERS" >/dev/null
  "$FILL" --brokers "$BROKERS" --topic "$TOPIC-warmup" --readings "$WARMUP" --devices "$DEVICES" >&2
fi
# drain SIDE NAME TOPIC: one drain of TOPIC by SIDE's build and spec; prints its readings/s.
drain() {
  local side=$1 name=$2 topic=$3 bin="$A" extra="AB_${1}_EXTRA" top="AB_${1}_TOP" summary
  [[ $side == B ]] && bin="$B"
  local epoch="AB_${1}_EPOCH"
  bench_job "$WORK/$name.toml" "$name" "$BROKERS" "$topic" latest "${AB_MODEL:-off}" "${!epoch:-10ms}"
  if [[ -n "${!extra:-}" ]]; then
    printf '\n%s\n' "${!extra//\{dir\}/$WORK/$name.state}" >> "$WORK/$name.toml"
  fi
  if [[ -n "${!top:-}" ]]; then
    { printf '%s\n' "${!top}"; cat "$WORK/$name.toml"; } > "$WORK/$name.top"
    mv "$WORK/$name.top" "$WORK/$name.toml"
  fi
  summary="$(/usr/bin/time -f %M -o "$WORK/$name.rss" \
    "$bin" run "$WORK/$name.toml" --workers "$WORKERS" --brokers "$BROKERS" 2>"$WORK/$name.log" | tail -n1)"
  echo "$(sed -E 's/.*\(([0-9]+) records\/s\).*/\1/' <<<"$summary") $(($(cat "$WORK/$name.rss") / 1024))"
}
if ((WARMUP > 0)); then
  for side in A B; do
    log "warm-up ($side, untimed): $(drain "$side" "ab-$side-warmup-$$" "$TOPIC-warmup" | cut -d' ' -f1) readings/s"
  done
fi
for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    read -r rate rss <<<"$(drain "$side" "ab-$side-$round-$$" "$TOPIC")"
    echo "$side round=$round workers=$WORKERS readings/s=$rate peak_rss_mib=$rss"
    echo "$side $rate $rss" >> "$WORK/rates"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for side in A B; do
  echo "$side median readings/s: $(awk -v s="$side" '$1 == s {print $2}' "$WORK/rates" | median)," \
    "median peak RSS: $(awk -v s="$side" '$1 == s {print $3}' "$WORK/rates" | median) MiB"
done
