//! Tests of the spool: order, acknowledgement, restart, torn tails and the size bound.

use super::*;

fn value(i: u64) -> Vec<u8> {
    format!(
        r#"{{"time":{i},"temperature":21.5,"humidity":40.0,"device":"room-{}"}}"#,
        i % 8
    )
    .into_bytes()
}

fn drain(s: &mut Spool) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(r) = s.next_unsent().expect("reads") {
        out.push(r);
    }
    out
}

fn seg_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .expect("ls")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        })
        .count()
}

#[test]
fn hands_out_in_order_and_resumes_after_restart_from_the_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, rec) = Spool::open(dir.path(), 1 << 20).expect("opens");
    assert_eq!(rec, Recovery::default());
    for i in 0..100 {
        assert_eq!(s.append(b"k", &value(i)).expect("appends").seq, i);
    }
    let got = drain(&mut s);
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(got[42].value, value(42));
    assert_eq!(s.pending(), 100);
    s.ack_below(60).expect("acks");
    assert_eq!(s.pending(), 40);
    s.sync(Duration::ZERO, true).expect("syncs");
    drop(s);

    let (mut s, rec) = Spool::open(dir.path(), 1 << 20).expect("reopens");
    assert_eq!(rec.pending, 40);
    let again = drain(&mut s);
    assert_eq!(
        again.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (60..100).collect::<Vec<_>>()
    );
    // Sequence numbers continue across restarts.
    assert_eq!(s.append(b"k", &value(100)).expect("appends").seq, 100);
}

#[test]
fn without_a_cursor_write_everything_unacknowledged_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Spool::open(dir.path(), 1 << 20).expect("opens");
    for i in 0..10 {
        s.append(b"k", &value(i)).expect("appends");
    }
    drain(&mut s);
    s.ack_below(5).expect("acks");
    // A crash: no sync. At-least-once: all ten come back.
    drop(s);
    let (mut s, rec) = Spool::open(dir.path(), 1 << 20).expect("reopens");
    assert_eq!(rec.pending, 10);
    assert_eq!(drain(&mut s).len(), 10);
}

#[test]
fn a_torn_tail_is_cut_off_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Spool::open(dir.path(), 1 << 20).expect("opens");
    for i in 0..5 {
        s.append(b"k", &value(i)).expect("appends");
    }
    s.sync(Duration::ZERO, true).expect("syncs");
    drop(s);
    let seg = dir.path().join(format!("{:020}{SUFFIX}", 0));
    let full = record::encode(5, b"k", &value(5)).expect("encodes");
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&full[..full.len() / 2]).expect("write");
    drop(f);

    let (mut s, rec) = Spool::open(dir.path(), 1 << 20).expect("reopens");
    assert_eq!(rec.pending, 5);
    assert_eq!(rec.repaired.len(), 1, "{:?}", rec.repaired);
    assert_eq!(drain(&mut s).len(), 5);
    assert_eq!(s.append(b"k", &value(5)).expect("appends").seq, 5);
    assert_eq!(drain(&mut s)[0].value, value(5));
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Spool::open(dir.path(), 128 << 10).expect("opens");
    for i in 0..2000 {
        s.append(b"k", &value(i)).expect("appends");
    }
    assert!(seg_files(dir.path()) > 3);
    drain(&mut s);
    s.ack_below(2000).expect("acks");
    assert_eq!(seg_files(dir.path()), 1, "only the active segment stays");
    assert_eq!(s.pending(), 0);
    assert!(s.bytes() <= s.segment_bytes + 200);
}

#[test]
fn the_bound_evicts_the_oldest_unsent_and_says_how_many() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 64 << 10;
    let (mut s, _) = Spool::open(dir.path(), max).expect("opens");
    // Five readings are in flight (handed out, not acknowledged) when the flood starts.
    for i in 0..5 {
        s.append(b"k", &value(i)).expect("appends");
    }
    let in_flight = drain(&mut s);
    let mut evicted = Vec::new();
    let n = 5000;
    for i in 5..n {
        if let Some(e) = s.append(b"k", &value(i)).expect("appends").evicted {
            let (first, last) = e.seqs;
            assert_eq!(last - first + 1, e.readings);
            evicted.extend(first..=last);
        }
        assert!(
            s.bytes() <= max + s.segment_bytes + 200,
            "{} bytes",
            s.bytes()
        );
    }
    assert!(!evicted.is_empty());
    assert!(
        evicted.iter().all(|seq| *seq >= 5),
        "in-flight readings are not counted"
    );
    let rest: Vec<u64> = drain(&mut s).iter().map(|r| r.seq).collect();
    // Nothing silently missing: handed out + evicted + still here = everything.
    let mut all: Vec<u64> = in_flight.iter().map(|r| r.seq).collect();
    all.extend(&evicted);
    all.extend(&rest);
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    assert!(
        rest.windows(2).all(|w| w[1] == w[0] + 1),
        "survivors stay in order"
    );
}
