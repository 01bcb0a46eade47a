#!/usr/bin/env bash
# Starts or stops the services Flowcast's tests run against, all on 127.0.0.1:
#   - "test":   a three-broker KRaft Kafka cluster on 9092-9094 (the reference deployment)
#   - "single": a one-broker KRaft Kafka on 9095
#   - Mosquitto on 1883
#
#   deploy/services.sh start|stop
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  start)
    "$HERE/kafka/start.sh" --name test --brokers 3 --port 9092
    "$HERE/kafka/start.sh" --name single --brokers 1 --port 9095
    "$HERE/mosquitto/start.sh" --port 1883
    ;;
  stop)
    rc=0
    "$HERE/mosquitto/stop.sh" || rc=1
    "$HERE/kafka/stop.sh" --name single || rc=1
    "$HERE/kafka/stop.sh" --name test || rc=1
    exit $rc
    ;;
  *) echo "usage: deploy/services.sh start|stop" >&2; exit 2 ;;
esac
