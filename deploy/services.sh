#!/usr/bin/env bash
# Starts or stops the services Flowcast's tests run against, all on 127.0.0.1:
#   - "test":   a three-broker KRaft Kafka cluster on 9092-9094 (the reference deployment)
#   - "single": a one-broker KRaft Kafka on 9095, plus SASL_SSL (SCRAM-SHA-512) on 9097
#   - Mosquitto on 1883, plus MQTT over TLS with password authentication on 8883
#   - SeaweedFS's S3 gateway on 8333 (bucket flowcast-test) for the S3 checkpoint tests;
#     its other components take 8334-8337 and 18333-18337 (deploy/seaweedfs/start.sh)
# Ports move with FLOWCAST_TEST_KAFKA_PORT, FLOWCAST_TEST_SINGLE_PORT, FLOWCAST_TEST_MQTT_PORT,
# FLOWCAST_TEST_SASL_PORT (default: the single port + 2; + 1 is the ingest outage test's broker), FLOWCAST_TEST_MQTT_TLS_PORT, FLOWCAST_TEST_S3_PORT (a Kafka
# node also uses its port + 100 for its controller). The throw-away CA, certificates and
# test credentials are deploy/tls/certs.sh's, under the run directory.
#
#   deploy/services.sh start|stop
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_PORT="${FLOWCAST_TEST_KAFKA_PORT:-9092}"
SINGLE_PORT="${FLOWCAST_TEST_SINGLE_PORT:-9095}"
MQTT_PORT="${FLOWCAST_TEST_MQTT_PORT:-1883}"
SASL_PORT="${FLOWCAST_TEST_SASL_PORT:-$((SINGLE_PORT + 2))}"
MQTT_TLS_PORT="${FLOWCAST_TEST_MQTT_TLS_PORT:-8883}"
S3_PORT="${FLOWCAST_TEST_S3_PORT:-8333}"
case "${1:-}" in
  start)
    "$HERE/kafka/start.sh" --name test --brokers 3 --port "$KAFKA_PORT"
    "$HERE/tls/certs.sh" >/dev/null
    "$HERE/kafka/start.sh" --name single --brokers 1 --port "$SINGLE_PORT" --sasl-port "$SASL_PORT"
    "$HERE/mosquitto/start.sh" --port "$MQTT_PORT" --tls-port "$MQTT_TLS_PORT"
    "$HERE/seaweedfs/start.sh" --port "$S3_PORT"
    ;;
  stop)
    rc=0
    "$HERE/seaweedfs/stop.sh" || rc=1
    "$HERE/mosquitto/stop.sh" || rc=1
    "$HERE/kafka/stop.sh" --name single || rc=1
    "$HERE/kafka/stop.sh" --name test || rc=1
    exit $rc
    ;;
  *) echo "usage: deploy/services.sh start|stop" >&2; exit 2 ;;
esac
