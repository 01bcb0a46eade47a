//! The `gpio` backend: bit-banging the sensor's data pin through rppal's memory-mapped
//! GPIO (`/dev/gpiomem`), for Pis where the kernel overlay cannot be used.
//!
//! The host pulls the line low (≥ 18 ms for a DHT11, ~1 ms for a DHT22), releases it to
//! the pull-up and then samples the level in a busy loop, recording how long each level
//! lasted; [`super::frame`] turns those runs into a checksum-verified frame. Timing in user
//! space is at the mercy of the scheduler: a preempted capture shows up as a bad checksum
//! or a truncated frame, which the sampler retries. The `iio` backend does the timing in
//! the kernel and is the better choice when available.
//!
//! No call here can panic: rppal reports errors as values and the capture loop is bounded
//! by a deadline.

use super::frame::{self, FRAME_BITS, Run};
use super::{FailReason, Measurement, ReadFailure, Sensor};
use flowcast_operators::SensorKind;
use rppal::gpio::{Bias, Gpio, IoPin, Level, Mode};
use std::time::{Duration, Instant};

/// The whole answer takes about 4–5 ms; anything slower is a failed capture.
const CAPTURE_DEADLINE: Duration = Duration::from_millis(10);
/// Runs in a complete answer: pre-response high, response low + high, 40 × (low, high).
const FULL_CAPTURE: usize = 3 + 2 * FRAME_BITS;

/// A DHT11/DHT22 on one GPIO pin (BCM numbering).
#[derive(Debug)]
pub struct GpioSensor {
    device: String,
    kind: SensorKind,
    pin: IoPin,
}

impl GpioSensor {
    /// Claims BCM pin `bcm` for a sensor of kind `kind`.
    pub fn open(
        device: impl Into<String>,
        kind: SensorKind,
        bcm: u8,
    ) -> Result<GpioSensor, rppal::gpio::Error> {
        let mut pin = Gpio::new()?.get(bcm)?.into_io(Mode::Input);
        pin.set_bias(Bias::PullUp);
        Ok(GpioSensor {
            device: device.into(),
            kind,
            pin,
        })
    }

    fn start_signal(&self) -> Duration {
        match self.kind {
            // DHT11 datasheet: at least 18 ms. AM2302: typically 1 ms (0.8–20 ms).
            SensorKind::Dht11 => Duration::from_millis(18),
            SensorKind::Dht22 => Duration::from_micros(1_100),
        }
    }

    fn capture(&mut self) -> Vec<Run> {
        self.pin.set_mode(Mode::Output);
        self.pin.set_low();
        std::thread::sleep(self.start_signal());
        self.pin.set_mode(Mode::Input);
        self.pin.set_bias(Bias::PullUp);
        let begin = Instant::now();
        let mut runs = Vec::with_capacity(FULL_CAPTURE + 1);
        let mut level = self.pin.read() == Level::High;
        let mut since = begin;
        loop {
            let now = Instant::now();
            if now.duration_since(begin) > CAPTURE_DEADLINE {
                break;
            }
            let high = self.pin.read() == Level::High;
            if high != level {
                runs.push((level, micros(now.duration_since(since))));
                level = high;
                since = now;
                if runs.len() > FULL_CAPTURE {
                    break;
                }
            }
        }
        runs.push((level, micros(Instant::now().duration_since(since))));
        runs
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Sensor for GpioSensor {
    fn device(&self) -> &str {
        &self.device
    }

    fn read(&mut self) -> Result<Measurement, ReadFailure> {
        let runs = self.capture();
        let frame = frame::runs_to_frame(&runs).map_err(|mut e| {
            if e.reason == FailReason::Timeout {
                e.detail = format!(
                    "{} ({} level changes seen on GPIO {}; is the sensor wired and powered?)",
                    e.detail,
                    runs.len().saturating_sub(1),
                    self.pin.pin()
                );
            }
            e
        })?;
        frame::decode(&frame, self.kind)
    }
}
