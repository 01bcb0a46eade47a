//! The versioned file format of one worker's state: a fixed 40-byte header, then the body
//! (the bincode of a [`WorkerSnapshot`], LZ4-compressed).
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! | 0      | 8    | magic `FLOWCKPT`                                             |
//! | 8      | 4    | file format version, u32 LE ([`VERSION`])                    |
//! | 12     | 1    | compression: 0 none, 1 LZ4 block ([`Compression`])           |
//! | 13     | 3    | reserved, zero                                               |
//! | 16     | 8    | uncompressed body length, u64 LE                             |
//! | 24     | 8    | stored body length, u64 LE (file size = 40 + this)           |
//! | 32     | 4    | CRC-32 (IEEE) of the stored body, u32 LE                     |
//! | 36     | 4    | CRC-32 of header bytes 0..36, u32 LE                         |
//!
//! The body checksum covers the stored (compressed) bytes, so a file can be validated — and
//! a manifest written — from its header and bytes without decompressing it; the header has
//! its own checksum so a flipped bit in a length reads as corruption, not as a huge
//! allocation.

use crate::lifecycle::snapshot::WorkerSnapshot;

/// Magic tag at the start of every checkpoint state file.
pub const MAGIC: &[u8; 8] = b"FLOWCKPT";
/// The file format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 40;

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// LZ4 block format (`lz4_flex`): chosen over zstd for speed — a checkpoint must not
    /// hold up an epoch, LZ4 compresses at several hundred MB/s per core and decompresses
    /// at GB/s, and window state (floats) gains little from zstd's better ratio. Pure Rust
    /// with no unsafe code, so no C build on the 2-core machines.
    Lz4,
}

impl Compression {
    fn tag(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, FormatError> {
        match tag {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            other => Err(FormatError::UnknownCompression(other)),
        }
    }
}

/// Why bytes are not a valid checkpoint state file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The bytes do not start with [`MAGIC`].
    #[error("not a Flowcast checkpoint file (bad magic)")]
    BadMagic,
    /// Fewer bytes than the header or the header's body length says.
    #[error("truncated: {found} bytes, expected {expected}")]
    Truncated {
        /// Bytes the header promises (or the header length).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// More bytes than the header's body length.
    #[error("{found} bytes, expected {expected}: trailing garbage")]
    TooLong {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The header's own checksum does not match.
    #[error("header checksum mismatch: the header is corrupt")]
    HeaderChecksum,
    /// A format version this build cannot read.
    #[error("file format version {found}; this build reads version {supported}")]
    UnknownVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A compression tag this build does not know.
    #[error("unknown compression kind {0}")]
    UnknownCompression(u8),
    /// The body's checksum differs from the header's (or the manifest's).
    #[error("body checksum mismatch: expected {expected:08x}, found {found:08x}")]
    ChecksumMismatch {
        /// Checksum recorded in the header or manifest.
        expected: u32,
        /// Checksum of the bytes present.
        found: u32,
    },
    /// The body does not decompress to the recorded length.
    #[error("cannot decompress the body: {0}")]
    Decompress(String),
    /// The body does not decode as a worker snapshot.
    #[error("cannot decode the worker snapshot: {0}")]
    Decode(String),
    /// The snapshot could not be encoded (a bug).
    #[error("cannot encode the worker snapshot: {0}")]
    Encode(String),
}

/// A parsed, checksum-verified header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File format version.
    pub version: u32,
    /// Body compression.
    pub compression: Compression,
    /// Body length after decompression.
    pub uncompressed_len: u64,
    /// Body length as stored.
    pub body_len: u64,
    /// CRC-32 of the stored body.
    pub checksum: u32,
}

impl Header {
    /// Size of the whole file this header describes.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.body_len
    }

    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12] = self.compression.tag();
        h[16..24].copy_from_slice(&self.uncompressed_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.body_len.to_le_bytes());
        h[32..36].copy_from_slice(&self.checksum.to_le_bytes());
        let crc = crc32fast::hash(&h[0..36]);
        h[36..40].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses and verifies the header at the start of `bytes` (which may be just the
    /// header, or the whole file).
    ///
    /// # Errors
    /// Bad magic, too few bytes, a corrupt header, or an unknown version or compression.
    pub fn parse(bytes: &[u8]) -> Result<Header, FormatError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
                FormatError::Truncated {
                    expected: HEADER_LEN as u64,
                    found: bytes.len() as u64,
                }
            } else {
                FormatError::BadMagic
            });
        }
        let Some(h) = bytes.get(..HEADER_LEN) else {
            return Err(FormatError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        };
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if crc32fast::hash(&h[0..36]) != u32_at(36) {
            return Err(FormatError::HeaderChecksum);
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(FormatError::UnknownVersion {
                found: version,
                supported: VERSION,
            });
        }
        Ok(Header {
            version,
            compression: Compression::from_tag(h[12])?,
            uncompressed_len: u64_at(16),
            body_len: u64_at(24),
            checksum: u32_at(32),
        })
    }
}

