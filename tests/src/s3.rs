//! The S3 test server (SeaweedFS, started by `deploy/services.sh`): its bucket, checked to
//! be reachable and to match what the checkpoint store reads from the environment, and
//! fresh locations in it.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The test server's bucket, after checking that the server answers and that the store
/// will find the same endpoint and some credentials in the environment.
///
/// # Panics
/// With what is missing, when the server or its settings are.
pub fn s3_bucket() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let url = var("FLOWCAST_TEST_S3").unwrap_or_else(|| {
        panic!(
            "FLOWCAST_TEST_S3 is not set: these tests need an S3 server (deploy/services.sh start \
             starts SeaweedFS on 127.0.0.1:8333; deploy/test.sh exports FLOWCAST_TEST_S3, \
             AWS_ENDPOINT_URL and the test credentials)"
        )
    });
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let reachable = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(
        reachable,
        "the S3 server FLOWCAST_TEST_S3={url} is not reachable: start it with deploy/services.sh start"
    );
    let endpoint = var("FLOWCAST_S3_ENDPOINT").or_else(|| var("AWS_ENDPOINT_URL"));
    assert_eq!(
        endpoint.as_deref().map(|e| e.trim_end_matches('/')),
        Some(url.trim_end_matches('/')),
        "set AWS_ENDPOINT_URL (or FLOWCAST_S3_ENDPOINT) to FLOWCAST_TEST_S3: the checkpoint store reads its endpoint from there"
    );
    assert!(
        (var("AWS_ACCESS_KEY_ID").is_some() && var("AWS_SECRET_ACCESS_KEY").is_some())
            || var("AWS_SHARED_CREDENTIALS_FILE").is_some(),
        "no S3 credentials: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (deploy/test.sh takes them from the run directory's seaweedfs/credentials)"
    );
    var("FLOWCAST_TEST_S3_BUCKET").unwrap_or_else(|| "flowcast-test".into())
}

/// A prefix no other test or run uses: `s3://{bucket}/tests/{name}-{pid}-{nanos}-{n}`.
pub fn unique_location(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "s3://{}/tests/{name}-{}-{nanos}-{}",
        s3_bucket(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
