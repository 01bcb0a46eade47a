"""End-to-end latency, measured the same way for every engine: paced live input in, the
output topic watched, both ends timed by the broker.

A window "closes" when the input that lets the watermark pass its end is in Kafka: for a
window ending at E, the first record with event time >= E + out-of-orderness in every
partition (watermark = max event time - out-of-orderness, the minimum over partitions).
Its close time T_close(E) is the latest of those records' log-append times. The output
for (device, E) is "in Kafka" at its own log-append time T_out. Latency = T_out - T_close(E):
the engine's reading, watermarking, window firing, last-60 state, producing and the
broker's append, and nothing the benchmark chooses (both topics use LogAppendTime).

With `--read-committed` (exactly-once outputs), T_out is instead the wall-clock time at
which a read_committed consumer first receives the output: the output's log-append time is
stamped when it is produced, before its transaction commits, so it is not when a reader
can see it. The broker and this script share the machine's clock. (Either way, an output
seen twice counts at its first sighting.)

The input is the fill's reading pattern (devices every 240 s of event time, in event-time
order within 30 s) played at `--rate` readings/s, event time running faster than wall time
so that a 30-minute window closes every few hundred ms. First `--warm-windows` windows
are written as fast as possible (the 60-window history a sequence needs); then pacing
starts, and windows that close from `--grace` s after the first output appeared, for
`--measure-secs`, are measured.

    python live.py --brokers B --topic IN --output OUT --result R.json [--rate 10000]
        [--read-committed] [--measuring-file F]
"""

import argparse
import json
import random
import time

from confluent_kafka import Consumer, Producer, TopicPartition

