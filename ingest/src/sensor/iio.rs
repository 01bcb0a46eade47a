//! The `iio` backend: the Linux kernel's `dht11` driver (enabled on a Raspberry Pi with
//! `dtoverlay=dht11,gpiopin=N`; it handles DHT11 and DHT22) exposes each sensor as an
//! IIO device under `/sys/bus/iio/devices/iio:deviceN/`:
//!
//! ```text
//! iio:device0/name                       dht11@4 (the device-tree node)
//! iio:device0/in_temp_input              23400   (milli-°C)
//! iio:device0/in_humidityrelative_input  45000   (milli-%RH)
//! ```
//!
//! Reading either file makes the driver talk to the sensor (it caches a measurement for
//! two seconds). The driver reports a checksum mismatch or an undecodable frame as `EIO`
//! and a sensor that did not answer as `ETIMEDOUT`; both are transient and are returned
//! as failures for the sampler to retry.

use super::{FailReason, Measurement, ReadFailure, Sensor};
use std::io;
use std::path::{Path, PathBuf};

/// Where the kernel lists IIO devices.
pub const DEFAULT_ROOT: &str = "/sys/bus/iio/devices";
const TEMP: &str = "in_temp_input";
const HUMIDITY: &str = "in_humidityrelative_input";
// Linux errno values: the driver's two transient errors.
const EIO: i32 = 5;
const ETIMEDOUT: i32 = 110;

/// A sensor read through the kernel's IIO sysfs files.
#[derive(Debug)]
pub struct IioSensor {
    device: String,
    dir: PathBuf,
}

/// Why no IIO device could be opened; fatal at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing looking like the dht11 driver's device was found.
    #[error(
        "no DHT IIO device under {0}: is `dtoverlay=dht11,gpiopin=N` in /boot/firmware/config.txt \
         (or /boot/config.txt) and the Pi rebooted since? Set `iio.path` to the device directory \
         to choose one explicitly"
    )]
    NotFound(PathBuf),
    /// More than one candidate and no explicit choice.
    #[error("several DHT IIO devices under {root}: {found:?}; set `iio.path` to one of them")]
    Ambiguous {
        /// The directory searched.
        root: PathBuf,
        /// The candidates.
        found: Vec<PathBuf>,
    },
    /// The directory could not be listed.
    #[error("cannot list {0}: {1}")]
    Io(PathBuf, io::Error),
}

impl IioSensor {
    /// Opens `path`: either one IIO device directory (it has `in_temp_input`), or a
    /// directory of devices such as `/sys/bus/iio/devices` in which exactly one device
    /// is a DHT sensor (its `name` starts with `dht`) with both input files.
    pub fn open(device: impl Into<String>, path: &Path) -> Result<IioSensor, OpenError> {
        let device = device.into();
        if is_sensor_dir(path) {
            return Ok(IioSensor {
                device,
                dir: path.to_owned(),
            });
        }
        let entries = std::fs::read_dir(path).map_err(|e| OpenError::Io(path.to_owned(), e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_sensor_dir(p) && name_of(p).is_some_and(|n| n.starts_with("dht")))
            .collect();
        found.sort();
        match found.len() {
            0 => Err(OpenError::NotFound(path.to_owned())),
            1 => Ok(IioSensor {
                device,
                dir: found.remove(0),
            }),
            _ => Err(OpenError::Ambiguous {
                root: path.to_owned(),
                found,
            }),
        }
    }

    /// The device directory in use.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_milli(&self, file: &str) -> Result<f64, ReadFailure> {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| classify(&path, &e))?;
        let milli: i64 = text.trim().parse().map_err(|_| {
            ReadFailure::new(
                FailReason::BadFrame,
                format!("{} holds {:?}, not an integer", path.display(), text.trim()),
            )
        })?;
        // Exact for every value a DHT can report (|milli| < 2^53).
        Ok(milli as f64 / 1000.0)
    }
}

impl Sensor for IioSensor {
    fn device(&self) -> &str {
        &self.device
    }

    fn read(&mut self) -> Result<Measurement, ReadFailure> {
        let temperature = self.read_milli(TEMP)?;
        let humidity = self.read_milli(HUMIDITY)?;
        Ok(Measurement {
            temperature,
            humidity,
        })
    }
}

