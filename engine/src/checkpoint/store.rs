//! Storage behind one trait (`object_store`), with a blocking facade for worker and
//! control threads ([`CheckpointStore`]) and a background writer thread
//! ([`CheckpointWriter`]) so that worker threads never wait for I/O.

use super::format::FormatError;
use super::manifest::{CheckpointInfo, Completion, complete_checkpoint_async};
use super::{CheckpointError, format};
use crate::lifecycle::snapshot::WorkerSnapshot;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::fmt;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// A checkpoint location: an `object_store` backend and a small tokio runtime to drive it.
///
/// Every method blocks the calling thread until the operation is done; call them from
/// plain threads (workers, the control thread, tests), never from inside an async
/// runtime (that returns [`CheckpointError::Runtime`] rather than panicking). Paths are
/// relative to the location, `/`-separated (`chk-3/_MANIFEST`). Cloning is cheap and
/// clones share the backend and the runtime.
#[derive(Clone)]
pub struct CheckpointStore {
    location: String,
    store: Arc<dyn ObjectStore>,
    runtime: Arc<Runtime>,
    /// The directory of a local location.
    dir: Option<std::path::PathBuf>,
}

impl fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("location", &self.location)
            .field("store", &self.store.to_string())
            .finish()
    }
}

pub(crate) fn location_error(location: &str, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Location {
        location: location.to_owned(),
        reason: reason.into(),
    }
}

fn current_thread_runtime() -> Result<Runtime, CheckpointError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CheckpointError::Runtime(format!("cannot start a tokio runtime: {e}")))
}

fn store_path(path: &str) -> Result<StorePath, CheckpointError> {
    StorePath::parse(path).map_err(|e| CheckpointError::Store {
        op: "name",
        path: path.to_owned(),
        source: e.into(),
    })
}

impl CheckpointStore {
    /// Opens a location: a plain directory path or a `file://` URL (created if absent), or
    /// `s3://bucket/prefix` (endpoint, region and credentials from the environment; see
    /// [`super::s3`]).
    ///
    /// # Errors
    /// Another scheme, a directory that cannot be created, or an S3 location whose bucket
    /// cannot be listed (missing bucket or credentials, wrong endpoint).
    pub fn open(location: &str) -> Result<Self, CheckpointError> {
        Self::open_any(location, true)
    }

    /// Opens a location that must exist already (reading a savepoint must not create a
    /// directory where a path was mistyped; on S3 the prefix must hold objects).
    ///
    /// # Errors
    /// As [`CheckpointStore::open`], or the directory (S3: any object under the prefix)
    /// does not exist.
    pub fn open_existing(location: &str) -> Result<Self, CheckpointError> {
        Self::open_any(location, false)
    }

    fn open_any(location: &str, create: bool) -> Result<Self, CheckpointError> {
        if location.starts_with("s3://") {
            let runtime = current_thread_runtime()?;
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err(CheckpointError::Runtime(
                    "an S3 checkpoint location was opened from inside an async runtime".into(),
                ));
            }
            let store = super::s3::open(location, !create, &runtime)?;
            return Ok(CheckpointStore {
                location: location.to_owned(),
                store,
                runtime: Arc::new(runtime),
                dir: None,
            });
        }
        Self::open_dir(location, create)
    }

    fn open_dir(location: &str, create: bool) -> Result<Self, CheckpointError> {
        let dir = match location.split_once("://") {
            None => location,
            Some(("file", rest)) => rest,
            Some((scheme, _)) => {
                return Err(location_error(
                    location,
                    format!(
                        "`{scheme}://` locations are not supported: use a local directory, a file:// URL or s3://bucket/prefix"
                    ),
                ));
            }
        };
        if dir.is_empty() {
            return Err(location_error(location, "the path is empty"));
        }
        if create {
            std::fs::create_dir_all(dir).map_err(|e| {
                location_error(location, format!("cannot create the directory: {e}"))
            })?;
        } else if !std::path::Path::new(dir).is_dir() {
            return Err(location_error(location, "no such directory"));
        }
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| location_error(location, e.to_string()))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let mut store = Self::with_store(location, Arc::new(fs))?;
        store.dir = Some(std::path::PathBuf::from(dir));
        Ok(store)
    }

    /// Wraps any `object_store` backend (tests use the in-memory one).
    ///
    /// # Errors
    /// If no tokio runtime can be started.
    pub fn with_store(
        location: &str,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self, CheckpointError> {
        Ok(CheckpointStore {
            location: location.to_owned(),
            store,
            runtime: Arc::new(current_thread_runtime()?),
            dir: None,
        })
    }

    /// The directory of a local location (`None` for S3 and wrapped backends).
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// The location as it was opened.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The backend, for async callers.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> Result<F::Output, CheckpointError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(CheckpointError::Runtime(
                "the blocking checkpoint store was called from inside an async runtime; use object_store() there".into(),
            ));
        }
        Ok(self.runtime.block_on(f))
    }

    /// Writes `bytes` at `path`, atomically; with `create_only` it fails with
    /// [`CheckpointError::AlreadyExists`] if the object exists.
    ///
    /// # Errors
    /// Storage errors, or the object exists under `create_only`.
    pub fn put(&self, path: &str, bytes: Bytes, create_only: bool) -> Result<(), CheckpointError> {
        self.block_on(put(&*self.store, path, bytes, create_only))?
    }

    /// Reads the object at `path`; `None` if it does not exist.
    ///
    /// # Errors
    /// Storage errors other than "not found".
    pub fn get(&self, path: &str) -> Result<Option<Bytes>, CheckpointError> {
        let p = store_path(path)?;
        let got = self.block_on(async {
            match self.store.get(&p).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        got.map_err(|e| CheckpointError::store("read", path, e))
    }

    /// Reads the first `len` bytes of `path` (fewer if it is shorter); `None` if absent.
    ///
    /// # Errors
    /// Storage errors other than "not found".
    pub fn get_prefix(&self, path: &str, len: u64) -> Result<Option<Bytes>, CheckpointError> {
        self.block_on(read_prefix(&*self.store, path, len))?
    }

    /// Every object under `prefix` (all of them for `""`), recursively.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, CheckpointError> {
        self.block_on(list(&*self.store, prefix))?
    }

    /// Deletes `path`; deleting an absent object is not an error.
    ///
    /// # Errors
    /// Storage errors.
    pub fn delete(&self, path: &str) -> Result<(), CheckpointError> {
        let p = store_path(path)?;
        match self.block_on(self.store.delete(&p))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(CheckpointError::store("delete", path, e)),
        }
    }
}

