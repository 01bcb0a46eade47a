#!/usr/bin/env bash
# Generates, once, the throw-away TLS material the tests' Mosquitto and Kafka listeners
# use, under the run directory (never in git), and prints that folder:
#   ca.pem, ca.key                 the test CA
#   server.pem, server.key         its server certificate for 127.0.0.1 and localhost
#   server-keystore.pem            key (PKCS#8) + chain in one file: Kafka's PEM keystore
#   wrong-ca.pem, wrong-ca.key     an unrelated CA that signed nothing here (negative tests)
#   mqtt-token, mqtt-password      the username (an access token) and password the TLS
#                                  Mosquitto listener accepts
#   kafka-user, kafka-password     the SCRAM-SHA-512 credentials of the SASL_SSL listener
# Idempotent: existing material is kept while the server certificate is valid for another
# day and was signed by ca.pem; otherwise everything is made anew.
#
#   deploy/tls/certs.sh            # prints ${FLOWCAST_RUN_DIR:-<repo>/.flowcast-run}/tls
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/tls"
command -v openssl >/dev/null || { echo "certs.sh: openssl is required" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"
# Test secrets: random, made once, readable by their owner only.
umask 077
[[ -s mqtt-token ]] || openssl rand -hex 16 | sed 's/^/tok/' > mqtt-token
[[ -s mqtt-password ]] || openssl rand -hex 16 | sed 's/^/mpw/' > mqtt-password
[[ -s kafka-user ]] || echo flowcast > kafka-user
[[ -s kafka-password ]] || openssl rand -hex 16 | sed 's/^/pw/' > kafka-password
umask 022
if [[ -f ca.pem && -f server.pem && -f server-keystore.pem && -f wrong-ca.pem ]] &&
  openssl x509 -in server.pem -noout -checkend 86400 >/dev/null 2>&1 &&
  openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1; then
  echo "$DIR"
  exit 0
fi
# A concurrent run builds in its own folder; the rename below publishes whole sets only.
TMP="$(mktemp -d "$DIR/.new.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
q() { "$@" >/dev/null 2>&1 || { echo "certs.sh: failed: $*" >&2; "$@" >&2; exit 1; }; }
for ca in ca wrong-ca; do
  q openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 \
    -subj "/CN=Flowcast test $ca" -keyout "$TMP/$ca.key" -out "$TMP/$ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
done
q openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$TMP/server.key" -out "$TMP/server.csr"
cat > "$TMP/server.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
q openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
  -CAcreateserial -days 30 -sha256 -extfile "$TMP/server.ext" -out "$TMP/server.pem"
q openssl pkcs8 -topk8 -nocrypt -in "$TMP/server.key" -out "$TMP/server.pk8"
cat "$TMP/server.pk8" "$TMP/server.pem" "$TMP/ca.pem" > "$TMP/server-keystore.pem"
rm -f "$TMP/server.csr" "$TMP/server.ext" "$TMP/server.pk8" "$TMP/ca.srl"
chmod 600 "$TMP"/*.key "$TMP/server-keystore.pem"
for f in ca.pem ca.key wrong-ca.pem wrong-ca.key server.key server-keystore.pem server.pem; do
  mv -f "$TMP/$f" "$DIR/$f"
done
echo "$DIR"
