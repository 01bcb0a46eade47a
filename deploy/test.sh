#!/usr/bin/env bash
# The README's test command: sets everything up on a fresh machine (with the browser test's
# chromium), starts real Kafka (three brokers + one), Mosquitto and SeaweedFS (S3), runs
# formatting, lints and every test, and always stops what it started.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
log() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

deploy/setup.sh
# SeaweedFS's `weed` (the tests' S3 server), built from its Go module at a pinned version
# into ~/.cache/flowcast (a cold build takes about 14 minutes on 2 cores; then cached).
log "SeaweedFS: $(deploy/seaweedfs/install.sh)"
# Debian's chromium and chromedriver: the web UI's browser test (engine/tests/web_ui.rs).
deploy/browser/install.sh
trap 'deploy/services.sh stop >&2 || true' EXIT
deploy/services.sh start
K="${FLOWCAST_TEST_KAFKA_PORT:-9092}"
export FLOWCAST_TEST_BROKERS="127.0.0.1:$K,127.0.0.1:$((K + 1)),127.0.0.1:$((K + 2))"
export FLOWCAST_TEST_SINGLE_BROKER="127.0.0.1:${FLOWCAST_TEST_SINGLE_PORT:-9095}"
export FLOWCAST_TEST_MQTT="127.0.0.1:${FLOWCAST_TEST_MQTT_PORT:-1883}"
S="${FLOWCAST_TEST_SINGLE_PORT:-9095}"
export FLOWCAST_TEST_SASL_BROKER="127.0.0.1:${FLOWCAST_TEST_SASL_PORT:-$((S + 2))}"
export FLOWCAST_TEST_MQTT_TLS="127.0.0.1:${FLOWCAST_TEST_MQTT_TLS_PORT:-8883}"
export FLOWCAST_TEST_TLS_DIR="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/tls"
# S3 (SeaweedFS): the tests' server, and the endpoint and credentials the checkpoint store
# reads from the environment (the keys deploy/seaweedfs/start.sh made for this run dir).
export FLOWCAST_TEST_S3="http://127.0.0.1:${FLOWCAST_TEST_S3_PORT:-8333}"
export AWS_ENDPOINT_URL="$FLOWCAST_TEST_S3" AWS_REGION=us-east-1
S3_CREDS="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/seaweedfs/credentials"
AWS_ACCESS_KEY_ID="$(sed -n 's/^aws_access_key_id = //p' "$S3_CREDS")"
AWS_SECRET_ACCESS_KEY="$(sed -n 's/^aws_secret_access_key = //p' "$S3_CREDS")"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo test"
# The LibTorch model plugin, which the flowcast binary loads beside itself for jobs with
# the LSTM: cargo test builds no cdylib nothing links to.
cargo build -p flowcast-torch
cargo test --workspace --all-targets "$@"
# --all-targets leaves out doctests (the README's and the API docs' examples).
log "cargo test --doc"
cargo test --workspace --doc "$@"
