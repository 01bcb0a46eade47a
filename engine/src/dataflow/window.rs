//! The tumbling event-time window operator, keyed by device, on the operator lifecycle.
//!
//! Readings are exchanged by the device's key group; the lifecycle adapter hands over an
//! epoch's readings once the epoch is complete, judged late or not against the watermark
//! as it stood, then advances the job watermark with the epoch's partition marks, which
//! fires windows. Late updates within the allowed lateness re-emit the window; later
//! records leave through the late-data output. Open and retained windows are keyed state,
//! written per key group; the watermark they were advanced to is replicated state. With
//! `max-devices`, a device finds a place in its key group or its readings are refused
//! (dead letters, reason `device_limit`); places of devices silent longer than the state
//! TTL are given back.

use super::{DeadLetter, Epoch, LateRecord, SourcedReading};
use crate::lifecycle::{
    EpochContext, JobContext, KeyGroups, Operator, RestoredState, StateError, StateWriter,
    encode_groups, lifecycle,
};
use crate::metrics;
use flowcast_operators::admission::{Admission, AdmittedGroup};
use flowcast_operators::event_time::{EventTime, MIN_WATERMARK};
use flowcast_operators::window::{Insert, TumblingWindows, WindowResult, WindowsPart};
use std::collections::BTreeMap;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::{Map, Partition};

/// What the window operator emits.
#[derive(Debug, Clone)]
pub enum WindowEvent {
    /// A window fired (or was revised by a late record).
    Fired(WindowResult),
    /// A record later than the allowed lateness.
    Late(LateRecord),
    /// A reading of a device past the job's device cap.
    Refused(DeadLetter),
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
    /// The source topic (origin of refused readings).
    pub topic: String,
    /// State TTL, ms of event time.
    pub ttl_ms: EventTime,
    /// The job's device cap, if any.
    pub max_devices: Option<usize>,
}

/// The window operator's logic: [`TumblingWindows`] on the lifecycle.
#[derive(Debug)]
pub struct WindowOperator {
    windows: TumblingWindows,
    groups: KeyGroups,
    topic: String,
    admission: Option<Admission>,
    next_expiry: EventTime,
    fired: Vec<WindowResult>,
    fired_count: metrics::Counter,
    late_count: metrics::Counter,
    added: metrics::Counter,
    wm_gauge: metrics::Counter,
    refused: metrics::Counter,
    expired: metrics::Counter,
    admitted: metrics::Counter,
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
            topic: cfg.topic.clone(),
            admission: cfg
                .max_devices
                .map(|m| Admission::new(m, groups.count(), cfg.ttl_ms)),
            next_expiry: MIN_WATERMARK,
            fired: Vec::new(),
            fired_count: metrics::counter(
                "flowcast_window_fired_windows_total",
                "Windows fired (incl. revisions)",
                &labels,
            ),
            late_count: metrics::counter(
                "flowcast_window_late_records_total",
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
            refused: metrics::counter(
                "flowcast_source_dead_letter_records_total",
                "Records refused by validation, by reason",
                &[("job", cfg.job.as_str()), ("reason", DEVICE_LIMIT)],
            ),
            expired: metrics::counter(
                "flowcast_state_expired_devices_total",
                "Devices evicted from keyed state after the state TTL",
                &labels,
            ),
            admitted: metrics::gauge(
                "flowcast_state_admitted_devices",
                "Devices holding one of the places of the device cap",
                &labels,
            ),
        }
    }

    /// Whether the reading's device may hold state; a refused reading becomes a dead letter.
    fn admit(&mut self, r: &SourcedReading, out: &mut Vec<WindowEvent>) -> bool {
        let Some(admission) = &mut self.admission else {
            return true;
        };
        let device = &r.reading.device;
        if admission.admit(self.groups.of(device), device, r.event_time) {
            return true;
        }
        self.refused.inc();
        out.push(WindowEvent::Refused(DeadLetter {
            topic: self.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            key: Some(device.as_bytes().to_vec()),
            payload: r.reading.to_json(),
            reason: DEVICE_LIMIT,
            detail: format!(
                "the job holds its cap of devices ({} per key group); this device is not admitted",
                admission.per_group()
            ),
        }));
        false
    }
}

