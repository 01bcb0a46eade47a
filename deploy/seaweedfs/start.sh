#!/usr/bin/env bash
# Starts SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in one process) on
# 127.0.0.1 as the S3-compatible server the checkpoint tests run against, with its data in
# a fresh temporary directory under the run directory, and waits until S3 answers signed
# requests and the test bucket exists.
#
#   deploy/seaweedfs/start.sh [--port 8333] [--bucket flowcast-test]
#
# S3 listens on --port (FLOWCAST_TEST_S3_PORT); the other components take the next ports
# (master +1, volume +2, filer +3, admin +4) and their gRPC ports 10000 above each. The
# test identity's access and secret keys are made once per run directory, in
# $RUN/seaweedfs/credentials (the AWS shared-credentials format, profile `default`), and
# given to the server in an S3 identity file; deploy/test.sh exports them for the tests.
# Telemetry is off. deploy/seaweedfs/stop.sh stops exactly the process recorded here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PORT="${FLOWCAST_TEST_S3_PORT:-8333}"
BUCKET="${FLOWCAST_TEST_S3_BUCKET:-flowcast-test}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --bucket) BUCKET="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
RUN="${FLOWCAST_RUN_DIR:-$REPO/.flowcast-run}/seaweedfs"
if [[ -f "$RUN/pid" ]] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
  echo "seaweedfs already running (pid $(cat "$RUN/pid")); stop it with deploy/seaweedfs/stop.sh" >&2
  exit 1
fi
for p in "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3)) $((PORT + 4)) \
  $((PORT + 10000)) $((PORT + 10001)) $((PORT + 10002)) $((PORT + 10003)) $((PORT + 10004)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "start.sh: port $p on 127.0.0.1 is already in use" >&2
    exit 1
  fi
done
WEED="$("$HERE/install.sh")"
mkdir -p "$RUN"
# The previous run's data directory, if a stop was missed.
if [[ -f "$RUN/data-dir" ]]; then rm -rf "$(cat "$RUN/data-dir")"; fi
DATA="$(mktemp -d "$RUN/data.XXXXXX")"
echo "$DATA" > "$RUN/data-dir"

CREDS="$RUN/credentials"
if [[ ! -s "$CREDS" ]]; then
  (umask 077 && {
    echo "[default]"
    echo "aws_access_key_id = flowcast$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    echo "aws_secret_access_key = $(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  } > "$CREDS")
fi
AK="$(sed -n 's/^aws_access_key_id = //p' "$CREDS")"
SK="$(sed -n 's/^aws_secret_access_key = //p' "$CREDS")"
(umask 077 && cat > "$RUN/s3-identities.json" <<JSON
{"identities": [{"name": "flowcast-test",
  "credentials": [{"accessKey": "$AK", "secretKey": "$SK"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
)

nohup "$WEED" mini -dir="$DATA" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -s3.port="$PORT" -master.port=$((PORT + 1)) -volume.port=$((PORT + 2)) \
  -filer.port=$((PORT + 3)) -admin.port=$((PORT + 4)) -admin.port.legacy=0 \
  -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
  -master.telemetry=false -s3.config="$RUN/s3-identities.json" -s3.iam=false \
  -bucket="$BUCKET" > "$RUN/weed.log" 2>&1 < /dev/null &
echo $! > "$RUN/pid"

# Ready when a signed HEAD of the bucket answers 200 (the server up, the identity loaded,
# the bucket made); a signed PUT of the bucket makes it if -bucket has not yet.
URL="http://127.0.0.1:$PORT/$BUCKET"
sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" -s -o /dev/null -w '%{http_code}' --max-time 5)
deadline=$((SECONDS + ${FLOWCAST_S3_START_TIMEOUT:-120}))
while ((SECONDS < deadline)); do
  kill -0 "$(cat "$RUN/pid")" 2>/dev/null || break
  code="$(curl "${sig[@]}" -I "$URL" 2>/dev/null || true)"
  if [[ "$code" == 200 ]]; then
    echo "seaweedfs S3 ready on 127.0.0.1:$PORT (bucket $BUCKET; credentials in $CREDS)"
    exit 0
  fi
  if [[ "$code" == 404 ]]; then curl "${sig[@]}" -X PUT "$URL" >/dev/null 2>&1 || true; fi
  sleep 0.5
done
tail -n 40 "$RUN/weed.log" >&2 || true
echo "seaweedfs did not become ready on 127.0.0.1:$PORT" >&2
exit 1
