//! Keyed sequences: each device's most recent window results, in a fixed-size ring.
//!
//! When a device's ring is full, every new window yields the sequence the model reads
//! (oldest first). A late update of a window still in the ring replaces it; if it is the
//! newest window, the sequence is emitted again so its forecast is revised.

use crate::event_time::EventTime;
use crate::window::WindowResult;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// One device's ring, oldest first: the `[temperature, humidity]` means and, beside them,
/// each window's distance in windows to the one before it (unused for the oldest;
/// saturating at 65 535 windows, only revisions across such a silence would miss). The
/// distances are kept only while the ring holds a gap: empty, every distance is 1. Eight
/// bytes a window (ten with a gap) plus the newest window's start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ring {
    newest_start: EventTime,
    values: VecDeque<[f32; 2]>,
    gaps: VecDeque<u16>,
}

impl Ring {
    /// Index of the entry whose window starts at `start`, searching back from the newest.
    fn find(&self, start: EventTime, length: EventTime) -> Option<usize> {
        let mut at = self.newest_start;
        for i in (0..self.values.len()).rev() {
            if at == start {
                return Some(i);
            }
            if at < start {
                return None;
            }
            at -= EventTime::from(self.gap(i)) * length;
        }
        None
    }

    /// Distance in windows from entry `i` to the one before it.
    fn gap(&self, i: usize) -> u16 {
        self.gaps.get(i).copied().unwrap_or(1)
    }

    /// Appends a window `gap` windows after the newest, dropping the oldest beyond `len`.
    fn push_back(&mut self, v: [f32; 2], gap: u16, len: usize) {
        if self.values.len() == len {
            self.values.pop_front();
            if self.gaps.pop_front().is_some() && self.gaps.iter().skip(1).all(|g| *g == 1) {
                // The last gap has left the ring.
                self.gaps = VecDeque::new();
            }
        }
        if !self.gaps.is_empty() || (gap != 1 && !self.values.is_empty()) {
            if self.gaps.is_empty() {
                self.gaps = std::iter::repeat_n(1, self.values.len()).collect();
            }
            self.gaps.push_back(gap);
        }
        self.values.push_back(v);
    }
}

/// A full sequence, ready for the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// Device id.
    pub device: String,
    /// Start of the newest window, ms.
    pub window_start: EventTime,
    /// End of the newest window, ms.
    pub window_end: EventTime,
    /// The newest window's means (full precision), for the prediction record.
    pub observed: [f64; 2],
    /// `[temperature, humidity]` per window, oldest first; `len` entries.
    pub values: Vec<[f32; 2]>,
}

/// Rings of every device on one worker.
///
/// Rings are shared copy-on-write: `clone` (and [`Sequences::split_by`]) copies one
/// pointer per device, and a ring still shared with such a copy is copied when it next
/// changes. A snapshot therefore freezes the state in a few milliseconds on the worker
/// and encodes the frozen copy elsewhere. (Serde writes an `Arc<T>` as its `T`: the
/// encoding is the same as that of plain boxed values.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sequences {
    len: usize,
    rings: HashMap<Arc<str>, Arc<Ring>>,
}

impl Sequences {
    /// Keeps the `len` most recent windows per device.
    ///
    /// # Panics
    /// If `len` is zero.
    pub fn new(len: usize) -> Self {
        assert!(len > 0, "sequence length must be positive");
        Sequences {
            len,
            rings: HashMap::new(),
        }
    }

    /// Number of devices tracked.
    pub fn devices(&self) -> usize {
        self.rings.len()
    }

    /// The rings of every device, grouped by `group(device)`: one `Sequences` per group,
    /// for a snapshot by key group. The parts share the rings (copy-on-write).
    pub fn split_by(&self, group: impl Fn(&str) -> u32) -> BTreeMap<u32, Sequences> {
        let mut parts: BTreeMap<u32, Sequences> = BTreeMap::new();
        for (device, ring) in &self.rings {
            parts
                .entry(group(device))
                .or_insert_with(|| Sequences {
                    len: self.len,
                    rings: HashMap::new(),
                })
                .rings
                .insert(Arc::clone(device), Arc::clone(ring));
        }
        parts
    }

    /// Takes over the rings of `other` (a restored key group).
    ///
    /// # Errors
    /// If `other` keeps a different number of windows per device.
    pub fn merge(&mut self, other: Sequences) -> Result<(), String> {
        if other.len != self.len {
            return Err(format!(
                "the state keeps {} windows per device but the job's sequence length is {}",
                other.len, self.len
            ));
        }
        self.rings.extend(other.rings);
        Ok(())
    }

    /// Drops the rings of devices whose newest window started before `cutoff` (devices
    /// silent for longer than the state TTL); returns how many.
    pub fn expire(&mut self, cutoff: EventTime) -> usize {
        let before = self.rings.len();
        self.rings.retain(|_, r| r.newest_start >= cutoff);
        before - self.rings.len()
    }

