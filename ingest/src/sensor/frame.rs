//! Pure decoding of the DHT11/DHT22 single-wire protocol: level runs captured from the
//! data pin → 40 bits → a 5-byte frame → a [`Measurement`], checksum verified.
//!
//! Frame layout (both sensors): `[b0, b1, b2, b3, checksum]`, checksum = low byte of
//! `b0 + b1 + b2 + b3`.
//! - DHT11: `b0` = humidity integral part, `b1` = humidity tenths, `b2` = temperature
//!   integral part, `b3` = temperature tenths with bit 7 the sign (newer DHT11 revisions
//!   report tenths and negative temperatures; older ones send 0 in `b1`, `b3`).
//! - DHT22 (AM2302): `b0 b1` = humidity in tenths of %RH (big-endian), `b2 b3` =
//!   temperature in tenths of °C with bit 15 the sign (sign-magnitude, not two's complement).
//!
//! The two formats are not interchangeable: the DHT11 frame for 23.4 °C
//! (`b2 = 23, b3 = 4`) read as DHT22 gives `(23 << 8 | 4) / 10` = 589.2 °C. The sensor
//! kind therefore comes from the configuration, never guessed.
//!
//! Nothing here panics on any input; every malformed input is a [`ReadFailure`].

use super::{FailReason, Measurement, ReadFailure};
use flowcast_operators::SensorKind;

/// One frame as the sensor sends it.
pub type Frame = [u8; 5];

/// Number of data bits in a frame.
pub const FRAME_BITS: usize = 40;

/// The checksum the sensor should have sent for these data bytes.
pub fn checksum(frame: &Frame) -> u8 {
    frame[..4].iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// Decodes a frame of a sensor of kind `kind`, verifying its checksum.
pub fn decode(frame: &Frame, kind: SensorKind) -> Result<Measurement, ReadFailure> {
    let want = checksum(frame);
    if frame[4] != want {
        return Err(ReadFailure::new(
            FailReason::Checksum,
            format!(
                "frame {} has checksum {:#04x}, data sums to {want:#04x}",
                hex(frame),
                frame[4]
            ),
        ));
    }
    if frame.iter().all(|b| *b == 0) {
        // Passes the checksum, but is what a sensor that is not ready (or a floating
        // line read as low) produces; 0 %RH is not a real indoor value.
        return Err(ReadFailure::new(
            FailReason::BadFrame,
            "all-zero frame (sensor not ready?)",
        ));
    }
    match kind {
        SensorKind::Dht11 => decode_dht11(frame),
        SensorKind::Dht22 => Ok(decode_dht22(frame)),
    }
}

fn decode_dht11(frame: &Frame) -> Result<Measurement, ReadFailure> {
    let [h_int, h_dec, t_int, t_dec, _] = *frame;
    let t_tenths = t_dec & 0x7f;
    if h_dec > 9 || t_tenths > 9 {
        return Err(ReadFailure::new(
            FailReason::BadFrame,
            format!(
                "frame {} is not a DHT11 frame (tenths byte above 9; a DHT22 on a pin \
                 configured as DHT11?)",
                hex(frame)
            ),
        ));
    }
    let magnitude = f64::from(t_int) + f64::from(t_tenths) / 10.0;
    let temperature = if t_dec & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    Ok(Measurement {
        temperature,
        humidity: f64::from(h_int) + f64::from(h_dec) / 10.0,
    })
}

fn decode_dht22(frame: &Frame) -> Measurement {
    let humidity = u16::from_be_bytes([frame[0], frame[1]]);
    let magnitude = u16::from_be_bytes([frame[2] & 0x7f, frame[3]]);
    let temperature = f64::from(magnitude) / 10.0;
    Measurement {
        temperature: if frame[2] & 0x80 != 0 {
            -temperature
        } else {
            temperature
        },
        humidity: f64::from(humidity) / 10.0,
    }
}

/// Packs 40 bits, most significant bit of `b0` first, into a frame.
pub fn bits_to_frame(bits: &[bool]) -> Result<Frame, ReadFailure> {
    if bits.len() != FRAME_BITS {
        return Err(ReadFailure::new(
            FailReason::Timeout,
            format!("got {} bits, a frame has {FRAME_BITS}", bits.len()),
        ));
    }
    let mut frame = [0u8; 5];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            frame[i / 8] |= 0x80 >> (i % 8);
        }
    }
    Ok(frame)
}

/// One run of constant level on the data line, as captured: `(high, microseconds)`.
pub type Run = (bool, u32);

/// Turns the level runs captured after the host released the line into a frame.
///
/// The sensor answers with ~80 µs low, ~80 µs high, then for each bit ~50 µs low followed
/// by ~26–28 µs high for a 0 or ~70 µs high for a 1. User-space timing stretches pulses
/// unpredictably, so a bit is decided by comparing its high time with its own low time
/// (longer high = 1) rather than with a fixed threshold.
pub fn runs_to_frame(runs: &[Run]) -> Result<Frame, ReadFailure> {
    // Skip whatever precedes the sensor's response (the released line floating high).
    let start = runs.iter().position(|(high, _)| !high).ok_or_else(|| {
        ReadFailure::new(FailReason::Timeout, "no response: the line never went low")
    })?;
    // The response: one low and one high run, then the bits.
    let body = runs.get(start + 2..).unwrap_or(&[]);
    let mut bits = Vec::with_capacity(FRAME_BITS);
    for pair in body.chunks_exact(2) {
        if bits.len() == FRAME_BITS {
            break;
        }
        match (pair[0], pair[1]) {
            ((false, low), (true, high)) => bits.push(high > low),
            _ => {
                return Err(ReadFailure::new(
                    FailReason::BadFrame,
                    format!("level runs out of step after {} bits", bits.len()),
                ));
            }
        }
    }
    bits_to_frame(&bits)
}

