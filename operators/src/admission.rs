//! A cap on the devices a job holds in keyed state, with event-time expiry: each key group
//! admits at most `ceil(max-devices / key groups)` devices, so the same cap holds at any
//! parallelism, and a device silent for longer than the TTL of event time (measured
//! against the job watermark, so a replay decides the same way) gives its place back.
//! A reading of a device that finds its group full is refused (dead-lettered upstream).

use crate::event_time::EventTime;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The admitted devices of one key group with the newest event time seen of each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdmittedGroup {
    devices: HashMap<Box<str>, EventTime>,
}

/// Admission of devices per key group.
#[derive(Debug, Clone)]
pub struct Admission {
    per_group: usize,
    ttl: EventTime,
    groups: HashMap<u32, AdmittedGroup>,
    admitted: usize,
}

impl Admission {
    /// At most `max_devices` over `key_groups` groups; places expire after `ttl_ms`.
    pub fn new(max_devices: usize, key_groups: u32, ttl_ms: EventTime) -> Self {
        let groups = key_groups.max(1) as usize;
        Admission {
            per_group: max_devices.div_ceil(groups).max(1),
            ttl: ttl_ms,
            groups: HashMap::new(),
            admitted: 0,
        }
    }

    /// The cap per key group.
    pub fn per_group(&self) -> usize {
        self.per_group
    }

    /// Devices admitted now.
    pub fn devices(&self) -> usize {
        self.admitted
    }

    /// Whether `device` of key group `group` may hold state; notes event time `t`.
    pub fn admit(&mut self, group: u32, device: &str, t: EventTime) -> bool {
        let g = self.groups.entry(group).or_default();
        if let Some(seen) = g.devices.get_mut(device) {
            *seen = (*seen).max(t);
            return true;
        }
        if g.devices.len() >= self.per_group {
            return false;
        }
        g.devices.insert(device.into(), t);
        self.admitted += 1;
        true
    }

    /// Gives back the places of devices silent for longer than the TTL at `watermark`;
    /// returns how many.
    pub fn expire(&mut self, watermark: EventTime) -> usize {
        let cutoff = watermark.saturating_sub(self.ttl);
        let mut expired = 0;
        self.groups.retain(|_, g| {
            let before = g.devices.len();
            g.devices.retain(|_, seen| *seen >= cutoff);
            expired += before - g.devices.len();
            !g.devices.is_empty()
        });
        self.admitted -= expired;
        expired
    }

    /// The admitted devices by key group, for a snapshot.
    pub fn groups(&self) -> BTreeMap<u32, &AdmittedGroup> {
        self.groups.iter().map(|(g, a)| (*g, a)).collect()
    }

    /// Takes over a restored key group.
    pub fn restore(&mut self, group: u32, admitted: AdmittedGroup) {
        self.admitted += admitted.devices.len();
        if let Some(old) = self.groups.insert(group, admitted) {
            self.admitted -= old.devices.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_group_and_expires_silent_devices() {
        let mut a = Admission::new(4, 2, 100);
        assert_eq!(a.per_group(), 2);
        assert!(a.admit(0, "a", 10));
        assert!(a.admit(0, "b", 20));
        assert!(!a.admit(0, "c", 30), "group 0 is full");
        assert!(a.admit(1, "c", 30), "group 1 has room");
        assert!(a.admit(0, "a", 150), "admitted devices stay admitted");
        assert_eq!(a.devices(), 3);
        // At watermark 125, `b` (last seen 20) has been silent longer than 100.
        assert_eq!(a.expire(125), 1);
        assert!(a.admit(0, "c", 160), "its place is free again");
        assert_eq!(a.expire(1_000), 3);
        assert_eq!(a.devices(), 0);
    }
}
