//! Tumbling event-time windows: the mean temperature and humidity of each device's
//! readings per window.
//!
//! A window `[start, start + length)` fires when the watermark reaches its end. Until the
//! watermark passes `end + allowed lateness` it is kept: a late record then updates it
//! and the window is emitted again (a new revision). Records for windows already purged
//! are refused as late, for the late-data side output.

use crate::event_time::{EventTime, MAX_WATERMARK};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Running sums of one device's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Sums {
    temperature: f64,
    humidity: f64,
    count: u32,
    revision: u16,
    fired: bool,
}

/// The result of one window of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// Device id.
    pub device: String,
    /// Window start, ms.
    pub start: EventTime,
    /// Window end (exclusive), ms.
    pub end: EventTime,
    /// Mean temperature, °C.
    pub temperature: f64,
    /// Mean relative humidity, %.
    pub humidity: f64,
    /// Number of readings.
    pub count: u64,
    /// 0 when the window first fires; 1, 2, … for updates by late records.
    pub revision: u32,
}

/// What happened to an inserted record.
#[derive(Debug, Clone, PartialEq)]
pub enum Insert {
    /// Added to a window that has not fired yet.
    Added,
    /// Added to a fired window within the allowed lateness: its new result.
    Updated(WindowResult),
    /// Too late: the window was purged. Goes to the late-data output.
    Late {
        /// End of the window the record belonged to.
        window_end: EventTime,
    },
}

/// Tumbling windows of every device on one worker.
///
/// Devices are interned to dense ids so the indexes of pending and retained windows hold
/// 12-byte keys, and each device's windows sit in a small vector (usually one open
/// window): the per-device footprint stays small with many devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TumblingWindows {
    length: EventTime,
    lateness: EventTime,
    watermark: EventTime,
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    /// Per device id: its windows, shared copy-on-write with snapshots
    /// ([`TumblingWindows::split_by`] copies a pointer per device).
    windows: Vec<Arc<DeviceWindows>>,
    live_devices: usize,
    /// Ids of released devices, reused first.
    #[serde(default)]
    free: Vec<u32>,
    /// Windows not fired yet, by end: what the next watermark advance may fire.
    pending: BTreeSet<(EventTime, u32)>,
    /// Fired windows still kept for late updates, by `end + lateness`.
    retained: BTreeSet<(EventTime, u32, EventTime)>,
}

impl TumblingWindows {
    /// Windows of `length_ms`, keeping fired windows for `lateness_ms`.
    ///
    /// # Panics
    /// If `length_ms` is not positive or `lateness_ms` is negative.
    pub fn new(length_ms: EventTime, lateness_ms: EventTime) -> Self {
        assert!(
            length_ms > 0 && lateness_ms >= 0,
            "window length > 0, lateness ≥ 0"
        );
        TumblingWindows {
            length: length_ms,
            lateness: lateness_ms,
            watermark: i64::MIN,
            ids: HashMap::new(),
            names: Vec::new(),
            windows: Vec::new(),
            live_devices: 0,
            free: Vec::new(),
            pending: BTreeSet::new(),
            retained: BTreeSet::new(),
        }
    }

    /// Start of the window holding event time `t`.
    pub fn window_start(&self, t: EventTime) -> EventTime {
        t.div_euclid(self.length) * self.length
    }

    /// The window length, ms.
    pub fn length(&self) -> EventTime {
        self.length
    }

    /// The watermark the windows have been advanced to.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// Number of devices with open or retained windows.
    pub fn devices(&self) -> usize {
        self.live_devices
    }

