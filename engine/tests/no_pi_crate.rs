//! The engine does not link the Pi crate: `flowcast demo` runs the `flowcast-ingest`
//! binary as a child process, so `cargo tree -p flowcast-engine` (dev-dependencies
//! included) shows neither `flowcast-ingest` nor `rppal`.

use std::process::Command;

#[test]
fn engine_does_not_depend_on_ingest_or_rppal() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "flowcast-engine",
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
    assert!(names.contains(&"timely"), "the tree looks wrong:\n{tree}");
    assert!(names.contains(&"flowcast-common"));
    for pi in ["flowcast-ingest", "rppal"] {
        assert!(
            !names.contains(&pi),
            "flowcast-engine depends on {pi}:\n{tree}"
        );
    }
}
