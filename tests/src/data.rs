//! The real sensor data the tests replay: the UCI Appliances Energy data set
//! (Candanedo et al. 2017, CC BY 4.0), 10-minute readings of eight indoor rooms.
//! `deploy/data/fetch.sh` puts it in the cache; `FLOWCAST_DATA` may point elsewhere.

use std::io::Read;
use std::path::PathBuf;

/// The indoor rooms (T6/RH_6 are outdoors).
pub const ROOMS: [u8; 8] = [1, 2, 3, 4, 5, 7, 8, 9];

/// One reading of one room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomReading {
    /// `room-N`.
    pub device: String,
    /// Unix seconds (the data's local time read as UTC).
    pub time: f64,
    /// °C.
    pub temperature: f64,
    /// %RH.
    pub humidity: f64,
}

/// Where the data file is.
pub fn data_path() -> PathBuf {
    if let Ok(p) = std::env::var("FLOWCAST_DATA") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("FLOWCAST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into()))
                .join(".cache/flowcast")
        });
    cache.join("data/minute_energy_appliance.csv.xz")
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_time(s: &str) -> Option<f64> {
    // "2016-01-11 17:00:00"
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let secs = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?) * 86_400
        + n(11..13)? * 3600
        + n(14..16)? * 60
        + n(17..19)?;
    Some(secs as f64)
}

/// The first `days` days of readings of `rooms`, ordered by time then room.
///
/// # Panics
/// If the data file is missing or malformed (run `deploy/data/fetch.sh`).
pub fn room_readings(rooms: &[u8], days: f64) -> Vec<RoomReading> {
    let path = data_path();
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run deploy/data/fetch.sh)", path.display()));
    let mut text = String::new();
    xz2::read::XzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("decompress the data");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(|h| h.trim_matches('"').to_owned())
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let cols: Vec<(u8, usize, usize)> = rooms
        .iter()
        .map(|r| (*r, col(&format!("T{r}")), col(&format!("RH_{r}"))))
        .collect();
    let mut out = Vec::new();
    let mut first = None;
    for line in lines {
        let f: Vec<&str> = line
            .split(',')
            .map(|x| x.trim_matches('"').trim())
            .collect();
        let t = parse_time(f[0]).expect("date");
        let t0 = *first.get_or_insert(t);
        if t - t0 >= days * 86_400.0 {
            break;
        }
        for (room, tc, hc) in &cols {
            out.push(RoomReading {
                device: format!("room-{room}"),
                time: t,
                temperature: f[*tc].parse().expect("temperature"),
                humidity: f[*hc].parse().expect("humidity"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            super::parse_time("2016-01-11 17:00:00"),
            Some(1_452_531_600.0)
        );
    }
}
