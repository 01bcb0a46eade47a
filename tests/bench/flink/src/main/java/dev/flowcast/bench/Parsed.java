package dev.flowcast.bench;

/**
 * One message from the input topic after decoding: a valid reading ({@code reason == null})
 * or a dead letter with the original key, value and origin.
 */
public class Parsed {
  /** Device id (valid readings). */
  public String device;
  /** Event time, ms (valid readings). */
  public long eventTime;
  /** Temperature, °C. */
  public double temperature;
  /** Relative humidity, %. */
  public double humidity;
  /** Dead-letter reason, null when valid. */
  public String reason;
  /** Dead-letter detail. */
  public String detail;
  /** Original key (dead letters). */
  public byte[] key;
  /** Original value (dead letters). */
  public byte[] value;
  /** Source partition. */
  public int partition;
  /** Source offset. */
  public long offset;

  public Parsed() {}
}
