//! The spool: a bounded, on-disk, ordered queue of readings not yet acknowledged by Kafka.
//!
//! Every accepted reading is appended here first (a write-ahead log), then handed to the
//! producer in spool order, and forgotten only once Kafka acknowledged it. So a broker
//! outage, a SIGTERM or a power cut loses nothing that reached the spool: the backlog is
//! sent, in order, when the broker is back or the process restarts.
//!
//! Layout of `spool.dir`:
//! - `<first-seq, 20 digits>.seg`: append-only segment files of [`record`]s, numbered by
//!   one sequence number that increases by one per reading across restarts;
//! - `cursor`: the first sequence number not known to be acknowledged (written
//!   atomically, at most every `spool.sync-interval`).
//!
//! The bound: when the segments exceed `spool.max-bytes`, the oldest segment is deleted
//! and its readings that were not yet handed to the producer are lost; [`Append`] reports
//! them so the caller counts and logs them. Acknowledged segments are deleted as soon as
//! the cursor passes them. On open, every segment is verified and a torn tail (power
//! cut mid-write) is truncated.
//!
//! Across a crash delivery is at-least-once: readings acknowledged after the last cursor
//! write are sent again. Within one run there are no duplicates (see `crate::delivery`).

pub mod record;

use record::{Decoded, Record};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CURSOR: &str = "cursor";
const SUFFIX: &str = ".seg";

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    /// One past the last record's sequence number.
    end_seq: u64,
    bytes: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct ReadPos {
    /// The next sequence number to hand out.
    seq: u64,
    /// The segment the reader is in (by `first_seq`) and the reader itself.
    reader: Option<(u64, BufReader<File>)>,
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Readings waiting to be sent.
    pub pending: u64,
    /// Damage found and cut off (one line per file).
    pub repaired: Vec<String>,
}

/// What one [`Spool::append`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Append {
    /// The new record's sequence number.
    pub seq: u64,
    /// Unsent readings evicted to stay within the bound.
    pub evicted: Option<Eviction>,
}

/// Unsent readings the size bound forced out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    /// How many readings were lost.
    pub readings: u64,
    /// Bytes of segment files deleted.
    pub bytes: u64,
    /// First and last sequence number lost.
    pub seqs: (u64, u64),
}

