package dev.flowcast.bench;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.KafkaSourceBuilder;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamUtils;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;

/**
 * Flowcast's DHT11 job with the model off, in Flink's DataStream API, run in a local
 * MiniCluster: Kafka source (per-partition watermarks = max event time − out-of-orderness,
 * idleness), decode + validate with dead letters to a side output, 30-minute tumbling
 * event-time windows per device (mean temperature and humidity, allowed lateness 0, late
 * records to a side output), the last 60 windows per device in keyed state, Kafka sinks.
 *
 * <p>With {@code --exactly-once true}, checkpointing is on (every {@code
 * --checkpoint-interval-ms}, state in {@code --checkpoint-dir} if given) and all three Kafka
 * sinks write in transactions committed with each checkpoint ({@code
 * DeliveryGuarantee.EXACTLY_ONCE}); readers must use {@code isolation.level=read_committed}.
 * A bounded run ends with a final checkpoint that commits the last transactions.
 *
 * <pre>
 * java -cp CLASSES:LIB/* dev.flowcast.bench.FlinkJob --brokers 127.0.0.1:9300 \
 *   --topic DHT11-bench --output OUT --dead-letters DEAD --late LATE --parallelism 2 \
 *   [--bounded true] [--group ID] [--exactly-once true --checkpoint-interval-ms 10000 \
 *   --checkpoint-dir DIR]
 * </pre>
 */