fn hex(frame: &Frame) -> String {
    frame
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> Frame {
        let v: Vec<bool> = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c == '1')
            .collect();
        bits_to_frame(&v).expect("40 bits")
    }

    fn close(m: Measurement, t: f64, h: f64) {
        assert!(
            (m.temperature - t).abs() < 1e-9 && (m.humidity - h).abs() < 1e-9,
            "got {m:?}, want {t} °C {h} %RH"
        );
    }

    #[test]
    fn dht11_datasheet_frame() {
        // The worked example of the DHT11 datasheet: 53 %RH, 24 °C.
        let f = bits("0011 0101 0000 0000 0001 1000 0000 0000 0100 1101");
        close(decode(&f, SensorKind::Dht11).expect("valid"), 24.0, 53.0);
    }

    #[test]
    fn dht11_with_tenths_is_not_read_as_dht22() {
        // 45.0 %RH, 23.4 °C from a DHT11 that reports tenths. Read as a DHT22 this
        // frame means 589.2 °C: the bug of decoding DHT11 frames with a DHT22 decoder.
        let f = [45, 0, 23, 4, 72];
        close(decode(&f, SensorKind::Dht11).expect("valid"), 23.4, 45.0);
        let wrong = decode(&f, SensorKind::Dht22).expect("checksum is fine");
        assert!((wrong.temperature - 589.2).abs() < 1e-9);
    }

    #[test]
    fn dht11_negative_temperature_uses_bit_7_of_the_tenths_byte() {
        let f = [60, 0, 2, 0x85, 0xc3];
        close(decode(&f, SensorKind::Dht11).expect("valid"), -2.5, 60.0);
    }

    #[test]
    fn dht22_datasheet_frames() {
        // AM2302 datasheet: 65.2 %RH, 35.1 °C.
        let f = bits("0000 0010 1000 1100 0000 0001 0101 1111 1110 1110");
        close(decode(&f, SensorKind::Dht22).expect("valid"), 35.1, 65.2);
        // AM2302 datasheet: -10.1 °C is 1000 0000 0110 0101 (sign-magnitude).
        let f = [0x02, 0x8c, 0x80, 0x65, 0x73];
        close(decode(&f, SensorKind::Dht22).expect("valid"), -10.1, 65.2);
    }

    #[test]
    fn dht22_deep_frost() {
        // -39.9 °C, 0x818f; 12.3 %RH, 0x007b.
        let f = [0x00, 0x7b, 0x81, 0x8f, 0x8b];
        close(decode(&f, SensorKind::Dht22).expect("valid"), -39.9, 12.3);
    }

    #[test]
    fn bad_checksums_are_refused_for_both_kinds() {
        for kind in [SensorKind::Dht11, SensorKind::Dht22] {
            let good = bits("0011 0101 0000 0000 0001 1000 0000 0000 0100 1101");
            for flip in 0..FRAME_BITS {
                let mut f = good;
                f[flip / 8] ^= 0x80 >> (flip % 8);
                let err = decode(&f, kind).expect_err("one flipped bit");
                assert_eq!(err.reason, FailReason::Checksum, "bit {flip}: {err}");
            }
        }
    }

    #[test]
    fn all_zero_and_non_dht11_frames_are_bad_frames() {
        assert_eq!(
            decode(&[0; 5], SensorKind::Dht22).expect_err("zero").reason,
            FailReason::BadFrame
        );
        // A DHT22 frame (65.2 %RH) on a pin configured as DHT11.
        let f = bits("0000 0010 1000 1100 0000 0001 0101 1111 1110 1110");
        assert_eq!(
            decode(&f, SensorKind::Dht11).expect_err("dht22").reason,
            FailReason::BadFrame
        );
    }

    fn runs_for(frame: &Frame, jitter: &[u32]) -> Vec<Run> {
        let mut runs = vec![(true, 30), (false, 80), (true, 80)];
        for i in 0..FRAME_BITS {
            let one = frame[i / 8] & (0x80 >> (i % 8)) != 0;
            let j = jitter[i % jitter.len()];
            runs.push((false, 50 + j));
            runs.push((true, if one { 70 + j } else { 26 + j / 2 }));
        }
        runs.push((false, 50));
        runs.push((true, 1000));
        runs
    }

    #[test]
    fn runs_decode_to_the_frame_despite_jitter() {
        let frame = [0x02, 0x8c, 0x80, 0x65, 0x73];
        let runs = runs_for(&frame, &[0, 7, 19, 3, 31, 12]);
        assert_eq!(runs_to_frame(&runs).expect("decodes"), frame);
        close(
            decode(&runs_to_frame(&runs).expect("decodes"), SensorKind::Dht22).expect("valid"),
            -10.1,
            65.2,
        );
    }

    #[test]
    fn truncated_or_silent_captures_fail_without_panicking() {
        let frame = [53, 0, 24, 0, 77];
        let runs = runs_for(&frame, &[0]);
        for cut in 0..runs.len() - 2 {
            let err = runs_to_frame(&runs[..cut]).expect_err("truncated");
            assert!(
                matches!(err.reason, FailReason::Timeout | FailReason::BadFrame),
                "{cut}: {err}"
            );
        }
        assert_eq!(
            runs_to_frame(&[(true, 5000)]).expect_err("silent").reason,
            FailReason::Timeout
        );
        assert_eq!(
            runs_to_frame(&[(false, 80), (true, 80), (true, 50), (false, 30)])
                .expect_err("out of step")
                .reason,
            FailReason::BadFrame
        );
    }
}
