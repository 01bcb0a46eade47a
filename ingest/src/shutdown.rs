//! Cooperative shutdown: one flag that SIGTERM/SIGINT (or a test) raises and that every
//! loop checks, with a wait that wakes up as soon as it is raised.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A shareable shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    /// A signal not yet raised.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Raises the signal and wakes every waiter.
    pub fn trigger(&self) {
        let (flag, cv) = &*self.inner;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
    }

    /// Whether the signal has been raised.
    pub fn is_triggered(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `d` or until the signal is raised; returns whether it was raised.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let (flag, cv) = &*self.inner;
        let mut raised = flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*raised {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            raised = cv
                .wait_timeout(raised, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *raised
    }

    /// Raises this signal on SIGTERM, SIGINT or SIGHUP, from a background thread.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "shutting down: flushing to Kafka");
                    me.trigger();
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_early_when_triggered() {
        let s = Shutdown::new();
        assert!(!s.wait(Duration::from_millis(1)));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(60)));
        s.trigger();
        assert!(t.join().expect("joins"));
        assert!(s.is_triggered());
    }
}
