"""Input the harness adds to the seeded readings of `flowcast-fill`:

- `bad`: records every engine must dead-letter, one of each kind a DHT11 producer gets
  wrong, appended to every partition (they carry no usable event time, so where they sit
  does not move a watermark);
- `late`: valid readings two hours of event time before the fill's first reading, appended
  to every partition, so every engine with a late-data output must route them there (by
  then each partition's watermark is past their windows). They belong to devices of their
  own (`dev-late-NN`) that never get 60 windows, so no engine's sequences change;
- `txn-warmup`: one committed transaction, so that the broker's transaction state topic
  and coordinator exist before the first timed exactly-once drain (on a fresh broker the
  first transactional producer waits for them).

    python inputs.py bad --brokers B --topic T --count 1200
    python inputs.py late --brokers B --topic T --count 30
    python inputs.py txn-warmup --brokers B --topic T
"""

import argparse

from confluent_kafka import Producer

# flowcast-fill's first event time (its default --start-time).
FILL_BASE_S = 1_700_000_000 - 1_700_000_000 % 86_400

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


def late(brokers: str, topic: str, count: int, partitions: int) -> None:
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all"})
    for i in range(count):
        device = f"dev-late-{i % 7:02d}"
        t = FILL_BASE_S - 7200 + i * 11.0
        value = (
            f'{{"time":{t:.1f},"temperature":{20.0 + i % 9 * 0.5:.2f},'
            f'"humidity":{40.0 + i % 13 * 0.25:.2f},"device":"{device}"}}'
        )
        p.produce(topic, value=value, key=device, partition=i % partitions)
    if p.flush(60) != 0:
        raise SystemExit("inputs: could not deliver every late reading")


def txn_warmup(brokers: str, topic: str) -> None:
    p = Producer({"bootstrap.servers": brokers, "transactional.id": f"flowcast-bench-warmup-{topic}"})
    p.init_transactions(120)
    p.begin_transaction()
    p.produce(topic, value=b"warm-up")
    p.commit_transaction(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bad")
    b.add_argument("--brokers", required=True)
    b.add_argument("--topic", required=True)
    b.add_argument("--count", type=int, default=1100)
    b.add_argument("--partitions", type=int, default=3)
    lt = sub.add_parser("late")
    lt.add_argument("--brokers", required=True)
    lt.add_argument("--topic", required=True)
    lt.add_argument("--count", type=int, default=30)
    lt.add_argument("--partitions", type=int, default=3)
    w = sub.add_parser("txn-warmup")
    w.add_argument("--brokers", required=True)
    w.add_argument("--topic", required=True)
    a = ap.parse_args()
    if a.cmd == "bad":
        bad(a.brokers, a.topic, a.count, a.partitions)
        print(f"inputs: {a.count} records to dead-letter appended to {a.topic}")
    elif a.cmd == "late":
        late(a.brokers, a.topic, a.count, a.partitions)
        print(f"inputs: {a.count} late readings appended to {a.topic}")
    else:
        txn_warmup(a.brokers, a.topic)
        print(f"inputs: one transaction committed to {a.topic} (transaction coordinator ready)")


if __name__ == "__main__":
    main()
