//! Sampling sensors on a schedule: one attempt per device per `sensor.interval`; a failed
//! attempt (checksum, no answer, value out of the sensor's range, …) is counted, logged and
//! retried after the sensor's minimum interval (the DHT datasheets: no read sooner than
//! 1 s (DHT11) or 2 s (DHT22) after the last), up to `sensor.max-retries` times. Only
//! validated readings leave this module; a failure is never published.
//!
//! [`Sampler::attempt`] is the whole decision for one attempt and takes the time as an
//! argument; [`Sampler::run`] only adds the clock and the waiting.

use crate::clock::unix_now;
use crate::sensor::{FailReason, ReadFailure, Sensor};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::telemetry::events::{ReadFailed, ReadOk, SampleSkipped};
use flowcast_operators::{Reading, SensorKind};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// What one attempt decided.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// A valid reading; the next sample is due one interval after this sample began.
    Reading(Reading),
    /// Failed; try this sample again after the sensor's minimum interval.
    Retry,
    /// Failed for the last time; the next sample is due one interval after this one began.
    GiveUp,
}

/// Several sensors of one kind, sampled on one schedule.
pub struct Sampler {
    sensors: Vec<Box<dyn Sensor>>,
    attempts: Vec<u32>,
    kind: SensorKind,
    interval: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("sensors", &self.sensors.len())
            .field("kind", &self.kind)
            .field("interval", &self.interval)
            .finish()
    }
}

impl Sampler {
    /// A sampler for `sensors` of kind `kind`. `interval` below the kind's minimum is
    /// raised to it.
    pub fn new(
        sensors: Vec<Box<dyn Sensor>>,
        kind: SensorKind,
        interval: Duration,
        max_retries: u32,
    ) -> Self {
        Sampler {
            attempts: vec![0; sensors.len()],
            sensors,
            kind,
            interval: interval.max(kind.min_interval()),
            max_retries,
        }
    }