    fn id(&mut self, device: &str) -> u32 {
        if let Some(id) = self.ids.get(device) {
            return *id;
        }
        let name: Arc<str> = device.into();
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = Arc::clone(&name);
                id
            }
            None => {
                self.names.push(Arc::clone(&name));
                self.windows.push(Arc::default());
                (self.names.len() - 1) as u32
            }
        };
        self.ids.insert(name, id);
        id
    }

    /// Forgets a device without windows: its id is reused, so a stream of ever new
    /// device ids does not grow the interning tables.
    fn release(&mut self, id: u32) {
        let name = std::mem::take(&mut self.names[id as usize]);
        self.ids.remove(&name);
        self.windows[id as usize] = Arc::default();
        self.free.push(id);
        self.live_devices -= 1;
    }

    /// Adds one reading.
    pub fn insert(
        &mut self,
        device: &str,
        t: EventTime,
        temperature: f64,
        humidity: f64,
    ) -> Insert {
        let start = self.window_start(t);
        let end = start.saturating_add(self.length);
        if end.saturating_add(self.lateness) <= self.watermark {
            return Insert::Late { window_end: end };
        }
        let id = self.id(device);
        // Copies the device's windows only if a snapshot still holds them.
        let slots = Arc::make_mut(&mut self.windows[id as usize]);
        if slots.is_empty() {
            self.live_devices += 1;
        }
        let i = match slots.iter().position(|(s, _)| *s == start) {
            Some(i) => i,
            None => {
                // Usually the only open window: no spare capacity.
                slots.reserve_exact(1);
                slots.push((start, Sums::default()));
                slots.len() - 1
            }
        };
        let sums = &mut slots[i].1;
        sums.temperature += temperature;
        sums.humidity += humidity;
        sums.count += 1;
        if sums.fired {
            sums.revision = sums.revision.saturating_add(1);
            let s = *sums;
            Insert::Updated(result(device, start, end, &s))
        } else if end <= self.watermark {
            // The first record of a window whose end the watermark has already passed
            // (within the allowed lateness): it fires at once, as Flink's event-time
            // trigger does.
            sums.fired = true;
            let s = *sums;
            self.retained
                .insert((end.saturating_add(self.lateness), id, start));
            Insert::Updated(result(device, start, end, &s))
        } else {
            if sums.count == 1 {
                self.pending.insert((end, id));
            }
            Insert::Added
        }
    }

    /// Advances the watermark: returns the windows that fire, ordered by (end, device id),
    /// and purges windows whose allowed lateness has passed.
    pub fn advance(&mut self, watermark: EventTime, fired: &mut Vec<WindowResult>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        while let Some((end, _)) = self.pending.first() {
            if *end > watermark {
                break;
            }
            let Some((end, id)) = self.pending.pop_first() else {
                break;
            };
            let start = end - self.length;
            if let Some((_, s)) = Arc::make_mut(&mut self.windows[id as usize])
                .iter_mut()
                .find(|(st, _)| *st == start)
            {
                s.fired = true;
                fired.push(result(&self.names[id as usize], start, end, s));
            }
            let purge_at = if watermark == MAX_WATERMARK {
                end
            } else {
                end.saturating_add(self.lateness)
            };
            self.retained.insert((purge_at, id, start));
        }
        while let Some((purge_at, _, _)) = self.retained.first() {
            if *purge_at > watermark && watermark != MAX_WATERMARK {
                break;
            }
            let Some((_, id, start)) = self.retained.pop_first() else {
                break;
            };
            let slots = Arc::make_mut(&mut self.windows[id as usize]);
            slots.retain(|(s, _)| *s != start);
            if slots.is_empty() {
                self.release(id);
            }
        }
    }
}

/// The windows of some devices, detached from the indexes: what a snapshot stores per key
/// group. [`TumblingWindows::split_by`] makes them, [`TumblingWindows::merge`] takes them
/// back (on any worker, at any parallelism).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowsPart {
    devices: Vec<(Arc<str>, Arc<DeviceWindows>)>,
}

/// One device's windows: (start, running sums), unordered, short.
type DeviceWindows = Vec<(EventTime, Sums)>;

impl WindowsPart {
    /// Number of devices in the part.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }
}

