"""Flowcast's DHT11 job (model off) in PySpark Structured Streaming, for the side-by-side
benchmark (tests/bench/run.sh).

Kafka source -> decode + validate (dead letters keep the original key and bytes, the
reason and origin ride in headers, as Flowcast writes them) -> watermark = max event time -
1 min -> 30-minute tumbling windows per device (mean temperature, mean humidity) -> the
last 60 windows per device in `transformWithStateInPandas` state -> one Kafka sink (a
`topic` column routes outputs and dead letters), `local[N]`.

What Spark cannot do as Flowcast and Flink do, and what the harness does about it:
- The watermark is global (max event time over all partitions, updated between
  micro-batches), not the minimum of per-partition watermarks. A bounded drain therefore
  reads everything in one micro-batch (`availableNow`, no rate limit), so no record can be
  judged late against a watermark another partition moved.
- A bounded run has no end-of-input watermark: windows whose end is past the final
  watermark (max event time - 1 min) stay in state and are never emitted. The harness
  compares Spark's output with the others' up to that watermark.
- `from_json` is laxer than Flowcast's decoder: it accepts a bare NaN token (caught here by
  a pattern), text after the object (caught: the value must end with `}`), and a number as
  the device id (not caught: such a record is valid for Spark only).

  python job.py --brokers 127.0.0.1:9300 --topic DHT11-bench --output OUT \
      --dead-letters DEAD --parallelism 2 --checkpoint DIR [--bounded true]
"""

import argparse
import time

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle

OUT_SCHEMA = (
    "device STRING, window_start DOUBLE, window_end DOUBLE, temperature DOUBLE, "
    "humidity DOUBLE, sequence_mean_temperature DOUBLE, sequence_mean_humidity DOUBLE"
)
OUT_COLUMNS = [c.split()[0] for c in OUT_SCHEMA.split(", ")]


class LastWindows(StatefulProcessor):
    """Keyed last-N windows (Flowcast's `Sequences::push`): the single-precision window
    means in a ring in value state; once N exist, each new window emits the newest means
    and the mean over the ring."""

    def __init__(self, length: int):
        self.length = length

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.ring = handle.getValueState("ring", "t ARRAY<FLOAT>, h ARRAY<FLOAT>")

    def handleInputRows(self, key, rows, timerValues):
        df = pd.concat(list(rows)).sort_values("start")
        t_old, h_old = self.ring.get() if self.ring.exists() else ([], [])
        t = np.concatenate([np.asarray(t_old, np.float32), df["t"].to_numpy(np.float32)])
        h = np.concatenate([np.asarray(h_old, np.float32), df["h"].to_numpy(np.float32)])
        n = self.length
        self.ring.update((t[-n:].tolist(), h[-n:].tolist()))
        if len(t) < n:
            return
        # Sequences end at each new window that has n windows behind it.
        t_means = np.lib.stride_tricks.sliding_window_view(t.astype(np.float64), n).mean(axis=1)
        h_means = np.lib.stride_tricks.sliding_window_view(h.astype(np.float64), n).mean(axis=1)
        new = len(df)
        k = min(new, len(t_means))
        tail = df.iloc[new - k :]
        yield pd.DataFrame(
            {
                "device": tail["device"].to_numpy(),
                "window_start": tail["start"].to_numpy() / 1000.0,
                "window_end": tail["end"].to_numpy() / 1000.0,
                "temperature": tail["t"].to_numpy(),
                "humidity": tail["h"].to_numpy(),
                "sequence_mean_temperature": t_means[-k:],
                "sequence_mean_humidity": h_means[-k:],
            },
            columns=OUT_COLUMNS,
        )

    def close(self) -> None:
        pass


