# shellcheck shell=bash
# Sourced by the bench scripts: writes the bench job spec (the reference pipeline,
# windows of 30 min, sequences of 60) for Flowcast.
#
#   bench_job FILE NAME BROKERS TOPIC STOP MODEL [EPOCH] [OUT-OF-ORDERNESS] [IDLE]
#     STOP: latest (bounded drain) | never (stream); MODEL: off | persistence | torchscript
#   Output topic: NAME-out; dead letters NAME-dead; late data NAME-late.
bench_job() {
  local file=$1 name=$2 brokers=$3 topic=$4 stop=$5 model=$6
  local epoch=${7:-10ms} ooo=${8:-1m} idle=${9:-10m}
  local repo model_toml
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  model_toml="kind = \"$model\""
  if [[ "$model" == torchscript ]]; then
    model_toml="kind = \"torchscript\"
path = \"$repo/models/dht11_lstm.pt\""
  fi
  cat > "$file" <<TOML
name = "$name"
dead-letter-topic = "$name-dead"
late-data-topic = "$name-late"
epoch-interval = "$epoch"
[source]
brokers = "$brokers"
topic = "$topic"
start = "earliest"
stop = "$stop"
[event-time]
field = "time"
out-of-orderness = "$ooo"
idle-timeout = "$idle"
[window]
length = "30m"
allowed-lateness = "0s"
[sequence]
length = 60
[model]
$model_toml
[[sinks]]
type = "kafka"
topic = "$name-out"
TOML
}

# bench_exactly_once FILE: makes every Kafka output of a bench_job spec exactly-once (the
# Kafka sink is the spec's last table: its delivery goes at the end, the dead-letter and
# late-data deliveries at the top).
bench_exactly_once() {
  local file=$1
  printf 'delivery = "exactly-once"\n' >> "$file"
  { printf 'dead-letter-delivery = "exactly-once"\nlate-data-delivery = "exactly-once"\n'; cat "$file"; } > "$file.eo"
  mv "$file.eo" "$file"
}

# bench_broker NAME PORT FLOWCAST FILL TOPIC READINGS DEVICES: starts a one-broker Kafka
# called NAME on PORT (stopped when the calling script exits) and fills TOPIC (3
# partitions) with READINGS readings of DEVICES devices.
bench_broker() {
  local name=$1 port=$2 flowcast=$3 fill=$4 topic=$5 readings=$6 devices=$7
  # shellcheck disable=SC2064 # the name is fixed now, on purpose
  trap "deploy/kafka/stop.sh --name $name >&2 || true" EXIT
  deploy/kafka/start.sh --name "$name" --port "$port"
  "$flowcast" topics create "$topic" --partitions 3 --brokers "127.0.0.1:$port" >/dev/null
  printf '\033[1m[%s]\033[0m filling %s readings of %s devices\n' "$name" "$readings" "$devices" >&2
  "$fill" --brokers "127.0.0.1:$port" --topic "$topic" --readings "$readings" --devices "$devices" >&2
}
