#!/usr/bin/env bash
# Runs one Flowcast job as N processes on this machine - a cluster of one host, the bench's
# 2-process row - and stands for them as one command, so that procstat.py measures the
# whole cluster (CPU and PSS of every process) and the harness stops it like any engine.
#
#   cluster.sh N FIRST_PORT FLOWCAST JOB.toml [flowcast run options...]
#
# Process i runs `FLOWCAST run JOB.toml --processes N --process-index i --hosts ...` with
# the hosts 127.0.0.1:FIRST_PORT.. and the given options (e.g. --workers 1 --brokers B).
# SIGINT and SIGTERM are passed on to every process. Each process's output is printed
# prefixed `[pI]`, then one last line in the engine's summary form: the records all
# processes read, in the time of the slowest (what the report takes as the job's time),
# and their rate.
# The exit code is the first non-zero one of the processes.
set -uo pipefail
n=$1 port=$2 bin=$3 job=$4
shift 4
hosts=""
for ((i = 0; i < n; i++)); do hosts+="${hosts:+,}127.0.0.1:$((port + i))"; done
dir="$(mktemp -d "${TMPDIR:-/tmp}/flowcast-cluster.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
pids=()
for ((i = 0; i < n; i++)); do
  "$bin" run "$job" --processes "$n" --process-index "$i" --hosts "$hosts" "$@" \
    > "$dir/p$i.out" 2> >(sed -u "s/^/[p$i] /" >&2) &
  pids+=($!)
done
forward() { kill "-$1" "${pids[@]}" 2>/dev/null; }
trap 'forward INT' INT
trap 'forward TERM' TERM
rc=0
for i in "${!pids[@]}"; do
  # `wait` returns early when a trapped signal arrives: wait again until the process is gone.
  while true; do
    wait "${pids[$i]}"
    code=$?
    ((code > 128)) && kill -0 "${pids[$i]}" 2>/dev/null && continue
    break
  done
  if ((code != 0 && rc == 0)); then rc=$code; fi
done
records=0
secs=0
for ((i = 0; i < n; i++)); do
  sed "s/^/[p$i] /" "$dir/p$i.out"
  line="$(grep -E 'read [0-9]+ records in [0-9.]+s' "$dir/p$i.out" | tail -n 1)"
  if [[ $line =~ read\ ([0-9]+)\ records\ in\ ([0-9.]+)s ]]; then
    records=$((records + BASH_REMATCH[1]))
    secs="$(awk -v a="$secs" -v b="${BASH_REMATCH[2]}" 'BEGIN { print (b > a) ? b : a }')"
  fi
done
if ((rc == 0)); then
  rate="$(awk -v r="$records" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0) ? r / s : 0 }')"
  echo "flowcast: cluster of $n processes read $records records in ${secs}s ($rate records/s)"
fi
exit "$rc"
