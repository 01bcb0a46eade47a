//! Property tests of the record parser, the first code to touch what a device sends:
//! arbitrary bytes, JSON-shaped token soup and mutations of valid records must come back
//! as a reading or a rejection with a reason, never a panic; whatever is accepted obeys
//! every bound; a valid record always parses to the values it was made from.
//!
//! 60 000 cases in all (`cargo test` runs them; see each `ProptestConfig`).

use flowcast_operators::record::limits;
use flowcast_operators::{ParseOptions, Reading, RejectReason, SensorKind};
use proptest::prelude::*;
use std::time::Duration;

/// What every accepted reading satisfies, whatever the input was.
fn assert_accepted_obeys_bounds(
    r: &Reading,
    key: Option<&[u8]>,
    payload: &[u8],
    opts: &ParseOptions,
) {
    assert!(r.validate(opts.sensor).is_ok(), "{r:?}");
    assert!(
        limits::check_device_id(&r.device, opts.max_device_id_bytes).is_ok(),
        "{r:?}"
    );
    assert!(
        key.map_or(0, <[u8]>::len) + payload.len() <= opts.max_record_bytes,
        "size bound"
    );
}

/// Runs the whole source path and checks the outcome is well-formed either way.
fn check(key: Option<&[u8]>, payload: &[u8], ts: Option<i64>, opts: &ParseOptions) {
    match Reading::parse_record(key, payload, ts, opts) {
        Ok(r) => {
            assert_accepted_obeys_bounds(&r, key, payload, opts);
            assert!(limits::check_future_skew(r.time, ts, opts.max_future_skew).is_ok());
            // Deterministic: the same record decides the same way.
            assert_eq!(Reading::parse_record(key, payload, ts, opts), Ok(r));
        }
        Err(rej) => {
            assert!(RejectReason::ALL.contains(&rej.reason));
            assert!(!rej.detail.is_empty(), "{rej:?}");
        }
    }
}

fn options() -> impl Strategy<Value = ParseOptions> {
    (
        prop_oneof![Just(SensorKind::Dht11), Just(SensorKind::Dht22)],
        prop_oneof![Just(128usize), 1usize..64],
        prop_oneof![Just(64 * 1024usize), 16usize..512],
        prop_oneof![Just(3600u64), 0u64..7200],
    )
        .prop_map(|(sensor, id, size, skew)| ParseOptions {
            sensor,
            max_device_id_bytes: id,
            max_record_bytes: size,
            max_future_skew: Duration::from_secs(skew),
        })
}

fn timestamp() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        Just(Some(-1)),
        (0i64..4_000_000_000_000).prop_map(Some),
        any::<i64>().prop_map(Some),
    ]
}

/// Pieces of JSON (and of near-JSON that producers get wrong), glued at random: reaches
/// the parser's structural paths far more often than random bytes do.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    // A fixed list through `select` (regex strategies over wide classes are slow to
    // generate in debug builds).
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\"time\"",
        "\"temperature\"",
        "\"humidity\"",
        "\"device\"",
        "null",
        "true",
        "NaN",
        "\"NaN\"",
        "\"-inf\"",
        "1e999",
        "-0",
        "9e15",
        "18446744073709551616",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"pi-01\"",
        "\"\"",
        "\"\\",
        "\"time\":1",
        "\"device\":\"a\\nb\"",
        "\u{feff}",
        "\u{0}",
        "\\",
    ];
    let token = prop_oneof![
        4 => proptest::sample::select(TOKENS).prop_map(str::to_owned),
        1 => Just("[".repeat(200)),
        1 => any::<f64>().prop_map(|x| x.to_string()),
        1 => (-50.0f64..120.0).prop_map(|x| x.to_string()),
        1 => proptest::collection::vec(0x20u8..0x7f, 0..6)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat().into_bytes())
}

/// A device id that passes the default bound: printable ASCII and some multi-byte chars.
fn device_id() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => (0x20u8..0x7f).prop_map(char::from),
        1 => proptest::sample::select(&['ü', '€', '☃', '𝄞', '\u{200b}', '\u{a0}'][..]),
    ];
    proptest::collection::vec(ch, 1..40).prop_map(|c| c.into_iter().collect())
}