/// Encodes `bytes` (an already serialized body) into a file.
pub fn encode_bytes(body: &[u8], compression: Compression) -> Vec<u8> {
    let stored = match compression {
        Compression::None => body.to_vec(),
        Compression::Lz4 => lz4_flex::block::compress(body),
    };
    let header = Header {
        version: VERSION,
        compression,
        uncompressed_len: body.len() as u64,
        body_len: stored.len() as u64,
        checksum: crc32fast::hash(&stored),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + stored.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&stored);
    out
}

/// Encodes one worker's snapshot into a file (bincode, LZ4, header).
///
/// # Errors
/// If bincode cannot encode the snapshot (a bug).
pub fn encode(snap: &WorkerSnapshot) -> Result<Vec<u8>, FormatError> {
    encode_with(snap, Compression::Lz4)
}

/// [`encode`] with another compression ([`Compression::None`] trades size for CPU: state
/// of random-looking floats compresses only about 1.5:1).
///
/// # Errors
/// If bincode cannot encode the snapshot, or state is left unencoded (a bug: call
/// [`WorkerSnapshot::resolve`] first).
pub fn encode_with(
    snap: &WorkerSnapshot,
    compression: Compression,
) -> Result<Vec<u8>, FormatError> {
    if let Some(op) = snap.operators.iter().find(|o| !o.deferred.is_empty()) {
        return Err(FormatError::Encode(format!(
            "`{}` has deferred state not resolved before encoding",
            op.id
        )));
    }
    let body = bincode::serialize(snap).map_err(|e| FormatError::Encode(e.to_string()))?;
    Ok(encode_bytes(&body, compression))
}

/// Verifies a whole file (header, length, checksum) and returns its header and the
/// decompressed body.
///
/// # Errors
/// Any [`FormatError`] but `Encode`/`Decode`.
pub fn decode_bytes(file: &[u8]) -> Result<(Header, Vec<u8>), FormatError> {
    let header = Header::parse(file)?;
    let found = file.len() as u64;
    if found < header.file_len() {
        return Err(FormatError::Truncated {
            expected: header.file_len(),
            found,
        });
    }
    if found > header.file_len() {
        return Err(FormatError::TooLong {
            expected: header.file_len(),
            found,
        });
    }
    let stored = &file[HEADER_LEN..];
    let crc = crc32fast::hash(stored);
    if crc != header.checksum {
        return Err(FormatError::ChecksumMismatch {
            expected: header.checksum,
            found: crc,
        });
    }
    let body = match header.compression {
        Compression::None => stored.to_vec(),
        Compression::Lz4 => {
            // LZ4 expands at most 255:1; a larger claim is corruption, not an allocation.
            let plausible = header.body_len.saturating_mul(255).saturating_add(16);
            let len = usize::try_from(header.uncompressed_len)
                .ok()
                .filter(|&l| l as u64 <= plausible)
                .ok_or_else(|| {
                    FormatError::Decompress(format!(
                        "the header claims {} bytes from {} stored",
                        header.uncompressed_len, header.body_len
                    ))
                })?;
            lz4_flex::block::decompress(stored, len)
                .map_err(|e| FormatError::Decompress(e.to_string()))?
        }
    };
    if body.len() as u64 != header.uncompressed_len {
        return Err(FormatError::Decompress(format!(
            "{} bytes, the header says {}",
            body.len(),
            header.uncompressed_len
        )));
    }
    Ok((header, body))
}

