//! The tumbling event-time window operator, keyed by device, on the operator lifecycle.
//!
//! Readings are exchanged by the device's key group; the lifecycle adapter hands over an
//! epoch's readings once the epoch is complete, judged late or not against the watermark
//! as it stood, then advances the job watermark with the epoch's partition marks, which
//! fires windows. Late updates within the allowed lateness re-emit the window; later
//! records leave through the late-data output. Open and retained windows are keyed state,
//! written per key group; the watermark they were advanced to is replicated state.

use super::{Epoch, LateRecord, SourcedReading};
use crate::lifecycle::{
    EpochContext, JobContext, KeyGroups, Operator, RestoredState, StateError, StateWriter,
    lifecycle,
};
use crate::metrics;
use flowcast_operators::event_time::{EventTime, MIN_WATERMARK};
use flowcast_operators::window::{Insert, TumblingWindows, WindowResult, WindowsPart};
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::{Map, Partition};

/// What the window operator emits.
#[derive(Debug, Clone)]
pub enum WindowEvent {
    /// A window fired (or was revised by a late record).
    Fired(WindowResult),
    /// A record later than the allowed lateness.
    Late(LateRecord),
}

/// Window settings.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Job name (metrics label).
    pub job: String,
    /// Window length, ms.
    pub length_ms: EventTime,
    /// Allowed lateness, ms.
    pub lateness_ms: EventTime,
}

/// The window operator's logic: [`TumblingWindows`] on the lifecycle.
#[derive(Debug)]
pub struct WindowOperator {
    windows: TumblingWindows,
    groups: KeyGroups,
    fired: Vec<WindowResult>,
    fired_count: metrics::Counter,
    late_count: metrics::Counter,
    added: metrics::Counter,
    wm_gauge: metrics::Counter,
}

impl WindowOperator {
    /// Windows for `cfg` on worker `worker`.
    pub fn new(cfg: &WindowConfig, groups: KeyGroups, worker: usize) -> Self {
        let index = worker.to_string();
        let labels = [
            ("job", cfg.job.as_str()),
            ("operator", "window"),
            ("worker", index.as_str()),
        ];
        WindowOperator {
            windows: TumblingWindows::new(cfg.length_ms, cfg.lateness_ms),
            groups,
            fired: Vec::new(),
            fired_count: metrics::counter(
                "flowcast_window_fired_total",
                "Windows fired (incl. revisions)",
                &labels,
            ),
            late_count: metrics::counter(
                "flowcast_late_records_total",
                "Records past the allowed lateness",
                &labels,
            ),
            added: metrics::counter(
                "flowcast_window_records_total",
                "Records added to windows (on time or within lateness)",
                &labels,
            ),
            wm_gauge: metrics::gauge(
                "flowcast_watermark_ms",
                "Job watermark seen by the window operator",
                &labels,
            ),
        }
    }
}

impl Operator for WindowOperator {
    type In = SourcedReading;
    type Out = WindowEvent;

    fn id(&self) -> &str {
        "window"
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        let watermark: EventTime = state.replicated()?.unwrap_or(MIN_WATERMARK);
        self.windows.restore_watermark(watermark);
        for part in state.keyed::<WindowsPart>() {
            self.windows.merge(part?.1);
        }
        Ok(())
    }

    fn on_records(
        &mut self,
        _: &EpochContext,
        records: Vec<SourcedReading>,
        out: &mut Vec<WindowEvent>,
    ) {
        let (mut late, mut accepted, mut revised) = (0, 0, 0);
        for r in records {
            let rd = &r.reading;
            match self
                .windows
                .insert(&rd.device, r.event_time, rd.temperature, rd.humidity)
            {
                Insert::Added => accepted += 1,
                Insert::Updated(w) => {
                    accepted += 1;
                    revised += 1;
                    out.push(WindowEvent::Fired(w));
                }
                Insert::Late { window_end } => {
                    late += 1;
                    let watermark = self.windows.watermark();
                    out.push(WindowEvent::Late(LateRecord {
                        record: r,
                        window_end,
                        watermark,
                    }));
                }
            }
        }
        self.late_count.add(late);
        self.added.add(accepted);
        self.fired_count.add(revised);
    }

    fn on_epoch_complete(&mut self, ctx: &EpochContext, out: &mut Vec<WindowEvent>) {
        self.windows.advance(ctx.watermark, &mut self.fired);
        if !self.fired.is_empty() {
            super::latency::mark_fired(ctx.epoch);
        }
        self.fired_count.add(self.fired.len() as u64);
        out.extend(self.fired.drain(..).map(WindowEvent::Fired));
        let wm = ctx.watermark;
        if wm > i64::MIN && wm < i64::MAX {
            self.wm_gauge.set(wm as u64);
        }
    }

    fn snapshot(
        &mut self,
        _: &EpochContext,
        state: &mut StateWriter<'_>,
    ) -> Result<(), StateError> {
        for (group, part) in self.windows.split_by(|d| self.groups.of(d)) {
            state.keyed(group, &part)?;
        }
        state.replicated(&self.windows.watermark())
    }
}

/// Tumbling windows on a stream of readings.
pub trait TumblingWindow<'s> {
    /// Averages each device's readings per window; returns (fired windows, late records).
    /// The job watermark comes from the partition marks in `ctx`'s signals.
    ///
    /// # Examples
    /// ```no_run
    /// # use flowcast_engine::dataflow::{window::{TumblingWindow, WindowConfig}, SourcedReading};
    /// # fn build<'s>(readings: timely::dataflow::StreamVec<'s, u64, SourcedReading>, ctx: &flowcast_engine::lifecycle::JobContext<'s>) {
    /// let cfg = WindowConfig { job: "doc".into(), length_ms: 1_800_000, lateness_ms: 0 };
    /// let (_windows, _late) = readings.tumbling_window(cfg, ctx);
    /// # }
    /// ```
    fn tumbling_window(
        self,
        cfg: WindowConfig,
        ctx: &JobContext<'s>,
    ) -> (
        StreamVec<'s, Epoch, WindowResult>,
        StreamVec<'s, Epoch, LateRecord>,
    );
}

impl<'s> TumblingWindow<'s> for StreamVec<'s, Epoch, SourcedReading> {
    fn tumbling_window(
        self,
        cfg: WindowConfig,
        ctx: &JobContext<'s>,
    ) -> (
        StreamVec<'s, Epoch, WindowResult>,
        StreamVec<'s, Epoch, LateRecord>,
    ) {
        let op = WindowOperator::new(&cfg, ctx.state.key_groups(), ctx.state.index());
        let pact = ctx.keyed(|r: &SourcedReading| r.reading.device.as_str());
        let events = lifecycle(self, pact, ctx, op);
        let mut parts = events
            .partition(2, |e| {
                (
                    if matches!(e, WindowEvent::Fired(_)) {
                        0
                    } else {
                        1
                    },
                    e,
                )
            })
            .into_iter();
        let (Some(fired), Some(late)) = (parts.next(), parts.next()) else {
            unreachable!("partition(2) returns two streams")
        };
        (
            fired.flat_map(|e| {
                if let WindowEvent::Fired(w) = e {
                    Some(w)
                } else {
                    None
                }
            }),
            late.flat_map(|e| {
                if let WindowEvent::Late(l) = e {
                    Some(l)
                } else {
                    None
                }
            }),
        )
    }
}