impl TumblingWindows {
    /// The open and retained windows of every device, grouped by `group(device)`. The
    /// parts share the windows (copy-on-write): a pointer per device is copied.
    pub fn split_by(&self, group: impl Fn(&str) -> u32) -> BTreeMap<u32, WindowsPart> {
        let mut parts: BTreeMap<u32, WindowsPart> = BTreeMap::new();
        for (name, slots) in self.names.iter().zip(&self.windows) {
            if !slots.is_empty() {
                parts
                    .entry(group(name))
                    .or_default()
                    .devices
                    .push((Arc::clone(name), Arc::clone(slots)));
            }
        }
        parts
    }

    /// Adds the windows of `part` (devices not held here yet), rebuilding the indexes:
    /// windows not fired yet wait for the watermark, fired ones for their lateness.
    pub fn merge(&mut self, part: WindowsPart) {
        for (name, slots) in part.devices {
            if slots.is_empty() {
                continue;
            }
            let id = self.id(&name);
            if self.windows[id as usize].is_empty() {
                self.live_devices += 1;
            }
            for &(start, sums) in slots.iter() {
                let end = start.saturating_add(self.length);
                if sums.fired {
                    let purge_at = if self.watermark == MAX_WATERMARK {
                        end
                    } else {
                        end.saturating_add(self.lateness)
                    };
                    self.retained.insert((purge_at, id, start));
                } else {
                    self.pending.insert((end, id));
                }
                Arc::make_mut(&mut self.windows[id as usize]).push((start, sums));
            }
        }
    }

    /// Sets the watermark the windows have been advanced to (a restore: the job
    /// watermark of the snapshot). Fires nothing.
    pub fn restore_watermark(&mut self, watermark: EventTime) {
        self.watermark = watermark;
    }
}