    /// One attempt at sensor `i` at Unix time `now`.
    pub fn attempt(&mut self, i: usize, now: f64, metrics: &Metrics) -> Step {
        let Some(sensor) = self.sensors.get_mut(i) else {
            return Step::GiveUp;
        };
        let kind = self.kind;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| sensor.read()))
            .unwrap_or_else(|_| {
                Err(ReadFailure::new(
                    FailReason::Panic,
                    "sensor backend panicked",
                ))
            })
            .and_then(|m| {
                let r = Reading {
                    time: now,
                    temperature: m.temperature,
                    humidity: m.humidity,
                    device: sensor.device().to_owned(),
                };
                r.validate(kind).map_err(ReadFailure::from)?;
                Ok(r)
            });
        self.attempts[i] += 1;
        let attempt = self.attempts[i];
        match result {
            Ok(r) => {
                ReadOk.emit(metrics);
                self.attempts[i] = 0;
                Step::Reading(r)
            }
            Err(failure) => {
                let will_retry = attempt <= self.max_retries;
                ReadFailed {
                    device: sensor.device(),
                    failure: &failure,
                    attempt,
                    will_retry,
                }
                .emit(metrics);
                if will_retry {
                    Step::Retry
                } else {
                    SampleSkipped {
                        device: sensor.device(),
                        attempts: attempt,
                    }
                    .emit(metrics);
                    self.attempts[i] = 0;
                    Step::GiveUp
                }
            }
        }
    }

    /// Samples until `shutdown` or until `out`'s receiver is gone. Devices are spread
    /// evenly over one interval so that many simulated devices do not read in bursts.
    pub fn run(mut self, out: SyncSender<Reading>, shutdown: Shutdown, metrics: &Metrics) {
        let n = self.sensors.len().max(1) as u32;
        let start = Instant::now();
        // (due, device, when its current sample began)
        let mut queue: BinaryHeap<Reverse<(Instant, usize, Instant)>> = (0..self.sensors.len())
            .map(|i| {
                let due = start + self.interval / n * i as u32;
                Reverse((due, i, due))
            })
            .collect();
        let min = self.kind.min_interval();
        while let Some(Reverse((due, i, began))) = queue.pop() {
            let wait = due.saturating_duration_since(Instant::now());
            if shutdown.wait(wait) {
                return;
            }
            let now = Instant::now();
            let (next, began) = match self.attempt(i, unix_now(), metrics) {
                Step::Reading(r) => {
                    if out.send(r).is_err() {
                        return;
                    }
                    let next = (began + self.interval).max(now + min);
                    (next, next)
                }
                Step::Retry => (now + min, began),
                Step::GiveUp => {
                    let next = (began + self.interval).max(now + min);
                    (next, next)
                }
            };
            queue.push(Reverse((next, i, began)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::Measurement;
    use std::collections::VecDeque;

    struct Scripted(VecDeque<Result<Measurement, ReadFailure>>);

    impl Sensor for Scripted {
        fn device(&self) -> &str {
            "pi-01"
        }
        fn read(&mut self) -> Result<Measurement, ReadFailure> {
            match self.0.pop_front() {
                Some(r) => r,
                None => panic!("script exhausted"),
            }
        }
    }

    fn ok(t: f64, h: f64) -> Result<Measurement, ReadFailure> {
        Ok(Measurement {
            temperature: t,
            humidity: h,
        })
    }

    fn fail(r: FailReason) -> Result<Measurement, ReadFailure> {
        Err(ReadFailure::new(r, "scripted"))
    }

    #[test]
    fn failures_are_retried_counted_and_never_published() {
        let script = vec![
            fail(FailReason::Checksum),
            ok(21.0, 95.0), // a DHT11 cannot read 95 %RH
            ok(21.5, 45.0),
            fail(FailReason::Timeout),
            fail(FailReason::Timeout),
            fail(FailReason::Io),
            ok(22.0, 44.0),
        ];
        let m = Metrics::new("test");
        let mut s = Sampler::new(
            vec![Box::new(Scripted(script.into()))],
            SensorKind::Dht11,
            Duration::from_secs(5),
            2,
        );
        let steps: Vec<Step> = (0..7)
            .map(|k| s.attempt(0, 100.0 + f64::from(k), &m))
            .collect();
        assert_eq!(steps[0], Step::Retry);
        assert_eq!(steps[1], Step::Retry);
        assert_eq!(
            steps[2],
            Step::Reading(Reading {
                time: 102.0,
                temperature: 21.5,
                humidity: 45.0,
                device: "pi-01".into()
            })
        );
        assert_eq!(&steps[3..6], &[Step::Retry, Step::Retry, Step::GiveUp]);
        assert!(
            matches!(steps[6], Step::Reading(_)),
            "attempts reset after giving up"
        );
        assert_eq!(m.failed(FailReason::Checksum), 1);
        assert_eq!(m.failed(FailReason::OutOfRange), 1);
        assert_eq!(m.failed(FailReason::Timeout), 2);
        assert_eq!(m.failed(FailReason::Io), 1);
        assert_eq!(Metrics::get(&m.reads_ok), 2);
        assert_eq!(Metrics::get(&m.samples_skipped), 1);
    }

    #[test]
    fn a_panicking_backend_is_a_counted_failure() {
        let m = Metrics::new("test");
        let mut s = Sampler::new(
            vec![Box::new(Scripted(VecDeque::new()))],
            SensorKind::Dht22,
            Duration::from_secs(2),
            0,
        );
        assert_eq!(s.attempt(0, 1.0, &m), Step::GiveUp);
        assert_eq!(m.failed(FailReason::Panic), 1);
    }

    #[test]
    fn interval_is_never_below_the_sensor_minimum() {
        let s = Sampler::new(Vec::new(), SensorKind::Dht22, Duration::from_millis(10), 0);
        assert_eq!(s.interval, Duration::from_secs(2));
    }

    #[test]
    fn run_paces_and_stops_on_shutdown() {
        let m = Metrics::new("test");
        let script: VecDeque<_> = (0..100).map(|_| ok(20.0, 50.0)).collect();
        let s = Sampler::new(
            vec![Box::new(Scripted(script))],
            SensorKind::Dht11,
            Duration::from_secs(1),
            0,
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let stop = Shutdown::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || s.run(tx, stop2, &m));
        let first = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("first reading at once");
        let second = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("second reading");
        assert!(
            second.time - first.time >= 0.99,
            "{} then {}",
            first.time,
            second.time
        );
        stop.trigger();
        t.join().expect("stops");
    }
}
