//! Opening a sink: a local path, `file://` URL or `s3://bucket/prefix` becomes an
//! [`ObjectStore`] plus the key prefix every object is written under. Local and S3 sinks share
//! one code path from here on.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// A sink that cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not a path, `file://` or `s3://` URL.
    #[error("sink.url '{url}': {message}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An object store operation failed.
    #[error("{operation} {path}: {source}")]
    Object {
        /// What we were doing (`put`, `get`, `delete`...).
        operation: &'static str,
        /// The object key.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A local directory could not be created.
    #[error("cannot create sink directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Where files go: an object store and the prefix all keys live under.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The store (local file system or S3).
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (empty for a local directory, which is the store's root).
    pub prefix: Path,
    /// The sink as the user wrote it, for messages.
    pub display: String,
}

impl Sink {
    /// Opens the sink at `url`: a path (created if missing), `file:///abs/path` or
    /// `s3://bucket/prefix` (credentials, region and endpoint from the standard `AWS_*`
    /// environment, e.g. `AWS_ENDPOINT=http://127.0.0.1:9000`, `AWS_ALLOW_HTTP=true`).
    pub fn open(url: &str) -> Result<Sink, StoreError> {
        let bad = |message: String| StoreError::BadUrl {
            url: url.to_string(),
            message,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket: write s3://bucket/prefix".into()));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            let prefix = Path::parse(prefix).map_err(|e| bad(e.to_string()))?;
            return Ok(Sink {
                store: Arc::new(store),
                prefix,
                display: url.to_string(),
            });
        }
        let dir = if let Some(rest) = url.strip_prefix("file://") {
            std::path::PathBuf::from(rest)
        } else if url.contains("://") {
            return Err(bad(
                "unsupported scheme: use a path, file:///abs/path or s3://bucket/prefix".into(),
            ));
        } else {
            std::path::PathBuf::from(url)
        };
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| bad(e.to_string()))?
            // Durable before visible: the rename that publishes a file follows an fsync.
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Sink {
            store: Arc::new(store),
            prefix: Path::default(),
            display: url.to_string(),
        })
    }

    /// The full key of `relative` (a `/`-separated path below the sink).
    pub fn key(&self, relative: &str) -> Path {
        let joined = if self.prefix.as_ref().is_empty() {
            relative.to_string()
        } else {
            format!("{}/{}", self.prefix.as_ref(), relative)
        };
        Path::from(joined.as_str())
    }

    /// Reads a small object; `None` when it does not exist.
    pub async fn get_opt(&self, relative: &str) -> Result<Option<Bytes>, StoreError> {
        let key = self.key(relative);
        match self.store.get(&key).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|source| StoreError::Object {
                    operation: "get",
                    path: key.to_string(),
                    source,
                }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(StoreError::Object {
                operation: "get",
                path: key.to_string(),
                source,
            }),
        }
    }

    /// Writes a small object in one PUT (atomic on every store).
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let key = self.key(relative);
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Object {
                operation: "put",
                path: key.to_string(),
                source,
            })
    }

    /// Deletes an object if it exists.
    pub async fn delete_if_exists(&self, relative: &str) -> Result<(), StoreError> {
        let key = self.key(relative);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Object {
                operation: "delete",
                path: key.to_string(),
                source,
            }),
        }
    }
}
