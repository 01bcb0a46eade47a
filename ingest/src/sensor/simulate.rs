//! The `simulate` backend: seeded fake sensors for demos and load tests.
//!
//! Each device has its own indoor climate: a base temperature and humidity, a diurnal
//! cycle (warmest mid-afternoon UTC, humidity moving the other way), a slow random drift
//! and read noise, quantised to the sensor's 0.1 resolution. Occasionally a read fails the
//! way real DHTs do: a checksum error, no answer, or a garbled frame whose values are out
//! of range. The same seed gives the same devices and the same sequence of values and
//! faults for the same read times.

use super::{FailReason, Measurement, ReadFailure, Sensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::TAU;

/// One simulated sensor.
#[derive(Debug)]
pub struct SimulatedSensor {
    device: String,
    rng: StdRng,
    fault_rate: f64,
    base_temperature: f64,
    temperature_swing: f64,
    base_humidity: f64,
    humidity_swing: f64,
    drift: f64,
}

impl SimulatedSensor {
    /// Device number `index` of a simulation seeded with `seed`; `fault_rate` is the
    /// probability that one read fails (0 to 1).
    pub fn new(device: impl Into<String>, seed: u64, index: u64, fault_rate: f64) -> Self {
        // Distinct, reproducible streams per device (splitmix-style odd constant).
        let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        SimulatedSensor {
            device: device.into(),
            base_temperature: rng.random_range(19.0..24.0),
            temperature_swing: rng.random_range(1.0..3.5),
            base_humidity: rng.random_range(35.0..55.0),
            humidity_swing: rng.random_range(3.0..9.0),
            drift: 0.0,
            fault_rate: fault_rate.clamp(0.0, 1.0),
            rng,
        }
    }

    /// One attempt at Unix time `t` seconds.
    pub fn read_at(&mut self, t: f64) -> Result<Measurement, ReadFailure> {
        if self.rng.random_bool(self.fault_rate) {
            return self.fault();
        }
        // Warmest at 15:00, coolest at 03:00 (UTC).
        let phase = ((t - 15.0 * 3600.0) / 86_400.0 * TAU).cos();
        self.drift = (self.drift + self.rng.random_range(-0.02..0.02)).clamp(-1.5, 1.5);
        let temperature = self.base_temperature
            + self.temperature_swing * phase
            + self.drift
            + self.rng.random_range(-0.15..0.15);
        let humidity = self.base_humidity - self.humidity_swing * phase - 2.0 * self.drift
            + self.rng.random_range(-0.8..0.8);
        Ok(Measurement {
            temperature: tenths(temperature),
            humidity: tenths(humidity.clamp(21.0, 89.0)),
        })
    }

    fn fault(&mut self) -> Result<Measurement, ReadFailure> {
        match self.rng.random_range(0..10) {
            0..4 => Err(ReadFailure::new(
                FailReason::Checksum,
                "simulated checksum mismatch",
            )),
            4..7 => Err(ReadFailure::new(
                FailReason::Timeout,
                "simulated missing answer",
            )),
            // A garbled frame the checksum happens to accept (0xff bytes): only the
            // range check can refuse it, as with a real sensor.
            _ => Ok(Measurement {
                temperature: 255.0,
                humidity: 255.0,
            }),
        }
    }
}

fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl Sensor for SimulatedSensor {
    fn device(&self) -> &str {
        &self.device
    }

    fn read(&mut self) -> Result<Measurement, ReadFailure> {
        self.read_at(crate::clock::unix_now())
    }
}

/// The `n` devices of a simulation: `{prefix}{0..n}`.
pub fn devices(prefix: &str, n: u32, seed: u64, fault_rate: f64) -> Vec<SimulatedSensor> {
    (0..n)
        .map(|i| SimulatedSensor::new(format!("{prefix}{i}"), seed, u64::from(i), fault_rate))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowcast_operators::{Reading, SensorKind};

    fn run(seed: u64, n: usize) -> Vec<Result<Measurement, ReadFailure>> {
        let mut devs = devices("sim-", 3, seed, 0.05);
        let mut out = Vec::new();
        for step in 0..n {
            for d in &mut devs {
                out.push(d.read_at(1_700_000_000.0 + 2.0 * step as f64));
            }
        }
        out
    }

    #[test]
    fn same_seed_same_values_and_faults() {
        assert_eq!(run(7, 500), run(7, 500));
        assert_ne!(run(7, 500), run(8, 500));
    }

    #[test]
    fn values_are_plausible_dht11_readings_and_faults_happen() {
        let results = run(42, 2000);
        let valid = |m: &Measurement| {
            let r = Reading {
                time: 1.0,
                temperature: m.temperature,
                humidity: m.humidity,
                device: "x".into(),
            };
            r.validate(SensorKind::Dht11).is_ok()
        };
        let garbled = results.iter().flatten().filter(|m| !valid(m)).count();
        let failed = results.iter().filter(|r| r.is_err()).count();
        // 6000 reads at 5 %: expect ~300 faults, ~90 of them garbled values.
        assert!(
            (150..450).contains(&(failed + garbled)),
            "{failed} + {garbled}"
        );
        assert!(garbled > 20 && failed > 100, "{failed} + {garbled}");
        for m in results.iter().flatten().filter(|m| !valid(m)) {
            assert_eq!((m.temperature, m.humidity), (255.0, 255.0));
        }
    }

    #[test]
    fn afternoon_is_warmer_than_night() {
        let mut d = SimulatedSensor::new("d", 1, 0, 0.0);
        let day0 = 1_700_006_400.0 - 1_700_006_400.0 % 86_400.0;
        let mean = |d: &mut SimulatedSensor, hour: f64| {
            (0..50)
                .map(|i| {
                    d.read_at(day0 + hour * 3600.0 + f64::from(i))
                        .expect("no faults")
                        .temperature
                })
                .sum::<f64>()
                / 50.0
        };
        let afternoon = mean(&mut d, 15.0);
        let night = mean(&mut d, 3.0);
        assert!(afternoon > night + 1.0, "{afternoon} vs {night}");
    }
}