def reason(r, value):
    """Flowcast's dead-letter reason, or null for a valid reading."""
    malformed = (
        r.isNull()
        | r["_corrupt"].isNotNull()
        | value.rlike(r"[:\[,]\s*[-+]?(NaN|Infinity|INF)\s*[,}\]]")
        | ~F.rtrim(value).endswith("}")
    )
    rule = F.when(malformed, F.lit("malformed"))
    for f in ("time", "temperature", "humidity"):
        rule = rule.when(r[f].isNull(), F.lit("missing_field"))
        rule = rule.when(F.isnan(r[f]) | (F.abs(r[f]) == float("inf")), F.lit("not_finite"))
    return (
        rule.when(r["time"] < 0, F.lit("out_of_range"))
        .when(~r["temperature"].between(0.0, 50.0), F.lit("out_of_range"))
        .when(~r["humidity"].between(20.0, 90.0), F.lit("out_of_range"))
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="DHT11")
    ap.add_argument("--output", default="spark-out")
    ap.add_argument("--dead-letters")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--bounded", default="true")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--jars", default="")
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--out-of-orderness-ms", type=int, default=60_000)
    ap.add_argument("--window-ms", type=int, default=1_800_000)
    ap.add_argument("--sequence", type=int, default=60)
    a = ap.parse_args()
    dead_topic = a.dead_letters or a.output + "-dead"
    bounded = a.bounded.lower() == "true"

    n = a.parallelism
    spark = (
        SparkSession.builder.master(f"local[{n}]")
        .appName("flowcast-bench-spark")
        .config("spark.jars", a.jars)
        .config("spark.driver.memory", a.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # One state-store partition per core, not the default 200.
        .config("spark.sql.shuffle.partitions", str(n))
        # transformWithState needs RocksDB; it then holds the window state as well.
        .config(
            "spark.sql.streaming.stateStore.providerClass",
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        )
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")

    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", a.brokers)
        .option("subscribe", a.topic)
        .option("startingOffsets", "earliest")
        .option("kafka.max.partition.fetch.bytes", "16777216")
        .option("kafka.fetch.max.bytes", "104857600")
        .load()
    )
    schema = "time DOUBLE, temperature DOUBLE, humidity DOUBLE, device STRING, _corrupt STRING"
    value = F.col("value").cast("string")
    parsed = raw.select(
        "key",
        "value",
        "partition",
        "offset",
        F.from_json(value, schema, {"columnNameOfCorruptRecord": "_corrupt"}).alias("r"),
    ).withColumn("reason", reason(F.col("r"), value))

    header_type = "array<struct<key:string,value:binary>>"
    dead = parsed.where(F.col("reason").isNotNull()).select(
        F.lit(dead_topic).alias("topic"),
        "key",
        "value",
        F.array(
            *[
                F.struct(F.lit(k).alias("key"), v.cast("binary").alias("value"))
                for k, v in [
                    ("flowcast.reason", F.col("reason")),
                    ("flowcast.topic", F.lit(a.topic)),
                    ("flowcast.partition", F.col("partition").cast("string")),
                    ("flowcast.offset", F.col("offset").cast("string")),
                ]
            ]
        ).alias("headers"),
    )

    key = F.col("key").cast("string")
    device = F.when((F.col("r.device").isNotNull()) & (F.col("r.device") != ""), F.col("r.device"))
    device = device.when(key.isNotNull() & (key != ""), key).otherwise(F.lit("default"))
    valid = parsed.where(F.col("reason").isNull()).select(
        device.alias("device"),
        F.timestamp_millis(F.round(F.col("r.time") * 1000).cast("long")).alias("ts"),
        F.col("r.temperature").alias("temperature"),
        F.col("r.humidity").alias("humidity"),
    )
    windows = (
        valid.withWatermark("ts", f"{a.out_of_orderness_ms} milliseconds")
        .groupBy(F.window("ts", f"{a.window_ms} milliseconds"), "device")
        .agg(F.avg("temperature").alias("t"), F.avg("humidity").alias("h"))
        .select(
            "device",
            (F.unix_micros(F.col("window.start")) / 1000).cast("long").alias("start"),
            (F.unix_micros(F.col("window.end")) / 1000).cast("long").alias("end"),
            "t",
            "h",
        )
    )
    sequences = windows.groupBy("device").transformWithStateInPandas(
        statefulProcessor=LastWindows(a.sequence),
        outputStructType=OUT_SCHEMA,
        outputMode="append",
        timeMode="none",
    )
    out = sequences.select(
        F.lit(a.output).alias("topic"),
        F.col("device").cast("binary").alias("key"),
        F.to_json(F.struct(*OUT_COLUMNS)).cast("binary").alias("value"),
        F.lit(None).cast(header_type).alias("headers"),
    )

    writer = (
        out.unionByName(dead)
        .writeStream.format("kafka")
        .option("kafka.bootstrap.servers", a.brokers)
        # As Flowcast's sink: idempotent, acks=all, linger 5 ms, lz4.
        .option("kafka.linger.ms", "5")
        .option("kafka.compression.type", "lz4")
        .option("kafka.acks", "all")
        .option("kafka.enable.idempotence", "true")
        .option("checkpointLocation", a.checkpoint)
        .outputMode("append")
    )
    writer = writer.trigger(availableNow=True) if bounded else writer.trigger(processingTime="0 seconds")
    started = time.monotonic()
    q = writer.start()
    q.awaitTermination()
    secs = time.monotonic() - started
    readings = sum(p["numInputRows"] for p in q.recentProgress)
    late = sum(
        op.get("numRowsDroppedByWatermark", 0)
        for p in q.recentProgress
        for op in p.get("stateOperators", [])
    )
    batches = len(q.recentProgress)
    print(
        f"spark: job {a.output} done: {readings} readings in {secs:.2f}s "
        f"({readings / secs:.0f}/s), late={late} batches={batches}",
        flush=True,
    )
    spark.stop()


if __name__ == "__main__":
    main()
