//! Window close → hand-off to the sink's producer, per worker.
//!
//! The window operator notes when it fires the windows of an epoch; the sink, on the same
//! worker thread (the pipeline after the window stays on the device's worker), measures
//! from that moment when it hands the epoch's results to the producer. This covers the
//! sequence and forecast stages, the model's forward pass included.

use super::Epoch;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

thread_local! {
    static FIRED: RefCell<BTreeMap<Epoch, Instant>> = const { RefCell::new(BTreeMap::new()) };
}

/// Notes that windows fired at `epoch` now (the first firing of the epoch counts).
pub fn mark_fired(epoch: Epoch) {
    FIRED.with(|f| {
        f.borrow_mut().entry(epoch).or_insert_with(Instant::now);
    });
}

/// Time since the windows of `epoch` fired on this worker; forgets older epochs.
pub fn since_fired(epoch: Epoch) -> Option<Duration> {
    FIRED.with(|f| {
        let mut f = f.borrow_mut();
        while let Some((&e, _)) = f.first_key_value() {
            if e >= epoch {
                break;
            }
            f.pop_first();
        }
        f.get(&epoch).map(Instant::elapsed)
    })
}
