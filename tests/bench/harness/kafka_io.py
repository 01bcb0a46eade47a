"""Reading whole topics back, and the checks the harness makes on them: the engines'
outputs equal (as sets keyed by device + window end, within float tolerance), their dead
letters equal (as sets of source partition, offset and reason) and their late records equal
(as multisets of device, event time and values), each with its duplicates counted.

Outputs of exactly-once runs are read with `committed=True` (isolation.level =
read_committed): only what committed transactions hold; the others read everything
(read_uncommitted; for a topic no transaction wrote, the two are the same)."""

import json
import math
from collections import Counter

from confluent_kafka import Consumer, KafkaError, TopicPartition

TIMESTAMP_LOG_APPEND_TIME = 2


def consumer(brokers: str, committed: bool = False) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "flowcast-bench-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "fetch.max.bytes": 104857600,
            "max.partition.fetch.bytes": 16777216,
        }
    )


def read_topic(brokers: str, topic: str, tail: int | None = None, committed: bool = False):
    """Every message of `topic` (or the last `tail` of each partition), as
    (partition, offset, key, value, headers, (timestamp type, ms)). A partition is read
    to its end offset at the start or to its end-of-partition event, whichever comes first:
    read_committed stops at the last stable offset, and a transactional partition ends in
    a commit marker no message carries."""
    c = consumer(brokers, committed)
    try:
        meta = c.list_topics(topic, timeout=30).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"{topic}: {meta.error}")
        parts = []
        remaining = {}
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            start = lo if tail is None else max(lo, hi - tail)
            if hi > start:
                parts.append(TopicPartition(topic, p, start))
                remaining[p] = hi
        if not parts:
            return []
        c.assign(parts)
        out = []
        while remaining:
            for m in c.consume(10000, timeout=5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        remaining.pop(m.partition(), None)
                    continue
                p = m.partition()
                if p not in remaining:
                    continue
                out.append((p, m.offset(), m.key(), m.value(), m.headers(), m.timestamp()))
                if m.offset() + 1 >= remaining[p]:
                    del remaining[p]
        return out
    finally:
        c.close()


def sequences(brokers: str, topic: str, committed: bool = False):
    """(device, window_end) -> (record, Kafka timestamp ms); and how many duplicates."""
    got = {}
    duplicates = 0
    for _, _, _, value, _, ts in read_topic(brokers, topic, committed=committed):
        r = json.loads(value)
        k = (r["device"], round(float(r["window_end"]) * 1000))
        duplicates += k in got
        got[k] = (r, ts[1])
    return got, duplicates


def dead_letters(brokers: str, topic: str, committed: bool = False):
    """{(source partition, source offset): reason}; and how many duplicates (a source
    record dead-lettered more than once counts once per extra copy)."""
    out = {}
    duplicates = 0
    for _, _, _, _, headers, _ in read_topic(brokers, topic, committed=committed):
        h = {k: (v or b"").decode() for k, v in headers or []}
        k = (int(h["flowcast.partition"]), int(h["flowcast.offset"]))
        duplicates += k in out
        out[k] = h["flowcast.reason"]
    return out, duplicates


def late_records(brokers: str, topic: str, committed: bool = False):
    """Counter of (device, event time ms, temperature, humidity): a multiset, so that a
    late record written twice shows. The engines write the reading as JSON, with its origin
    in headers (Flowcast) or not (Flink): the reading itself is what is compared."""
    out = Counter()
    for _, _, _, value, _, _ in read_topic(brokers, topic, committed=committed):
        r = json.loads(value)
        out[
            (
                r["device"],
                round(float(r["time"]) * 1000),
                round(float(r["temperature"]), 6),
                round(float(r["humidity"]), 6),
            )
        ] += 1
    return out


FIELDS = (
    "window_start",
    "temperature",
    "humidity",
    "sequence_mean_temperature",
    "sequence_mean_humidity",
)


def close(a: float, b: float) -> bool:
    # Window means differ only by summation order (~1e-15); a sequence mean reads the
    # single-precision window means, where one rounding step may flip (~1e-6 / 60).
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def compare(base: dict, other: dict, upto_ms: int | None = None):
    """Differences between two outputs, limited to window ends <= `upto_ms` if given."""
    if upto_ms is not None:
        base = {k: v for k, v in base.items() if k[1] <= upto_ms}
    missing = [k for k in base if k not in other]
    extra = [k for k in other if k not in base and (upto_ms is None or k[1] <= upto_ms)]
    differ = []
    for k, (r, _) in base.items():
        if k in other:
            o = other[k][0]
            bad = [f for f in FIELDS if not close(float(r[f]), float(o[f]))]
            if bad:
                differ.append((k, {f: (r[f], o[f]) for f in bad}))
    return missing, extra, differ


def max_event_time_ms(brokers: str, topic: str, tail: int = 20000) -> int:
    """The largest valid event time near the end of each partition: a bounded run's final
    watermark is this minus the out-of-orderness (readings are in order within 30 s)."""
    best = -1
    for _, _, _, value, _, _ in read_topic(brokers, topic, tail=tail):
        try:
            r = json.loads(value)
            t = float(r["time"])
            ok = 0 <= float(r["temperature"]) <= 50 and 20 <= float(r["humidity"]) <= 90
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if ok and math.isfinite(t):
            best = max(best, round(t * 1000))
    return best
