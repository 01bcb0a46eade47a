//! The sequence operator: each device's most recent window results in a ring; once full,
//! every new window yields the sequence the model reads. Keyed by device, on the
//! operator lifecycle: the rings are keyed state, written per key group. A device whose
//! newest window is older than the job watermark minus the state TTL is dropped.

use super::Epoch;
use crate::lifecycle::{
    EpochContext, JobContext, KeyGroups, Operator, RestoredState, StateError, StateWriter,
    encode_groups, lifecycle,
};
use crate::metrics;
use flowcast_operators::event_time::{EventTime, MIN_WATERMARK};
use flowcast_operators::sequence::{Sequence, Sequences};
use flowcast_operators::window::WindowResult;
use timely::dataflow::StreamVec;

/// The sequence operator's logic: [`Sequences`] on the lifecycle.
#[derive(Debug)]
pub struct SequenceOperator {
    state: Sequences,
    groups: KeyGroups,
    ttl_ms: EventTime,
    check_every_ms: EventTime,
    next_expiry: EventTime,
    devices: metrics::Counter,
    expired: metrics::Counter,
}

impl SequenceOperator {
    /// Rings of `len` windows on worker `worker`; rings of devices silent for longer than
    /// `ttl_ms` are dropped, checked every `check_every_ms` of watermark progress.
    pub fn new(
        job: &str,
        len: usize,
        (ttl_ms, check_every_ms): (EventTime, EventTime),
        groups: KeyGroups,
        worker: usize,
    ) -> Self {
        let index = worker.to_string();
        let labels = [
            ("job", job),
            ("operator", "sequence"),
            ("worker", index.as_str()),
        ];
        SequenceOperator {
            state: Sequences::new(len),
            groups,
            ttl_ms,
            check_every_ms: check_every_ms.max(1),
            next_expiry: MIN_WATERMARK,
            devices: metrics::gauge(
                "flowcast_sequence_keyed_devices",
                "Devices in keyed state",
                &labels,
            ),
            expired: metrics::counter(
                "flowcast_state_expired_devices_total",
                "Devices evicted from keyed state after the state TTL",
                &labels,
            ),
        }
    }
}

impl Operator for SequenceOperator {
    type In = WindowResult;
    type Out = Sequence;

    fn id(&self) -> &str {
        "sequence"
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        for group in state.keyed::<Sequences>() {
            self.state
                .merge(group?.1)
                .map_err(|detail| StateError::Mismatch(format!("sequence: {detail}")))?;
        }
        self.devices.set(self.state.devices() as u64);
        Ok(())
    }

    fn on_records(
        &mut self,
        _: &EpochContext,
        records: Vec<WindowResult>,
        out: &mut Vec<Sequence>,
    ) {
        out.extend(records.iter().filter_map(|w| self.state.push(w)));
        self.devices.set(self.state.devices() as u64);
    }

    fn on_epoch_complete(&mut self, ctx: &EpochContext, _: &mut Vec<Sequence>) {
        if ctx.watermark >= self.next_expiry && ctx.watermark > MIN_WATERMARK {
            let n = self.state.expire(ctx.watermark.saturating_sub(self.ttl_ms));
            self.expired.add(n as u64);
            self.devices.set(self.state.devices() as u64);
            self.next_expiry = ctx.watermark.saturating_add(self.check_every_ms);
        }
    }

    fn snapshot(
        &mut self,
        _: &EpochContext,
        state: &mut StateWriter<'_>,
    ) -> Result<(), StateError> {
        // A copy-on-write freeze (a pointer per device) on the worker; grouping and
        // encoding on the checkpoint writer's pool.
        let frozen = self.state.clone();
        let groups = self.groups;
        state.keyed_later(move || encode_groups(frozen.split_by(|d| groups.of(d))));
        Ok(())
    }
}

/// Keyed last-N state on a stream of window results.
pub trait LastWindows<'s> {
    /// Keeps the `len` most recent windows per device; emits full sequences. `ttl` is the
    /// state TTL and the check interval, ms of event time.
    fn last_windows(
        self,
        job: &str,
        len: usize,
        ttl: (EventTime, EventTime),
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Sequence>;
}

impl<'s> LastWindows<'s> for StreamVec<'s, Epoch, WindowResult> {
    fn last_windows(
        self,
        job: &str,
        len: usize,
        ttl: (EventTime, EventTime),
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Sequence> {
        let op = SequenceOperator::new(job, len, ttl, ctx.state.key_groups(), ctx.state.index());
        let pact = ctx.keyed(|w: &WindowResult| w.device.as_str());
        lifecycle(self, pact, ctx, op)
    }
}
