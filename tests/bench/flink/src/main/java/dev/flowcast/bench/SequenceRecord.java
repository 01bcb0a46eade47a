package dev.flowcast.bench;

/**
 * What Flowcast's Kafka sink writes per full sequence with the model off: the newest
 * window and the mean over the last 60 windows of the single-precision window means.
 */
public class SequenceRecord {
  public String device;
  public long windowStart;
  public long windowEnd;
  public double temperature;
  public double humidity;
  public double sequenceMeanTemperature;
  public double sequenceMeanHumidity;

  public SequenceRecord() {}

  /** The JSON value, with the field names of Flowcast's sink and times in Unix seconds. */
  byte[] toJson() {
    StringBuilder b = new StringBuilder(200);
    b.append("{\"device\":");
    quote(b, device);
    b.append(",\"window_start\":").append(secs(windowStart));
    b.append(",\"window_end\":").append(secs(windowEnd));
    b.append(",\"temperature\":").append(temperature);
    b.append(",\"humidity\":").append(humidity);
    b.append(",\"sequence_mean_temperature\":").append(sequenceMeanTemperature);
    b.append(",\"sequence_mean_humidity\":").append(sequenceMeanHumidity);
    b.append('}');
    return b.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }

  private static String secs(long ms) {
    return ms % 1000 == 0 ? (ms / 1000) + ".0" : java.math.BigDecimal.valueOf(ms, 3).toPlainString();
  }

  static void quote(StringBuilder b, String s) {
    b.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        default -> {
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    b.append('"');
  }
}
