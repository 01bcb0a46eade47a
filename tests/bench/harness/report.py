"""Writes the benchmark's tables into BENCHMARKS.md, between `<!-- bench:begin -->` and
`<!-- bench:end -->` (the prose around them is kept; a missing file is created).

The section starts with where its numbers come from (commit, date, versions; harness/
versions.py wrote them when the run started), so a reader can tell when code changed since.
Repeated runs show the median and, in brackets, the range (min-max) over the rounds; the
ratios divide medians.

    python report.py --results DIR --out BENCHMARKS.md --readings N --devices D ...
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import statistics
import subprocess

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
METRICS = ("wall", "job", "tput", "tput_job", "cpu", "cores", "per_cpu", "pss", "busy_other")


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


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def job_secs(stdout_path):
    """The engine's own time for the job (after start-up), from its summary line."""
    lines = [x for x in read_text(stdout_path).splitlines() if x.strip()]
    m = re.search(r" in ([0-9.]+) ?s", lines[-1]) if lines else None
    return float(m.group(1)) if m else None


def one_drain(d, js, total):
    return {
        "wall": d["wall_s"],
        "job": js,
        "tput": total / d["wall_s"],
        "tput_job": total / js if js else None,
        "cpu": d["cpu_s"],
        "cores": d["cpu_s"] / d["wall_s"],
        "per_cpu": total / d["cpu_s"] if d["cpu_s"] else None,
        "pss": d["peak_pss_mib"],
        "busy_other": max(0.0, d.get("machine_busy_s", 0) - d["cpu_s"]),
    }


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def load_runs(res, total):
    """runs.txt (id engine workers model guarantee repeats, as run.sh ran them) joined with
    each round's drain result and the run's live result."""
    runs = []
    for line in read_text(f"{res}/runs.txt").splitlines():
        rid, engine, workers, model, guarantee, repeats = line.split()
        rounds = []
        for path in glob.glob(f"{res}/{rid}.r*.drain.json"):
            m = re.fullmatch(r"r(\d+)", os.path.basename(path)[len(rid) + 1 : -len(".drain.json")])
            d = load(path)
            if m and d:
                js = job_secs(path[: -len(".json")] + ".stdout")
                rounds.append((int(m.group(1)), one_drain(d, js, total), d))
        rounds.sort(key=lambda x: x[0])
        if not rounds:
            continue
        live = load(f"{res}/{rid}.live.json") or {}
        runs.append(
            {
                "id": rid,
                "engine": engine,
                "workers": int(workers),
                "model": model,
                "eo": guarantee == "exactly-once",
                "repeats": int(repeats),
                "rounds": [(k, m) for k, m, _ in rounds],
                "s": {k: stats([m[k] for _, m, _ in rounds]) for k in METRICS},
                "threads": rounds[0][2].get("threads", {}),
                "live": live,
                "p50": live.get("p50_ms"),
                "p99": live.get("p99_ms"),
            }
        )
    return runs


def fmt(x, digits=0):
    if x is None:
        return "–"
    if isinstance(x, float) and digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def cell(s, digits=0):
    """Median, and the range over the rounds when there were several."""
    if s is None:
        return "–"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def med(r, k):
    s = r["s"].get(k)
    return s["median"] if s else None


def ratio(a, b):
    return f"{a / b:.3g}×" if a is not None and b else "–"


def provenance_lines(p):
    o = []
    commit = p.get("commit", "?")
    dirty = " + uncommitted changes" if p.get("uncommitted") else ""
    o.append(
        f"**Tables from commit `{commit}`{dirty} (branch {p.get('branch', '?')}), run started"
        f" {p.get('started_utc', '?')} UTC.** Code changed after that commit is not measured"
        f" here (`git log {commit}..HEAD`)."
    )
    o.append("")
    bins = p.get("binaries", {})
    where = "built by this run from that commit" if p.get("built_here") else (
        "prebuilt (--bin-dir), not by this run: their source may differ from the commit above"
    )
    blist = ", ".join(
        f"{k} built {b.get('built_utc', '?')} UTC, sha256 {b.get('sha256', '?')}" for k, b in bins.items()
    )
    o.append(
        f"- Versions (read from the build files): Flowcast {p.get('flowcast', '?')} ({p.get('rustc', '?')});"
        f" binaries {where} ({blist}); Apache Flink {p.get('flink', '?')} (DataStream API, local"
        f" MiniCluster, flink-connector-kafka {p.get('flink_kafka', '?')}); Apache Spark"
        f" {p.get('spark', '?')} (PySpark Structured Streaming, {p.get('spark_kafka', '?')});"
        f" Apache Kafka {p.get('kafka', '?')} (one KRaft broker); {p.get('java', '?')};"
        f" Python {p.get('python', '?')}, harness client {p.get('harness_client', '?')}"
    )
    return o


