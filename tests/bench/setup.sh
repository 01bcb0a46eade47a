#!/usr/bin/env bash
# Installs the benchmark's peers into the Flowcast cache, idempotently, from package
# registries only (Maven Central, PyPI):
#   - Apache Flink (DataStream API, local MiniCluster) + its Kafka connector: builds
#     tests/bench/flink with Maven; classes and runtime jars in $CACHE/bench/flink-<v>/
#   - PySpark in a virtualenv ($CACHE/bench/spark-venv) with pandas/pyarrow (pandas UDFs),
#     protobuf (transformWithStateInPandas) and confluent-kafka (the harness's client)
#   - Spark's Kafka connector jars via Maven ($CACHE/bench/spark-<v>/jars/)
# Prints shell assignments for run.sh: FLINK_CP, SPARK_PY, SPARK_JARS.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${FLOWCAST_CACHE:-$HOME/.cache/flowcast}/bench"
log() { printf '\033[1m[bench-setup]\033[0m %s\n' "$*" >&2; }
prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$2" | head -n1; }
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }
mkdir -p "$CACHE"
command -v mvn >/dev/null || { log "Maven (mvn) is required"; exit 1; }

# Flink: rebuilt when the pom or the job's sources change.
FLINK_VERSION="$(prop flink.version "$HERE/flink/pom.xml")"
FLINK_OUT="$CACHE/flink-$FLINK_VERSION"
flink_hash="$(find "$HERE/flink/src" -type f -print0 | sort -z | xargs -0 cat "$HERE/flink/pom.xml" | sha256sum | cut -d' ' -f1)"
if ! stamp_ok "$FLINK_OUT/.complete" "$flink_hash"; then
  log "building the Flink job (Flink $FLINK_VERSION) with Maven"
  rm -rf "${FLINK_OUT:?}/lib"
  mvn -q -B -f "$HERE/flink/pom.xml" -Dbench.out="$FLINK_OUT" package dependency:copy-dependencies >&2
  echo "$flink_hash" > "$FLINK_OUT/.complete"
fi

# Spark: the PyPI wheel and the connector jars must be the same version.
SPARK_VERSION="$(prop spark.version "$HERE/spark/pom.xml")"
VENV="$CACHE/spark-venv"
PY_PACKAGES=("pyspark==$SPARK_VERSION" "pandas>=2.2,<3" "pyarrow>=15" "protobuf>=5" "numpy" "confluent-kafka>=2.6")
spark_hash="$(printf '%s\n' "${PY_PACKAGES[@]}" | sha256sum | cut -d' ' -f1)"
if ! stamp_ok "$VENV/.complete" "$spark_hash"; then
  log "installing PySpark $SPARK_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q "${PY_PACKAGES[@]}" >&2
  echo "$spark_hash" > "$VENV/.complete"
fi
SPARK_OUT="$CACHE/spark-$SPARK_VERSION"
spark_jars_hash="$(sha256sum "$HERE/spark/pom.xml" | cut -d' ' -f1)"
if ! stamp_ok "$SPARK_OUT/.complete" "$spark_jars_hash"; then
  log "fetching Spark's Kafka connector $SPARK_VERSION with Maven"
  rm -rf "$SPARK_OUT/jars"
  mvn -q -B -f "$HERE/spark/pom.xml" -Dbench.out="$SPARK_OUT" dependency:copy-dependencies >&2
  echo "$spark_jars_hash" > "$SPARK_OUT/.complete"
fi

echo "FLINK_VERSION=$FLINK_VERSION"
echo "FLINK_CP='$FLINK_OUT/build/classes:$FLINK_OUT/lib/*'"
echo "SPARK_VERSION=$SPARK_VERSION"
echo "SPARK_PY='$VENV/bin/python'"
echo "SPARK_JARS='$(find "$SPARK_OUT/jars" -name '*.jar' | sort | paste -sd, -)'"
