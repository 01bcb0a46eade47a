//! Event time and watermarks.
//!
//! Event time is kept in whole milliseconds ([`EventTime`]) so window arithmetic is exact.
//! A source tracks each partition's watermark with [`PartitionClock`] (max event time seen
//! minus the allowed out-of-orderness, idle after a timeout); the window operator combines
//! every partition's [`PartitionMark`] with [`JobWatermark`]: the minimum over the active
//! partitions, never moving backwards.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch.
pub type EventTime = i64;

/// The watermark before anything is known.
pub const MIN_WATERMARK: EventTime = i64::MIN;
/// The watermark of a partition that has ended (bounded input): everything may fire.
pub const MAX_WATERMARK: EventTime = i64::MAX;

/// Converts Unix seconds (the wire format) to [`EventTime`], rounding to the millisecond.
pub fn from_secs(secs: f64) -> EventTime {
    (secs * 1000.0).round() as EventTime
}

/// Converts [`EventTime`] back to Unix seconds.
pub fn to_secs(t: EventTime) -> f64 {
    t as f64 / 1000.0
}

/// What a source says about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarkState {
    /// Records with event time below this may be considered complete.
    Watermark(EventTime),
    /// No record for longer than the idle timeout: do not hold the job back.
    Idle,
    /// The partition has ended (bounded run): no more records will come.
    Finished,
}

/// One partition's watermark state, sent from the source to every window instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMark {
    /// Kafka partition id.
    pub partition: i32,
    /// Its state.
    pub state: MarkState,
}

/// Watermark bookkeeping of one partition on the source side.
#[derive(Debug, Clone)]
pub struct PartitionClock {
    out_of_orderness: EventTime,
    idle_timeout_ms: u64,
    max_event: Option<EventTime>,
    last_record_at_ms: u64,
    last_sent: Option<MarkState>,
    finished: bool,
}

impl PartitionClock {
    /// A clock for a partition opened at processing time `now_ms`.
    pub fn new(out_of_orderness_ms: EventTime, idle_timeout_ms: u64, now_ms: u64) -> Self {
        PartitionClock {
            out_of_orderness: out_of_orderness_ms,
            idle_timeout_ms,
            max_event: None,
            last_record_at_ms: now_ms,
            last_sent: None,
            finished: false,
        }
    }

    /// Notes a record with event time `t` read at processing time `now_ms`.
    pub fn observe(&mut self, t: EventTime, now_ms: u64) {
        self.max_event = Some(self.max_event.map_or(t, |m| m.max(t)));
        self.last_record_at_ms = now_ms;
    }

    /// Notes a record without a usable event time (refused by validation): the partition
    /// is alive, so it is not idle, but its watermark does not move.
    pub fn touch(&mut self, now_ms: u64) {
        self.last_record_at_ms = now_ms;
    }

    /// Whether the partition has ended.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Marks the partition ended.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The partition's state at `now_ms`.
    pub fn state(&self, now_ms: u64) -> MarkState {
        if self.finished {
            return MarkState::Finished;
        }
        let idle = now_ms.saturating_sub(self.last_record_at_ms) >= self.idle_timeout_ms;
        match self.max_event {
            _ if idle => MarkState::Idle,
            Some(m) => MarkState::Watermark(m.saturating_sub(self.out_of_orderness)),
            None => MarkState::Watermark(MIN_WATERMARK),
        }
    }

    /// The state to announce at `now_ms`, if it changed since the last announcement.
    pub fn poll_change(&mut self, now_ms: u64) -> Option<MarkState> {
        let s = self.state(now_ms);
        (self.last_sent != Some(s)).then(|| {
            self.last_sent = Some(s);
            s
        })
    }
}

/// The job's watermark as one window instance sees it: the minimum over every partition
/// of the source topic that is neither idle nor finished. Partitions not heard from yet
/// hold it at [`MIN_WATERMARK`]. When every partition is idle (or finished), it moves to
/// the lowest last watermark the idle ones announced, so what they delivered before
/// falling silent is not held back by the order in which they went idle. It never moves
/// backwards: a partition that returns from idleness below the current watermark has its
/// records judged late or not against the watermark as it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobWatermark {
    /// Per partition: its state and the last watermark it announced.
    partitions: BTreeMap<i32, (MarkState, EventTime)>,
    current: EventTime,
}

impl JobWatermark {
    /// Tracks partitions `0..partitions`.
    pub fn new(partitions: i32) -> Self {
        JobWatermark {
            partitions: (0..partitions)
                .map(|p| (p, (MarkState::Watermark(MIN_WATERMARK), MIN_WATERMARK)))
                .collect(),
            current: MIN_WATERMARK,
        }
    }

