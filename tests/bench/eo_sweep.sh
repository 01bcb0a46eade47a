#!/usr/bin/env bash
# The exactly-once sweep, outside CI: for each configuration (one process; two processes),
# the job dies at every fail point and at N seeded random `kill -9`s (default 20), each
# followed by a restart; a last bounded run finishes the input; the predictions, dead
# letters and late records, read with read_committed, must equal the reference — nothing
# missing, nothing twice. Prints each configuration's tally of kill points and the result.
#
#   deploy/services.sh start
#   tests/bench/eo_sweep.sh [--kills 20] [--seed 0]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
KILLS=20
SEED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    *) echo "usage: $0 [--kills N] [--seed S]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowcast/target}"
K="${FLOWCAST_TEST_KAFKA_PORT:-9092}"
export FLOWCAST_TEST_BROKERS="${FLOWCAST_TEST_BROKERS:-127.0.0.1:$K,127.0.0.1:$((K + 1)),127.0.0.1:$((K + 2))}"
export FLOWCAST_EO_KILLS="$KILLS" FLOWCAST_EO_SEED="$SEED"
log="$(mktemp -t flowcast-eo-sweep.XXXXXX)"
start=$SECONDS
set +e
cargo test -q -p flowcast-engine --test exactly_once -- --nocapture --test-threads 1 >"$log" 2>&1
rc=$?
set -e
grep -E "process\(es\), seed|^test .* (ok|FAILED)$|panicked|committed twice|missing" "$log" | sed -E 's/^/  /'
echo "eo_sweep: $KILLS random kills + 6 fail points per configuration, seed $SEED: $([ $rc -eq 0 ] && echo PASSED || echo FAILED) in $((SECONDS - start)) s (log: $log)"
exit $rc
