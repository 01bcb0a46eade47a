#!/usr/bin/env bash
# Starts Apache Kafka in KRaft mode on 127.0.0.1 (each node broker + controller) and
# waits until it answers metadata requests with every broker present.
#
#   deploy/kafka/start.sh                         # one broker on 9092
#   deploy/kafka/start.sh --brokers 3             # three brokers on 9092-9094 (the reference)
#   deploy/kafka/start.sh --name single --port 9095
#   deploy/kafka/start.sh --name single --port 9095 --sasl-port 9097
#
# --sasl-port adds a SASL_SSL listener per node (SASL_PORT + node index): TLS with the
# certificate of deploy/tls/certs.sh and SCRAM-SHA-512 with the user and password in its
# folder (kafka-user, kafka-password), bootstrapped into the metadata at format time. The
# inter-broker and controller listeners stay plaintext on loopback.
#
# Data lives in a fresh temporary directory per run. deploy/kafka/stop.sh --name NAME
# stops exactly the processes recorded here. Each broker logs its JVM's stop-the-world
# pauses (safepoints: GC and others, UTC time-stamped) to
# .flowcast-run/kafka-NAME/safepoint-N.log.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BROKERS=1
PORT=9092
NAME=default
SASL_PORT=""
HEAP="${FLOWCAST_KAFKA_HEAP:-512m}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --brokers) BROKERS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --sasl-port) SASL_PORT="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$BROKERS" =~ ^[1-9]$ ]] || { echo "start.sh: --brokers must be 1..9" >&2; exit 2; }

RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/kafka-$NAME"
if [[ -f "$RUN/pids" ]]; then
  alive=0
  while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$RUN/pids"
  if [[ $alive == 1 ]]; then
    echo "kafka '$NAME' is already running (pids in $RUN/pids); stop it with deploy/kafka/stop.sh --name $NAME" >&2
    exit 1
  fi
fi
for ((i = 0; i < BROKERS; i++)); do
  for p in $((PORT + i)) $((PORT + 100 + i)) ${SASL_PORT:+$((SASL_PORT + i))}; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "start.sh: port $p on 127.0.0.1 is already in use" >&2
      exit 1
    fi
  done
done

LIBS="$("$HERE/fetch.sh")"
rm -rf "$RUN"
mkdir -p "$RUN"
DATA="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-kafka-$NAME.XXXXXX")"
echo "$DATA" > "$RUN/data-dir"
: > "$RUN/pids"

CP="$LIBS/*"
JAVA="${JAVA:-java}"
CLUSTER_ID="$("$JAVA" -cp "$CP" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
[[ -n "$CLUSTER_ID" ]] || { echo "start.sh: could not generate a cluster id" >&2; exit 1; }

VOTERS=""
for ((i = 0; i < BROKERS; i++)); do
  VOTERS+="${VOTERS:+,}$i@127.0.0.1:$((PORT + 100 + i))"
done
RF=$(( BROKERS < 3 ? BROKERS : 3 ))
MIN_ISR=$(( RF > 1 ? 2 : 1 ))

cat > "$RUN/log4j2.properties" <<LOG
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = \${sys:flowcast.kafka.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
LOG

FORMAT_ARGS=()
if [[ -n "$SASL_PORT" ]]; then
  TLS="$("$HERE/../tls/certs.sh")"
  # The SCRAM credential goes into the metadata log at format time (KRaft has no
  # ZooKeeper to hold it); the tool reads it from its arguments, briefly visible in ps.
  FORMAT_ARGS=(--add-scram "SCRAM-SHA-512=[name=$(cat "$TLS/kafka-user"),password=$(cat "$TLS/kafka-password")]")
fi

for ((i = 0; i < BROKERS; i++)); do
  CONF="$RUN/server-$i.properties"
  LISTENERS="PLAINTEXT://127.0.0.1:$((PORT + i)),CONTROLLER://127.0.0.1:$((PORT + 100 + i))"
  ADVERTISED="PLAINTEXT://127.0.0.1:$((PORT + i))"
  PROTOCOLS="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [[ -n "$SASL_PORT" ]]; then
    LISTENERS+=",SASL_SSL://127.0.0.1:$((SASL_PORT + i))"
    ADVERTISED+=",SASL_SSL://127.0.0.1:$((SASL_PORT + i))"
    PROTOCOLS+=",SASL_SSL:SASL_SSL"
  fi
  cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$VOTERS
listeners=$LISTENERS
advertised.listeners=$ADVERTISED
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$PROTOCOLS
log.dirs=$DATA/node-$i
num.partitions=3
default.replication.factor=$RF
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$MIN_ISR
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
PROPS
  if [[ -n "$SASL_PORT" ]]; then
    cat >> "$CONF" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS/server-keystore.pem
PROPS
  fi
  "$JAVA" -cp "$CP" -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    -Dflowcast.kafka.log="$RUN/format-$i.log" \
    kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" --config "$CONF" \
    "${FORMAT_ARGS[@]}" > "$RUN/format-$i.out" 2>&1 || { cat "$RUN/format-$i.out" >&2; exit 1; }
done

for ((i = 0; i < BROKERS; i++)); do
  nohup "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Xlog:safepoint:file="$RUN/safepoint-$i.log":utctime \
    -Dlog4j2.configurationFile="$RUN/log4j2.properties" -Dflowcast.kafka.log="$RUN/broker-$i.log" \
    -cp "$CP" kafka.Kafka "$RUN/server-$i.properties" > "$RUN/broker-$i.out" 2>&1 < /dev/null &
  echo $! >> "$RUN/pids"
done

if ! JAVA="$JAVA" "$HERE/wait_ready.sh" "$CP" "127.0.0.1:$PORT" "$BROKERS" \
  "${FLOWCAST_KAFKA_START_TIMEOUT:-120}"; then
  for ((i = 0; i < BROKERS; i++)); do tail -n 20 "$RUN/broker-$i.out" "$RUN/broker-$i.log" >&2 || true; done
  "$HERE/stop.sh" --name "$NAME" >&2 || true
  exit 1
fi
BOOT=""
for ((i = 0; i < BROKERS; i++)); do BOOT+="${BOOT:+,}127.0.0.1:$((PORT + i))"; done
echo "$BOOT" > "$RUN/bootstrap"
echo "kafka '$NAME' ready: bootstrap servers $BOOT (data in $DATA)${SASL_PORT:+; SASL_SSL from 127.0.0.1:$SASL_PORT}"
