package dev.flowcast.bench;

/** A valid reading on its way to the windows (what crosses the keyBy). */
public class Reading {
  public String device;
  public long eventTime;
  public double temperature;
  public double humidity;

  public Reading() {}

  Reading(String device, long eventTime, double temperature, double humidity) {
    this.device = device;
    this.eventTime = eventTime;
    this.temperature = temperature;
    this.humidity = humidity;
  }
}
