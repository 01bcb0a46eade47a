//! The on-disk form of one spooled reading, and reading it back with its integrity checked.
//!
//! ```text
//! len: u32 LE | crc32: u32 LE | seq: u64 LE | key_len: u16 LE | key | value
//! ```
//! `len` counts the bytes after the 16-byte header (`2 + key_len + value_len`); the CRC
//! covers `seq` and those bytes, so a torn write at the end of a file (power cut) or a
//! flipped bit is detected rather than replayed as garbage.

use std::io::{self, Read};

/// Bytes before the body.
pub const HEADER: usize = 16;
/// Largest body accepted when reading back (a reading is ~100 bytes; this bounds the
/// allocation a corrupt length field could ask for).
pub const MAX_BODY: usize = 1 << 20;

/// One spooled message: its sequence number, Kafka key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the spool's total order; increases by one per appended record.
    pub seq: u64,
    /// Message key (the device id).
    pub key: Vec<u8>,
    /// Message value (the reading's JSON).
    pub value: Vec<u8>,
}

impl Record {
    /// Bytes this record takes on disk.
    pub fn encoded_len(&self) -> u64 {
        (HEADER + 2 + self.key.len() + self.value.len()) as u64
    }
}

/// Encodes a record; `None` if the key is longer than 65535 bytes or the body too large.
pub fn encode(seq: u64, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let key_len = u16::try_from(key.len()).ok()?;
    let body_len = 2 + key.len() + value.len();
    if body_len > MAX_BODY {
        return None;
    }
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(&u32::try_from(body_len).ok()?.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// The outcome of reading one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, intact record.
    Record(Record),
    /// Clean end of the data.
    End,
    /// A partial or damaged record: everything from here on is unusable.
    Damaged(String),
}

/// Reads the next record from `r`.
pub fn decode(r: &mut impl Read) -> io::Result<Decoded> {
    let mut header = [0u8; HEADER];
    match read_full(r, &mut header)? {
        0 => return Ok(Decoded::End),
        n if n < HEADER => return Ok(Decoded::Damaged(format!("torn header ({n} bytes)"))),
        _ => {}
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, crc) = (word(0) as usize, word(4));
    if !(2..=MAX_BODY).contains(&len) {
        return Ok(Decoded::Damaged(format!("impossible length {len}")));
    }
    let mut body = vec![0u8; len];
    let n = read_full(r, &mut body)?;
    if n < len {
        return Ok(Decoded::Damaged(format!(
            "torn record ({n} of {len} bytes)"
        )));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&header[8..]);
    h.update(&body);
    if h.finalize() != crc {
        return Ok(Decoded::Damaged("checksum mismatch".into()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&header[8..]);
    let key_len = usize::from(u16::from_le_bytes([body[0], body[1]]));
    if 2 + key_len > len {
        return Ok(Decoded::Damaged(format!(
            "key length {key_len} beyond record"
        )));
    }
    let value = body.split_off(2 + key_len);
    let key = body.split_off(2);
    Ok(Decoded::Record(Record {
        seq: u64::from_le_bytes(seq),
        key,
        value,
    }))
}

/// Like `read_exact`, but reports how much was read before end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_detected() {
        let bytes = encode(7, b"room-1", br#"{"time":1.0}"#).expect("encodes");
        let want = Record {
            seq: 7,
            key: b"room-1".to_vec(),
            value: br#"{"time":1.0}"#.to_vec(),
        };
        assert_eq!(want.encoded_len(), bytes.len() as u64);
        assert_eq!(
            decode(&mut bytes.as_slice()).expect("reads"),
            Decoded::Record(want)
        );
        assert_eq!(decode(&mut &[][..]).expect("reads"), Decoded::End);
        for cut in 1..bytes.len() {
            assert!(
                matches!(
                    decode(&mut &bytes[..cut]).expect("reads"),
                    Decoded::Damaged(_)
                ),
                "cut at {cut}"
            );
        }
        for flip in 0..bytes.len() {
            let mut b = bytes.clone();
            b[flip] ^= 0x10;
            assert!(
                matches!(
                    decode(&mut b.as_slice()).expect("reads"),
                    Decoded::Damaged(_)
                ),
                "flip at {flip}"
            );
        }
    }
}
