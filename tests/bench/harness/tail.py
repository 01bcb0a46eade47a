"""The latency tail's profile (tests/bench/latency_tail.sh): lays each measured window's
interval over what the machine did in it.

A window's interval runs from its close (the broker's log-append time of the input that
closes it, live.py) to its median output's log-append time (`--by last`: its last output's). For each run with a scheduler
record (`perf script` of sched_switch / sched_wakeup, CLOCK_MONOTONIC, shifted to Unix time
by the offset latency_tail.sh read before and after the record), every interval gets:

- CPU time by who ran: the job's threads, the broker (its JVM), live.py (the paced producer
  and the output reader, librdkafka's threads included), everything else (perf's own
  recording among it), and idle — summed over both cores, in ms;
- the job's run-queue wait: time its threads were runnable (woken or preempted) but not
  on a core, summed over threads, and the longest single wait;
- the broker's stop-the-world pauses (its safepoint log) inside the interval.

The slowest windows are then set against the median window, and the slowest window of each
run is shown as a timeline of the job's threads. Runs without a record still give their
window latencies and the broker's pauses.

    python tail.py --dir OUT [--dir OUT2 ...] [--slow-ms 30] [--by median|last]
"""

import argparse
import glob
import json
import os
import re
import statistics
from collections import defaultdict

SWITCH = re.compile(
    r"prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> "
    r"next_comm=(.*?) next_pid=(\d+) next_prio=\d+"
)
WAKEUP = re.compile(r"comm=(.*?) pid=(\d+) prio=\d+ target_cpu=(\d+)")
RUNTIME = re.compile(r"pid=(\d+) runtime=(\d+) \[ns\]")
HEAD = re.compile(r"^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
SAFEPOINT = re.compile(
    r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})([+-]\d{4})\].*Safepoint \"([^\"]+)\".*Total: (\d+) ns"
)


def parse_sched(path, offset):
    """Run segments (start, end, tid, cpu, stolen) and run-queue waits (ready, run, tid), in
    Unix ms; tid -> (tgid, comm). A segment's stolen ms is its wall time less the runtime
    the scheduler charged the thread for it (sched_stat_runtime, which leaves out the
    hypervisor's steal with PARAVIRT_TIME_ACCOUNTING); None without runtime events."""
    runs, waits = [], []
    tasks = {}
    cur = {}  # cpu -> [since ms, tid, charged runtime ms, runtime events]
    charged_tids = set()
    ready = {}  # tid -> since ms (woken or preempted, not yet on a core)
    first = last = None
    with open(path) as f:
        for line in f:
            m = HEAD.match(line)
            if not m:
                continue
            pid, tid, cpu, t, event, rest = m.groups()
            t_ms = (float(t) + offset) * 1000.0
            first = t_ms if first is None else first
            last = t_ms
            cpu = int(cpu)
            if event == "sched:sched_switch":
                s = SWITCH.search(rest)
                if not s:
                    continue
                prev_comm, prev_tid, prev_state, next_comm, next_tid = s.groups()
                prev_tid, next_tid = int(prev_tid), int(next_tid)
                tasks.setdefault(prev_tid, [None, prev_comm])[:] = [int(pid), prev_comm]
                tasks.setdefault(next_tid, [None, next_comm])
                if cpu in cur:
                    since, running, charged, charges = cur[cpu]
                    runs.append([since, t_ms, running, cpu, charged, charges])
                if prev_state.startswith("R") and prev_tid != 0:
                    ready[prev_tid] = t_ms
                if next_tid in ready:
                    waits.append((ready.pop(next_tid), t_ms, next_tid))
                cur[cpu] = [t_ms, next_tid, 0.0, 0]
            elif event == "sched:sched_stat_runtime":
                r = RUNTIME.search(rest)
                if r and cpu in cur and int(r.group(1)) == cur[cpu][1]:
                    cur[cpu][2] += int(r.group(2)) / 1e6
                    cur[cpu][3] += 1
                    charged_tids.add(cur[cpu][1])
            elif event.startswith("sched:sched_wakeup"):
                w = WAKEUP.search(rest)
                if not w:
                    continue
                tid = int(w.group(2))
                tasks.setdefault(tid, [None, w.group(1)])
                if not any(c[1] == tid for c in cur.values()):
                    ready.setdefault(tid, t_ms)
    # A segment's steal: its wall time less its charged runtime. The kernel emits no runtime
    # event when the task clock did not move at all, so a segment without one, of a thread
    # that has them elsewhere, was stolen whole; a thread with none at all (another pid
    # namespace's: its events name a pid this record does not know) has no measure.
    for r in runs:
        since, end, tid, cpu, charged, charges = r
        if tid == 0 or tid not in charged_tids:
            r[4] = None
        else:
            r[4] = max(0.0, end - since - charged) if charges else end - since
        del r[5]
    runs = [tuple(r) for r in runs]
    # Threads that never ran during the record have no tgid from a sample of their own.
    for tid, v in tasks.items():
        if v[0] is None:
            v[0] = tid if tid else 0
    return runs, waits, tasks, (first, last)


