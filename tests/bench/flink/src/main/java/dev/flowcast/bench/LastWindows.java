package dev.flowcast.bench;

import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Keyed last-N windows per device (Flowcast's {@code Sequences::push}): a ring of the
 * single-precision window means in {@link ValueState}; once a device has N windows, each new
 * window emits the newest window's means and the mean over the ring.
 */
public class LastWindows extends KeyedProcessFunction<String, WindowMean, SequenceRecord> {
  private final int length;
  private transient ValueState<Ring> rings;
  private transient LongCounter emitted;

  /** One device's ring, oldest entry at {@code next} once full. */
  public static class Ring {
    public float[] temperature;
    public float[] humidity;
    public int next;
    public int size;

    public Ring() {}
  }

  public LastWindows(int length) {
    this.length = length;
  }

  @Override
  public void open(OpenContext ctx) {
    rings = getRuntimeContext().getState(new ValueStateDescriptor<>("last-windows", Ring.class));
    emitted = getRuntimeContext().getLongCounter("sequences");
  }

  @Override
  public void processElement(WindowMean w, Context ctx, Collector<SequenceRecord> out)
      throws Exception {
    Ring r = rings.value();
    if (r == null) {
      r = new Ring();
      r.temperature = new float[length];
      r.humidity = new float[length];
    }
    r.temperature[r.next] = (float) w.temperature;
    r.humidity[r.next] = (float) w.humidity;
    r.next = (r.next + 1) % length;
    r.size = Math.min(r.size + 1, length);
    rings.update(r);
    if (r.size < length) {
      return;
    }
    double t = 0;
    double h = 0;
    for (int i = 0; i < length; i++) {
      int at = (r.next + i) % length;
      t += r.temperature[at];
      h += r.humidity[at];
    }
    SequenceRecord s = new SequenceRecord();
    s.device = w.device;
    s.windowStart = w.start;
    s.windowEnd = w.end;
    s.temperature = w.temperature;
    s.humidity = w.humidity;
    s.sequenceMeanTemperature = t / length;
    s.sequenceMeanHumidity = h / length;
    emitted.add(1);
    out.collect(s);
  }
}