def check_lines(check, drains_ended, late_injected):
    if not check:
        return ["- Outputs checked: no check result"]
    runs = check.get("runs", {})
    base = check.get("base", "?")
    o = [
        f"- Outputs checked {'equal' if check.get('equal') else 'NOT EQUAL'} to {base}'s, round 1 of"
        f" each run, from {check.get('started_utc', '?')} to {check.get('finished_utc', '?')} UTC,"
        f" after the last timed drain ({drains_ended} UTC): sequences as sets keyed by (device,"
        f" window end), floats within 1e-6; dead letters by (source partition, offset) and reason;"
        f" late records as multisets of the reading ({late_injected:,} late readings in the input);"
        f" any duplicate fails. Read:"
    ]
    for rid, c in runs.items():
        late = (
            f"{c['late']:,} late records ({c['late_duplicates']} duplicates)"
            if c.get("late") is not None
            else "no late-data output (Spark has none: not compared)"
        )
        note = ""
        if "not_emitted_past_final_watermark" in c:
            note = (
                f"; equal up to the final watermark, {c['not_emitted_past_final_watermark']:,}"
                " sequences past it never emitted (no end-of-input watermark in Spark)"
            )
        verdict = "reference" if rid == base else ("equal" if c.get("equal") else "DIFFERENT")
        o.append(
            f"  - {rid}: {verdict} — topics {', '.join(c.get('topics', []))} ({c.get('isolation')}):"
            f" {c.get('sequences', 0):,} sequences ({c.get('duplicates', 0)} duplicates),"
            f" {c.get('dead_letters', 0):,} dead letters ({c.get('dead_letter_duplicates', 0)}"
            f" duplicates), {late}{note}"
        )
    return o