/// The first `len` bytes of `path` (fewer if it is shorter); `None` if absent.
pub(crate) async fn read_prefix(
    store: &dyn ObjectStore,
    path: &str,
    len: u64,
) -> Result<Option<Bytes>, CheckpointError> {
    let p = store_path(path)?;
    let got = async {
        let meta = match store.head(&p).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let end = len.min(meta.size);
        if end == 0 {
            return Ok(Some(Bytes::new()));
        }
        store.get_range(&p, 0..end).await.map(Some)
    }
    .await;
    got.map_err(|e| CheckpointError::store("read", path, e))
}

/// Every object under `prefix` (all of them for `""`), recursively.
pub(crate) async fn list(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<ObjectMeta>, CheckpointError> {
    let p = if prefix.is_empty() {
        None
    } else {
        Some(store_path(prefix)?)
    };
    store
        .list(p.as_ref())
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| CheckpointError::store("list", prefix, e))
}

/// Writes `bytes` at `path`, create-if-absent or overwriting.
pub(crate) async fn put(
    store: &dyn ObjectStore,
    path: &str,
    bytes: Bytes,
    create_only: bool,
) -> Result<(), CheckpointError> {
    put_async(store, &store_path(path)?, bytes, create_only)
        .await
        .map_err(|e| CheckpointError::store("write", path, e))
}

async fn put_async(
    store: &dyn ObjectStore,
    path: &StorePath,
    bytes: Bytes,
    create_only: bool,
) -> Result<(), object_store::Error> {
    let mode = if create_only {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    store
        .put_opts(path, PutPayload::from(bytes), PutOptions::from(mode))
        .await
        .map(|_| ())
}

/// What a [`CheckpointWriter`] writes.
#[derive(Debug)]
pub enum WriteJob {
    /// Encode a worker's snapshot (bincode, LZ4, header — on the writer's threads) and
    /// write it, create-if-absent, at
    /// [`worker_file`](super::worker_file)`(snap.id, attempt, snap.worker, snap.workers)`.
    Snapshot {
        /// The worker's state.
        snap: Box<WorkerSnapshot>,
        /// The run attempt.
        attempt: u64,
    },
    /// Write these bytes at this path, create-if-absent.
    Bytes {
        /// Path within the location.
        path: String,
        /// The content.
        bytes: Bytes,
    },
}

/// A file the writer made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Path within the location.
    pub path: String,
    /// Bytes written.
    pub size: u64,
    /// The file's body checksum (from its header) for snapshot files; 0 for raw bytes.
    pub checksum: u32,
}

/// A queued piece of work: given the backend, the future that does it and reports.
type Task = Box<dyn FnOnce(Arc<dyn ObjectStore>) -> BoxFuture<'static, ()> + Send>;