/// Verifies and decodes a whole file into the worker snapshot it holds.
///
/// # Errors
/// Any [`FormatError`] but `Encode`.
pub fn decode(file: &[u8]) -> Result<(Header, WorkerSnapshot), FormatError> {
    let (header, body) = decode_bytes(file)?;
    let snap = bincode::deserialize(&body).map_err(|e| FormatError::Decode(e.to_string()))?;
    Ok((header, snap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::snapshot::{FORMAT_VERSION, OperatorSnapshot};
    use flowcast_operators::event_time::JobWatermark;
    use std::collections::BTreeMap;

    fn snap(worker: usize) -> WorkerSnapshot {
        WorkerSnapshot {
            format: FORMAT_VERSION,
            job: "j".into(),
            id: 3,
            epoch: 7,
            worker,
            workers: 2,
            key_groups: 4,
            operators: vec![OperatorSnapshot {
                id: "op".into(),
                version: 1,
                watermark: JobWatermark::new(0),
                keyed: BTreeMap::from([(worker as u32, vec![1u8; 300])]),
                partitions: BTreeMap::new(),
                replicated: None,
                deferred: Default::default(),
            }],
        }
    }

    #[test]
    fn round_trip_compresses_and_keeps_the_snapshot() {
        let s = snap(1);
        let file = encode(&s).expect("encode");
        let raw = bincode::serialize(&s).expect("bincode");
        assert!(file.len() < raw.len(), "300 equal bytes must compress");
        let (h, back) = decode(&file).expect("decode");
        assert_eq!(h.version, VERSION);
        assert_eq!(h.compression, Compression::Lz4);
        assert_eq!(h.file_len(), file.len() as u64);
        assert_eq!(bincode::serialize(&back).expect("bincode"), raw);
    }

    #[test]
    fn truncated_files_say_so() {
        let file = encode(&snap(0)).expect("encode");
        for cut in [3, 20, HEADER_LEN, file.len() - 1] {
            let err = decode(&file[..cut]).expect_err("truncated");
            assert!(
                matches!(err, FormatError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(FormatError::TooLong { .. })));
    }

    #[test]
    fn a_flipped_byte_is_a_checksum_error() {
        let file = encode(&snap(0)).expect("encode");
        let mut body = file.clone();
        let last = body.len() - 1;
        body[last] ^= 0x40;
        assert!(matches!(
            decode(&body),
            Err(FormatError::ChecksumMismatch { .. })
        ));
        let mut header = file.clone();
        header[17] ^= 1; // the uncompressed length
        assert_eq!(decode(&header).err(), Some(FormatError::HeaderChecksum));
        let mut magic = file;
        magic[0] = b'X';
        assert_eq!(decode(&magic).err(), Some(FormatError::BadMagic));
    }

    #[test]
    fn an_unknown_version_is_named() {
        let mut file = encode(&snap(0)).expect("encode");
        file[8..12].copy_from_slice(&9u32.to_le_bytes());
        let crc = crc32fast::hash(&file[0..36]);
        file[36..40].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&file).expect_err("version 9");
        assert_eq!(
            err,
            FormatError::UnknownVersion {
                found: 9,
                supported: VERSION
            }
        );
        assert!(err.to_string().contains("version 9"));
    }

    #[test]
    fn uncompressed_bodies_decode_too() {
        let file = encode_bytes(b"hello", Compression::None);
        let (h, body) = decode_bytes(&file).expect("decode");
        assert_eq!(
            (h.compression, body.as_slice()),
            (Compression::None, &b"hello"[..])
        );
    }
}
