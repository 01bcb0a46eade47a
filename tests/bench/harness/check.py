"""Checks that every engine produced the same output as the first run (Flowcast, model off),
after the timed drains and before any number is reported:

- sequences as sets keyed by (device, window end), values within float tolerance;
- dead letters as sets keyed by (source partition, offset), with the same reason;
- late records (each engine's late-data topic) as multisets of the reading;

and in each of the three, duplicates counted (a key seen again), not folded away: any
duplicate fails the check. Runs marked `read-committed` (exactly-once outputs) are read
with isolation.level=read_committed, so only committed transactions count.

Spark cannot emit windows past its final watermark (no end-of-input watermark in a bounded
Structured Streaming run): for runs marked `upto-watermark`, the comparison covers window
ends up to max event time - out-of-orderness, and the windows past it are counted. Spark
has no late-data output: its LATE is `-`, and nothing is compared for it.

The result (R.json) says what was read: each run's topics, record counts and duplicates,
and when (UTC).

    python check.py --brokers B --input T --result R.json \\
        NAME=OUT,DEAD,LATE[,upto-watermark][,read-committed] ...
"""

import argparse
import datetime
import json
import sys

import kafka_io


def parse_spec(spec: str) -> dict:
    name, rest = spec.split("=", 1)
    parts = rest.split(",")
    if len(parts) < 3:
        raise SystemExit(f"check: {spec}: want NAME=OUT,DEAD,LATE[,flags]")
    flags = set(parts[3:])
    unknown = flags - {"upto-watermark", "read-committed"}
    if unknown:
        raise SystemExit(f"check: {spec}: unknown flags {sorted(unknown)}")
    return {
        "name": name,
        "out": parts[0],
        "dead": parts[1],
        "late": None if parts[2] == "-" else parts[2],
        "upto": "upto-watermark" in flags,
        "committed": "read-committed" in flags,
    }


def read_run(brokers: str, run: dict) -> dict:
    c = run["committed"]
    seqs, seq_dup = kafka_io.sequences(brokers, run["out"], c)
    dead, dead_dup = kafka_io.dead_letters(brokers, run["dead"], c)
    late = kafka_io.late_records(brokers, run["late"], c) if run["late"] else None
    return {"seqs": seqs, "seq_dup": seq_dup, "dead": dead, "dead_dup": dead_dup, "late": late}


def summary(run: dict, got: dict) -> dict:
    """What was read: topics, isolation, record counts and duplicates."""
    late = got["late"]
    return {
        "topics": [t for t in (run["out"], run["dead"], run["late"]) if t],
        "isolation": "read_committed" if run["committed"] else "read_uncommitted",
        "sequences": len(got["seqs"]) + got["seq_dup"],
        "duplicates": got["seq_dup"],
        "dead_letters": len(got["dead"]) + got["dead_dup"],
        "dead_letter_duplicates": got["dead_dup"],
        "late": None if late is None else sum(late.values()),
        "late_duplicates": None if late is None else sum(n - 1 for n in late.values() if n > 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--out-of-orderness-ms", type=int, default=60_000)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    runs = [parse_spec(s) for s in a.runs]
    started = datetime.datetime.now(datetime.timezone.utc)

    final_watermark = kafka_io.max_event_time_ms(a.brokers, a.input) - a.out_of_orderness_ms
    base_run = runs[0]
    if base_run["late"] is None or base_run["upto"]:
        raise SystemExit("check: the first run (the reference) must have every output")
    base = read_run(a.brokers, base_run)
    b = summary(base_run, base)
    b["equal"] = (
        b["duplicates"] == 0
        and b["dead_letter_duplicates"] == 0
        and b["late_duplicates"] == 0
        and b["sequences"] > 0
    )
    ok = b["equal"]
    report = {
        "base": base_run["name"],
        "sequences": len(base["seqs"]),
        "dead_letters": len(base["dead"]),
        "late": sum(base["late"].values()),
        "final_watermark_ms": final_watermark,
        "runs": {base_run["name"]: b},
    }
    print(f"check: {base_run['name']} (reference): {json.dumps(b)}")
    for run in runs[1:]:
        got = read_run(a.brokers, run)
        r = summary(run, got)
        upto = final_watermark if run["upto"] else None
        missing, extra, differ = kafka_io.compare(base["seqs"], got["seqs"], upto)
        dl = got["dead"]
        dead_diff = sorted(
            set(k for k in base["dead"] if base["dead"][k] != dl.get(k))
            | (dl.keys() - base["dead"].keys())
        )
        late_diff = []
        if got["late"] is not None:
            late_diff = sorted((base["late"] - got["late"]) + (got["late"] - base["late"]))
        dups = r["duplicates"] + r["dead_letter_duplicates"] + (r["late_duplicates"] or 0)
        equal = not (missing or extra or differ or dead_diff or late_diff or dups)
        r.update(
            {
                "equal": equal,
                "missing": len(missing),
                "extra": len(extra),
                "differ": len(differ),
                "dead_letter_differences": len(dead_diff),
                "late_differences": None if got["late"] is None else len(late_diff),
                "examples": [
                    str(x)
                    for x in (missing[:3] + extra[:3] + differ[:3] + dead_diff[:3] + late_diff[:3])
                ],
            }
        )
        if run["upto"]:
            r["compared_up_to_ms"] = final_watermark
            r["not_emitted_past_final_watermark"] = sum(
                1 for k in base["seqs"] if k[1] > final_watermark
            )
        report["runs"][run["name"]] = r
        ok = ok and equal
        print(f"check: {run['name']}: {'equal' if equal else 'DIFFERENT'} {json.dumps(r)}")
    report["equal"] = ok
    report["started_utc"] = started.strftime("%Y-%m-%d %H:%M:%S")
    report["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    with open(a.result, "w") as f:
        json.dump(report, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
