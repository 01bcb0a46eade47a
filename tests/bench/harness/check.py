"""Checks that every engine produced the same output as the first run (Flowcast, model off)
before any time counts: sequences as sets keyed by (device, window end), values within
float tolerance, no duplicates; dead letters as sets of (source partition, offset, reason).

Spark cannot emit windows past its final watermark (no end-of-input watermark in a bounded
Structured Streaming run): for runs marked `upto-watermark`, the comparison covers window
ends up to max event time - out-of-orderness, and the windows past it are counted.

    python check.py --brokers B --input T --result R.json NAME=OUT,DEAD[,upto-watermark] ...
"""

import argparse
import json
import sys

import kafka_io


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--out-of-orderness-ms", type=int, default=60_000)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()

    runs = []
    for spec in a.runs:
        name, rest = spec.split("=", 1)
        parts = rest.split(",")
        runs.append((name, parts[0], parts[1], len(parts) > 2 and parts[2] == "upto-watermark"))

    final_watermark = kafka_io.max_event_time_ms(a.brokers, a.input) - a.out_of_orderness_ms
    base_name, base_out, base_dead, _ = runs[0]
    base, base_dup = kafka_io.sequences(a.brokers, base_out)
    base_dead_set = kafka_io.dead_letters(a.brokers, base_dead)
    report = {
        "base": base_name,
        "sequences": len(base),
        "dead_letters": len(base_dead_set),
        "final_watermark_ms": final_watermark,
        "runs": {},
    }
    ok = base_dup == 0 and len(base) > 0
    report["runs"][base_name] = {"equal": ok, "duplicates": base_dup}
    for name, out, dead, upto in runs[1:]:
        got, dup = kafka_io.sequences(a.brokers, out)
        missing, extra, differ = kafka_io.compare(base, got, final_watermark if upto else None)
        dl = kafka_io.dead_letters(a.brokers, dead)
        dead_diff = sorted(
            set(k for k in base_dead_set if base_dead_set[k] != dl.get(k)) | (dl.keys() - base_dead_set.keys())
        )
        equal = not missing and not extra and not differ and dup == 0 and not dead_diff
        r = {
            "equal": equal,
            "sequences": len(got),
            "duplicates": dup,
            "missing": len(missing),
            "extra": len(extra),
            "differ": len(differ),
            "dead_letters": len(dl),
            "dead_letter_differences": len(dead_diff),
            "examples": [str(x) for x in (missing[:3] + extra[:3] + differ[:3] + dead_diff[:3])],
        }
        if upto:
            r["compared_up_to_ms"] = final_watermark
            r["not_emitted_past_final_watermark"] = sum(1 for k in base if k[1] > final_watermark)
        report["runs"][name] = r
        ok = ok and equal
        print(f"check: {name}: {'equal' if equal else 'DIFFERENT'} {json.dumps(r)}")
    report["equal"] = ok
    with open(a.result, "w") as f:
        json.dump(report, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
