//! Exponential backoff with jitter, and the circuit breaker that stops hammering a
//! ThingsBoard that is down.
//!
//! The breaker is closed while requests succeed. After `failures` retryable failures in a
//! row it opens: no request starts for a cool-down. Then one probe goes out (half-open):
//! success closes it, failure opens it again for twice as long (up to the backoff's cap).
//! While it is open nothing leaves the sink's bounded queue, so the queue fills and the
//! timely worker blocks on it: backpressure reaches the Kafka source instead of memory
//! growing without bound.

use std::time::{Duration, Instant};

/// Exponential backoff: `initial · 2^(attempt-1)`, capped at `max`, with equal jitter (a
/// uniformly random half of the delay) so that devices retrying together spread out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt + 1` (`attempt` ≥ 1 failures so far).
    pub fn delay(&self, attempt: u32, rng: &mut Jitter) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self.initial.saturating_mul(1 << exp).min(self.max);
        let half = full / 2;
        half + half.mul_f64(rng.unit())
    }
}

/// A small xorshift generator for jitter (no cryptographic needs, no dependency).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and `salt` (a worker or thread index).
    pub fn new(salt: u64) -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9);
        Jitter((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Requests flow; `failures` retryable failures in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// No request starts before `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
        /// Length of this cool-down.
        cooldown: Duration,
    },
    /// One probe is (or may be) under way.
    HalfOpen {
        /// Whether the probe has started.
        probing: bool,
        /// The cool-down to double if the probe fails.
        cooldown: Duration,
    },
}

/// What a result did to the breaker (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth reporting.
    None,
    /// It opened (or re-opened after a failed probe).
    Opened,
    /// It closed after being open.
    Closed,
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    threshold: u32,
    cooldown: Duration,
    max_cooldown: Duration,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures for `cooldown`, doubling up to `max_cooldown`.
    pub fn new(threshold: u32, cooldown: Duration, max_cooldown: Duration) -> Breaker {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown,
            max_cooldown: max_cooldown.max(cooldown),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether it is open or half-open.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// Whether a request may start at `now`; a `true` in the half-open state makes that
    /// request the probe.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until, cooldown } if now >= until => {
                self.state = State::HalfOpen {
                    probing: true,
                    cooldown,
                };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen {
                probing: false,
                cooldown,
            } => {
                self.state = State::HalfOpen {
                    probing: true,
                    cooldown,
                };
                true
            }
            State::HalfOpen { probing: true, .. } => false,
        }
    }

    /// When a request may next start, if not now.
    pub fn blocked_until(&self) -> Option<Instant> {
        match self.state {
            State::Open { until, .. } => Some(until),
            _ => None,
        }
    }

    /// ThingsBoard answered (2xx, or a 4xx that says it is up but refuses the data).
    pub fn on_answer(&mut self) -> Transition {
        let was_open = self.is_open();
        self.state = State::Closed { failures: 0 };
        if was_open {
            Transition::Closed
        } else {
            Transition::None
        }
    }

    /// A retryable failure (5xx, 429, timeout, connection error) at `now`.
    pub fn on_failure(&mut self, now: Instant) -> Transition {
        match self.state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    self.state = State::Open {
                        until: now + self.cooldown,
                        cooldown: self.cooldown,
                    };
                    Transition::Opened
                } else {
                    self.state = State::Closed { failures };
                    Transition::None
                }
            }
            State::HalfOpen { cooldown, .. } => {
                let cooldown = cooldown.saturating_mul(2).min(self.max_cooldown);
                self.state = State::Open {
                    until: now + cooldown,
                    cooldown,
                };
                Transition::Opened
            }
            // A request that started before the breaker opened: already counted.
            State::Open { .. } => Transition::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut rng = Jitter::new(7);
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng);
                let full = Duration::from_millis(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        let distinct: std::collections::HashSet<_> =
            (0..20).map(|_| b.delay(3, &mut rng)).collect();
        assert!(distinct.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn opens_after_threshold_probes_and_doubles_cooldown() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut br = Breaker::new(3, s, Duration::from_secs(3));
        assert!(br.try_acquire(t0));
        assert_eq!(br.on_failure(t0), Transition::None);
        assert_eq!(br.on_failure(t0), Transition::None);
        assert_eq!(br.on_failure(t0), Transition::Opened);
        assert!(!br.try_acquire(t0));
        assert_eq!(br.blocked_until(), Some(t0 + s));
        // Cool-down over: exactly one probe.
        assert!(br.try_acquire(t0 + s));
        assert!(!br.try_acquire(t0 + s));
        // Probe fails: open for twice as long.
        assert_eq!(br.on_failure(t0 + s), Transition::Opened);
        assert_eq!(br.blocked_until(), Some(t0 + s + 2 * s));
        assert!(br.try_acquire(t0 + 3 * s));
        assert_eq!(br.on_failure(t0 + 3 * s), Transition::Opened);
        // Capped at max.
        assert_eq!(br.blocked_until(), Some(t0 + 6 * s));
        assert!(br.try_acquire(t0 + 6 * s));
        assert_eq!(br.on_answer(), Transition::Closed);
        assert!(br.try_acquire(t0 + 6 * s) && br.try_acquire(t0 + 6 * s));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut br = Breaker::new(2, Duration::from_secs(1), Duration::from_secs(1));
        br.on_failure(t0);
        br.on_answer();
        assert_eq!(br.on_failure(t0), Transition::None);
        assert!(!br.is_open());
    }
}
