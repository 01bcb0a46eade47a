"""Input the harness adds to the seeded readings of `flowcast-fill`: records every engine
must dead-letter, one of each kind a DHT11 producer gets wrong, appended to every
partition (they carry no usable event time, so where they sit does not move a watermark).

    python inputs.py bad --brokers B --topic T --count 1200
"""

import argparse

from confluent_kafka import Producer

# (value, Flowcast's reason). Kinds where Spark's from_json cannot tell (a number as the
# device id) are left out; tests/bench/spark/job.py says why.
BAD = [
    (b"not json", "malformed"),
    (b"[1,2]", "malformed"),
    (b'{"time": 1700000000, "temperature": 21.0, "humidity": 45.0} x', "malformed"),
    (b'{"time": 1700000000, "temperature": "warm", "humidity": 45.0}', "malformed"),
    (b'{"time": 1700000000, "temperature": NaN, "humidity": 45.0}', "malformed"),
    (b'{"time": 1700000000, "humidity": 45.0}', "missing_field"),
    (b'{"time": 1700000000, "temperature": 21.0, "humidity": null}', "missing_field"),
    (b'{"time": 1700000000, "temperature": "NaN", "humidity": 45.0}', "not_finite"),
    (b'{"time": 1700000000, "temperature": 51.0, "humidity": 45.0}', "out_of_range"),
    (b'{"time": 1700000000, "temperature": 21.0, "humidity": 19.9}', "out_of_range"),
    (b'{"time": -5, "temperature": 21.0, "humidity": 45.0}', "out_of_range"),
]


def bad(brokers: str, topic: str, count: int, partitions: int) -> None:
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all"})
    for i in range(count):
        value, _ = BAD[i % len(BAD)]
        p.produce(topic, value=value, key=f"dev-bad-{i % 97:02d}", partition=i % partitions)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(60) != 0:
        raise SystemExit("inputs: could not deliver every bad record")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bad")
    b.add_argument("--brokers", required=True)
    b.add_argument("--topic", required=True)
    b.add_argument("--count", type=int, default=1100)
    b.add_argument("--partitions", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "bad":
        bad(a.brokers, a.topic, a.count, a.partitions)
        print(f"inputs: {a.count} records to dead-letter appended to {a.topic}")


if __name__ == "__main__":
    main()
