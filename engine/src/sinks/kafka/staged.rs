//! A batch of staged exactly-once output records in one buffer.
//!
//! Each record is appended to the batch's buffer as it is staged, in the layout below, so
//! staging is one copy per record (no allocation per key, value and header), a snapshot
//! encodes the batch as one byte string, and the committer reads the records in place.
//!
//! Layout of one record (little-endian):
//!
//! | field | bytes |
//! | --- | --- |
//! | key length, `u32::MAX` for no key | 4 |
//! | key | key length |
//! | value length | 4 |
//! | value | value length |
//! | header count | 2 |
//! | per header: name length (2), name (UTF-8), value length (4), value | … |
//!
//! A decoded batch is checked against this layout and its record count before it is
//! used, so reading it never fails.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NO_KEY: u32 = u32::MAX;

/// Staged records of one output and one checkpoint interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedBatch {
    buf: Vec<u8>,
    len: usize,
}

/// One record of a [`StagedBatch`], borrowed from its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedRecord<'a> {
    /// Message key.
    pub key: Option<&'a [u8]>,
    /// Message value.
    pub value: &'a [u8],
    header_count: u16,
    headers: &'a [u8],
}

impl<'a> StagedRecord<'a> {
    /// The record's headers, name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let mut rest = self.headers;
        (0..self.header_count).map(move |_| {
            // The layout was checked when the record was written or decoded.
            let (name, r) = take_u16_prefixed(rest).expect("checked header name");
            let (value, r) = take_u32_prefixed(r).expect("checked header value");
            rest = r;
            (std::str::from_utf8(name).unwrap_or_default(), value)
        })
    }

    /// How many headers the record has.
    pub fn header_count(&self) -> usize {
        usize::from(self.header_count)
    }
}

fn take(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

fn take_u16(b: &[u8]) -> Option<(u16, &[u8])> {
    let (h, r) = take(b, 2)?;
    Some((u16::from_le_bytes([h[0], h[1]]), r))
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (h, r) = take(b, 4)?;
    Some((u32::from_le_bytes([h[0], h[1], h[2], h[3]]), r))
}

fn take_u16_prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, r) = take_u16(b)?;
    take(r, usize::from(n))
}

fn take_u32_prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, r) = take_u32(b)?;
    take(r, n as usize)
}

/// Reads the record at the start of `b`; `None` if `b` does not hold a whole one. Header
/// names are checked to be UTF-8 only with `check_names` (a batch's records are checked once,
/// when it is decoded; reading them again need not).
fn read_record(b: &[u8], check_names: bool) -> Option<(StagedRecord<'_>, &[u8])> {
    let (key_len, r) = take_u32(b)?;
    let (key, r) = if key_len == NO_KEY {
        (None, r)
    } else {
        let (k, r) = take(r, key_len as usize)?;
        (Some(k), r)
    };
    let (value, r) = take_u32_prefixed(r)?;
    let (header_count, r) = take_u16(r)?;
    let mut rest = r;
    for _ in 0..header_count {
        let (name, r) = take_u16_prefixed(rest)?;
        if check_names {
            std::str::from_utf8(name).ok()?;
        }
        let (_, r) = take_u32_prefixed(r)?;
        rest = r;
    }
    let headers = &r[..r.len() - rest.len()];
    Some((
        StagedRecord {
            key,
            value,
            header_count,
            headers,
        },
        rest,
    ))
}

fn len_u32(n: usize, what: &str) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|&n| n != NO_KEY)
        .unwrap_or_else(|| panic!("a staged record's {what} of {n} bytes exceeds 4 GiB"))
}

