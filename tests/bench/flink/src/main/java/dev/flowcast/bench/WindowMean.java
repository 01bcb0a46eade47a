package dev.flowcast.bench;

/** One device's 30-minute window: its bounds (ms) and means. */
public class WindowMean {
  public String device;
  public long start;
  public long end;
  public double temperature;
  public double humidity;

  public WindowMean() {}
}
