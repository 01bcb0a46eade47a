#!/usr/bin/env bash
# Starts a Mosquitto MQTT broker on 127.0.0.1 (default port 1883) for Flowcast's MQTT
# sink and its tests, with password authentication (ThingsBoard-style: username = token).
# The password file comes from FLOWCAST_MQTT_PASSWD (mosquitto_passwd format); without it
# anonymous clients are allowed. Records its PID; deploy/mosquitto/stop.sh stops it.
#
# With --tls-port, a second listener speaks MQTT over TLS only (no plaintext on that port),
# with the server certificate of deploy/tls/certs.sh and always with password
# authentication: FLOWCAST_MQTT_TLS_PASSWD, else a file made here whose one user is the
# token in the TLS folder's `mqtt-token`, with the password in its `mqtt-password`
# (Mosquitto's password files have no password-less users).
#
#   deploy/mosquitto/start.sh [--port 1883] [--tls-port 8883]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PORT=1883
TLS_PORT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --tls-port) TLS_PORT="$2"; shift 2 ;;
    *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/mosquitto"
BIN="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[[ -x "$BIN" ]] || { echo "mosquitto is not installed: run deploy/setup.sh" >&2; exit 1; }
if [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
  echo "mosquitto already running (pid $(cat "$RUN/pid"))" >&2; exit 1
fi
mkdir -p "$RUN"
if [[ -n "$TLS_PORT" ]]; then
  TLS="$("$HERE/../tls/certs.sh")"
  TLS_PASSWD="${FLOWCAST_MQTT_TLS_PASSWD:-}"
  if [[ -z "$TLS_PASSWD" ]]; then
    TLS_PASSWD="$RUN/tls-passwd"
    rm -f "$TLS_PASSWD"
    (umask 077 && mosquitto_passwd -c -b "$TLS_PASSWD" "$(cat "$TLS/mqtt-token")" "$(cat "$TLS/mqtt-password")")
  fi
fi
{
  # Each listener has its own authentication: the plaintext one as before, the TLS one
  # always with passwords.
  [[ -z "$TLS_PORT" ]] || echo "per_listener_settings true"
  echo "listener $PORT 127.0.0.1"
  if [[ -n "${FLOWCAST_MQTT_PASSWD:-}" ]]; then
    echo "allow_anonymous false"
    echo "password_file $FLOWCAST_MQTT_PASSWD"
  else
    echo "allow_anonymous true"
  fi
  if [[ -n "$TLS_PORT" ]]; then
    echo "listener $TLS_PORT 127.0.0.1"
    echo "cafile $TLS/ca.pem"
    echo "certfile $TLS/server.pem"
    echo "keyfile $TLS/server.key"
    echo "tls_version tlsv1.2"
    echo "allow_anonymous false"
    echo "password_file $TLS_PASSWD"
  fi
  echo "persistence false"
  # Started as root, mosquitto drops to user `mosquitto`, which cannot write the log in
  # the run directory nor read a private password file: run as whoever started it.
  echo "user $(id -un)"
  echo "log_dest file $RUN/mosquitto.log"
} > "$RUN/mosquitto.conf"
nohup "$BIN" -c "$RUN/mosquitto.conf" > "$RUN/mosquitto.out" 2>&1 < /dev/null &
echo $! > "$RUN/pid"
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null &&
    { [[ -z "$TLS_PORT" ]] || (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; }; then
    echo "mosquitto ready on 127.0.0.1:$PORT${TLS_PORT:+ (TLS on 127.0.0.1:$TLS_PORT)}"; exit 0
  fi
  kill -0 "$(cat "$RUN/pid")" 2>/dev/null || break
  sleep 0.1
done
cat "$RUN/mosquitto.out" "$RUN/mosquitto.log" >&2 2>/dev/null || true
echo "mosquitto did not start" >&2
exit 1
