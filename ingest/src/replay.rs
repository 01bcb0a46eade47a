//! The `replay` backend: real recorded readings instead of a sensor.
//!
//! The default recording is the UCI Appliances Energy data set (Candanedo, Feldheim and
//! Deramaix 2017, CC BY 4.0; `deploy/data/fetch.sh` downloads it): one row per
//! 10 minutes from 2016-01-11 to 2016-05-27 with the temperature `T<n>` and relative
//! humidity `RH_<n>` of nine rooms (6 is outdoors). Each replayed room becomes one device
//! (`room-<n>`). Dates are local time without a zone and are read as UTC.
//!
//! Rows are paced by their recorded spacing divided by `replay.speed` (0 = no pacing) and
//! keep their original times or are shifted so the first row is now. Recorded values go
//! through the same validation as sensor reads: a value outside the configured sensor's
//! range is counted and logged as a failed read and not published (there is nothing to
//! retry in a recording).

use crate::clock::unix_now;
use crate::config::{ReplayConfig, Timestamps};
use crate::sensor::{FailReason, ReadFailure};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::telemetry::events::{ReadFailed, ReadOk};
use anyhow::{Context, bail};
use flowcast_operators::{Reading, SensorKind};
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// A room's (temperature, humidity) in one row, or why it could not be read.
pub type RoomValues = Result<(f64, f64), ReadFailure>;

/// One row of the recording: its time and one (device, temperature, humidity) per room.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Unix seconds as recorded.
    pub time: f64,
    /// Per room: device id and the two values, unparsed values as failures.
    pub values: Vec<(String, RoomValues)>,
}

/// The rows of a recording, in file order.
pub struct Rows {
    records: csv::StringRecordsIntoIter<Box<dyn Read + Send>>,
    date: usize,
    rooms: Vec<(String, usize, usize)>,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("rooms", &self.rooms).finish()
    }
}

