#!/usr/bin/env bash
# Fetches the Apache Kafka broker (pom.xml beside this script) and its runtime
# dependencies from Maven Central into the Flowcast cache. Idempotent; prints the jar folder.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${FLOWCAST_CACHE:-$HOME/.cache/flowcast}"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
DEST="$CACHE/kafka-$VERSION/libs"
STAMP="$CACHE/kafka-$VERSION/.complete"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)" ]]; then
  echo "$DEST"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch.sh: Maven (mvn) is required" >&2; exit 1; }
# Into a fresh folder, then swapped in: a broker already running from $DEST keeps the jars
# it has open, and finds the same names at the same path for the classes it loads later.
rm -rf "$DEST.new" "$DEST.old"
mkdir -p "$DEST.new"
echo "fetching Apache Kafka $VERSION with Maven" >&2
mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$DEST.new" -DincludeScope=runtime >&2
ls "$DEST.new"/kafka_2.13-"$VERSION".jar "$DEST.new"/kafka-tools-"$VERSION".jar >/dev/null
if [[ -d "$DEST" ]]; then mv "$DEST" "$DEST.old"; fi
mv "$DEST.new" "$DEST"
rm -rf "$DEST.old"
sha256sum "$HERE/pom.xml" | cut -d' ' -f1 > "$STAMP"
echo "$DEST"
