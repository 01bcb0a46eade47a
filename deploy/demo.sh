#!/usr/bin/env bash
# The README's demo command: sets everything up on a fresh machine, starts a one-broker
# Apache Kafka (KRaft) on 127.0.0.1:9092 and runs `flowcast demo` against it: real sensor
# data replayed through flowcast-ingest into topic DHT11, the forecast job with the LSTM,
# and every forecast printed from topic predicData as it arrives. Stops everything it
# started when it ends (Ctrl-C too). Extra arguments go to `flowcast demo` (see --help).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

deploy/setup.sh
log "building flowcast and flowcast-ingest (release; the first build takes minutes)"
# `flowcast demo` runs the flowcast-ingest binary it finds beside itself. cargo's own
# progress (its Compiling lines and bar) when someone watches; quiet in logs.
if [[ -t 2 ]]; then
  cargo build --release -p flowcast-engine -p flowcast-torch -p flowcast-ingest
else
  cargo build --release -q -p flowcast-engine -p flowcast-torch -p flowcast-ingest
fi
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
PORT="${FLOWCAST_DEMO_PORT:-9092}"
trap 'deploy/kafka/stop.sh --name demo >&2 || true' EXIT
deploy/kafka/start.sh --name demo --port "$PORT"
"$BIN/flowcast" demo --brokers "127.0.0.1:$PORT" "$@"
