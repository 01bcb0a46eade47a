//! A size in bytes as people write it in a config file: `65536`, `"64 KiB"`, `"64MiB"`,
//! `"1 GB"`. Binary units are powers of 1024, decimal ones powers of 1000.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 10] = [
    ("gib", 1 << 30),
    ("mib", 1 << 20),
    ("kib", 1 << 10),
    ("gb", 1_000_000_000),
    ("mb", 1_000_000),
    ("kb", 1_000),
    ("g", 1 << 30),
    ("m", 1 << 20),
    ("k", 1 << 10),
    ("b", 1),
];

impl ByteSize {
    /// `n` MiB.
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    /// Parses `"64 MiB"` and friends; a bare number is bytes.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim().to_ascii_lowercase();
        let (num, mult) = UNITS
            .iter()
            .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n, *m)))
            .unwrap_or((t.as_str(), 1));
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a size such as 65536, \"64 KiB\" or \"64MiB\""))?;
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{} {unit}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, n) in [
            ("65536", 65536),
            ("64 KiB", 65536),
            ("64KiB", 65536),
            ("64 MiB", 64 << 20),
            ("64mib", 64 << 20),
            ("1 GB", 1_000_000_000),
            ("2 kb", 2000),
            ("3 M", 3 << 20),
            ("100 B", 100),
            ("100b", 100),
        ] {
            assert_eq!(ByteSize::parse(s), Ok(ByteSize(n)), "{s}");
        }
        for bad in ["", "MiB", "-1", "1.5 MiB", "64 parsecs", "99999999999 GiB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ByteSize::mib(64).to_string(), "64 MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        assert_eq!(
            ByteSize::parse(&ByteSize(3 << 30).to_string()),
            Ok(ByteSize(3 << 30))
        );
    }
}