    /// Adds a window result; returns the sequence to forecast from, if any.
    pub fn push(&mut self, w: &WindowResult) -> Option<Sequence> {
        let length = (w.end - w.start).max(1);
        let ring = match self.rings.get_mut(w.device.as_str()) {
            Some(r) => r,
            None => self
                .rings
                .entry(w.device.as_str().into())
                .or_insert_with(|| {
                    Arc::new(Ring {
                        newest_start: w.start,
                        values: VecDeque::with_capacity(self.len),
                        gaps: VecDeque::new(),
                    })
                }),
        };
        // Copies the ring only if a snapshot still holds it.
        let ring = Arc::make_mut(ring);
        let v = [w.temperature as f32, w.humidity as f32];
        if !ring.values.is_empty() && w.start < ring.newest_start {
            // A revision of an older window: update it in place, emit nothing.
            if let Some(i) = ring.find(w.start, length) {
                ring.values[i] = v;
            }
            return None;
        }
        if !ring.values.is_empty() && w.start == ring.newest_start {
            if let Some(last) = ring.values.back_mut() {
                *last = v;
            }
        } else {
            let gap = if ring.values.is_empty() {
                0
            } else {
                u16::try_from((w.start - ring.newest_start) / length).unwrap_or(u16::MAX)
            };
            ring.push_back(v, gap, self.len);
            ring.newest_start = w.start;
        }
        (ring.values.len() == self.len).then(|| Sequence {
            device: w.device.clone(),
            window_start: w.start,
            window_end: w.end,
            observed: [w.temperature, w.humidity],
            values: ring.values.iter().copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(start: EventTime, t: f64, revision: u32) -> WindowResult {
        WindowResult {
            device: "a".into(),
            start,
            end: start + 10,
            temperature: t,
            humidity: 50.0,
            count: 1,
            revision,
        }
    }

    #[test]
    fn emits_once_full_and_slides() {
        let mut s = Sequences::new(3);
        assert!(s.push(&win(0, 1.0, 0)).is_none());
        assert!(s.push(&win(10, 2.0, 0)).is_none());
        let q = s.push(&win(20, 3.0, 0)).expect("full");
        assert_eq!(
            q.values.iter().map(|v| v[0]).collect::<Vec<_>>(),
            vec![1.0, 2.0, 3.0]
        );
        let q = s.push(&win(30, 4.0, 0)).expect("slides");
        assert_eq!(
            q.values.iter().map(|v| v[0]).collect::<Vec<_>>(),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(q.window_end, 40);
    }

    #[test]
    fn silent_devices_expire() {
        let mut s = Sequences::new(2);
        s.push(&win(0, 1.0, 0));
        let mut b = win(50, 1.0, 0);
        b.device = "b".into();
        s.push(&b);
        assert_eq!(s.expire(10), 1, "`a`'s newest window starts at 0");
        assert_eq!(s.devices(), 1);
    }

    #[test]
    fn split_and_merge_keep_every_ring() {
        let mut s = Sequences::new(2);
        for d in ["a", "b", "c"] {
            let mut w = win(0, 1.0, 0);
            w.device = d.into();
            s.push(&w);
        }
        let parts = s.split_by(|d| u32::from(d != "a"));
        assert_eq!(parts.len(), 2);
        let mut back = Sequences::new(2);
        for p in parts.into_values() {
            back.merge(p).expect("same length");
        }
        assert_eq!(back.devices(), 3);
        let mut w = win(10, 2.0, 0);
        w.device = "b".into();
        assert_eq!(back.push(&w), s.push(&w));
        assert!(Sequences::new(3).merge(back).is_err());
    }

    #[test]
    fn revisions_replace_instead_of_pushing() {
        let mut s = Sequences::new(2);
        s.push(&win(0, 1.0, 0));
        s.push(&win(10, 2.0, 0));
        let q = s
            .push(&win(10, 2.5, 1))
            .expect("newest revised: emitted again");
        assert_eq!(
            q.values.iter().map(|v| v[0]).collect::<Vec<_>>(),
            vec![1.0, 2.5]
        );
        assert!(
            s.push(&win(0, 1.5, 1)).is_none(),
            "older revision is silent"
        );
        let q = s.push(&win(20, 3.0, 0)).expect("slides");
        assert_eq!(
            q.values.iter().map(|v| v[0]).collect::<Vec<_>>(),
            vec![2.5, 3.0]
        );
    }

    #[test]
    fn a_frozen_copy_keeps_its_rings_while_the_original_moves_on() {
        let mut s = Sequences::new(2);
        s.push(&win(0, 1.0, 0));
        s.push(&win(10, 2.0, 0));
        let frozen = s.clone();
        let before = bincode_free_snapshot(&frozen);
        s.push(&win(20, 3.0, 0));
        s.push(&win(10, 9.0, 1));
        assert_eq!(
            bincode_free_snapshot(&frozen),
            before,
            "the copy did not change"
        );
        assert_ne!(bincode_free_snapshot(&s), before, "the original did");
        let mut parts = frozen.split_by(|_| 0);
        let mut back = parts.remove(&0).expect("one group");
        assert_eq!(
            back.push(&win(20, 3.0, 0)).expect("full").values,
            vec![[2.0, 50.0], [3.0, 50.0]]
        );
    }

    #[test]
    fn gaps_are_kept_while_the_ring_holds_one() {
        let mut s = Sequences::new(3);
        for start in [0, 10, 40, 50, 60] {
            s.push(&win(start, start as f64, 0));
        }
        let ring = |s: &Sequences| s.rings["a"].gaps.clone();
        assert!(
            ring(&s).is_empty(),
            "40, 50, 60: the gap before 40 has left"
        );
        s.push(&win(90, 9.0, 0));
        assert_eq!(ring(&s), [1, 1, 3]);
        // A revision of a window behind the gap is found.
        s.push(&win(50, 5.5, 1));
        let q = s.push(&win(100, 10.0, 0)).expect("full");
        assert_eq!(
            q.values.iter().map(|v| v[0]).collect::<Vec<_>>(),
            vec![60.0, 9.0, 10.0]
        );
        s.push(&win(110, 11.0, 0));
        s.push(&win(120, 12.0, 0));
        assert!(ring(&s).is_empty(), "100, 110, 120");
    }

    fn bincode_free_snapshot(s: &Sequences) -> String {
        serde_json::to_string(s).expect("serializes")
    }
}
