#!/usr/bin/env bash
# The README's demo command: sets everything up on a fresh machine, starts a one-broker
# Kafka (KRaft) on 127.0.0.1:9092, and runs the demo pipeline, printing what it produces.
# Stops everything it started when it ends (Ctrl-C too).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

deploy/setup.sh
log "building flowcast (release)"
cargo build --release -q -p flowcast-engine -p flowcast-ingest
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
trap 'deploy/kafka/stop.sh --name demo >&2 || true' EXIT
deploy/kafka/start.sh --name demo --port 9092
BROKERS=127.0.0.1:9092
"$BIN/flowcast" topics create DHT11 --partitions 3 --brokers "$BROKERS" --if-not-exists
"$BIN/flowcast" topics create predicData --partitions 3 --brokers "$BROKERS" --if-not-exists
exec_demo() { "$BIN/flowcast" demo --brokers "$BROKERS" "$@"; }
exec_demo "$@"
