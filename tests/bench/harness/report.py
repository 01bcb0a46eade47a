"""Writes the benchmark's tables into BENCHMARKS.md, between `<!-- bench:begin -->` and
`<!-- bench:end -->` (the prose around them is kept; a missing file is created).

    python report.py --results DIR --out BENCHMARKS.md --readings N --devices D ...
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def sh(cmd):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine():
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, Linux {platform.release()}"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def job_secs(stdout_path):
    """The engine's own time for the job (after start-up), from its summary line."""
    try:
        with open(stdout_path) as f:
            lines = [x for x in f.read().splitlines() if x.strip()]
    except OSError:
        return None
    m = re.search(r" in ([0-9.]+) ?s", lines[-1]) if lines else None
    return float(m.group(1)) if m else None


def fmt(x, digits=0):
    if x is None:
        return "–"
    if isinstance(x, float) and digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    return f"{a / b:.3g}×" if a is not None and b else "–"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--dead", type=int, required=True)
    ap.add_argument("--live-rate", type=float, default=0)
    ap.add_argument("--live-devices", type=int, default=1000)
    ap.add_argument("--live-secs", type=float, default=0)
    ap.add_argument("--live-grace", type=float, default=0)
    ap.add_argument("--flink-version", default="?")
    ap.add_argument("--spark-version", default="?")
    ap.add_argument("--command", default="tests/bench/run.sh")
    a = ap.parse_args()
    res = a.results
    total = a.readings + a.dead

    runs = []
    for path in sorted(glob.glob(f"{res}/*.drain.json")):
        rid = os.path.basename(path)[: -len(".drain.json")]
        d = load(path)
        live = load(f"{res}/{rid}.live.json") or {}
        js = job_secs(f"{res}/{rid}.drain.stdout")
        engine = rid.split("-w")[0]
        workers = int(rid.rsplit("-w", 1)[1])
        runs.append(
            {
                "id": rid,
                "engine": engine,
                "workers": workers,
                "wall": d["wall_s"],
                "job": js,
                "tput": total / d["wall_s"],
                "tput_job": total / js if js else None,
                "cpu": d["cpu_s"],
                "cores": d["cpu_s"] / d["wall_s"],
                "per_cpu": total / d["cpu_s"] if d["cpu_s"] else None,
                "pss": d["peak_pss_mib"],
                "rss": d["peak_rss_mib"],
                "busy_other": max(0.0, d.get("machine_busy_s", 0) - d["cpu_s"]),
                "p50": live.get("p50_ms"),
                "p99": live.get("p99_ms"),
                "live": live,
                "threads": d.get("threads", {}),
            }
        )
    order = {"flowcast": 0, "flowcast-lstm": 1, "flink": 2, "spark": 3}
    runs.sort(key=lambda r: (order.get(r["engine"], 9), r["workers"]))
    by = {r["id"]: r for r in runs}
    check = load(f"{res}/check.json") or {}

    o = []
    o.append(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: `{a.command}`")
    o.append("")
    o.append(f"- Machine: {machine()}; CPU used outside the engine during each drain in the last column")
    o.append(
        f"- Versions: Flowcast {sh('git -C ' + os.path.dirname(__file__) + ' rev-parse --short HEAD')}"
        f" ({sh('rustc --version')}), Apache Flink {a.flink_version} (DataStream API, local"
        f" MiniCluster, flink-connector-kafka 5.0.0-2.2), Apache Spark {a.spark_version}"
        f" (PySpark Structured Streaming, spark-sql-kafka-0-10_2.13), Apache Kafka 4.3.1"
        f" (one KRaft broker), {sh('java -version 2>&1 | head -n1')}, Python {platform.python_version()}"
    )
    try:
        with open(f"{res}/fill.txt") as f:
            fill = " ".join(x.strip() for x in f if x.strip())
    except OSError:
        fill = ""
    o.append(
        f"- Input: topic DHT11-bench, 3 partitions, {a.readings:,} readings of {a.devices:,}"
        f" devices + {a.dead:,} records to dead-letter ({fill})"
    )
    if check:
        notes = []
        for rid, c in check.get("runs", {}).items():
            if "not_emitted_past_final_watermark" in c:
                notes.append(
                    f"{rid}: equal up to the final watermark; {c['not_emitted_past_final_watermark']:,}"
                    " sequences past it never emitted (no end-of-input watermark in Spark)"
                )
        o.append(
            f"- Outputs checked equal before timing: {'yes' if check.get('equal') else 'NO'} —"
            f" {check.get('sequences', 0):,} sequences and {check.get('dead_letters', 0):,} dead"
            f" letters per engine, as sets keyed by (device, window end), floats within 1e-6"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    o.append("")
    o.append(
        "| run | workers | wall s | readings/s (wall) | readings/s (job) | CPU s | cores used"
        " | readings per CPU-s | peak memory MiB (PSS) | latency p50 ms | latency p99 ms | other CPU s on the machine (broker, harness, other users) |"
    )
    o.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        o.append(
            f"| {r['id']} | {r['workers']} | {fmt(r['wall'], 1)} | {fmt(r['tput'])} | {fmt(r['tput_job'])}"
            f" | {fmt(r['cpu'], 1)} | {fmt(r['cores'], 2)} | {fmt(r['per_cpu'])} | {fmt(r['pss'])}"
            f" | {fmt(r['p50'])} | {fmt(r['p99'])} | {fmt(r['busy_other'], 1)} |"
        )
    o.append("")
    o.append("Flowcast ÷ peer at the same parallelism (throughput: > 1 is Flowcast faster; CPU, memory, latency: < 1 is Flowcast lower):")
    o.append("")
    o.append("| peer | throughput (wall) | throughput (job) | per CPU-s | CPU s | memory | latency p50 | latency p99 |")
    o.append("|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        if r["engine"] not in ("flink", "spark"):
            continue
        f = by.get(f"flowcast-w{r['workers']}")
        if not f:
            continue
        o.append(
            f"| {r['id']} | {ratio(f['tput'], r['tput'])} | {ratio(f['tput_job'], r['tput_job'])}"
            f" | {ratio(f['per_cpu'], r['per_cpu'])} | {ratio(f['cpu'], r['cpu'])} | {ratio(f['pss'], r['pss'])}"
            f" | {ratio(f['p50'], r['p50'])} | {ratio(f['p99'], r['p99'])} |"
        )
    o.append("")
    scale = [(r["workers"], r) for r in runs if r["engine"] == "flowcast"]
    if len(scale) > 1:
        base = scale[0][1]
        o.append(
            "Flowcast scaling (model off): "
            + ", ".join(
                f"{w} worker{'s' if w > 1 else ''} {fmt(r['tput'])}/s ({r['tput'] / base['tput']:.2f}×)"
                for w, r in scale
            )
        )
        o.append("")
    if a.live_secs:
        o.append(
            f"Latency: paced live input, {a.live_rate:,.0f} readings/s of {a.live_devices:,} devices (a 30-minute"
            f" window closes every {a.live_devices / a.live_rate * 7.5:.2f} s of wall time), measured over"
            f" {a.live_secs:.0f} s starting {a.live_grace:.0f} s after the first output; per run:"
            " windows measured, outputs, median latency of the first and last measured window"
            " (rising = falling behind):"
        )
        o.append("")
        for r in runs:
            lv = r["live"]
            if lv:
                o.append(
                    f"- {r['id']}: {lv.get('windows_measured')} windows, {lv.get('outputs_seen'):,}"
                    f"/{lv.get('outputs_expected'):,} outputs, min {lv.get('min_ms')} ms, max"
                    f" {lv.get('max_ms')} ms, first/last window p50 {lv.get('first_window_p50_ms')}"
                    f" → {lv.get('last_window_p50_ms')} ms"
                )
            else:
                o.append(f"- {r['id']}: not measured")
        o.append("")
    o.append("CPU by thread during each drain (top 5, share of the run's CPU seconds):")
    o.append("")
    for r in runs:
        tot = r["cpu"] or 1
        top = list(r["threads"].items())[:5]
        o.append(f"- {r['id']}: " + ", ".join(f"`{k}` {100 * v / tot:.0f}%" for k, v in top))
    block = "\n".join(o)

    text = ""
    if os.path.exists(a.out):
        with open(a.out) as f:
            text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = f"{head}{BEGIN}\n{block}\n{END}{tail}"
    else:
        text = (text or "# Benchmarks\n") + f"\n{BEGIN}\n{block}\n{END}\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(block)


if __name__ == "__main__":
    main()