PERIOD_S = 240.0
WINDOW_MS = 1_800_000


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[i]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10000.0)
    ap.add_argument("--warm-windows", type=int, default=61)
    ap.add_argument("--grace", type=float, default=10.0)
    ap.add_argument("--measure-secs", type=float, default=30.0)
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--drain-timeout", type=float, default=60.0)
    ap.add_argument("--out-of-orderness-ms", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--read-committed", action="store_true")
    ap.add_argument("--seed", type=int, default=18)
    # Written (the measurement interval's start and end, Unix s) when that interval starts,
    # so that a profiler can record just it (tests/bench/latency_tail.sh).
    ap.add_argument("--measuring-file")
    a = ap.parse_args()

    producer = Producer(
        {
            "bootstrap.servers": a.brokers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": a.brokers,
            "group.id": "flowcast-bench-live",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
            "isolation.level": "read_committed" if a.read_committed else "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(a.output, p, 0) for p in range(a.partitions)])

    base_s = 1_700_000_000.0 - 1_700_000_000.0 % 86_400.0
    ooo = a.out_of_orderness_ms
    first_end = int(base_s * 1000) // WINDOW_MS * WINDOW_MS + WINDOW_MS
    next_end = [first_end] * a.partitions  # per partition: next window end to cross
    crossed = {}  # window end -> {partition: log-append ms}

    def delivered(err, msg, t_ms):
        if err is not None:
            raise SystemExit(f"live: delivery failed: {err}")
        p = msg.partition()
        _, ts = msg.timestamp()
        while t_ms >= next_end[p] + ooo:
            crossed.setdefault(next_end[p], {})[p] = ts
            next_end[p] += WINDOW_MS

    def close_time(end):
        c = crossed.get(end, {})
        return max(c.values()) if len(c) == a.partitions else None

    outputs = {}  # (device, end) -> first log-append ms, or first receipt ms (read_committed)
    first_output = None

    def take(m):
        nonlocal first_output
        if m.error():
            return
        r = json.loads(m.value())
        end = round(float(r["window_end"]) * 1000)
        seen = round(time.time() * 1000) if a.read_committed else m.timestamp()[1]
        outputs.setdefault((r["device"], end), seen)
        if first_output is None:
            first_output = time.time()

    def poll_outputs(timeout):
        # One message per poll, timed as it is handed over: a batch call (`consume`) waits
        # for its whole timeout, which would add up to that much to a receipt time.
        m = consumer.poll(timeout)
        for _ in range(10000):
            if m is None:
                return
            take(m)
            m = consumer.poll(0)
        if m is not None:
            take(m)

    devices = [f"dev-{d:05d}" for d in range(a.devices)]
    step_wall = a.devices / a.rate  # seconds of wall time per 240 s of event time
    warm_steps = int(a.warm_windows * WINDOW_MS / 1000 / PERIOD_S) + 1
    step = 0

    def produce_step(s):
        for d, dev in enumerate(devices):
            t = base_s + s * PERIOD_S + (d * 0.37) % 30.0
            t_ms = round(t * 1000)
            value = (
                f'{{"time":{t:.1f},"temperature":{21.0 + (d % 7) * 0.5 + (s % 11) * 0.1:.2f},'
                f'"humidity":{45.0 + (d % 5) + (s % 13) * 0.2:.2f},"device":"{dev}"}}'
            )
            while True:
                try:
                    producer.produce(
                        a.topic,
                        key=dev,
                        value=value,
                        on_delivery=lambda err, msg, t_ms=t_ms: delivered(err, msg, t_ms),
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)

    for step in range(warm_steps):
        produce_step(step)
    producer.flush(60)

    # Paced: step s goes out at t0 + (s - warm_steps + j_s) * step_wall, j_s uniform in
    # [0, 1) (seeded; steps stay in order). Without the jitter a window would close every
    # 7.5 steps exactly, at a fixed phase of any engine timer whose period divides that
    # (Flowcast's wall-clock epochs, Flink's 200-ms watermark interval): every window
    # would wait the same part of it, and the quantiles would measure that one phase.
    jitter = random.Random(a.seed)
    t0 = time.time()
    started = t0
    measure_from = measure_to = None
    step = warm_steps
    due = None
    while True:
        now = time.time()
        if first_output is None and now - started > a.ready_timeout:
            raise SystemExit(f"live: no output on {a.output} after {a.ready_timeout:.0f} s")
        if first_output is not None and measure_from is None:
            measure_from = first_output + a.grace
            measure_to = measure_from + a.measure_secs
        if a.measuring_file and measure_from is not None and now >= measure_from:
            with open(a.measuring_file, "w") as f:
                f.write(f"{measure_from} {measure_to}\n")
            a.measuring_file = None
        if measure_to is not None and now > measure_to:
            break
        if due is None:
            due = t0 + (step - warm_steps + jitter.random()) * step_wall
        if now >= due:
            produce_step(step)
            step += 1
            due = None
            producer.poll(0)
        else:
            poll_outputs(min(0.05, due - now))
    producer.flush(60)

    # Windows that closed inside the measurement interval (broker time, ms).
    measured = sorted(
        e
        for e in crossed
        if close_time(e) is not None
        and measure_from * 1000 <= close_time(e) <= measure_to * 1000
    )
    expected = {(dev, e) for e in measured for dev in devices}
    deadline = time.time() + a.drain_timeout
    while time.time() < deadline and not expected <= outputs.keys():
        poll_outputs(0.2)
    consumer.close()
    lat = [outputs[k] - close_time(k[1]) for k in expected if k in outputs]
    per_window = {}
    for (dev, e), ts in outputs.items():
        if e in measured:
            per_window.setdefault(e, []).append(ts - close_time(e))
    result = {
        "visibility": "read_committed, first receipt (wall clock)"
        if a.read_committed
        else "output log-append time",
        "rate": a.rate,
        "devices": a.devices,
        "windows_measured": len(measured),
        "outputs_expected": len(expected),
        "outputs_seen": len(lat),
        "p50_ms": percentile(lat, 0.50),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": max(lat) if lat else None,
        "min_ms": min(lat) if lat else None,
        # First and last measured windows' median: a rising trend means falling behind.
        "first_window_p50_ms": percentile(per_window.get(measured[0], []), 0.5)
        if measured
        else None,
        "last_window_p50_ms": percentile(per_window.get(measured[-1], []), 0.5)
        if measured
        else None,
        "wall_s": round(time.time() - started, 1),
        # Per measured window, for the tail's profile (tests/bench/latency_tail.sh): its close
        # time (broker ms), the spread of its partitions' closing appends, and its outputs'
        # latency quantiles.
        "windows": [
            {
                "end_ms": e,
                "close_ms": close_time(e),
                "close_spread_ms": close_time(e) - min(crossed[e].values()),
                "outputs": len(per_window.get(e, [])),
                "min_ms": min(per_window.get(e, [0])),
                "p50_ms": percentile(per_window.get(e, []), 0.5),
                "max_ms": max(per_window.get(e, [0])),
            }
            for e in measured
        ],
    }
    with open(a.result, "w") as f:
        json.dump(result, f, indent=1)
    print("live:", json.dumps(result))


if __name__ == "__main__":
    main()
