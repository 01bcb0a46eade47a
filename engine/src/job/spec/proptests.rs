//! Property tests of the job-spec loader: arbitrary text and mutations of the reference
//! job give a spec or an error that names the file, never a panic; whatever loads
//! survives a write and a reload unchanged.
//!
//! 15 000 cases (`cargo test` runs them).

use super::*;
use proptest::prelude::*;

const REFERENCE: &str = include_str!("../../../../jobs/dht11-forecast.toml");

/// What holds whenever the loader says yes or no.
fn check(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("prop.toml");
    match JobSpec::parse(text, path) {
        Ok(spec) => {
            prop_assert!(!spec.name.trim().is_empty());
            prop_assert!(spec.source.max_device_id_bytes > 0);
            prop_assert!(!spec.window.length.is_zero());
            let again = toml::to_string(&spec)
                .map_err(|e| TestCaseError::fail(format!("a loaded spec must serialise: {e}")))?;
            prop_assert_eq!(JobSpec::parse(&again, path).ok(), Some(spec), "{}", again);
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.contains("prop.toml"), "error names the file: {}", msg);
        }
    }
    Ok(())
}

/// Pieces of TOML, mostly the keys and values a job file holds, glued at random.
fn toml_soup() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "\n",
        " = ",
        "[source]",
        "[event-time]",
        "[window]",
        "[sequence]",
        "[model]",
        "[[sinks]]",
        "name",
        "brokers",
        "topic",
        "\"x\"",
        "\"\"",
        "\"30m\"",
        "\"0s\"",
        "\"99999999999999999999h\"",
        "0",
        "-1",
        "18446744073709551616",
        "1e400",
        "nan",
        "true",
        "[",
        "]",
        "{",
        "}",
        ",",
        ".",
        "\"",
        "'",
        "#",
        "type",
        "\"kafka\"",
        "kind",
        "\"persistence\"",
        "\"off\"",
        "length",
        "max-record-bytes",
        "max-future-skew",
        "max-device-id-bytes",
        "sensor",
        "\"dht22\"",
        "\u{0}",
        "\\u0000",
        "\"\"\"",
    ];
    let token = prop_oneof![
        6 => proptest::sample::select(TOKENS).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|x| x.to_string()),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

/// One edit of the reference job, by line or by character.
#[derive(Debug, Clone)]
enum Edit {
    DropLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Replace the value after `=` on a line with another value.
    Revalue(usize, &'static str),
    Flip(usize, char),
    DeleteChar(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    const VALUES: &[&str] = &[
        "0",
        "-1",
        "1",
        "\"\"",
        "\"1h\"",
        "\"0s\"",
        "\"nope\"",
        "true",
        "[]",
        "{}",
        "9223372036854775807",
        "\"dht22\"",
        "\"latest\"",
        "\"off\"",
        "1.5",
        "\"\u{0}\"",
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), proptest::sample::select(VALUES)).prop_map(|(l, v)| Edit::Revalue(l, v)),
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Edit::Flip(i, c)),
        any::<usize>().prop_map(Edit::DeleteChar),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut chars: Option<Vec<char>> = None;
    for e in edits {
        // Line edits first work on lines; the first character edit switches to chars.
        if let Some(c) = chars.as_mut() {
            edit_chars(c, e);
            continue;
        }
        let n = lines.len().max(1);
        match *e {
            Edit::DropLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::Revalue(i, v) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                if let Some(eq) = l.find('=') {
                    l.truncate(eq + 1);
                    l.push(' ');
                    l.push_str(v);
                }
            }
            Edit::Flip(..) | Edit::DeleteChar(_) | Edit::Truncate(_) => {
                let mut c: Vec<char> = lines.join("\n").chars().collect();
                edit_chars(&mut c, e);
                chars = Some(c);
            }
            _ => {}
        }
    }
    match chars {
        Some(c) => c.into_iter().collect(),
        None => lines.join("\n"),
    }
}

fn edit_chars(c: &mut Vec<char>, e: &Edit) {
    let n = c.len().max(1);
    match *e {
        Edit::Flip(i, x) if !c.is_empty() => c[i % n] = x,
        Edit::DeleteChar(i) if !c.is_empty() => {
            c.remove(i % n);
        }
        Edit::Truncate(i) => c.truncate(i % (c.len() + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn arbitrary_text_loads_or_errs(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn toml_soup_loads_or_errs(text in toml_soup()) {
        check(&text)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn mutated_reference_job_loads_or_errs(edits in proptest::collection::vec(edit(), 1..5)) {
        check(&apply(REFERENCE, &edits))?;
    }
}