/// A reading valid for `sensor` under the default bounds, with its Kafka timestamp.
fn valid_reading(sensor: SensorKind) -> impl Strategy<Value = (Reading, i64)> {
    let (tlo, thi) = sensor.temperature_range();
    let (hlo, hhi) = sensor.humidity_range();
    (
        0.0f64..4.0e9,
        tlo..=thi,
        hlo..=hhi,
        device_id(),
        -3_600_000i64..3_600_000,
    )
        .prop_filter("device id within the default bound", |(_, _, _, d, _)| {
            d.len() <= ParseOptions::DEFAULT_MAX_DEVICE_ID_BYTES
        })
        .prop_map(|(time, temperature, humidity, device, lag_ms)| {
            // The record was stamped within an hour of the event, either side. Rounded up
            // to the millisecond: truncated, an event an hour ahead was up to 1 ms more than
            // an hour ahead, and the parser rightly refused it.
            let ts = (time * 1000.0).ceil() as i64 + lag_ms;
            let r = Reading {
                time,
                temperature,
                humidity,
                device,
            };
            (r, ts.max(0))
        })
}

/// The reading as some producer might write it: fields in any order, maybe an extra
/// field, maybe no `device` (then the key carries it).
fn render(r: &Reading, order: &[usize], extra: bool, device_in_key: bool) -> (Vec<u8>, Vec<u8>) {
    let dev = serde_json::to_string(&r.device).unwrap_or_default();
    let mut fields = vec![
        format!("\"time\": {}", r.time),
        format!("\"temperature\":{}", r.temperature),
        format!("\"humidity\" : {}", r.humidity),
    ];
    if !device_in_key {
        fields.push(format!("\"device\":{dev}"));
    }
    if extra {
        fields.push("\"firmware\": {\"v\": [1, 2]}".into());
    }
    let mut ordered: Vec<String> = Vec::with_capacity(fields.len());
    for i in order.iter().take(fields.len()) {
        let i = i % fields.len();
        if !ordered.contains(&fields[i]) {
            ordered.push(fields[i].clone());
        }
    }
    for f in fields {
        if !ordered.contains(&f) {
            ordered.push(f);
        }
    }
    let key = if device_in_key {
        r.device.clone().into_bytes()
    } else {
        b"ignored-key".to_vec()
    };
    (format!("{{{}}}", ordered.join(",")).into_bytes(), key)
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = b.len().max(1);
        match *m {
            Mutation::Flip(i, x) if !b.is_empty() => b[i % n] ^= x,
            Mutation::Delete(i) if !b.is_empty() => {
                b.remove(i % n);
            }
            Mutation::Insert(i, x) => b.insert(i % (b.len() + 1), x),
            Mutation::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Mutation::Duplicate(i, len) if !b.is_empty() => {
                let s = i % n;
                let e = (s + len).min(b.len());
                let piece = b[s..e].to_vec();
                b.splice(e..e, piece);
            }
            _ => {}
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_bytes_are_a_reading_or_a_reason(
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        ts in timestamp(),
        opts in options(),
    ) {
        check(key.as_deref(), &payload, ts, &opts);
        // The three-argument form the engine calls today never panics either.
        let _ = Reading::parse(key.as_deref(), &payload, opts.sensor);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(15_000))]

    #[test]
    fn json_token_soup_is_a_reading_or_a_reason(
        key in proptest::option::of(proptest::collection::vec(0u8..0x80, 0..40)),
        payload in token_soup(),
        ts in timestamp(),
        opts in options(),
    ) {
        check(key.as_deref(), &payload, ts, &opts);
    }

    #[test]
    fn mutated_valid_records_are_a_reading_or_a_reason(
        (r, ts) in valid_reading(SensorKind::Dht11),
        order in proptest::collection::vec(0usize..5, 5),
        extra in any::<bool>(),
        in_key in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..6),
        opts in options(),
    ) {
        let (payload, key) = render(&r, &order, extra, in_key);
        let payload = apply(payload, &muts);
        check(Some(&key), &payload, Some(ts), &opts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn a_valid_record_parses_to_its_values(
        (sensor, (r, ts)) in prop_oneof![Just(SensorKind::Dht11), Just(SensorKind::Dht22)]
            .prop_flat_map(|s| (Just(s), valid_reading(s))),
        order in proptest::collection::vec(0usize..5, 5),
        extra in any::<bool>(),
        in_key in any::<bool>(),
    ) {
        let (payload, key) = render(&r, &order, extra, in_key);
        let opts = ParseOptions::new(sensor);
        let got = Reading::parse_record(Some(&key), &payload, Some(ts), &opts);
        prop_assert_eq!(got, Ok(r.clone()), "{}", String::from_utf8_lossy(&payload));
        // And through the canonical encoder.
        prop_assert_eq!(Reading::parse(None, &r.to_json(), sensor), Ok(r));
    }
}