impl StagedBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one record. Header names longer than 65 535 bytes are cut (Kafka's own
    /// names are short; ours are fixed).
    pub fn push<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) {
        let b = &mut self.buf;
        match key {
            Some(k) => {
                b.extend_from_slice(&len_u32(k.len(), "key").to_le_bytes());
                b.extend_from_slice(k);
            }
            None => b.extend_from_slice(&NO_KEY.to_le_bytes()),
        }
        b.extend_from_slice(&len_u32(value.len(), "value").to_le_bytes());
        b.extend_from_slice(value);
        let count_at = b.len();
        b.extend_from_slice(&[0, 0]);
        let mut count: u16 = 0;
        for (name, v) in headers {
            let mut end = name.len().min(usize::from(u16::MAX));
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            b.extend_from_slice(&(end as u16).to_le_bytes());
            b.extend_from_slice(&name.as_bytes()[..end]);
            b.extend_from_slice(&len_u32(v.len(), "header").to_le_bytes());
            b.extend_from_slice(v);
            count = count.checked_add(1).expect("at most 65 535 headers a record");
        }
        b[count_at..count_at + 2].copy_from_slice(&count.to_le_bytes());
        self.len += 1;
    }

    /// Appends every record of `other`.
    pub fn extend_from(&mut self, other: &StagedBatch) {
        self.buf.extend_from_slice(&other.buf);
        self.len += other.len;
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records in the order they were staged.
    pub fn iter(&self) -> impl Iterator<Item = StagedRecord<'_>> + '_ {
        let mut rest = self.buf.as_slice();
        (0..self.len).map(move |_| {
            let (r, next) = read_record(rest, false).expect("checked staged batch");
            rest = next;
            r
        })
    }

    /// A batch from its encoded parts, checked record by record.
    fn checked(buf: Vec<u8>, len: usize) -> Result<Self, String> {
        let mut rest = buf.as_slice();
        for i in 0..len {
            rest = match read_record(rest, true) {
                Some((_, next)) => next,
                None => return Err(format!("staged record {i} of {len} is cut short")),
            };
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes follow the {len} staged records",
                rest.len()
            ));
        }
        Ok(StagedBatch { buf, len })
    }
}

/// On disk: the record count, then the buffer as one byte string (read side; the write
/// side borrows the buffer).
#[derive(Deserialize)]
struct Encoded {
    len: u64,
    #[serde(with = "crate::lifecycle::snapshot::blob::bytes")]
    buf: Vec<u8>,
}

impl Serialize for StagedBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Buf<'a>(&'a [u8]);
        impl Serialize for Buf<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::lifecycle::snapshot::blob::bytes::serialize(self.0, s)
            }
        }
        let mut st = s.serialize_struct("Encoded", 2)?;
        st.serialize_field("len", &(self.len as u64))?;
        st.serialize_field("buf", &Buf(&self.buf))?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for StagedBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = Encoded::deserialize(d)?;
        let len = usize::try_from(e.len).map_err(D::Error::custom)?;
        StagedBatch::checked(e.buf, len).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StagedBatch {
        let mut b = StagedBatch::new();
        b.push(Some(b"room-1"), br#"{"t":21.5}"#, []);
        b.push(None, b"", [("flowcast.reason", &b"range"[..]), ("x", &b""[..])]);
        b.push(Some(b""), &[0xff; 300], [("flowcast.window-closed-ms", &b"1700000000000"[..])]);
        b
    }

    #[test]
    fn records_read_back_as_staged() {
        let b = sample();
        assert_eq!(b.len(), 3);
        let r: Vec<StagedRecord<'_>> = b.iter().collect();
        assert_eq!(r[0].key, Some(&b"room-1"[..]));
        assert_eq!(r[0].value, br#"{"t":21.5}"#);
        assert_eq!(r[0].headers().count(), 0);
        assert_eq!(r[1].key, None);
        assert_eq!(r[1].value, b"");
        assert_eq!(
            r[1].headers().collect::<Vec<_>>(),
            vec![("flowcast.reason", &b"range"[..]), ("x", &b""[..])]
        );
        assert_eq!(r[2].key, Some(&b""[..]));
        assert_eq!(r[2].value, &[0xff; 300][..]);
        assert_eq!(r[2].header_count(), 1);
    }

    #[test]
    fn a_batch_survives_bincode_and_extends() {
        let b = sample();
        let bytes = bincode::serialize(&b).expect("encode");
        let back: StagedBatch = bincode::deserialize(&bytes).expect("decode");
        assert_eq!(back, b);
        let mut both = back.clone();
        both.extend_from(&b);
        assert_eq!(both.len(), 6);
        assert_eq!(both.iter().nth(4), b.iter().nth(1));
    }

    #[test]
    fn a_damaged_batch_is_refused() {
        let b = sample();
        // One record more than the buffer holds.
        let e = StagedBatch::checked(b.buf.clone(), 4).expect_err("too few bytes");
        assert!(e.contains("staged record 3 of 4 is cut short"), "{e}");
        // Bytes left over after the last record.
        let mut longer = b.buf.clone();
        longer.push(0);
        let e = StagedBatch::checked(longer, 3).expect_err("trailing bytes");
        assert!(e.contains("1 bytes follow"), "{e}");
        // A length running past the end.
        let mut cut = b.buf.clone();
        cut.truncate(cut.len() - 1);
        assert!(StagedBatch::checked(cut, 3).is_err());
        // A header name that is not UTF-8.
        let mut bad = StagedBatch::new();
        bad.push(None, b"v", [("ab", &b""[..])]);
        let at = bad.buf.len() - 4 - 2;
        bad.buf[at] = 0xff;
        assert!(StagedBatch::checked(bad.buf.clone(), 1).is_err());
    }
}
