//! Checkpointed jobs as processes, for the recovery tests: start the `flowcast` binary on
//! a spec, kill it with `kill -9`, and read what its checkpoint location and log say.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Starts `flowcast run JOB --workers N [extra…]` with its log in `log` (info level) and,
/// if given, the fail point `FLOWCAST_FAILPOINT`. `bin` is the binary under test
/// (`env!("CARGO_BIN_EXE_flowcast")` in the engine's tests).
///
/// # Panics
/// If the log file cannot be created or the process cannot start.
pub fn spawn(
    bin: &str,
    job: &Path,
    workers: usize,
    log: &Path,
    failpoint: Option<&str>,
    extra: &[String],
) -> Child {
    let mut c = Command::new(bin);
    c.args(["run", job.to_str().expect("utf-8 path")])
        .args(["--workers", &workers.to_string()])
        .args(extra)
        .env("FLOWCAST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    if let Some(f) = failpoint {
        c.env("FLOWCAST_FAILPOINT", f);
    }
    c.spawn().expect("spawn flowcast run")
}

/// `kill -9` and reap.
///
/// # Panics
/// If the signal cannot be sent.
pub fn kill_9(mut c: Child) {
    c.kill().expect("kill -9");
    let _ = c.wait();
}

/// Sends SIGTERM (stop with a final checkpoint).
///
/// # Panics
/// If `kill` cannot run or fails.
pub fn terminate(c: &Child) {
    let term = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success(), "kill -TERM {}", c.id());
}

/// Ids of the checkpoints in `dir` with a manifest, ascending.
pub fn manifests(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_MANIFEST").exists())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// The newest complete checkpoint's id.
///
/// # Panics
/// If there is none.
pub fn newest(dir: &Path) -> u64 {
    *manifests(dir).last().expect("a complete checkpoint")
}

/// The worker files of checkpoint `id`, as its manifest names them.
///
/// # Panics
/// If the manifest cannot be read.
pub fn files_of(dir: &Path, id: u64) -> Vec<PathBuf> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("chk-{id}/_MANIFEST"))).expect("manifest"),
    )
    .expect("manifest json");
    m["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| dir.join(f["path"].as_str().expect("path")))
        .collect()
}

/// The checkpoint a run's log says it restored, if any.
pub fn restored_from(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("restoring from the latest complete checkpoint"))?;
    line.split("checkpoint=")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Whether a run's log says it skipped a damaged checkpoint.
pub fn fell_back(log: &Path) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("falling back to an older one")
}

/// Now, ms since the epoch: taken once a run's process has ended, it bounds the create
/// times of every record that run made.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
