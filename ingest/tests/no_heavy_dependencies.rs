//! `cargo build -p flowcast-ingest` must not compile timely or tch: the Pi build stays
//! small and needs no LibTorch. Checked on the dependency graph cargo would build.

use std::process::Command;

#[test]
fn ingest_does_not_depend_on_timely_or_tch() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "flowcast-ingest",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"rdkafka"), "the tree looks wrong:\n{tree}");
    assert!(names.contains(&"flowcast-operators"));
    for heavy in [
        "timely",
        "differential-dataflow",
        "tch",
        "torch-sys",
        "flowcast-engine",
    ] {
        assert!(
            !names.contains(&heavy),
            "flowcast-ingest depends on {heavy}:\n{tree}"
        );
    }
}