fn result(device: &str, start: EventTime, end: EventTime, s: &Sums) -> WindowResult {
    let n = s.count as f64;
    WindowResult {
        device: device.to_owned(),
        start,
        end,
        temperature: s.temperature / n,
        humidity: s.humidity / n,
        count: u64::from(s.count),
        revision: u32::from(s.revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: EventTime = 60_000;

    #[test]
    fn fires_means_when_watermark_reaches_the_end() {
        let mut w = TumblingWindows::new(30 * MIN, 0);
        assert_eq!(w.insert("a", 0, 20.0, 40.0), Insert::Added);
        assert_eq!(w.insert("a", 29 * MIN, 22.0, 50.0), Insert::Added);
        assert_eq!(w.insert("a", 30 * MIN, 30.0, 60.0), Insert::Added);
        assert_eq!(w.insert("b", 10 * MIN, 10.0, 30.0), Insert::Added);
        let mut out = Vec::new();
        w.advance(30 * MIN - 1, &mut out);
        assert!(out.is_empty());
        w.advance(30 * MIN, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[0].device.as_str(),
                out[0].temperature,
                out[0].humidity,
                out[0].count
            ),
            ("a", 21.0, 45.0, 2)
        );
        assert_eq!((out[1].device.as_str(), out[1].count), ("b", 1));
        // The second window of `a` is still open.
        out.clear();
        w.advance(60 * MIN, &mut out);
        assert_eq!((out[0].start, out[0].temperature), (30 * MIN, 30.0));
    }

    #[test]
    fn late_records_update_within_lateness_and_are_refused_after() {
        let mut w = TumblingWindows::new(30 * MIN, 10 * MIN);
        w.insert("a", MIN, 20.0, 40.0);
        let mut out = Vec::new();
        w.advance(35 * MIN, &mut out);
        assert_eq!(out.len(), 1);
        match w.insert("a", 2 * MIN, 22.0, 42.0) {
            Insert::Updated(r) => assert_eq!((r.temperature, r.count, r.revision), (21.0, 2, 1)),
            other => panic!("expected an update, got {other:?}"),
        }
        // A window with no data yet, within lateness: fires at once.
        match w.insert("b", 3 * MIN, 22.0, 42.0) {
            Insert::Updated(r) => assert_eq!((r.start, r.count, r.revision), (0, 1, 0)),
            other => panic!("expected an immediate firing, got {other:?}"),
        }
        w.advance(40 * MIN, &mut out);
        assert_eq!(
            w.insert("a", 3 * MIN, 22.0, 42.0),
            Insert::Late {
                window_end: 30 * MIN
            }
        );

        w.advance(50 * MIN, &mut out);
        assert_eq!(w.devices(), 0, "purged state is freed");
    }

    #[test]
    fn ever_new_device_ids_do_not_grow_the_interning_tables() {
        let mut w = TumblingWindows::new(30 * MIN, 0);
        let mut out = Vec::new();
        for i in 0..1000i64 {
            let t = i * 30 * MIN;
            assert_eq!(w.insert(&format!("dev-{i}"), t, 20.0, 40.0), Insert::Added);
            w.advance(t + 30 * MIN, &mut out);
        }
        assert_eq!(out.len(), 1000, "every window fired");
        assert_eq!(w.devices(), 0);
        assert!(w.names.len() <= 1 && w.ids.is_empty(), "ids are reused");
    }

    #[test]
    fn split_and_merge_give_the_same_results_as_one_instance() {
        let mut one = TumblingWindows::new(30 * MIN, 10 * MIN);
        for (i, d) in ["a", "b", "c", "d"].iter().enumerate() {
            one.insert(d, i as EventTime * MIN, 20.0 + i as f64, 40.0);
            one.insert(d, 31 * MIN, 25.0, 45.0);
        }
        let mut out = Vec::new();
        one.advance(32 * MIN, &mut out);
        assert_eq!(out.len(), 4);
        // Split in two groups, restore each into a fresh instance.
        let parts = one.split_by(|d| u32::from(d == "b" || d == "d"));
        let mut two: Vec<TumblingWindows> = parts
            .into_values()
            .map(|p| {
                let mut w = TumblingWindows::new(30 * MIN, 10 * MIN);
                w.restore_watermark(32 * MIN);
                w.merge(p);
                w
            })
            .collect();
        assert_eq!(two.iter().map(|w| w.devices()).sum::<usize>(), 4);
        // A late update within lateness revises the fired window on the restored side.
        let Insert::Updated(r) = two[1].insert("b", 2 * MIN, 30.0, 40.0) else {
            panic!("expected a revision");
        };
        let Insert::Updated(o) = one.insert("b", 2 * MIN, 30.0, 40.0) else {
            panic!("expected a revision");
        };
        assert_eq!(r, o);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        one.advance(70 * MIN, &mut a);
        for w in &mut two {
            w.advance(70 * MIN, &mut b);
        }
        a.sort_by(|x, y| x.device.cmp(&y.device));
        b.sort_by(|x, y| x.device.cmp(&y.device));
        assert_eq!(a, b);
        assert_eq!(one.devices(), 0);
        assert!(two.iter().all(|w| w.devices() == 0));
    }

    #[test]
    fn a_split_keeps_its_windows_while_the_instance_moves_on() {
        let mut w = TumblingWindows::new(30 * MIN, 10 * MIN);
        w.insert("a", MIN, 20.0, 40.0);
        w.insert("b", MIN, 21.0, 41.0);
        let parts = w.split_by(|_| 0);
        let before = serde_json::to_string(&parts).expect("serializes");
        w.insert("a", 2 * MIN, 30.0, 50.0);
        let mut out = Vec::new();
        w.advance(60 * MIN, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(w.devices(), 0, "every window purged");
        assert_eq!(serde_json::to_string(&parts).expect("serializes"), before);
    }

    #[test]
    fn negative_times_floor_to_their_window() {
        let w = TumblingWindows::new(30 * MIN, 0);
        assert_eq!(w.window_start(-1), -30 * MIN);
    }
}
