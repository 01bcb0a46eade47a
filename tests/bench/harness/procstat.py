"""Runs one engine and measures it the same way for every engine: wall time, CPU seconds
and peak memory of its whole process tree (a JVM, or Spark's JVM plus its Python workers),
and CPU per thread name, the coarse profile the report quotes.

    python procstat.py --out RESULT.json [--stop-file F] -- COMMAND ARGS...

CPU = the larger of (a) what wait4 reports for the command and every descendant it
reaped, and (b) the sum over every process seen of its last sampled utime + stime
(descendants that are never reaped into the command's account, e.g. daemons).
Memory = the peak over samples of the summed PSS (proportional set size, so pages shared by
forked workers count once) of the tree; RSS beside it. Sampled every 100 ms.
If --stop-file is given, the command is stopped (SIGINT, then SIGTERM, then SIGKILL) once
that file exists: streaming runs are ended by the harness.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def stat_cpu(path):
    with open(path) as f:
        s = f.read()
    name = s[s.index("(") + 1 : s.rindex(")")]
    rest = s[s.rindex(")") + 2 :].split()
    return name, (int(rest[11]) + int(rest[12])) / TICK


def pss_rss_kb(pid):
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * PAGE_KB
                pss = rss
        except OSError:
            pass
    return pss, rss


def thread_group(name):
    """Thread names without instance numbers: `timely:work-1` -> `timely:work-#`."""
    return re.sub(r"\d+", "#", name)


def system_busy_s():
    """CPU seconds the whole machine has spent busy (not idle or iowait) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file")
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd

    started = time.monotonic()
    busy0 = system_busy_s()
    child = subprocess.Popen(cmd, start_new_session=True)
    proc_cpu = {}  # pid -> (name, cpu s)
    thread_cpu = {}  # (pid, tid) -> (process name, thread name, cpu s)
    peak_pss = peak_rss = 0
    stop_sent = None
    status = None
    while status is None:
        for pid in tree(child.pid):
            try:
                proc_cpu[pid] = stat_cpu(f"/proc/{pid}/stat")
                for tid in os.listdir(f"/proc/{pid}/task"):
                    tname, tcpu = stat_cpu(f"/proc/{pid}/task/{tid}/stat")
                    thread_cpu[(pid, int(tid))] = (proc_cpu[pid][0], tname, tcpu)
            except (OSError, ValueError):
                continue
        pss = rss = 0
        for pid in list(proc_cpu):
            p, r = pss_rss_kb(pid)
            pss += p
            rss += r
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        if a.stop_file and os.path.exists(a.stop_file):
            now = time.monotonic()
            if stop_sent is None:
                stop_sent = now
                os.killpg(child.pid, signal.SIGINT)
            elif now - stop_sent > 30:
                os.killpg(child.pid, signal.SIGKILL)
            elif now - stop_sent > 15:
                os.killpg(child.pid, signal.SIGTERM)
        time.sleep(a.interval)
        pid, status_, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == child.pid:
            status = status_
            rusage_cpu = usage.ru_utime + usage.ru_stime
    wall = time.monotonic() - started
    machine_busy = system_busy_s() - busy0
    # Whatever the command left behind in its session is ended too.
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    sampled_cpu = sum(c for _, c in proc_cpu.values())
    by_thread = {}
    for proc, tname, c in thread_cpu.values():
        k = f"{proc}/{thread_group(tname)}"
        by_thread[k] = by_thread.get(k, 0.0) + c
    result = {
        "cmd": cmd,
        "exit": os.waitstatus_to_exitcode(status),
        "stopped": stop_sent is not None,
        "wall_s": round(wall, 3),
        "cpu_s": round(max(rusage_cpu, sampled_cpu), 2),
        "cpu_rusage_s": round(rusage_cpu, 2),
        "cpu_sampled_s": round(sampled_cpu, 2),
        # Everything else the machine did meanwhile: the broker, the harness, other users.
        "machine_busy_s": round(machine_busy, 2),
        "peak_pss_mib": round(peak_pss / 1024, 1),
        "peak_rss_mib": round(peak_rss / 1024, 1),
        "processes": len(proc_cpu),
        "threads": dict(sorted(by_thread.items(), key=lambda kv: -kv[1])[:12]),
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    sys.exit(0 if result["exit"] == 0 or stop_sent is not None else 1)


if __name__ == "__main__":
    main()
