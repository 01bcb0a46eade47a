//! Waiting for a condition with a deadline — the one polling loop of the tests.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Calls `f` until it returns `Some` or `within` has passed; returns its last answer.
pub fn poll_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `cond` holds.
///
/// # Panics
/// After `within`, naming `what`.
pub fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let held = poll_for(within, || cond().then_some(()));
    assert!(
        held.is_some(),
        "timed out after {within:?} waiting for {what}"
    );
}
