//! The tumbling event-time window operator, keyed by device.
//!
//! Readings are exchanged by [`key_hash`](super::key_hash) of the device; partition marks
//! are broadcast to every instance. Both are stashed per epoch; when the frontier passes
//! an epoch, its readings go into the windows first (judged late or not against the
//! watermark as it stood), then its marks advance the job watermark, which fires windows.
//! Late updates within the allowed lateness re-emit the window; later records leave
//! through the late-data output.

use super::{Epoch, LateRecord, PartitionMark, SourcedReading, key_hash};
use crate::metrics;
use flowcast_operators::event_time::{EventTime, JobWatermark};
use flowcast_operators::window::{Insert, TumblingWindows, WindowResult};
use std::collections::BTreeMap;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map, Partition};
use timely::dataflow::operators::{Capability, InputCapability};

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
    /// Number of source partitions: the watermark waits for all of them.
    pub partitions: i32,
    /// Window length, ms.
    pub length_ms: EventTime,
    /// Allowed lateness, ms.
    pub lateness_ms: EventTime,
}

/// Tumbling windows on a stream of readings.
pub trait TumblingWindow<'s> {
    /// Averages each device's readings per window; returns (fired windows, late records).
    ///
    /// # Examples
    /// ```no_run
    /// # use flowcast_engine::dataflow::{window::{TumblingWindow, WindowConfig}, SourcedReading, PartitionMark};
    /// # use timely::dataflow::operators::ToStream;
    /// timely::example(|scope| {
    ///     let readings = Vec::<SourcedReading>::new().to_stream(scope);
    ///     let marks = Vec::<PartitionMark>::new().to_stream(scope);
    ///     let cfg = WindowConfig { job: "doc".into(), partitions: 1, length_ms: 1_800_000, lateness_ms: 0 };
    ///     let (_windows, _late) = readings.tumbling_window(marks, cfg);
    /// });
    /// ```
    fn tumbling_window(
        self,
        marks: StreamVec<'s, Epoch, PartitionMark>,
        cfg: WindowConfig,
    ) -> (
        StreamVec<'s, Epoch, WindowResult>,
        StreamVec<'s, Epoch, LateRecord>,
    );
}

/// What arrived for one epoch, held until the epoch is complete.
struct Stash {
    cap: Capability<Epoch>,
    readings: Vec<SourcedReading>,
    marks: Vec<PartitionMark>,
}

impl Stash {
    /// The stash of the epoch `cap` is for, made (holding a capability) on first use.
    fn at<'a>(
        stash: &'a mut BTreeMap<Epoch, Stash>,
        cap: &InputCapability<Epoch>,
    ) -> Option<&'a mut Stash> {
        let t = *cap.least()?;
        Some(stash.entry(t).or_insert_with(|| Stash {
            cap: cap.delayed(&t, 0),
            readings: Vec::new(),
            marks: Vec::new(),
        }))
    }
}

impl<'s> TumblingWindow<'s> for StreamVec<'s, Epoch, SourcedReading> {
    fn tumbling_window(
        self,
        marks: StreamVec<'s, Epoch, PartitionMark>,
        cfg: WindowConfig,
    ) -> (
        StreamVec<'s, Epoch, WindowResult>,
        StreamVec<'s, Epoch, LateRecord>,
    ) {
        let index = self.scope().index().to_string();
        let marks = marks.broadcast();
        let events = self.binary_frontier(
            marks,
            Exchange::new(|r: &SourcedReading| key_hash(&r.reading.device)),
            Pipeline,
            "TumblingWindow",
            move |_cap, _info| {
                let mut windows = TumblingWindows::new(cfg.length_ms, cfg.lateness_ms);
                let mut watermark = JobWatermark::new(cfg.partitions);
                let mut stash: BTreeMap<Epoch, Stash> = BTreeMap::new();
                let mut fired = Vec::new();
                let labels = [
                    ("job", cfg.job.as_str()),
                    ("operator", "window"),
                    ("worker", index.as_str()),
                ];
                let fired_count = metrics::counter(
                    "flowcast_window_fired_total",
                    "Windows fired (incl. revisions)",
                    &labels,
                );
                let late_count = metrics::counter(
                    "flowcast_late_records_total",
                    "Records past the allowed lateness",
                    &labels,
                );
                let added = metrics::counter(
                    "flowcast_window_records_total",
                    "Records added to windows (on time or within lateness)",
                    &labels,
                );
                let wm_gauge = metrics::gauge(
                    "flowcast_watermark_ms",
                    "Job watermark seen by the window operator",
                    &labels,
                );
                move |(readings, f1), (mark_input, f2), output| {
                    readings.for_each(|cap, data| {
                        if let Some(s) = Stash::at(&mut stash, &cap) {
                            s.readings.append(data);
                        }
                    });
                    mark_input.for_each(|cap, data| {
                        if let Some(s) = Stash::at(&mut stash, &cap) {
                            s.marks.append(data);
                        }
                    });
                    while let Some((&t, _)) = stash.first_key_value() {
                        if f1.less_equal(&t) || f2.less_equal(&t) {
                            break;
                        }
                        let Some((_, s)) = stash.pop_first() else {
                            break;
                        };
                        let mut session = output.session(&s.cap);
                        let mut late = 0;
                        let mut accepted = 0;
                        for r in s.readings {
                            let rd = &r.reading;
                            match windows.insert(
                                &rd.device,
                                r.event_time,
                                rd.temperature,
                                rd.humidity,
                            ) {
                                Insert::Added => accepted += 1,
                                Insert::Updated(w) => {
                                    accepted += 1;
                                    fired_count.inc();
                                    session.give(WindowEvent::Fired(w));
                                }
                                Insert::Late { window_end } => {
                                    late += 1;
                                    let wm = windows.watermark();
                                    session.give(WindowEvent::Late(LateRecord {
                                        record: r,
                                        window_end,
                                        watermark: wm,
                                    }));
                                }
                            }
                        }
                        late_count.add(late);
                        added.add(accepted);
                        let mut wm = windows.watermark();
                        for m in s.marks {
                            wm = watermark.apply(m);
                        }
                        windows.advance(wm, &mut fired);
                        if !fired.is_empty() {
                            super::latency::mark_fired(*s.cap.time());
                        }
                        fired_count.add(fired.len() as u64);
                        session.give_iterator(fired.drain(..).map(WindowEvent::Fired));
                        if wm > i64::MIN && wm < i64::MAX {
                            wm_gauge.set(wm as u64);
                        }
                    }
                }
            },
        );
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
