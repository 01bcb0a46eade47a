//! Keyed sequences: each device's most recent window results, in a fixed-size ring.
//!
//! When a device's ring is full, every new window yields the sequence the model reads
//! (oldest first). A late update of a window still in the ring replaces it; if it is the
//! newest window, the sequence is emitted again so its forecast is revised.

use crate::event_time::EventTime;
use crate::window::WindowResult;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// One device's ring: window starts and `[temperature, humidity]` means, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ring {
    starts: VecDeque<EventTime>,
    values: VecDeque<[f32; 2]>,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sequences {
    len: usize,
    rings: HashMap<String, Ring>,
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

    /// Bytes of ring storage per device when full (values and starts), for sizing.
    pub fn bytes_per_full_ring(&self) -> usize {
        self.len * (std::mem::size_of::<[f32; 2]>() + std::mem::size_of::<EventTime>())
    }

    /// Adds a window result; returns the sequence to forecast from, if any.
    pub fn push(&mut self, w: &WindowResult) -> Option<Sequence> {
        let ring = match self.rings.get_mut(&w.device) {
            Some(r) => r,
            None => self.rings.entry(w.device.clone()).or_insert_with(|| Ring {
                starts: VecDeque::with_capacity(self.len),
                values: VecDeque::with_capacity(self.len),
            }),
        };
        let v = [w.temperature as f32, w.humidity as f32];
        let newest = ring.starts.back().copied();
        match newest {
            Some(s) if w.start < s => {
                // A revision of an older window: update it in place, emit nothing.
                if let Ok(i) = ring.starts.binary_search(&w.start) {
                    ring.values[i] = v;
                }
                return None;
            }
            Some(s) if w.start == s => {
                if let Some(last) = ring.values.back_mut() {
                    *last = v;
                }
            }
            _ => {
                if ring.starts.len() == self.len {
                    ring.starts.pop_front();
                    ring.values.pop_front();
                }
                ring.starts.push_back(w.start);
                ring.values.push_back(v);
            }
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
}
