//! Where the web UI's charts come from: the coordinator follows a job's Kafka output topic
//! (`predicData`) with `isolation.level = read_committed`, from its beginning, and keeps the
//! last [`POINTS`] windows of at most `max_devices` devices (the least recently updated or
//! viewed go first). So a chart shows what downstream consumers see: a device appears with
//! its first forecast (once it has a full history of windows), and with exactly-once output
//! the points arrive when a checkpoint commits. Device ids never become metric labels.

use crate::kafka::ClientSettings;
use flowcast_operators::{Accuracy, Prediction};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Windows kept per device: the model's 60 of history and the one that just closed.
pub const POINTS: usize = 61;

/// Observed or forecast means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Values {
    /// °C.
    pub temperature: f32,
    /// %RH.
    pub humidity: f32,
}

/// One closed window of a device and the forecast made when it closed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the window, ms since the Unix epoch.
    pub window_start_ms: i64,
    /// Its end.
    pub window_end_ms: i64,
    /// Its means.
    pub observed: Values,
    /// The forecast for the next window.
    pub predicted: Values,
    /// The end of the window the forecast is for.
    pub predicted_window_end_ms: i64,
}

/// `GET /v1/jobs/{id}/devices/{device}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    /// The device.
    pub device: String,
    /// Window length, ms.
    pub window_ms: i64,
    /// Oldest first.
    pub points: Vec<Point>,
    /// The device's rolling errors of the model and of persistence, from its newest
    /// forecast.
    pub accuracy: Accuracy,
}

/// What the coordinator holds of one device.
#[derive(Debug)]
struct Held {
    touched: u64,
    points: VecDeque<Point>,
    accuracy: Accuracy,
}

/// One device in a search answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRow {
    /// Its id.
    pub device: String,
    /// Windows held.
    pub windows: usize,
    /// End of its newest window.
    pub last_window_end_ms: i64,
}

/// `GET /v1/jobs/{id}/devices?q=&limit=`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceList {
    /// Where the data comes from, for people.
    pub source: String,
    /// Devices held.
    pub total: usize,
    /// More matched than `limit`.
    pub truncated: bool,
    /// The first `limit` matches by id.
    pub devices: Vec<DeviceRow>,
    /// Records read so far.
    pub records: u64,
    /// The follower's last error, if it has one.
    pub error: Option<String>,
}

/// The devices of one job, bounded.
#[derive(Debug, Default)]
pub struct Devices {
    max: usize,
    clock: u64,
    series: HashMap<String, Held>,
    /// Last touch → device: the least recently touched is first.
    lru: BTreeMap<u64, String>,
    records: u64,
    error: Option<String>,
}

impl Devices {
    /// At most `max` devices.
    pub fn new(max: usize) -> Self {
        Devices {
            max: max.max(1),
            ..Devices::default()
        }
    }

    fn touch(&mut self, device: &str) {
        self.clock += 1;
        if let Some(Held { touched: t, .. }) = self.series.get_mut(device) {
            self.lru.remove(t);
            *t = self.clock;
            self.lru.insert(self.clock, device.to_owned());
        }
    }

    /// Adds a prediction (a window replayed twice replaces its point).
    pub fn add(&mut self, p: &Prediction) {
        self.records += 1;
        let point = Point {
            window_start_ms: (p.window_start * 1e3).round() as i64,
            window_end_ms: (p.window_end * 1e3).round() as i64,
            observed: Values {
                temperature: p.observed.temperature as f32,
                humidity: p.observed.humidity as f32,
            },
            predicted: Values {
                temperature: p.predicted.temperature as f32,
                humidity: p.predicted.humidity as f32,
            },
            predicted_window_end_ms: (p.predicted.for_window_end * 1e3).round() as i64,
        };
        if !self.series.contains_key(&p.device) {
            while self.series.len() >= self.max {
                let Some((_, old)) = self.lru.pop_first() else {
                    break;
                };
                self.series.remove(&old);
            }
            let held = Held {
                touched: 0,
                points: VecDeque::with_capacity(POINTS),
                accuracy: Accuracy::default(),
            };
            self.series.insert(p.device.clone(), held);
        }
        if let Some(Held {
            points, accuracy, ..
        }) = self.series.get_mut(&p.device)
        {
            if points
                .back()
                .is_none_or(|last| last.window_start_ms <= point.window_start_ms)
            {
                *accuracy = p.accuracy;
            }
            match points.back() {
                Some(last) if last.window_start_ms > point.window_start_ms => {
                    if let Some(same) = points
                        .iter_mut()
                        .find(|q| q.window_start_ms == point.window_start_ms)
                    {
                        *same = point;
                    }
                }
                Some(last) if last.window_start_ms == point.window_start_ms => {
                    if let Some(l) = points.back_mut() {
                        *l = point;
                    }
                }
                _ => {
                    if points.len() == POINTS {
                        points.pop_front();
                    }
                    points.push_back(point);
                }
            }
        }
        self.touch(&p.device);
    }

    /// A device's series (and it counts as recently viewed).
    pub fn series(&mut self, device: &str) -> Option<Series> {
        self.touch(device);
        let held = self.series.get(device)?;
        let points = &held.points;
        let window_ms = points
            .back()
            .map_or(0, |p| p.window_end_ms - p.window_start_ms);
        Some(Series {
            device: device.to_owned(),
            window_ms,
            points: points.iter().copied().collect(),
            accuracy: held.accuracy,
        })
    }

