#!/usr/bin/env bash
# Waits until a Kafka cluster really serves clients, with Kafka's own tools from the fetched
# jars: kafka-broker-api-versions must list EXPECTED_BROKERS unfenced brokers and
# kafka-metadata-quorum must report a KRaft leader.
#
# usage: wait_ready.sh CLASSPATH HOST:PORT EXPECTED_BROKERS TIMEOUT_SECONDS
# Exits 0 when ready, 1 on timeout (with the tools' last output on stderr).
set -euo pipefail
CP="$1" BOOT="$2" EXPECTED="$3" TIMEOUT="$4"
JAVA="${JAVA:-java}"
# The tools are short-lived JVMs: no JIT tiers beyond C1, a small heap, quiet logging.
tool() {
  local main="$1"
  shift
  "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.level=error -cp "$CP" "$main" --bootstrap-server "$BOOT" "$@" 2>&1
}
deadline=$((SECONDS + TIMEOUT))
last=""
while ((SECONDS < deadline)); do
  if last="$(tool org.apache.kafka.tools.BrokerApiVersionsCommand)"; then
    ready=$(grep -Ec '\(id: [0-9]+ rack: [^ ]* isFenced: false\)' <<<"$last" || true)
    if ((ready >= EXPECTED)) &&
      last="$(tool org.apache.kafka.tools.MetadataQuorumCommand describe --status)" &&
      grep -Eq '^LeaderId:[[:space:]]+[0-9]+' <<<"$last"; then
      exit 0
    fi
  fi
  sleep 1
done
echo "wait_ready.sh: $BOOT not ready with $EXPECTED brokers after ${TIMEOUT}s; last answer:" >&2
tail -n 20 <<<"$last" >&2
exit 1