    /// Applies a mark; returns the (possibly advanced) job watermark.
    pub fn apply(&mut self, mark: PartitionMark) -> EventTime {
        let entry = self
            .partitions
            .entry(mark.partition)
            .or_insert((MarkState::Watermark(MIN_WATERMARK), MIN_WATERMARK));
        entry.0 = mark.state;
        if let MarkState::Watermark(w) = mark.state {
            entry.1 = w;
        }
        self.recompute()
    }

    fn recompute(&mut self) -> EventTime {
        let mut active: Option<EventTime> = None;
        let mut idle_last: Option<EventTime> = None;
        let mut all_finished = true;
        for (state, last) in self.partitions.values() {
            match state {
                MarkState::Watermark(w) => active = Some(active.map_or(*w, |m| m.min(*w))),
                // An idle partition that never announced a watermark has nothing to release.
                MarkState::Idle if *last > MIN_WATERMARK => {
                    idle_last = Some(idle_last.map_or(*last, |m| m.min(*last)));
                }
                MarkState::Idle => {}
                MarkState::Finished => {}
            }
            all_finished &= *state == MarkState::Finished;
        }
        let candidate = match (active, idle_last) {
            (Some(m), _) => m,
            // Everything has ended: the input is complete.
            (None, None) if all_finished && !self.partitions.is_empty() => MAX_WATERMARK,
            // Every partition idle or finished: what the idle ones announced is complete.
            (None, Some(last)) => last,
            (None, None) => self.current,
        };
        self.current = self.current.max(candidate);
        self.current
    }

    /// The current job watermark.
    pub fn current(&self) -> EventTime {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(partition: i32, state: MarkState) -> PartitionMark {
        PartitionMark { partition, state }
    }

    #[test]
    fn watermark_is_max_event_minus_out_of_orderness() {
        let mut c = PartitionClock::new(5_000, 60_000, 0);
        assert_eq!(c.state(0), MarkState::Watermark(MIN_WATERMARK));
        c.observe(100_000, 1);
        c.observe(90_000, 2);
        assert_eq!(c.state(3), MarkState::Watermark(95_000));
        assert_eq!(c.poll_change(3), Some(MarkState::Watermark(95_000)));
        assert_eq!(c.poll_change(4), None);
        assert_eq!(c.state(60_002), MarkState::Idle);
        c.observe(120_000, 60_003);
        assert_eq!(c.state(60_004), MarkState::Watermark(115_000));
    }

    #[test]
    fn job_watermark_is_min_over_active_partitions_and_monotone() {
        let mut w = JobWatermark::new(3);
        assert_eq!(w.apply(mark(0, MarkState::Watermark(100))), MIN_WATERMARK);
        assert_eq!(w.apply(mark(1, MarkState::Watermark(50))), MIN_WATERMARK);
        assert_eq!(w.apply(mark(2, MarkState::Watermark(70))), 50);
        // Partition 1 goes idle: it no longer holds the others back.
        assert_eq!(w.apply(mark(1, MarkState::Idle)), 70);
        // It rejoins below the current watermark: the watermark does not go back.
        assert_eq!(w.apply(mark(1, MarkState::Watermark(60))), 70);
        assert_eq!(w.apply(mark(1, MarkState::Watermark(200))), 70);
        assert_eq!(w.apply(mark(2, MarkState::Watermark(150))), 100);
    }

    #[test]
    fn all_idle_releases_what_the_idle_partitions_announced() {
        // Partition 2 never sends anything; 0 and 1 go idle just after it does.
        let mut w = JobWatermark::new(3);
        w.apply(mark(0, MarkState::Watermark(100)));
        w.apply(mark(1, MarkState::Watermark(80)));
        assert_eq!(
            w.apply(mark(1, MarkState::Idle)),
            MIN_WATERMARK,
            "2 still holds it"
        );
        assert_eq!(
            w.apply(mark(0, MarkState::Idle)),
            MIN_WATERMARK,
            "2 still holds it"
        );
        assert_eq!(
            w.apply(mark(2, MarkState::Idle)),
            80,
            "all idle: the lowest announced"
        );
    }

    #[test]
    fn all_idle_holds_and_all_finished_completes() {
        let mut w = JobWatermark::new(2);
        w.apply(mark(0, MarkState::Watermark(10)));
        w.apply(mark(1, MarkState::Watermark(20)));
        w.apply(mark(0, MarkState::Idle));
        assert_eq!(w.apply(mark(1, MarkState::Idle)), 20);
        w.apply(mark(0, MarkState::Finished));
        assert_eq!(w.current(), 20);
        assert_eq!(w.apply(mark(1, MarkState::Finished)), MAX_WATERMARK);
    }
}