/// One background thread with a current-thread tokio runtime that writes checkpoint
/// files and manifests. [`CheckpointWriter::submit`] and [`CheckpointWriter::complete`]
/// only queue (an unbounded channel), so a worker thread pays for moving its snapshot,
/// nothing more; encoding and the writes run concurrently on the runtime's blocking pool,
/// and each job's `on_done` is called on the writer thread when its file is durable (or
/// the manifest attempt is over) or has failed. Keep `on_done` short (send on a channel)
/// and do not call the blocking [`CheckpointStore`] from it. Share one writer between a
/// process's workers with an `Arc`.
///
/// Dropping the writer (or [`CheckpointWriter::shutdown`]) finishes the queued jobs first.
#[derive(Debug)]
pub struct CheckpointWriter {
    tx: Option<tokio::sync::mpsc::UnboundedSender<Task>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CheckpointWriter {
    /// Starts the writer thread for `store`'s location.
    ///
    /// # Errors
    /// If the thread or its runtime cannot be started.
    pub fn spawn(store: &CheckpointStore) -> Result<Self, CheckpointError> {
        let backend = store.object_store();
        let runtime = current_thread_runtime()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Task>();
        let thread = std::thread::Builder::new()
            .name("flowcast-checkpoint-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut running = tokio::task::JoinSet::new();
                    while let Some(task) = rx.recv().await {
                        running.spawn(task(Arc::clone(&backend)));
                        while running.try_join_next().is_some() {}
                    }
                    while running.join_next().await.is_some() {}
                });
            })
            .map_err(|e| {
                CheckpointError::Runtime(format!("cannot start the writer thread: {e}"))
            })?;
        Ok(CheckpointWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a write; `on_done` gets its outcome. Never blocks.
    ///
    /// # Errors
    /// If the writer thread has stopped (it panicked); `on_done` is then not called.
    pub fn submit(
        &self,
        job: WriteJob,
        on_done: impl FnOnce(Result<WrittenFile, CheckpointError>) + Send + 'static,
    ) -> Result<(), CheckpointError> {
        self.send(Box::new(move |store| {
            Box::pin(async move { on_done(write_job(&*store, job).await) })
        }))
    }

    /// Queues [`complete_checkpoint`](super::complete_checkpoint) for `info` (the single
    /// manifest writer's call, off its worker thread); `on_done` gets its outcome —
    /// [`Completion::NotYet`](super::Completion::NotYet) while files are missing, so it
    /// can be queued again later. Never blocks.
    ///
    /// # Errors
    /// If the writer thread has stopped (it panicked); `on_done` is then not called.
    pub fn complete(
        &self,
        info: CheckpointInfo,
        on_done: impl FnOnce(Result<Completion, CheckpointError>) + Send + 'static,
    ) -> Result<(), CheckpointError> {
        self.send(Box::new(move |store| {
            Box::pin(async move { on_done(complete_checkpoint_async(&*store, &info).await) })
        }))
    }

    fn send(&self, task: Task) -> Result<(), CheckpointError> {
        let stopped = || CheckpointError::Runtime("the checkpoint writer has stopped".into());
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(task)
            .map_err(|_| stopped())
    }

    /// Finishes every queued write and stops the thread.
    ///
    /// # Errors
    /// If the writer thread panicked.
    pub fn shutdown(mut self) -> Result<(), CheckpointError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), CheckpointError> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| CheckpointError::Runtime("the checkpoint writer panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "checkpoint writer");
        }
    }
}

async fn write_job(store: &dyn ObjectStore, job: WriteJob) -> Result<WrittenFile, CheckpointError> {
    let (path, bytes, checksum) = match job {
        WriteJob::Bytes { path, bytes } => (path, bytes, 0),
        WriteJob::Snapshot { snap, attempt } => {
            let path = super::worker_file(snap.id, attempt, snap.worker, snap.workers);
            let encoded = tokio::task::spawn_blocking(move || {
                let mut snap = snap;
                snap.resolve()
                    .map_err(|e| FormatError::Encode(e.to_string()))?;
                format::encode(&snap)
            })
            .await
            .map_err(|e| CheckpointError::Runtime(format!("encoding task: {e}")))?
            .map_err(|source| CheckpointError::Format {
                path: path.clone(),
                source,
            })?;
            let checksum = format::Header::parse(&encoded)
                .map(|h| h.checksum)
                .map_err(|source| CheckpointError::Format {
                    path: path.clone(),
                    source,
                })?;
            (path, Bytes::from(encoded), checksum)
        }
    };
    let size = bytes.len() as u64;
    put(store, &path, bytes, true).await?;
    Ok(WrittenFile {
        path,
        size,
        checksum,
    })
}