def table(runs):
    o = [
        "| run | workers | runs | readings/s (wall) | readings/s (job) | CPU s | cores used"
        " | readings per CPU-s | peak memory MiB (PSS) | latency p50 ms | latency p99 ms"
        " | other CPU s on the machine (broker, harness, other users) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        s = r["s"]
        workers = {
            "limit": "1 (consumer)",
            "flowcast-cluster": f"{r['workers']} ({r['workers']} processes × 1)",
        }.get(r["engine"], str(r["workers"]))
        o.append(
            f"| {r['id']} | {workers} | {len(r['rounds'])} | {cell(s['tput'])} | {cell(s['tput_job'])}"
            f" | {cell(s['cpu'], 1)} | {cell(s['cores'], 2)} | {cell(s['per_cpu'])} | {cell(s['pss'])}"
            f" | {fmt(r['p50'])} | {fmt(r['p99'])} | {cell(s['busy_other'], 1)} |"
        )
    return o


def ratio_rows(by, pairs):
    o = []
    for a, b in pairs:
        f, r = by.get(a), by.get(b)
        if not f or not r:
            continue
        o.append(
            f"| {a} | {b} | {ratio(med(f, 'tput'), med(r, 'tput'))} | {ratio(med(f, 'tput_job'), med(r, 'tput_job'))}"
            f" | {ratio(med(f, 'per_cpu'), med(r, 'per_cpu'))} | {ratio(med(f, 'cpu'), med(r, 'cpu'))}"
            f" | {ratio(med(f, 'pss'), med(r, 'pss'))} | {ratio(f['p50'], r['p50'])} | {ratio(f['p99'], r['p99'])} |"
        )
    return o


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--dead", type=int, required=True)
    ap.add_argument("--late", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--checkpoint-secs", type=float, default=10)
    ap.add_argument("--live-rate", type=float, default=0)
    ap.add_argument("--live-devices", type=int, default=1000)
    ap.add_argument("--live-secs", type=float, default=0)
    ap.add_argument("--live-grace", type=float, default=0)
    ap.add_argument("--command", default="tests/bench/run.sh")
    a = ap.parse_args()
    res = a.results
    total = a.readings + a.dead + a.late

    runs = load_runs(res, total)
    round_order = [r["id"] for r in runs if r["repeats"] > 1]
    order = {"limit": 0, "flowcast": 1, "flowcast-cluster": 2, "flink": 4, "spark": 5}
    runs.sort(
        key=lambda r: (r["eo"], order.get(r["engine"], 9) + (r["model"] == "torchscript"), r["workers"])
    )
    by = {r["id"]: r for r in runs}
    check = load(f"{res}/check.json") or {}
    prov = load(f"{res}/provenance.json") or {}
    drains_ended = read_text(f"{res}/drains-ended.txt") or "?"
    now = datetime.datetime.now(datetime.timezone.utc)

    o = provenance_lines(prov)
    o.append(f"- Command: `{a.command}` (report written {now:%Y-%m-%d %H:%M} UTC)")
    o.append(f"- Machine: {machine()}; CPU used outside the engine during each drain in the last column")
    fill = " ".join(x.strip() for x in read_text(f"{res}/fill.txt").splitlines() if x.strip())
    o.append(
        f"- Input: topic DHT11-bench, 3 partitions, {a.readings:,} readings of {a.devices:,}"
        f" devices + {a.dead:,} records to dead-letter + {a.late:,} late readings ({fill})"
    )
    once = [r["id"] for r in runs if r["repeats"] == 1]
    o.append(
        f"- Repeats: {a.repeats} rounds, interleaved (each round: {', '.join(round_order) or '–'}), each"
        f" run of a round on fresh output topics; median and (min–max) over the rounds. Once:"
        f" {', '.join(once) or '–'}. Latency: one live run per row."
    )
    o.extend(check_lines(check, drains_ended, a.late))
    o.append("")
    alo = [r for r in runs if not r["eo"]]
    eo = [r for r in runs if r["eo"]]
    o.append("Drains, outputs at least once (limit: the bare consumer loop, no output):")
    o.append("")
    o.extend(table(alo))
    o.append("")
    if eo:
        o.append(
            f"Drains, every Kafka output exactly-once, checkpoints every {a.checkpoint_secs:g} s"
            " (Flowcast: exactly-once delivery of outputs, dead letters and late data; Flink:"
            " KafkaSink EXACTLY_ONCE on all three; outputs read read_committed; latency = when a"
            " read_committed reader first receives the output):"
        )
        o.append("")
        o.extend(table(eo))
        o.append("")
    o.append(
        "Ratios of medians, run ÷ other (throughput and per CPU-s: > 1 is the run higher;"
        " CPU, memory, latency: < 1 is the run lower):"
    )
    o.append("")
    o.append("| run | ÷ | throughput (wall) | throughput (job) | per CPU-s | CPU s | memory | latency p50 | latency p99 |")
    o.append("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    pairs = []
    for r in runs:
        if r["engine"] == "flowcast" and not r["eo"] and r["model"] == "off":
            w = r["workers"]
            pairs += [(r["id"], "limit"), (r["id"], f"flink-w{w}"), (r["id"], f"spark-w{w}")]
    for r in eo:
        if r["engine"] == "flowcast":
            w = r["workers"]
            pairs += [(r["id"], f"flink-eo-w{w}"), (r["id"], f"flowcast-w{w}")]
        elif r["engine"] == "flink":
            pairs.append((r["id"], f"flink-w{r['workers']}"))
    for r in alo:
        if r["engine"] == "flowcast" and r["model"] == "torchscript":
            pairs.append((r["id"], f"flowcast-w{r['workers']}"))
        if r["engine"] == "flowcast-cluster":
            pairs += [(r["id"], f"flowcast-w{r['workers']}"), (r["id"], "flowcast-w1")]
    o.extend(ratio_rows(by, pairs))
    o.append("")
    scale = [r for r in alo if r["engine"].startswith("flowcast") and r["model"] == "off"]
    if len(scale) > 1:
        b = med(scale[0], "tput")

        def name(r):
            w = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
            return f"{w} in {r['workers']} processes" if r["engine"] == "flowcast-cluster" else w

        o.append(
            "Flowcast scaling (model off, medians of readings/s (wall); per worker = divided by"
            " the workers): "
            + ", ".join(
                f"{name(r)} {fmt(med(r, 'tput'))}/s ({med(r, 'tput') / b:.2f}×; per worker"
                f" {fmt(med(r, 'tput') / r['workers'])}/s; {fmt(med(r, 'per_cpu'))} per CPU-s,"
                f" {med(r, 'cores'):.2f} cores)"
                for r in scale
            )
        )
        o.append("")
    o.append("Each round's readings/s (wall), in round order:")
    o.append("")
    for r in runs:
        o.append(f"- {r['id']}: " + ", ".join(f"r{k} {fmt(m['tput'])}" for k, m in r["rounds"]))
    o.append("")
    if a.live_secs:
        o.append(
            f"Latency: paced live input, {a.live_rate:,.0f} readings/s of {a.live_devices:,} devices (a"
            f" 30-minute window closes every {a.live_devices / a.live_rate * 7.5:.2f} s of wall time),"
            f" measured over {a.live_secs:.0f} s starting {a.live_grace:.0f} s after the first output,"
            " from the broker's log-append time of the input that closes a window to the output's"
            " log-append time (exactly-once rows: to its first receipt by a read_committed reader);"
            " per run: windows measured, outputs, median latency of the first and last measured"
            " window (rising = falling behind):"
        )
        o.append("")
        for r in runs:
            if r["engine"] == "limit":
                continue
            lv = r["live"]
            if lv:
                o.append(
                    f"- {r['id']}: {lv.get('windows_measured')} windows, {lv.get('outputs_seen', 0):,}"
                    f"/{lv.get('outputs_expected', 0):,} outputs, min {lv.get('min_ms')} ms, max"
                    f" {lv.get('max_ms')} ms, first/last window p50 {lv.get('first_window_p50_ms')}"
                    f" → {lv.get('last_window_p50_ms')} ms"
                )
            else:
                o.append(f"- {r['id']}: not measured")
        o.append("")
    o.append("CPU by thread during each drain (round 1; top 5, share of the run's CPU seconds):")
    o.append("")
    for r in runs:
        tot = r["rounds"][0][1]["cpu"] or 1
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