/// The spool of one ingest process.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    total_bytes: u64,
    next_seq: u64,
    read: ReadPos,
    acked_below: u64,
    cursor_on_disk: u64,
    unsynced: bool,
    last_sync: Instant,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(dir)?;
        // Bytes, not `read_to_string`: a binary cursor must be named in the error, not
        // reported as a bare "stream did not contain valid UTF-8".
        let cursor = match fs::read(dir.join(CURSOR)) {
            Ok(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid(format!("{}: not a number", dir.join(CURSOR).display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                found.push((first, path));
            }
        }
        found.sort();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        for (first_seq, path) in found {
            let (end_seq, bytes, damage) = scan(&path, first_seq)?;
            if let Some(why) = damage {
                recovery.repaired.push(format!(
                    "{}: {why}; cut at byte {bytes} (readings from seq {end_seq} on lost)",
                    path.display()
                ));
                OpenOptions::new().write(true).open(&path)?.set_len(bytes)?;
            }
            if end_seq == first_seq || end_seq <= cursor {
                fs::remove_file(&path)?;
                continue;
            }
            segments.push_back(Segment {
                first_seq,
                end_seq,
                bytes,
                path,
            });
        }
        let next_seq = segments.back().map_or(cursor, |s| s.end_seq.max(cursor));
        let start = segments.front().map_or(cursor, |s| s.first_seq.max(cursor));
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(16 << 10, 8 << 20),
            total_bytes: segments.iter().map(|s| s.bytes).sum(),
            segments,
            writer: None,
            next_seq,
            read: ReadPos {
                seq: start,
                reader: None,
            },
            acked_below: start,
            cursor_on_disk: cursor,
            unsynced: false,
            last_sync: Instant::now(),
        };
        recovery.pending = spool.pending();
        Ok((spool, recovery))
    }

    /// Appends one message; it will be handed out after every earlier one.
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> io::Result<Append> {
        let bytes = record::encode(self.next_seq, key, value).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "message too large for the spool",
            )
        })?;
        let roll = match (&self.writer, self.segments.back()) {
            (Some(_), Some(seg)) => seg.bytes >= self.segment_bytes,
            _ => true,
        };
        if roll {
            if let Some(mut w) = self.writer.take() {
                w.flush()?;
            }
            let path = self.dir.join(format!("{:020}{SUFFIX}", self.next_seq));
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)?;
            self.writer = Some(BufWriter::new(file));
            self.segments.push_back(Segment {
                first_seq: self.next_seq,
                end_seq: self.next_seq,
                bytes: 0,
                path,
            });
        }
        let (Some(w), Some(seg)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("spool has no active segment"));
        };
        // Whole records reach the OS before anyone reads them (and survive a crash of
        // this process); fsync waits for `maybe_sync`.
        w.write_all(&bytes)?;
        w.flush()?;
        seg.bytes += bytes.len() as u64;
        seg.end_seq += 1;
        self.total_bytes += bytes.len() as u64;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unsynced = true;
        Ok(Append {
            seq,
            evicted: self.evict()?,
        })
    }

    fn evict(&mut self) -> io::Result<Option<Eviction>> {
        let mut lost: Option<Eviction> = None;
        while self.total_bytes > self.max_bytes && self.segments.len() > 1 {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            fs::remove_file(&seg.path)?;
            self.total_bytes -= seg.bytes;
            if matches!(&self.read.reader, Some((first, _)) if *first == seg.first_seq) {
                self.read.reader = None;
            }
            let from = seg.first_seq.max(self.read.seq);
            if from < seg.end_seq {
                let e = lost.get_or_insert(Eviction {
                    readings: 0,
                    bytes: 0,
                    seqs: (from, from),
                });
                e.readings += seg.end_seq - from;
                e.bytes += seg.bytes;
                e.seqs.1 = seg.end_seq - 1;
                self.read.seq = seg.end_seq;
            }
        }
        Ok(lost)
    }

    /// The next message not yet handed out, in sequence order; `None` when caught up.
    pub fn next_unsent(&mut self) -> io::Result<Option<Record>> {
        loop {
            if self.read.seq >= self.next_seq {
                return Ok(None);
            }
            let Some(seg) = self.segments.iter().find(|s| s.end_seq > self.read.seq) else {
                // Only a gap at the very end (cursor ahead of the data) can get here.
                self.read.seq = self.next_seq;
                return Ok(None);
            };
            let (first, path, end) = (seg.first_seq, seg.path.clone(), seg.end_seq);
            if !matches!(&self.read.reader, Some((f, _)) if *f == first) {
                self.read.reader = Some((first, BufReader::new(File::open(&path)?)));
            }
            let Some((_, reader)) = self.read.reader.as_mut() else {
                continue;
            };
            match record::decode(reader)? {
                Decoded::Record(r) if r.seq < self.read.seq => continue,
                Decoded::Record(r) => {
                    self.read.seq = r.seq + 1;
                    return Ok(Some(r));
                }
                Decoded::End if self.read.seq < end => {
                    return Err(invalid(format!("{} ends before seq {end}", path.display())));
                }
                Decoded::End => self.read.reader = None,
                Decoded::Damaged(why) => {
                    return Err(invalid(format!("{} is damaged: {why}", path.display())));
                }
            }
        }
    }

    /// Records that every message below `seq` is acknowledged (or given up); deletes
    /// the segments that holds only such messages. Never moves backwards.
    pub fn ack_below(&mut self, seq: u64) -> io::Result<()> {
        let seq = seq.min(self.read.seq);
        if seq <= self.acked_below {
            return Ok(());
        }
        self.acked_below = seq;
        while self.segments.len() > 1 {
            match self.segments.front() {
                Some(s) if s.end_seq <= seq => {
                    if matches!(&self.read.reader, Some((f, _)) if *f == s.first_seq) {
                        self.read.reader = None;
                    }
                    fs::remove_file(&s.path)?;
                    self.total_bytes -= s.bytes;
                    self.segments.pop_front();
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// fsyncs the active segment and persists the cursor if `interval` has passed since
    /// the last sync (or `force`).
    pub fn sync(&mut self, interval: Duration, force: bool) -> io::Result<()> {
        let due = force || self.last_sync.elapsed() >= interval;
        if !due || (!self.unsynced && self.acked_below == self.cursor_on_disk) {
            return Ok(());
        }
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        if self.acked_below != self.cursor_on_disk {
            let tmp = self.dir.join("cursor.tmp");
            let mut f = File::create(&tmp)?;
            writeln!(f, "{}", self.acked_below)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(CURSOR))?;
            File::open(&self.dir)?.sync_all()?;
            self.cursor_on_disk = self.acked_below;
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Messages appended and not yet acknowledged (nor evicted).
    pub fn pending(&self) -> u64 {
        let first = self.segments.front().map_or(self.next_seq, |s| s.first_seq);
        self.next_seq - self.acked_below.max(first).min(self.next_seq)
    }

    /// Messages appended and not yet handed out.
    pub fn unsent(&self) -> u64 {
        self.next_seq - self.read.seq.min(self.next_seq)
    }

    /// Size of the segment files.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The sequence number of the next message [`Spool::next_unsent`] will hand out:
    /// every message below it has been handed out.
    pub fn read_seq(&self) -> u64 {
        self.read.seq
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Verifies a segment: returns one past its last good sequence number, the bytes of its
/// good prefix, and what was wrong after it, if anything.
fn scan(path: &Path, first_seq: u64) -> io::Result<(u64, u64, Option<String>)> {
    let mut r = BufReader::new(File::open(path)?);
    let (mut seq, mut bytes) = (first_seq, 0u64);
    loop {
        match record::decode(&mut r)? {
            Decoded::End => return Ok((seq, bytes, None)),
            Decoded::Damaged(why) => return Ok((seq, bytes, Some(why))),
            Decoded::Record(rec) if rec.seq != seq => {
                return Ok((
                    seq,
                    bytes,
                    Some(format!("seq {} where {seq} was expected", rec.seq)),
                ));
            }
            Decoded::Record(rec) => {
                seq += 1;
                bytes += rec.encoded_len();
            }
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
