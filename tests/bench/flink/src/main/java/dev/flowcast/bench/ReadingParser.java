package dev.flowcast.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Decodes and validates one Kafka message as Flowcast's {@code Reading::parse} does
 * (operators/src/record.rs): same fields, same reasons, same precedence.
 *
 * <p>The rules, in order: the value must be one JSON object and nothing after it, with
 * {@code device} (if present) a string or null, and no field twice; else {@code malformed}.
 * Then {@code time}, {@code temperature}, {@code humidity}, each: absent or null is
 * {@code missing_field}; a number is taken; a string that spells NaN or infinity is
 * {@code not_finite}; any other string or type is {@code malformed}. Then {@code time < 0}
 * and values outside the sensor's inclusive range are {@code out_of_range}. The device is
 * the {@code device} field if non-empty, else the UTF-8 key if non-empty, else
 * {@code "default"}.
 */
final class ReadingParser {
  private final JsonFactory json = new JsonFactory();
  private final double tempLo;
  private final double tempHi;
  private final double humLo;
  private final double humHi;

  ReadingParser(double tempLo, double tempHi, double humLo, double humHi) {
    this.tempLo = tempLo;
    this.tempHi = tempHi;
    this.humLo = humLo;
    this.humHi = humHi;
  }

  /** Why a field could not be taken; carries the dead-letter reason. */
  private static final class Refused extends Exception {
    final String reason;

    Refused(String reason, String detail) {
      super(detail, null, false, false);
      this.reason = reason;
    }
  }

  private static final int TIME = 0;
  private static final int TEMPERATURE = 1;
  private static final int HUMIDITY = 2;
  private static final String[] NAMES = {"time", "temperature", "humidity"};

  /** Fills {@code out} (valid reading, or reason + detail) from a message. */
  void parse(byte[] key, byte[] value, Parsed out) {
    out.reason = null;
    out.detail = null;
    // Per field: 0 absent/null, 1 number, 2 non-finite string, 3 other string or type.
    int[] kind = new int[3];
    double[] num = new double[3];
    String device = null;
    try (JsonParser p = json.createParser(value)) {
      if (p.nextToken() != JsonToken.START_OBJECT) {
        throw new Refused("malformed", "not a JSON object");
      }
      boolean[] seen = new boolean[4];
      JsonToken t;
      while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
        String name = p.currentName();
        JsonToken v = p.nextToken();
        int field =
            switch (name) {
              case "time" -> TIME;
              case "temperature" -> TEMPERATURE;
              case "humidity" -> HUMIDITY;
              case "device" -> 3;
              default -> -1;
            };
        if (field < 0) {
          p.skipChildren();
          continue;
        }
        if (seen[field]) {
          throw new Refused("malformed", "duplicate field `" + name + "`");
        }
        seen[field] = true;
        if (field == 3) {
          if (v == JsonToken.VALUE_STRING) {
            device = p.getText();
          } else if (v != JsonToken.VALUE_NULL) {
            throw new Refused("malformed", "field `device` is not a string");
          }
          continue;
        }
        switch (v) {
          case VALUE_NULL -> kind[field] = 0;
          case VALUE_NUMBER_INT, VALUE_NUMBER_FLOAT -> {
            kind[field] = 1;
            num[field] = p.getDoubleValue();
          }
          case VALUE_STRING -> kind[field] = notFinite(p.getText()) ? 2 : 3;
          default -> {
            kind[field] = 3;
            p.skipChildren();
          }
        }
      }
      if (t != JsonToken.END_OBJECT || p.nextToken() != null) {
        throw new Refused("malformed", "trailing characters");
      }
      double[] v = new double[3];
      for (int f = 0; f < 3; f++) {
        switch (kind[f]) {
          case 0 -> throw new Refused("missing_field", "field `" + NAMES[f] + "` is missing");
          case 2 -> throw new Refused("not_finite", "field `" + NAMES[f] + "` is not finite");
          case 3 -> throw new Refused("malformed", "field `" + NAMES[f] + "` is not a number");
          default -> v[f] = num[f];
        }
      }
      for (int f = 0; f < 3; f++) {
        if (!Double.isFinite(v[f])) {
          throw new Refused("not_finite", "field `" + NAMES[f] + "` is " + v[f]);
        }
      }
      if (v[TIME] < 0) {
        throw new Refused("out_of_range", "time before 1970");
      }
      if (!(v[TEMPERATURE] >= tempLo && v[TEMPERATURE] <= tempHi)) {
        throw new Refused("out_of_range", "temperature " + v[TEMPERATURE]);
      }
      if (!(v[HUMIDITY] >= humLo && v[HUMIDITY] <= humHi)) {
        throw new Refused("out_of_range", "humidity " + v[HUMIDITY]);
      }
      out.eventTime = Math.round(v[TIME] * 1000.0);
      out.temperature = v[TEMPERATURE];
      out.humidity = v[HUMIDITY];
      out.device = device != null && !device.isEmpty() ? device : keyOrDefault(key);
    } catch (Refused r) {
      out.reason = r.reason;
      out.detail = r.getMessage();
    } catch (IOException e) {
      out.reason = "malformed";
      out.detail = "not a JSON reading: " + e.getMessage();
    }
  }

  /** Rust's {@code f64::from_str} spellings of NaN and infinity, any case, optional sign. */
  private static boolean notFinite(String s) {
    String x = s.trim().toLowerCase(java.util.Locale.ROOT);
    if (x.startsWith("+") || x.startsWith("-")) {
      x = x.substring(1);
    }
    return x.equals("nan") || x.equals("inf") || x.equals("infinity");
  }

  private static String keyOrDefault(byte[] key) {
    if (key == null || key.length == 0) {
      return "default";
    }
    try {
      return StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(key))
          .toString();
    } catch (CharacterCodingException e) {
      return "default";
    }
  }
}