/// Opens a recording (`.xz`-compressed or plain CSV) for the configured rooms.
pub fn open(path: &Path, cfg: &ReplayConfig) -> anyhow::Result<Rows> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open the replay file {} (deploy/data/fetch.sh downloads the default one)",
            path.display()
        )
    })?;
    let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "xz") {
        Box::new(xz2::read::XzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv.headers().context("reading the CSV header")?.clone();
    let col = |name: &str| -> anyhow::Result<usize> {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column {name:?}", path.display()))
    };
    let date = col("date")?;
    let mut rooms = Vec::new();
    for n in &cfg.rooms {
        rooms.push((
            format!("{}{n}", cfg.device_prefix),
            col(&format!("T{n}"))?,
            col(&format!("RH_{n}"))?,
        ));
    }
    Ok(Rows {
        records: csv.into_records(),
        date,
        rooms,
    })
}

impl Iterator for Rows {
    type Item = anyhow::Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        let rec = match self.records.next()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e.into())),
        };
        let raw_date = rec.get(self.date).unwrap_or("");
        let Some(time) = parse_utc(raw_date) else {
            return Some(Err(anyhow::anyhow!("bad date {raw_date:?}")));
        };
        let values = self
            .rooms
            .iter()
            .map(|(device, t, h)| {
                let num = |i: usize| rec.get(i).and_then(|s| s.parse::<f64>().ok());
                let v = match (num(*t), num(*h)) {
                    (Some(t), Some(h)) => Ok((t, h)),
                    _ => Err(ReadFailure::new(
                        FailReason::BadFrame,
                        format!("row {raw_date}: unreadable values for {device}"),
                    )),
                };
                (device.clone(), v)
            })
            .collect();
        Some(Ok(Row { time, values }))
    }
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`) read as UTC → Unix seconds.
pub fn parse_utc(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<f64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0.0))?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh >= 24.0 || mm >= 60.0 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// Replays `rows` (opened from `cfg`) into `out` until they run out, `shutdown`, or
/// the receiver is gone.
pub fn run(
    rows: Rows,
    cfg: &ReplayConfig,
    kind: SensorKind,
    out: SyncSender<Reading>,
    shutdown: Shutdown,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let path = cfg.file();
    let limit = cfg.max_rows.unwrap_or(u64::MAX);
    let skip = usize::try_from(cfg.skip_rows).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    tracing::info!(file = %path.display(), speed = cfg.speed, "replaying");
    let progress = progress_bar(cfg.max_rows);
    let mut origin: Option<(f64, Instant, f64)> = None; // (first row time, wall start, shift)
    for row in rows.skip(skip).take(take) {
        let row = row?;
        progress.inc(1);
        let (t0, start, shift) = *origin.get_or_insert_with(|| {
            let shift = match cfg.timestamps {
                Timestamps::Original => 0.0,
                Timestamps::Now => unix_now() - row.time,
            };
            (row.time, Instant::now(), shift)
        });
        if cfg.speed > 0.0 {
            let offset = ((row.time - t0) / cfg.speed).max(0.0);
            let due = start + Duration::from_secs_f64(offset.min(1e9));
            if shutdown.wait(due.saturating_duration_since(Instant::now())) {
                return Ok(());
            }
        } else if shutdown.is_triggered() {
            return Ok(());
        }
        for (device, values) in row.values {
            let reading = values.and_then(|(temperature, humidity)| {
                let r = Reading {
                    time: row.time + shift,
                    temperature,
                    humidity,
                    device: device.clone(),
                };
                r.validate(kind).map_err(ReadFailure::from)?;
                Ok(r)
            });
            match reading {
                Ok(r) => {
                    ReadOk.emit(metrics);
                    if out.send(r).is_err() {
                        return Ok(());
                    }
                }
                Err(failure) => ReadFailed {
                    device: &device,
                    failure: &failure,
                    attempt: 1,
                    will_retry: false,
                }
                .emit(metrics),
            }
        }
    }
    progress.finish();
    if origin.is_none() {
        bail!("{}: no rows to replay", path.display());
    }
    Ok(())
}

/// A bar over `max_rows` when the replay is bounded, else a row counter; both draw only
/// when stderr is a terminal (indicatif hides them otherwise), so logs and services see
/// nothing of them.
fn progress_bar(max_rows: Option<u64>) -> indicatif::ProgressBar {
    let (bar, template) = match max_rows {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{spinner} replay {bar:30} {pos}/{len} rows ({per_sec}, {elapsed}, eta {eta})",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} replay {pos} rows ({per_sec}, {elapsed})",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(parse_utc("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(parse_utc("2016-01-11 17:00:00"), Some(1_452_531_600.0));
        assert_eq!(parse_utc("2000-02-29T12:30:15"), Some(951_827_415.0));
        for bad in ["", "2016-13-01 00:00:00", "yesterday", "2016-01-11"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn replays_rooms_validates_and_shifts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.csv");
        std::fs::write(
            &path,
            "\"date\",\"T1\",\"RH_1\",\"T2\",\"RH_2\"\n\
             \"2016-01-11 17:00:00\",\"19.89\",\"47.5\",\"19.2\",\"44.7\"\n\
             \"2016-01-11 17:10:00\",\" 19.9\",\"95.0\",\"x\",\"44.8\"\n\
             \"2016-01-11 17:20:00\",\"20.0\",\"47.0\",\"19.3\",\"44.9\"\n",
        )
        .expect("write");
        let cfg = ReplayConfig {
            file: Some(path),
            speed: 0.0,
            timestamps: Timestamps::Original,
            rooms: vec![1, 2],
            ..ReplayConfig::default()
        };
        let m = Metrics::new("replay");
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let rows = open(&cfg.file(), &cfg).expect("opens");
        run(rows, &cfg, SensorKind::Dht11, tx, Shutdown::new(), &m).expect("replays");
        let got: Vec<Reading> = rx.iter().collect();
        let devices: Vec<&str> = got.iter().map(|r| r.device.as_str()).collect();
        assert_eq!(devices, ["room-1", "room-2", "room-1", "room-2"]);
        assert_eq!(got[0].time, 1_452_531_600.0);
        assert_eq!(got[2].time, 1_452_531_600.0 + 1200.0);
        assert_eq!(
            m.failed(FailReason::OutOfRange),
            1,
            "95 %RH is beyond a DHT11"
        );
        assert_eq!(m.failed(FailReason::BadFrame), 1, "\"x\" is no number");

        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let shifted = ReplayConfig {
            timestamps: Timestamps::Now,
            max_rows: Some(1),
            ..cfg
        };
        let before = unix_now();
        let rows = open(&shifted.file(), &shifted).expect("opens");
        run(rows, &shifted, SensorKind::Dht22, tx, Shutdown::new(), &m).expect("replays");
        let got: Vec<Reading> = rx.iter().collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].time >= before && got[0].time <= unix_now());
    }
}
