//! The `[checkpoint]` table of a job spec: where and how often the job checkpoints, with
//! Flink's meanings for the timeout, the pause and the tolerated failures.
//!
//! ```toml
//! [checkpoint]
//! location = "/var/lib/flowcast/checkpoints/dht11"   # a directory, file:// URL or s3://bucket/prefix
//! interval = "10s"           # a checkpoint starts every interval…
//! min-pause = "0s"           # …but never sooner than this after the last one ended
//! timeout = "10m"            # a checkpoint not complete by then has failed
//! tolerable-failures = 3     # consecutive failures after which the job fails
//! retained = 3               # complete checkpoints kept (savepoints are never deleted)
//! ```
//!
//! Without `location` the job does not checkpoint. With it, `flowcast run` resumes from the
//! newest complete checkpoint there (`--fresh` ignores them, `--from-savepoint` starts from
//! a savepoint instead); savepoints go to `{location}/savepoints/savepoint-{id}` unless
//! `savepoints` names another directory.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Checkpoint settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckpointSpec {
    /// Where checkpoints are written; none: the job does not checkpoint.
    #[serde(default)]
    pub location: Option<String>,
    /// Where savepoints are written; default `{location}/savepoints`.
    #[serde(default)]
    pub savepoints: Option<String>,
    /// How often a checkpoint starts (independent of the epoch interval).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The least time between the end of one checkpoint and the start of the next.
    #[serde(default, with = "humantime_serde")]
    pub min_pause: Duration,
    /// A checkpoint not complete this long after it started has failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed checkpoints tolerated; one more fails the job.
    #[serde(default = "default_tolerable")]
    pub tolerable_failures: u32,
    /// Complete checkpoints kept in the location.
    #[serde(default = "default_retained")]
    pub retained: usize,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            location: None,
            savepoints: None,
            interval: default_interval(),
            min_pause: Duration::ZERO,
            timeout: default_timeout(),
            tolerable_failures: default_tolerable(),
            retained: default_retained(),
        }
    }
}

impl CheckpointSpec {
    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_millis(100) {
            return Err("checkpoint.interval must be at least 100ms".into());
        }
        if self.timeout.is_zero() {
            return Err("checkpoint.timeout must be above 0".into());
        }
        if self.retained == 0 {
            return Err("checkpoint.retained must be at least 1".into());
        }
        Ok(())
    }

    /// The savepoint directory.
    pub fn savepoint_root(&self) -> Option<String> {
        self.savepoints.clone().or_else(|| {
            self.location
                .as_ref()
                .map(|l| format!("{}/savepoints", l.trim_end_matches('/')))
        })
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_tolerable() -> u32 {
    3
}

fn default_retained() -> usize {
    3
}