/// Dead-letter reason of readings refused by the device cap.
pub const DEVICE_LIMIT: &str = "device_limit";

/// What a snapshot keeps of one key group of the window operator.
type WindowGroup = (WindowsPart, Option<AdmittedGroup>);

impl Operator for WindowOperator {
    type In = SourcedReading;
    type Out = WindowEvent;

    fn id(&self) -> &str {
        "window"
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        let watermark: EventTime = state.replicated()?.unwrap_or(MIN_WATERMARK);
        self.windows.restore_watermark(watermark);
        for part in state.keyed::<WindowGroup>() {
            let (group, (windows, admitted)) = part?;
            self.windows.merge(windows);
            if let (Some(a), Some(admitted)) = (&mut self.admission, admitted) {
                a.restore(group, admitted);
            }
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
            if !self.admit(&r, out) {
                continue;
            }
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
        // Places of silent devices, checked once per window length of watermark progress.
        if let Some(a) = &mut self.admission
            && wm >= self.next_expiry
        {
            self.expired.add(a.expire(wm) as u64);
            self.next_expiry = wm.saturating_add(self.windows.length());
        }
        if let Some(a) = &self.admission {
            self.admitted.set(a.devices() as u64);
        }
    }

    fn snapshot(
        &mut self,
        _: &EpochContext,
        state: &mut StateWriter<'_>,
    ) -> Result<(), StateError> {
        // The split shares each device's windows copy-on-write (a pointer per device);
        // encoding happens on the checkpoint writer's pool.
        let mut groups: BTreeMap<u32, WindowGroup> = self
            .windows
            .split_by(|d| self.groups.of(d))
            .into_iter()
            .map(|(g, w)| (g, (w, None)))
            .collect();
        if let Some(a) = &self.admission {
            for (g, admitted) in a.groups() {
                groups.entry(g).or_default().1 = Some(admitted.clone());
            }
        }
        state.keyed_later(move || encode_groups(groups));
        state.replicated(&self.windows.watermark())
    }
}

/// Tumbling windows on a stream of readings.
pub trait TumblingWindow<'s> {
    /// Averages each device's readings per window; returns (fired windows, late records,
    /// readings refused by the device cap).
    /// The job watermark comes from the partition marks in `ctx`'s signals.
    ///
    /// # Examples
    /// ```no_run
    /// # use flowcast_engine::dataflow::{window::{TumblingWindow, WindowConfig}, SourcedReading};
    /// # fn build<'s>(readings: timely::dataflow::StreamVec<'s, u64, SourcedReading>, ctx: &flowcast_engine::lifecycle::JobContext<'s>) {
    /// let cfg = WindowConfig {
    ///     job: "doc".into(), length_ms: 1_800_000, lateness_ms: 0, topic: "DHT11".into(),
    ///     ttl_ms: 7 * 24 * 3_600_000, max_devices: None,
    /// };
    /// let (_windows, _late, _refused) = readings.tumbling_window(cfg, ctx);
    /// # }
    /// ```
    fn tumbling_window(
        self,
        cfg: WindowConfig,
        ctx: &JobContext<'s>,
    ) -> (
        StreamVec<'s, Epoch, WindowResult>,
        StreamVec<'s, Epoch, LateRecord>,
        StreamVec<'s, Epoch, DeadLetter>,
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
        StreamVec<'s, Epoch, DeadLetter>,
    ) {
        let op = WindowOperator::new(&cfg, ctx.state.key_groups(), ctx.state.index());
        let pact = ctx.keyed(|r: &SourcedReading| r.reading.device.as_str());
        let events = lifecycle(self, pact, ctx, op);
        let mut parts = events
            .partition(3, |e| {
                let route = match &e {
                    WindowEvent::Fired(_) => 0,
                    WindowEvent::Late(_) => 1,
                    WindowEvent::Refused(_) => 2,
                };
                (route, e)
            })
            .into_iter();
        let (Some(fired), Some(late), Some(refused)) = (parts.next(), parts.next(), parts.next())
        else {
            unreachable!("partition(3) returns three streams")
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
            refused.flat_map(|e| {
                if let WindowEvent::Refused(d) = e {
                    Some(d)
                } else {
                    None
                }
            }),
        )
    }
}
