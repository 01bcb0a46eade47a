//! The operator of every sink that delivers to a server through a delivery engine
//! (ThingsBoard, MQTT): each epoch's predictions are submitted (blocking while the
//! engine's bounded queue is full: backpressure) and remembered until the engine reports
//! them delivered or dead-lettered. A snapshot does not wait for the server: what is not
//! delivered yet is part of the snapshot (keyed by the device's key group), so snapshots
//! and checkpoints keep completing while ThingsBoard is down — until `max-buffered`
//! predictions (default 100 000 per worker) are undelivered and the worker blocks, which
//! holds the frontier, the checkpoint barrier, back; a restored job submits it
//! again first (at-least-once; ThingsBoard overwrites a repeat, same `ts`). The end of
//! input finishes the engine. A sink that could not start has no engine: the job is
//! failing ([`crate::sinks::SinkContext::started`]) and its records go nowhere.

use crate::lifecycle::{EpochContext, KeyGroups, Operator, RestoredState, StateError, StateWriter};
use flowcast_operators::Prediction;
use std::collections::BTreeMap;

/// A delivery engine: where a [`DeliveryOperator`] hands its predictions.
pub trait Deliver: std::fmt::Debug + 'static {
    /// Queues prediction number `seq`; blocks while the engine's queue is full.
    fn submit(&mut self, seq: u64, prediction: Prediction);
    /// The numbers of the predictions delivered or dead-lettered since the last call.
    fn take_completed(&mut self) -> Vec<u64>;
    /// Waits until every prediction submitted so far is delivered or dead-lettered.
    fn flush(&mut self);
    /// No more input: deliver what is queued and stop.
    fn finish(&mut self) {
        self.flush();
    }
}

/// A sink operator on top of a [`Deliver`] engine.
#[derive(Debug)]
pub struct DeliveryOperator<D> {
    id: String,
    delivery: Option<D>,
    groups: KeyGroups,
    /// Submitted and not yet reported done, by submission number.
    pending: BTreeMap<u64, Prediction>,
    next: u64,
}

impl<D: Deliver> DeliveryOperator<D> {
    /// Sink `id` delivering through `delivery` (`None`: it could not start); `groups` are
    /// the job's key groups (undelivered predictions are snapshotted by them).
    pub fn new(id: &str, delivery: Option<D>, groups: KeyGroups) -> Self {
        DeliveryOperator {
            id: id.to_owned(),
            delivery,
            groups,
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    fn submit(&mut self, p: Prediction) {
        let Some(d) = &mut self.delivery else { return };
        self.next += 1;
        self.pending.insert(self.next, p.clone());
        d.submit(self.next, p);
    }

    /// Forgets what the engine has done with.
    fn absorb(&mut self) {
        if let Some(d) = &mut self.delivery {
            for seq in d.take_completed() {
                self.pending.remove(&seq);
            }
        }
    }

    /// Predictions submitted and not yet delivered or dead-lettered.
    pub fn undelivered(&mut self) -> usize {
        self.absorb();
        self.pending.len()
    }
}

impl<D: Deliver> Operator for DeliveryOperator<D> {
    type In = Prediction;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        let mut again = Vec::new();
        for entry in state.keyed::<Vec<Prediction>>() {
            again.extend(entry?.1);
        }
        if !again.is_empty() {
            tracing::info!(operator = %self.id, records = again.len(), "delivering again what the snapshot had not delivered");
        }
        again.into_iter().for_each(|p| self.submit(p));
        Ok(())
    }

    fn on_records(&mut self, _: &EpochContext, records: Vec<Prediction>, _: &mut Vec<()>) {
        records.into_iter().for_each(|p| self.submit(p));
        self.absorb();
    }

    fn snapshot(&mut self, _: &EpochContext, w: &mut StateWriter<'_>) -> Result<(), StateError> {
        self.absorb();
        let mut by_group: BTreeMap<u32, Vec<&Prediction>> = BTreeMap::new();
        for p in self.pending.values() {
            by_group
                .entry(self.groups.of(&p.device))
                .or_default()
                .push(p);
        }
        for (g, ps) in by_group {
            w.keyed(g, &ps)?;
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some(d) = &mut self.delivery {
            d.finish();
        }
        self.absorb();
    }
}