def parse_safepoints(path):
    """Stop-the-world pauses (start, end, name) in Unix ms; the log line is written as the
    pause ends, time-stamped to the ms."""
    import datetime

    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            m = SAFEPOINT.match(line)
            if not m:
                continue
            stamp, tz, name, total_ns = m.groups()
            t = datetime.datetime.strptime(stamp + tz, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000
            out.append((t - int(total_ns) / 1e6, t, name))
    return out


# Which output ends a window's interval and ranks the windows: its median ("p50_ms") or its
# last ("max_ms"); --by sets it.
KEY = "p50_ms"


def overlap(a0, a1, b0, b1):
    return max(0.0, min(a1, b1) - max(a0, b0))


def group_of(tid, tasks, job_pid, broker_pid):
    if tid == 0:
        return "idle"
    tgid, comm = tasks.get(tid, (tid, "?"))
    if tgid == job_pid:
        return "job"
    if tgid == broker_pid:
        return "broker"
    leader = tasks.get(tgid, (tgid, comm))[1]  # the process's main thread names it
    if leader.startswith("python"):
        return "live.py"
    if leader.startswith("perf"):
        return "perf"
    return "other"


def histogram(metrics_path, name):
    """(le, cumulative count) summed over series of `name` in a Prometheus text file."""
    acc = defaultdict(float)
    if not os.path.exists(metrics_path):
        return []
    with open(metrics_path) as f:
        for line in f:
            if line.startswith(name + "_bucket{"):
                le = re.search(r'le="([^"]+)"', line).group(1)
                acc[float("inf") if le == "+Inf" else float(le)] += float(line.rsplit(" ", 1)[1])
    return sorted(acc.items())


def quantile_bound(buckets, q):
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, c in buckets:
        if c >= q * total:
            return le
    return None


def fmt_bound(s):
    if s is None:
        return "—"
    return "> last bucket" if s == float("inf") else f"≤ {s * 1000:g} ms"


def profile(w, runs_by_cpu, waits, tasks, job_pid, broker_pid, pauses):
    a, b = w["close_ms"], w["close_ms"] + w[KEY]
    cpu = defaultdict(float)
    others = defaultdict(float)  # thread name -> ms, outside the job, broker and live.py
    stolen = 0.0
    for runs in runs_by_cpu.values():
        for s, e, tid, _, st in runs:
            if e > a and s < b:
                o = overlap(s, e, a, b)
                g = group_of(tid, tasks, job_pid, broker_pid)
                cpu[g] += o
                if g in ("other", "perf"):
                    others[tasks.get(tid, (0, "?"))[1]] += o
                stolen += (st or 0.0) * o / max(e - s, 1e-9)
    wait_sum = wait_max = 0.0
    for r, s, tid in waits:
        if s > a and r < b and tasks.get(tid, (None,))[0] == job_pid:
            o = overlap(r, s, a, b)
            wait_sum += o
            wait_max = max(wait_max, o)
    paused = sum(overlap(p0, p1, a, b) for p0, p1, _ in pauses)
    return {
        "job": cpu["job"],
        "broker": cpu["broker"],
        "live.py": cpu["live.py"],
        "other": cpu["other"] + cpu["perf"],
        "idle": cpu["idle"],
        "wait_sum": wait_sum,
        "wait_max": wait_max,
        "paused": paused,
        "stolen": stolen,
        "top_other": max(others.items(), key=lambda x: x[1], default=("—", 0.0)),
    }


def timeline(w, runs_by_cpu, waits, tasks, job_pid):
    """The job's threads in the window's interval: (offset ms from close, what)."""
    a, b = w["close_ms"], w["close_ms"] + w["max_ms"]
    ev = []
    for cpu, runs in runs_by_cpu.items():
        for s, e, tid, _, st in runs:
            if e > a and s < b and tasks.get(tid, (None,))[0] == job_pid:
                note = f" ({st:.2f} stolen)" if st is not None and st >= 0.1 else ""
                ev.append((max(s, a) - a, f"cpu{cpu} {tasks[tid][1]} runs {e - s:.2f} ms{note}"))
    for r, s, tid in waits:
        if s > a and r < b and tasks.get(tid, (None,))[0] == job_pid and s - r >= 1.0:
            ev.append((max(r, a) - a, f"{tasks[tid][1]} waits {s - r:.1f} ms for a core"))
    return sorted(ev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, action="append", help="a latency_tail.sh output (repeatable)")
    ap.add_argument("--slowest", type=int, default=3)
    ap.add_argument("--slow-ms", type=float, default=30.0, help="a slow window's median (or last) output")
    ap.add_argument("--by", choices=["median", "last"], default="median",
                    help="end each window's interval at its median output or its last")
    a = ap.parse_args()
    global KEY
    KEY = "p50_ms" if a.by == "median" else "max_ms"
    out_label = f"{a.by} output"
    print("# Latency tail profile\n")
    for d in a.dir:
        commit = open(os.path.join(d, "commit")).read().strip()
        dirty = "-dirty" if commit.endswith("-dirty") else ""
        print(f"- `{d}`: recorded with the scripts of {commit[:7]}{dirty}")
    print()
    print("Per run: every measured window's median-output latency; the p99 of all outputs;")
    print("the broker's stop-the-world pauses in the measured interval; the job's own")
    print("measure of window fired → hand-off to the producer (its histogram's bucket bounds).\n")
    print(f"| run | windows | p50 / p99 / max (ms) | windows' {out_label}s over the slow mark | broker pauses: n, sum, max (ms) | window fired → hand-off: p99, max |")
    print("| --- | --- | --- | --- | --- | --- |")
    profiled = []
    lives = []
    for d in a.dir:
        broker_pid = int(open(os.path.join(d, "broker-pid")).read())
        for live_path in sorted(glob.glob(os.path.join(d, "*.live.json"))):
            run = os.path.basename(live_path)[: -len(".live.json")]
            label = f"{os.path.basename(d.rstrip('/'))}/{run}" if len(a.dir) > 1 else run
            lives.append((label, live_path[: -len(".live.json")], broker_pid))
    for rid, base, broker_pid in lives:
        live_path = f"{base}.live.json"
        live = json.load(open(live_path))
        wins = live["windows"]
        pauses = parse_safepoints(f"{base}.safepoint.log")
        if wins:
            t0, t1 = wins[0]["close_ms"], wins[-1]["close_ms"] + wins[-1]["max_ms"]
            pauses = [p for p in pauses if p[1] > t0 and p[0] < t1]
        slow = sorted((w[KEY] for w in wins if w[KEY] > a.slow_ms), reverse=True)
        pause_ms = [p1 - p0 for p0, p1, _ in pauses]
        metrics = f"{base}.metrics"
        buckets = histogram(metrics, "flowcast_sink_window_to_send_seconds")
        fired, fired_max = quantile_bound(buckets, 0.99), quantile_bound(buckets, 1.0)
        print(
            f"| {rid} | {len(wins)} | {live['p50_ms']} / {live['p99_ms']} / {live['max_ms']} "
            f"| {', '.join(str(x) for x in slow) or 'none'} "
            f"| {len(pause_ms)}, {sum(pause_ms):.1f}, {max(pause_ms, default=0):.1f} "
            f"| {fmt_bound(fired)}, {fmt_bound(fired_max)} |"
        )
        if os.path.exists(f"{base}.sched.txt"):
            profiled.append((rid, base, broker_pid, wins, pauses))

    keys = ["job", "broker", "live.py", "other", "idle", "wait_sum", "paused", "stolen"]

    def share_table(slow, rest):
        """Per ms of interval, slow windows against the rest."""
        print("| windows | n | job | broker | live.py | other | idle | job's run-queue wait | broker paused | stolen |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, sel in [(f"{out_label} > {a.slow_ms:g} ms", slow), ("the rest", rest)]:
            if not sel:
                continue
            span = sum(w[KEY] for w, _ in sel) or 1
            s = {k: sum(p[k] for _, p in sel) / span for k in keys}
            print(
                f"| {label} | {len(sel)} | {s['job']:.2f} | {s['broker']:.2f} | {s['live.py']:.2f} | {s['other']:.2f} "
                f"| {s['idle']:.2f} | {s['wait_sum']:.2f} | {s['paused']:.2f} | {s['stolen']:.2f} |"
            )

    every = []  # (run, window, profile) of every profiled run
    for rid, base, broker_pid, wins, pauses in profiled:
        sched = f"{base}.sched.txt"
        offs = [float(x) for x in open(f"{base}.clock-offset").read().split()]
        job_pid = int(open(f"{base}.job-pid").read())
        runs, waits, tasks, (first, last) = parse_sched(sched, statistics.mean(offs))
        by_cpu = defaultdict(list)
        for r in runs:
            by_cpu[r[3]].append(r)
        inside = [w for w in wins if w["close_ms"] >= first and w["close_ms"] + w["max_ms"] <= last]
        if not inside:
            continue
        rows = [(w, profile(w, by_cpu, waits, tasks, job_pid, broker_pid, pauses)) for w in inside]
        rows.sort(key=lambda x: -x[0][KEY])
        every += [(rid, w, p) for w, p in rows]
        med = rows[len(rows) // 2]
        print(f"\n## {rid}: the slowest windows against the median one\n")
        print(f"{len(inside)} windows inside the scheduler record (clock offset drift "
              f"{abs(offs[-1] - offs[0]) * 1000:.2f} ms). Interval = close → {out_label}; "
              "CPU in ms summed over both cores.\n")
        steal_line = f"Stolen over the record ({(last - first) / 1000:.1f} s × 2 cores): "
        if any(r[4] is not None for r in runs):
            steal_line += f"{sum(r[4] or 0.0 for r in runs):.0f} ms from the threads' runtimes"
        else:
            steal_line += "not recorded (no sched_stat_runtime events)"
        before, after = (f"{base}.stat-{x}" for x in ("before", "after"))
        if os.path.exists(before) and os.path.exists(after):
            # /proc/stat's cpu line: the 8th value is steal, in USER_HZ (100) ticks.
            b0, a0 = (int(open(f).readline().split()[8]) for f in (before, after))
            steal_line += f", {(a0 - b0) * 10} ms by /proc/stat"
        print(steal_line + ".\n")
        print(f"| window | {out_label} (ms) | job CPU | broker CPU | live.py CPU | other | idle | job's run-queue wait: sum / longest | broker paused | stolen by the hypervisor |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, (w, p) in [(f"slowest {i + 1}", r) for i, r in enumerate(rows[: a.slowest])] + [("median", med)]:
            print(
                f"| {label} | {w[KEY]} | {p['job']:.1f} | {p['broker']:.1f} | {p['live.py']:.1f} "
                f"| {p['other']:.1f} | {p['idle']:.1f} | {p['wait_sum']:.1f} / {p['wait_max']:.1f} | {p['paused']:.1f} | {p['stolen']:.1f} |"
            )
        print("\nPer ms of interval (cores busy of 2; run-queue wait in thread-ms per ms):\n")
        share_table(
            [r for r in rows if r[0][KEY] > a.slow_ms],
            [r for r in rows if r[0][KEY] <= a.slow_ms],
        )
        w = rows[0][0]
        print(f"\nTimeline of the slowest window (close + ms; outputs {w['min_ms']}–{w['max_ms']} ms, "
              f"{out_label} {w[KEY]}; the job's runs over 0.2 ms and waits over 1 ms):\n")
        print("```")
        for t, what in timeline(w, by_cpu, waits, tasks, job_pid):
            if " runs " in what and float(what.split(" runs ")[1].split()[0]) < 0.2:
                continue
            print(f"{t:8.2f}  {what}")
        print("```")

    if not every:
        return
    slow = [(w, p) for _, w, p in every if w[KEY] > a.slow_ms]
    rest = [(w, p) for _, w, p in every if w[KEY] <= a.slow_ms]
    print(f"\n## Every profiled run: {len(every)} windows, {len(slow)} over {a.slow_ms:g} ms\n")
    print("Per ms of interval, as above:\n")
    share_table(slow, rest)
    print("\nWindows by the time the hypervisor took inside their interval (a longer interval also")
    print("holds more of it, which is why the per-ms rates above are the fairer comparison):\n")
    print(f"| stolen inside (ms) | windows | over {a.slow_ms:g} ms | their {out_label}: median (ms) |")
    print("| --- | --- | --- | --- |")
    for lo, hi in [(0, 5), (5, 10), (10, 20), (20, float("inf"))]:
        sel = [w for _, w, p in every if lo <= p["stolen"] < hi]
        if sel:
            med_out = statistics.median(w[KEY] for w in sel)
            print(f"| {lo}–{'' if hi == float('inf') else hi} | {len(sel)} "
                  f"| {sum(1 for w in sel if w[KEY] > a.slow_ms)} | {med_out:g} |")
    print("\nEach slow window (ms inside its interval; CPU summed over both cores):\n")
    print(f"| run | {out_label} | broker paused | stolen | other processes' CPU (most: thread, ms) | idle | job's longest run-queue wait |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for rid, w, p in sorted(every, key=lambda x: -x[1][KEY]):
        if w[KEY] > a.slow_ms:
            print(
                f"| {rid} | {w[KEY]} | {p['paused']:.1f} | {p['stolen']:.1f} "
                f"| {p['other']:.1f} ({p['top_other'][0]}, {p['top_other'][1]:.1f}) "
                f"| {p['idle']:.1f} | {p['wait_max']:.1f} |"
            )


if __name__ == "__main__":
    main()
