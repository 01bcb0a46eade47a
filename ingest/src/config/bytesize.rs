//! A size in bytes as people write it in a config file: `65536`, `"64 KiB"`, `"64MiB"`,
//! `"1 GB"`. Binary units are powers of 1024, decimal ones powers of 1000.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` MiB.
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    /// Parses `"64 MiB"` and friends; a bare number is bytes.
    ///
    /// The parsing is `parse-size`'s; two rules of Flowcast's config are kept on top of it:
    /// a size is a whole number (no `1.5 MiB`, no exponent), and a unit of one letter
    /// (`"3 M"`) is binary, as `ulimit`, `dd` and the JVM read it, while `kB`/`MB`/`GB` are
    /// decimal.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let bad = || format!("{s:?} is not a size such as 65536, \"64 KiB\" or \"64MiB\"");
        let t = s.trim();
        let digits = t
            .find(|c: char| !c.is_ascii_digit() && c != ' ')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(digits);
        if num.trim().is_empty() || num.trim().contains(' ') {
            return Err(bad());
        }
        let unit = unit.trim().to_ascii_lowercase();
        let unit = match unit.as_str() {
            "k" | "m" | "g" => format!("{unit}i"),
            "" | "b" | "kib" | "mib" | "gib" | "kb" | "mb" | "gb" => unit,
            _ => return Err(bad()),
        };
        parse_size::parse_size(format!("{num}{unit}"))
            .map(ByteSize)
            .map_err(|e| match e {
                parse_size::Error::PosOverflow => format!("{s:?} is too large"),
                _ => bad(),
            })
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