    /// The devices whose id contains `q`, the first `limit` by id.
    pub fn search(&self, q: &str, limit: usize, source: String) -> DeviceList {
        let mut hits: Vec<&String> = self.series.keys().filter(|d| d.contains(q)).collect();
        hits.sort_unstable();
        let truncated = hits.len() > limit;
        let devices = hits
            .into_iter()
            .take(limit)
            .filter_map(|d| {
                let held = self.series.get(d)?;
                Some(DeviceRow {
                    device: d.clone(),
                    windows: held.points.len(),
                    last_window_end_ms: held.points.back()?.window_end_ms,
                })
            })
            .collect();
        DeviceList {
            source,
            total: self.series.len(),
            truncated,
            devices,
            records: self.records,
            error: self.error.clone(),
        }
    }
}

/// A thread following one job's output topic, for as long as the coordinator runs (its
/// memory is bounded by the devices it keeps).
#[derive(Debug)]
pub struct Follower {
    /// The topic.
    pub topic: String,
    devices: Mutex<Devices>,
}

impl Follower {
    /// The devices, locked.
    pub fn devices(&self) -> MutexGuard<'_, Devices> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the page says about the data.
    pub fn source(&self) -> String {
        format!(
            "Kafka topic `{}`, read by the coordinator with read_committed: a device appears with \
             its first forecast (once it has a full history of windows); with exactly-once output, \
             new points arrive when a checkpoint commits.",
            self.topic
        )
    }
}

/// Starts following `topic` on `settings`' cluster for the UI of `job`.
///
/// # Errors
/// When the consumer cannot be created or the thread not started.
pub fn follow(
    job: &str,
    settings: &ClientSettings,
    topic: &str,
    max_devices: usize,
) -> Result<Arc<Follower>, String> {
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", format!("flowcast-coordinator-ui-{job}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // Bounded prefetch: the follower's memory is the devices it keeps, not Kafka's
        // buffers (librdkafka's default queues up to 64 MiB).
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.max.bytes", "4194304")
        .create()
        .map_err(|e| format!("cannot create a consumer of `{topic}`: {e}"))?;
    let follower = Arc::new(Follower {
        topic: topic.to_owned(),
        devices: Mutex::new(Devices::new(max_devices)),
    });
    let f = Arc::clone(&follower);
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name(format!("ui-follow-{job}"))
        .spawn(move || run(&consumer, &topic, &f))
        .map_err(|e| e.to_string())?;
    Ok(follower)
}

fn run(consumer: &BaseConsumer, topic: &str, f: &Follower) {
    let mut assigned = 0usize;
    // When the topic's partitions were last looked up (they may grow).
    let mut looked: Option<std::time::Instant> = None;
    loop {
        if looked.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            looked = Some(std::time::Instant::now());
            match partitions(consumer, topic) {
                Ok(n) if n > assigned => {
                    let mut tpl = TopicPartitionList::new();
                    for p in assigned..n {
                        let _ = tpl.add_partition_offset(topic, p as i32, Offset::Beginning);
                    }
                    match consumer.incremental_assign(&tpl) {
                        Ok(()) => assigned = n,
                        Err(e) => f.devices().error = Some(format!("cannot assign `{topic}`: {e}")),
                    }
                }
                Ok(_) => {}
                Err(e) => f.devices().error = Some(e),
            }
        }
        if assigned == 0 {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let Some(value) = m.payload() else { continue };
                match serde_json::from_slice::<Prediction>(value) {
                    Ok(p) => {
                        let mut d = f.devices();
                        d.add(&p);
                        d.error = None;
                    }
                    Err(e) => {
                        f.devices().error = Some(format!(
                            "a record of `{topic}` (partition {}, offset {}) is not a prediction: {e}",
                            m.partition(),
                            m.offset()
                        ))
                    }
                }
            }
            Some(Err(e)) => f.devices().error = Some(e.to_string()),
            None => {}
        }
    }
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<usize, String> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| format!("cannot read the metadata of `{topic}`: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowcast_operators::{ObservedValues, PredictedValues};

    fn prediction(device: &str, window: i64) -> Prediction {
        let start = 1_700_000_000.0 + 1800.0 * window as f64;
        serde_json::from_value(serde_json::json!({
            "device": device,
            "window_start": start,
            "window_end": start + 1800.0,
            "observed": ObservedValues { temperature: 20.0 + window as f64, humidity: 40.0 },
            "predicted": PredictedValues { temperature: 21.0, humidity: 41.0, for_window_end: start + 3600.0 },
            "model": "m",
        }))
        .expect("a prediction")
    }

    #[test]
    fn keeps_the_last_windows_of_the_most_recent_devices() {
        let mut d = Devices::new(2);
        for w in 0..70 {
            d.add(&prediction("a", w));
        }
        d.add(&prediction("a", 69)); // a replayed window replaces its point
        let s = d.series("a").expect("a");
        assert_eq!(s.points.len(), POINTS);
        assert_eq!(s.window_ms, 1_800_000);
        assert_eq!(s.points[0].observed.temperature, 29.0);
        d.add(&prediction("b", 0));
        d.series("a"); // viewed: more recent than b
        d.add(&prediction("c", 0));
        let list = d.search("", 10, String::new());
        let ids: Vec<&str> = list.devices.iter().map(|r| r.device.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(d.search("c", 10, String::new()).devices.len(), 1);
        assert!(d.search("", 1, String::new()).truncated);
    }
}
