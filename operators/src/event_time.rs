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

/// What a partition's clock keeps across a restart (part of the source's per-partition
/// state): the newest event time seen and whether the partition was idle. The rest of
/// the clock is processing time, which starts again on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    /// Newest event time seen on the partition.
    pub max_event: Option<EventTime>,
    /// The last state announced to the window operators.
    pub last_sent: Option<MarkState>,
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
    /// Restored idle: stays idle until a record arrives.
    idle_until_record: bool,
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
            idle_until_record: false,
        }
    }

    /// A clock restored from `state` at processing time `now_ms`: a partition that was idle
    /// stays idle until a record arrives, so a restore announces nothing new for it.
    pub fn restored(
        state: ClockState,
        out_of_orderness_ms: EventTime,
        idle_timeout_ms: u64,
        now_ms: u64,
    ) -> Self {
        PartitionClock {
            out_of_orderness: out_of_orderness_ms,
            idle_timeout_ms,
            max_event: state.max_event,
            last_record_at_ms: now_ms,
            last_sent: state.last_sent,
            finished: false,
            idle_until_record: state.last_sent == Some(MarkState::Idle),
        }
    }

    /// What a snapshot keeps of this clock.
    pub fn state(&self) -> ClockState {
        ClockState {
            max_event: self.max_event,
            last_sent: self.last_sent,
        }
    }

    /// Notes a record with event time `t` read at processing time `now_ms`.
    pub fn observe(&mut self, t: EventTime, now_ms: u64) {
        self.max_event = Some(self.max_event.map_or(t, |m| m.max(t)));
        self.last_record_at_ms = now_ms;
        self.idle_until_record = false;
    }

    /// Notes a record without a usable event time (refused by validation): the partition
    /// is alive, so it is not idle, but its watermark does not move.
    pub fn touch(&mut self, now_ms: u64) {
        self.last_record_at_ms = now_ms;
        self.idle_until_record = false;
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
    pub fn mark_state(&self, now_ms: u64) -> MarkState {
        if self.finished {
            return MarkState::Finished;
        }
        let idle = self.idle_until_record
            || now_ms.saturating_sub(self.last_record_at_ms) >= self.idle_timeout_ms;
        match self.max_event {
            _ if idle => MarkState::Idle,
            Some(m) => MarkState::Watermark(m.saturating_sub(self.out_of_orderness)),
            None => MarkState::Watermark(MIN_WATERMARK),
        }
    }

    /// The state to announce at `now_ms`, if it changed since the last announcement.
    pub fn poll_change(&mut self, now_ms: u64) -> Option<MarkState> {
        let s = self.mark_state(now_ms);
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
        self.note(mark);
        self.recompute()
    }

    /// Applies every mark of one epoch, then recomputes once: marks of different
    /// partitions reach the operator instances in different orders, and the result must
    /// not depend on that order (each partition's own marks arrive in order).
    pub fn apply_all(&mut self, marks: impl IntoIterator<Item = PartitionMark>) -> EventTime {
        for m in marks {
            self.note(m);
        }
        self.recompute()
    }

    fn note(&mut self, mark: PartitionMark) {
        let entry = self
            .partitions
            .entry(mark.partition)
            .or_insert((MarkState::Watermark(MIN_WATERMARK), MIN_WATERMARK));
        entry.0 = mark.state;
        if let MarkState::Watermark(w) = mark.state {
            entry.1 = w;
        }
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
        assert_eq!(c.mark_state(0), MarkState::Watermark(MIN_WATERMARK));
        c.observe(100_000, 1);
        c.observe(90_000, 2);
        assert_eq!(c.mark_state(3), MarkState::Watermark(95_000));
        assert_eq!(c.poll_change(3), Some(MarkState::Watermark(95_000)));
        assert_eq!(c.poll_change(4), None);
        assert_eq!(c.mark_state(60_002), MarkState::Idle);
        c.observe(120_000, 60_003);
        assert_eq!(c.mark_state(60_004), MarkState::Watermark(115_000));
    }

    #[test]
    fn a_restored_clock_keeps_its_watermark_and_idleness() {
        let mut c = PartitionClock::new(5_000, 60_000, 0);
        c.observe(100_000, 1);
        assert_eq!(c.poll_change(2), Some(MarkState::Watermark(95_000)));
        // Restored much later in processing time: same watermark, nothing new to say.
        let mut r = PartitionClock::restored(c.state(), 5_000, 60_000, 1_000_000);
        assert_eq!(r.poll_change(1_000_001), None);
        assert_eq!(r.poll_change(1_060_001), Some(MarkState::Idle));
        // An idle partition restored stays idle until a record arrives.
        let mut i = PartitionClock::restored(r.state(), 5_000, 60_000, 5);
        assert_eq!(i.poll_change(6), None);
        i.observe(200_000, 7);
        assert_eq!(i.poll_change(8), Some(MarkState::Watermark(195_000)));
    }

    #[test]
    fn marks_of_one_epoch_give_the_same_watermark_in_any_order() {
        let marks = [
            mark(0, MarkState::Watermark(100)),
            mark(1, MarkState::Idle),
            mark(2, MarkState::Watermark(300)),
            mark(1, MarkState::Watermark(50)),
        ];
        let mut a = JobWatermark::new(3);
        a.apply_all(marks);
        let mut b = JobWatermark::new(3);
        b.apply_all([marks[2], marks[0], marks[1], marks[3]]);
        assert_eq!(a.current(), 50);
        assert_eq!(a.current(), b.current());
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
