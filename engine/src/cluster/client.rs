//! A client of the coordinator's API, for the CLI and the tests.

use super::api::{
    ApiError, ArtifactRef, JobView, ModelArtifact, NodeView, Parallelism, RescaleRequest,
    SubmitRequest,
};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;

/// An API answer that is not a success: its status and the coordinator's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiFailure {
    /// HTTP status (0 when the coordinator could not be reached).
    pub status: u16,
    /// The `error` of the JSON body, or what went wrong.
    pub message: String,
}

/// The coordinator at `base` (`http://host:8081`), with a token if one is set.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The API token from `FLOWCAST_COORDINATOR_TOKEN`, or the file named by
/// `FLOWCAST_COORDINATOR_TOKEN_FILE`.
///
/// # Errors
/// A token file that cannot be read or is empty.
pub fn token_from_env() -> anyhow::Result<Option<String>> {
    crate::cli::control_http::token_from(
        "FLOWCAST_COORDINATOR_TOKEN",
        "FLOWCAST_COORDINATOR_TOKEN_FILE",
    )
}

impl Client {
    /// A client of `base`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(|t| t.trim().to_owned()),
            agent: super::loops::agent(Duration::from_secs(60)),
        }
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ApiFailure> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, body) => {
                let mut r = match m {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.header("Content-Type", "application/json").send(b),
                    None => r.send_empty(),
                }
            }
        };
        let mut resp = result.map_err(|e| ApiFailure {
            status: 0,
            message: format!("cannot reach the coordinator at {}: {e}", self.base),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<ApiError>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            return Err(ApiFailure { status, message });
        }
        serde_json::from_str(&text).map_err(|e| ApiFailure {
            status,
            message: format!("unexpected answer: {e}: {text}"),
        })
    }

    /// Uploads bytes as an artifact.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn put_artifact(&self, bytes: Vec<u8>) -> Result<ArtifactRef, ApiFailure> {
        let url = format!("{}/v1/artifacts", self.base);
        let mut r = self.agent.put(&url);
        if let Some(t) = &self.token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = r
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .map_err(|e| ApiFailure {
                status: 0,
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(ApiFailure {
                status,
                message: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| ApiFailure {
            status,
            message: e.to_string(),
        })
    }

    /// Uploads a model (`x.pt` and the `x.json` beside it).
    ///
    /// # Errors
    /// Unreadable files, or what the coordinator answers.
    pub fn upload_model(&self, pt: &Path) -> anyhow::Result<ModelArtifact> {
        let json = pt.with_extension("json");
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
        };
        let pt_ref = self.put_artifact(read(pt)?)?;
        let json_ref = self.put_artifact(read(&json)?)?;
        Ok(ModelArtifact {
            pt: pt_ref.sha256,
            json: json_ref.sha256,
        })
    }

    /// Submits a job.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn submit(&self, req: &SubmitRequest) -> Result<JobView, ApiFailure> {
        let body = serde_json::to_vec(req).map_err(|e| ApiFailure {
            status: 0,
            message: e.to_string(),
        })?;
        self.send("POST", "/v1/jobs", Some(body))
    }

    /// Every job.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn jobs(&self) -> Result<Vec<JobView>, ApiFailure> {
        self.send("GET", "/v1/jobs", None)
    }

    /// One job's detail.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn job(&self, id: &str) -> Result<JobView, ApiFailure> {
        self.send("GET", &format!("/v1/jobs/{id}"), None)
    }

    /// `cancel`, `stop` or `savepoint`.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn action(&self, id: &str, action: &str) -> Result<JobView, ApiFailure> {
        self.send("POST", &format!("/v1/jobs/{id}/{action}"), None)
    }

    /// Rescales a job.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn rescale(&self, id: &str, parallelism: Parallelism) -> Result<JobView, ApiFailure> {
        let body = serde_json::to_vec(&RescaleRequest { parallelism }).map_err(|e| ApiFailure {
            status: 0,
            message: e.to_string(),
        })?;
        self.send("POST", &format!("/v1/jobs/{id}/rescale"), Some(body))
    }

    /// Every node.
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn nodes(&self) -> Result<Vec<NodeView>, ApiFailure> {
        self.send("GET", "/v1/nodes", None)
    }

    /// Any GET as JSON (service discovery, for instance).
    ///
    /// # Errors
    /// What the coordinator answers.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiFailure> {
        self.send("GET", path, None)
    }
}