public final class FlinkJob {
  private FlinkJob() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> a = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      a.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
    }
    String brokers = a.getOrDefault("brokers", "127.0.0.1:9092");
    String topic = a.getOrDefault("topic", "DHT11");
    String output = a.getOrDefault("output", "flink-out");
    String dead = a.getOrDefault("dead-letters", output + "-dead");
    String late = a.getOrDefault("late", output + "-late");
    int parallelism = Integer.parseInt(a.getOrDefault("parallelism", "1"));
    boolean bounded = Boolean.parseBoolean(a.getOrDefault("bounded", "true"));
    long outOfOrderness = Long.parseLong(a.getOrDefault("out-of-orderness-ms", "60000"));
    long idle = Long.parseLong(a.getOrDefault("idle-timeout-ms", "600000"));
    long windowMs = Long.parseLong(a.getOrDefault("window-ms", "1800000"));
    int length = Integer.parseInt(a.getOrDefault("sequence", "60"));
    String group = a.getOrDefault("group", "flowcast-bench-flink-" + output);
    boolean exactlyOnce = Boolean.parseBoolean(a.getOrDefault("exactly-once", "false"));
    long checkpointMs = Long.parseLong(a.getOrDefault("checkpoint-interval-ms", "10000"));
    String checkpointDir = a.get("checkpoint-dir");

    Configuration conf = new Configuration();
    if (exactlyOnce && checkpointDir != null) {
      // On disk, as Flowcast's checkpoints: the default (JobManager heap) storage refuses
      // state over 5 MB, and 10 k devices' last 60 windows are more.
      conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
      conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, "file://" + checkpointDir);
    }
    StreamExecutionEnvironment env =
        StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
    if (exactlyOnce) {
      env.enableCheckpointing(checkpointMs);
    }
    // A bounded source must not switch the job to batch execution: this is the streaming
    // engine being measured.
    env.setRuntimeMode(RuntimeExecutionMode.STREAMING);
    env.getConfig().enableObjectReuse();
    env.getConfig().setAutoWatermarkInterval(200);

    KafkaSourceBuilder<Parsed> sb =
        KafkaSource.<Parsed>builder()
            .setBootstrapServers(brokers)
            .setTopics(topic)
            .setGroupId(group)
            .setStartingOffsets(OffsetsInitializer.earliest())
            .setDeserializer(new Decode())
            .setProperty("max.partition.fetch.bytes", "16777216")
            .setProperty("fetch.max.bytes", "104857600")
            .setProperty("commit.offsets.on.checkpoint", "false");
    if (bounded) {
      sb.setBounded(OffsetsInitializer.latest());
    }
    WatermarkStrategy<Parsed> watermarks =
        WatermarkStrategy.<Parsed>forBoundedOutOfOrderness(Duration.ofMillis(outOfOrderness))
            // A dead letter has no event time: it must not move the watermark.
            .withTimestampAssigner((p, ts) -> p.reason == null ? p.eventTime : Long.MIN_VALUE)
            .withIdleness(Duration.ofMillis(idle));

    OutputTag<Parsed> deadTag = new OutputTag<>("dead-letters", TypeInformation.of(Parsed.class));
    OutputTag<Reading> lateTag = new OutputTag<>("late", TypeInformation.of(Reading.class));

    SingleOutputStreamOperator<Reading> valid =
        env.fromSource(sb.build(), watermarks, "kafka-source")
            .process(new Split(deadTag))
            .name("validate");
    SingleOutputStreamOperator<WindowMean> windows =
        valid
            .keyBy(r -> r.device)
            .window(TumblingEventTimeWindows.of(Duration.ofMillis(windowMs)))
            .sideOutputLateData(lateTag)
            .aggregate(new Mean(), new WithWindow())
            .name("window");
    // The window output is still partitioned by device: no second shuffle.
    DataStream<SequenceRecord> sequences =
        DataStreamUtils.reinterpretAsKeyedStream(windows, w -> w.device)
            .process(new LastWindows(length))
            .name("last-windows");

    // Transactional ids unique to this run and sink: a prefix another run left open
    // transactions under would fence or be fenced.
    String txn = exactlyOnce ? output + "-" + System.currentTimeMillis() : null;
    sequences.sinkTo(sink(brokers, new SequenceOut(output), txn, "out")).name("sink");
    valid
        .getSideOutput(deadTag)
        .sinkTo(sink(brokers, new DeadOut(dead, topic), txn, "dead"))
        .name("dead");
    windows
        .getSideOutput(lateTag)
        .process(new CountLate())
        .sinkTo(sink(brokers, new LateOut(late), txn, "late"))
        .name("late");

    long started = System.nanoTime();
    JobExecutionResult r = env.execute("flowcast-bench-flink");
    double secs = (System.nanoTime() - started) / 1e9;
    long readings = count(r, "readings");
    System.out.printf(
        "flink: job %s done: %d readings in %.2fs (%.0f/s), dead=%d late=%d sequences=%d%s%n",
        output,
        readings,
        secs,
        readings / secs,
        count(r, "dead"),
        count(r, "late"),
        count(r, "sequences"),
        exactlyOnce ? ", exactly-once, checkpoints every " + checkpointMs + " ms" : "");
  }

  private static long count(JobExecutionResult r, String name) {
    Object v = r.getAllAccumulatorResults().get(name);
    return v instanceof Number n ? n.longValue() : 0;
  }

  /**
   * A Kafka sink as Flowcast's: idempotent, acks=all, linger 5 ms, lz4. With a transactional
   * id prefix ({@code txn}), exactly-once: records go out in transactions the sink commits
   * when the checkpoint that covers them completes.
   */
  private static <T> KafkaSink<T> sink(
      String brokers, KafkaRecordSerializationSchema<T> schema, String txn, String name) {
    Properties p = new Properties();
    p.setProperty("linger.ms", "5");
    p.setProperty("compression.type", "lz4");
    p.setProperty("acks", "all");
    p.setProperty("enable.idempotence", "true");
    var b = KafkaSink.<T>builder().setBootstrapServers(brokers).setRecordSerializer(schema);
    if (txn == null) {
      b.setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE);
    } else {
      // The connector's default (1 h) is above the broker's transaction.max.timeout.ms
      // (15 min), which refuses it; 10 min is far above a checkpoint interval.
      p.setProperty("transaction.timeout.ms", "600000");
      b.setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
          .setTransactionalIdPrefix(txn + "-" + name);
    }
    return b.setKafkaProducerConfig(p).build();
  }

  /** Kafka message → {@link Parsed} with its origin. */
  static final class Decode implements KafkaRecordDeserializationSchema<Parsed> {
    private transient ReadingParser parser;

    @Override
    public void open(DeserializationSchema.InitializationContext ctx) {
      parser = new ReadingParser(0, 50, 20, 90);
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> m, Collector<Parsed> out) {
      Parsed p = new Parsed();
      byte[] value = m.value() == null ? new byte[0] : m.value();
      parser.parse(m.key(), value, p);
      p.partition = m.partition();
      p.offset = m.offset();
      if (p.reason != null) {
        p.key = m.key();
        p.value = value;
      }
      out.collect(p);
    }

    @Override
    public TypeInformation<Parsed> getProducedType() {
      return TypeInformation.of(Parsed.class);
    }
  }

  /** Valid readings on, dead letters to the side output. */
  static final class Split extends ProcessFunction<Parsed, Reading> {
    private final OutputTag<Parsed> dead;
    private transient LongCounter readings;
    private transient LongCounter deadCount;

    Split(OutputTag<Parsed> dead) {
      this.dead = dead;
    }

    @Override
    public void open(OpenContext ctx) {
      readings = getRuntimeContext().getLongCounter("readings");
      deadCount = getRuntimeContext().getLongCounter("dead");
    }

    @Override
    public void processElement(Parsed p, Context ctx, Collector<Reading> out) {
      readings.add(1);
      if (p.reason != null) {
        deadCount.add(1);
        ctx.output(dead, p);
      } else {
        out.collect(new Reading(p.device, p.eventTime, p.temperature, p.humidity));
      }
    }
  }

  static final class CountLate extends ProcessFunction<Reading, Reading> {
    private transient LongCounter late;

    @Override
    public void open(OpenContext ctx) {
      late = getRuntimeContext().getLongCounter("late");
    }

    @Override
    public void processElement(Reading r, Context ctx, Collector<Reading> out) {
      late.add(1);
      out.collect(r);
    }
  }

  /** Running sums of one window. */
  public static class Sums {
    public double temperature;
    public double humidity;
    public long count;

    public Sums() {}
  }

  static final class Mean implements AggregateFunction<Reading, Sums, Sums> {
    @Override
    public Sums createAccumulator() {
      return new Sums();
    }

    @Override
    public Sums add(Reading r, Sums s) {
      s.temperature += r.temperature;
      s.humidity += r.humidity;
      s.count++;
      return s;
    }

    @Override
    public Sums getResult(Sums s) {
      return s;
    }

    @Override
    public Sums merge(Sums a, Sums b) {
      a.temperature += b.temperature;
      a.humidity += b.humidity;
      a.count += b.count;
      return a;
    }
  }

  static final class WithWindow extends ProcessWindowFunction<Sums, WindowMean, String, TimeWindow> {
    @Override
    public void process(String device, Context ctx, Iterable<Sums> sums, Collector<WindowMean> out) {
      Sums s = sums.iterator().next();
      WindowMean w = new WindowMean();
      w.device = device;
      w.start = ctx.window().getStart();
      w.end = ctx.window().getEnd();
      w.temperature = s.temperature / s.count;
      w.humidity = s.humidity / s.count;
      out.collect(w);
    }
  }

  static final class SequenceOut implements KafkaRecordSerializationSchema<SequenceRecord> {
    private final String topic;

    SequenceOut(String topic) {
      this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
        SequenceRecord s, KafkaSinkContext ctx, Long timestamp) {
      return new ProducerRecord<>(
          topic, null, null, s.device.getBytes(StandardCharsets.UTF_8), s.toJson());
    }
  }

  /** Original key and bytes; reason and origin in headers, as Flowcast writes them. */
  static final class DeadOut implements KafkaRecordSerializationSchema<Parsed> {
    private final String topic;
    private final String source;

    DeadOut(String topic, String source) {
      this.topic = topic;
      this.source = source;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(Parsed p, KafkaSinkContext ctx, Long ts) {
      RecordHeaders h = new RecordHeaders();
      h.add("flowcast.reason", p.reason.getBytes(StandardCharsets.UTF_8));
      h.add("flowcast.detail", p.detail.getBytes(StandardCharsets.UTF_8));
      h.add("flowcast.topic", source.getBytes(StandardCharsets.UTF_8));
      h.add("flowcast.partition", Integer.toString(p.partition).getBytes(StandardCharsets.UTF_8));
      h.add("flowcast.offset", Long.toString(p.offset).getBytes(StandardCharsets.UTF_8));
      return new ProducerRecord<>(topic, null, null, p.key, p.value, h);
    }
  }

  static final class LateOut implements KafkaRecordSerializationSchema<Reading> {
    private final String topic;

    LateOut(String topic) {
      this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(Reading r, KafkaSinkContext ctx, Long ts) {
      StringBuilder b = new StringBuilder(120);
      b.append("{\"time\":").append(r.eventTime / 1000.0);
      b.append(",\"temperature\":").append(r.temperature);
      b.append(",\"humidity\":").append(r.humidity);
      b.append(",\"device\":");
      SequenceRecord.quote(b, r.device);
      b.append('}');
      return new ProducerRecord<>(
          topic,
          null,
          null,
          r.device.getBytes(StandardCharsets.UTF_8),
          b.toString().getBytes(StandardCharsets.UTF_8));
    }
  }
}
