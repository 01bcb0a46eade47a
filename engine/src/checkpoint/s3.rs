//! `s3://bucket/prefix` checkpoint locations: an `object_store` S3 backend under a prefix.
//!
//! Everything but the bucket and prefix comes from the environment, never from the
//! location (which is in job specs and on command lines, so it must carry no secret):
//!
//! - endpoint: `FLOWCAST_S3_ENDPOINT`, else `AWS_ENDPOINT_URL` / `AWS_ENDPOINT`, else AWS
//!   itself; a plain `http://` endpoint (a local S3-compatible server) is allowed;
//! - region: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`;
//! - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`),
//!   else the profile `AWS_PROFILE` (default `default`) of the shared credentials file
//!   (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), else web-identity or
//!   container credentials when their `AWS_*` variables are set. Without any of them
//!   opening fails rather than probing an instance-metadata service.
//!
//! **The commit point.** A checkpoint exists once its `_MANIFEST` exists, and the manifest
//! is written create-if-absent (`PutMode::Create`). On S3 that is a `PUT` with
//! `If-None-Match: *` (`S3ConditionalPut::ETagMatch`, set explicitly here): the server
//! answers `412 Precondition Failed` when the object exists, which `object_store` reports
//! as `AlreadyExists`. AWS S3 and the SeaweedFS version the tests run against honour it
//! (checked by `engine/tests/checkpoint_s3.rs`, two create-if-absent puts of one key). A
//! server that ignores the header would let a second manifest writer overwrite the first
//! silently; Flowcast has a single manifest writer per job, so that could only happen with
//! two runs of one job on one location at once, which the tests would catch for the
//! server in use.

use super::CheckpointError;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::SpawnedReqwestConnector;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use std::sync::{Arc, OnceLock};

/// The runtime every S3 request's HTTP I/O runs on: one background thread for the process.
/// The blocking [`CheckpointStore`](super::CheckpointStore) drives its current-thread
/// runtime only inside its calls, and the writer has a runtime of its own; a pooled HTTP
/// connection made on one of them would stall when used from the other (requests timed
/// out after 30 s against SeaweedFS), so connections live here, always driven.
fn io_runtime() -> Result<tokio::runtime::Handle, CheckpointError> {
    static IO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = IO.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flowcast-s3-io")
        .enable_all()
        .build()
        .map_err(|e| CheckpointError::Runtime(format!("cannot start the S3 I/O runtime: {e}")))?;
    // A racing caller's runtime wins; this one is dropped here, outside any runtime.
    Ok(IO.get_or_init(|| rt).handle().clone())
}

/// The bucket and the prefix (possibly empty) of an `s3://bucket/prefix` location.
pub(crate) fn parse(location: &str) -> Result<(String, String), CheckpointError> {
    let err = |reason: &str| super::store::location_error(location, reason);
    let rest = location
        .strip_prefix("s3://")
        .ok_or_else(|| err("not an s3:// location"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(err("no bucket: write s3://bucket/prefix"));
    }
    if bucket.contains(['@', ':', '?', '#']) || prefix.contains(['?', '#']) {
        return Err(err(
            "write s3://bucket/prefix only: the endpoint and credentials come from the environment (FLOWCAST_S3_ENDPOINT or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), never from the location",
        ));
    }
    let prefix = prefix.trim_matches('/').to_owned();
    Ok((bucket.to_owned(), prefix))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Static credentials from the shared credentials file's profile, if the file has them.
fn credentials_file() -> Result<Option<(String, String, Option<String>)>, String> {
    let path = match env("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => match env("HOME") {
            Some(home) => std::path::Path::new(&home).join(".aws").join("credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let (mut in_profile, mut key, mut secret, mut token) = (false, None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            in_profile = line[1..line.len() - 1].trim() == profile;
        } else if let Some((k, v)) = line.split_once('=').filter(|_| in_profile) {
            let v = Some(v.trim().to_owned());
            match k.trim() {
                "aws_access_key_id" => key = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(k), Some(s)) => Ok(Some((k, s, token))),
        (None, None) => Ok(None),
        _ => Err(format!(
            "profile `{profile}` of {} has only one of aws_access_key_id and aws_secret_access_key",
            path.display()
        )),
    }
}

/// Builds the S3 backend for `bucket`, rooted at `prefix`.
fn build(
    location: &str,
    bucket: &str,
    prefix: &str,
) -> Result<Arc<dyn ObjectStore>, CheckpointError> {
    let err = |reason: String| super::store::location_error(location, reason);
    // AWS_* variables the builder knows (region, endpoint, keys, tokens, ...).
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(SpawnedReqwestConnector::new(io_runtime()?))
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        builder = builder.with_region("us-east-1");
    }
    let endpoint = env("FLOWCAST_S3_ENDPOINT")
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"));
    if let Some(endpoint) = &endpoint {
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(err(format!(
                "the S3 endpoint `{endpoint}` is not an http:// or https:// URL"
            )));
        }
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_config(
                AmazonS3ConfigKey::S3Endpoint,
                endpoint.trim_end_matches('/'),
            )
            .with_allow_http(endpoint.starts_with("http://"));
    }
    let static_env = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"));
    match static_env {
        (Some(_), Some(_)) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(err(
                "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set".into(),
            ));
        }
        (None, None) => match credentials_file().map_err(err)? {
            Some((key, secret, token)) => {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
                if let Some(token) = token {
                    builder = builder.with_token(token);
                }
            }
            None => {
                let other = [
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                ];
                if !other.iter().any(|v| env(v).is_some()) {
                    return Err(err(
                        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials, profile AWS_PROFILE or `default`)".into(),
                    ));
                }
            }
        },
    }
    let s3 = builder.build().map_err(|e| err(format!("S3: {e}")))?;
    let endpoint = endpoint.unwrap_or_else(|| "AWS".into());
    tracing::debug!(location, endpoint, "S3 checkpoint location");
    if prefix.is_empty() {
        Ok(Arc::new(s3))
    } else {
        Ok(Arc::new(PrefixStore::new(s3, StorePath::from(prefix))))
    }
}

/// Opens `s3://bucket/prefix`: builds the backend and lists the prefix once (on
/// `runtime`, from outside any runtime), so a missing bucket, a wrong endpoint or refused
/// credentials show up here, not at the first checkpoint. With `existing`, the prefix must
/// hold objects (a savepoint is read from it).
pub(crate) fn open(
    location: &str,
    existing: bool,
    runtime: &tokio::runtime::Runtime,
) -> Result<Arc<dyn ObjectStore>, CheckpointError> {
    let (bucket, prefix) = parse(location)?;
    let store = build(location, &bucket, &prefix)?;
    let first = runtime.block_on(async { store.list(None).next().await });
    match first {
        Some(Ok(_)) => Ok(store),
        None if !existing => Ok(store),
        None => Err(super::store::location_error(
            location,
            "no objects under this prefix (no such savepoint)",
        )),
        Some(Err(e)) => Err(super::store::location_error(
            location,
            format!("cannot list bucket `{bucket}`: {e}"),
        )),
    }
}