fn is_sensor_dir(p: &Path) -> bool {
    p.join(TEMP).exists() && p.join(HUMIDITY).exists()
}

fn name_of(p: &Path) -> Option<String> {
    std::fs::read_to_string(p.join("name"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Maps an error from reading a sysfs file to a failure reason.
pub fn classify(path: &Path, e: &io::Error) -> ReadFailure {
    let (reason, what) = match e.raw_os_error() {
        Some(EIO) => (
            FailReason::Io,
            "EIO (the driver saw a checksum mismatch or an undecodable frame)",
        ),
        Some(ETIMEDOUT) => (FailReason::Timeout, "ETIMEDOUT (the sensor did not answer)"),
        _ if e.kind() == io::ErrorKind::TimedOut => (FailReason::Timeout, "timed out"),
        _ => (FailReason::Io, "I/O error"),
    };
    ReadFailure::new(reason, format!("{}: {what}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake `/sys/bus/iio/devices` with an unrelated ADC and one DHT sensor.
    fn fake_sysfs(temp: &str, humidity: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let adc = root.path().join("iio:device0");
        fs::create_dir(&adc).expect("mkdir");
        fs::write(adc.join("name"), "mcp3008\n").expect("write");
        fs::write(adc.join("in_voltage0_raw"), "512\n").expect("write");
        let dht = root.path().join("iio:device1");
        fs::create_dir(&dht).expect("mkdir");
        fs::write(dht.join("name"), "dht11@4\n").expect("write");
        fs::write(dht.join(TEMP), temp).expect("write");
        fs::write(dht.join(HUMIDITY), humidity).expect("write");
        root
    }

    #[test]
    fn finds_the_dht_device_and_reads_milli_units() {
        let root = fake_sysfs("23400\n", "45100\n");
        let mut s = IioSensor::open("pi-01", root.path()).expect("found");
        assert!(s.dir().ends_with("iio:device1"));
        assert_eq!(s.device(), "pi-01");
        let m = s.read().expect("reads");
        assert_eq!((m.temperature, m.humidity), (23.4, 45.1));
    }

    #[test]
    fn negative_temperatures_and_an_explicit_device_dir() {
        let root = fake_sysfs("-10100\n", "65200\n");
        let mut s = IioSensor::open("pi-01", &root.path().join("iio:device1")).expect("open");
        let m = s.read().expect("reads");
        assert_eq!((m.temperature, m.humidity), (-10.1, 65.2));
    }

    #[test]
    fn missing_ambiguous_and_garbled() {
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            IioSensor::open("d", empty.path()),
            Err(OpenError::NotFound(_))
        ));
        let root = fake_sysfs("1\n", "2\n");
        let second = root.path().join("iio:device2");
        fs::create_dir(&second).expect("mkdir");
        fs::write(second.join("name"), "dht11@17\n").expect("write");
        fs::write(second.join(TEMP), "1").expect("write");
        fs::write(second.join(HUMIDITY), "1").expect("write");
        assert!(matches!(
            IioSensor::open("d", root.path()),
            Err(OpenError::Ambiguous { found, .. }) if found.len() == 2
        ));
        let root = fake_sysfs("warm\n", "45000\n");
        let mut s = IioSensor::open("d", root.path()).expect("open");
        assert_eq!(s.read().expect_err("garbled").reason, FailReason::BadFrame);
        // The module was unloaded under us: the files vanish.
        fs::remove_file(s.dir().join(TEMP)).expect("rm");
        assert_eq!(s.read().expect_err("gone").reason, FailReason::Io);
    }

    #[test]
    fn driver_errors_are_classified() {
        let p = Path::new("/sys/x");
        let eio = io::Error::from_raw_os_error(EIO);
        assert_eq!(classify(p, &eio).reason, FailReason::Io);
        let timeout = io::Error::from_raw_os_error(ETIMEDOUT);
        assert_eq!(classify(p, &timeout).reason, FailReason::Timeout);
        assert!(classify(p, &timeout).detail.contains("did not answer"));
    }
}
