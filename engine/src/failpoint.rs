//! Fail points for the fault tests: `FLOWCAST_FAILPOINT=<name>[:<n>]` makes the process
//! abort itself (as `kill -9` would: no unwinding, no flush, no final checkpoint) the `n`-th
//! time (default: the first) it reaches the point `name`, so a test never races a `kill`.
//!
//! The points:
//! - `checkpoint-before-manifest` — every local file of a checkpoint written, no manifest;
//! - `checkpoint-after-manifest` — the manifest written, before the workers hear of it;
//! - `commit-before` — a worker is about to commit a checkpoint's staged output;
//! - `commit-inside` — the staged output produced in the open transaction, not committed;
//! - `commit-after` — the transaction committed, before the worker learns it;
//! - `recovery` — a restarted worker fenced the old transactions and read their progress,
//!   before it commits what they had not.
//!
//! Without the variable (every production run) a point costs one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("FLOWCAST_FAILPOINT").ok()?;
            let (name, at) = match v.split_once(':') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed {
                name,
                at: at.max(1),
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether the fail point `name` is the armed one (whatever its count).
pub fn is_armed(name: &str) -> bool {
    armed().is_some_and(|a| a.name == name)
}

/// Aborts the process if `name` is armed and this is its `n`-th hit.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    let n = a.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if n == a.at {
        tracing::error!("FLOWCAST_FAILPOINT={name}:{n}: aborting");
        eprintln!("FLOWCAST_FAILPOINT={name}:{n}: aborting");
        std::process::abort();
    }
}
