//! The cluster of the scripts (`deploy/cluster/start.sh`: a coordinator and three nodes) for
//! the tests that run jobs on it, and small helpers they share.

// Each test binary uses a part of it.
#![allow(dead_code)]

use flowcast_engine::cluster::api::{JobState, JobView};
use flowcast_engine::cluster::client::Client;
use flowcast_tests::wait;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_flowcast");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The scripts' cluster; stops everything it started when dropped.
pub struct TestCluster {
    /// Its run directory (token, logs, state).
    pub dir: tempfile::TempDir,
    /// The coordinator's port.
    pub port: u16,
    /// The port of the Prometheus a test started, stopped on drop.
    pub prometheus: Option<u16>,
    /// The coordinator the test restarted itself (stopped by the script, reaped here).
    pub restarted: Option<std::process::Child>,
}

impl TestCluster {
    pub fn script(&self, script: &str, args: &[&str]) {
        let out = Command::new(repo().join(script))
            .args(args)
            .env("FLOWCAST_BIN", BIN)
            .env("FLOWCAST_RUN_DIR", self.dir.path())
            .env("FLOWCAST_COORDINATOR_TOKEN_FILE", self.token_file())
            .env_remove("FLOWCAST_COORDINATOR_TOKEN")
            .output()
            .expect("run script");
        assert!(
            out.status.success(),
            "{script} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join(format!("cluster-{}", self.port))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        let token = std::fs::read_to_string(self.token_file()).expect("token");
        Client::new(&self.url(), Some(token))
    }

    pub fn pid(&self, name: &str) -> String {
        std::fs::read_to_string(self.run_dir().join(format!("{name}.pid")))
            .expect("pid file")
            .trim()
            .to_owned()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // FLOWCAST_CLUSTER_KEEP=1 keeps the run directory (logs, state, checkpoints).
        if std::env::var_os("FLOWCAST_CLUSTER_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
        let port = self.port.to_string();
        self.script("deploy/cluster/stop.sh", &["--port", &port]);
        if let Some(mut c) = self.restarted.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = self.prometheus {
            self.script("deploy/prometheus/stop.sh", &["--port", &p.to_string()]);
        }
    }
}

pub fn kill_9(pid: &str) {
    let status = Command::new("kill")
        .args(["-9", pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// Waits until the job is running at `workers` workers with every process ready.
pub fn running(c: &Client, id: &str, workers: u32, what: &str) -> JobView {
    wait::poll_for(Duration::from_secs(90), || {
        c.job(id)
            .ok()
            .filter(|j| j.state == JobState::Running && j.workers == workers)
    })
    .unwrap_or_else(|| panic!("{what}: the job runs at {workers} workers: {:?}", c.job(id)))
}
