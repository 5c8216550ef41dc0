//! Opening a sink: a local path, `file://` URL or `s3://bucket/prefix` becomes an
//! [`ObjectStore`] plus the key prefix every object is written under. Local and S3 sinks share
//! one code path from here on.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub use super::store_error::StoreError;
use super::uploads::UploadJanitor;
pub use crate::config::S3Options;

/// `object_store`'s own default part size: 10 MiB, above S3's 5 MiB minimum for every part but
/// the last, and a bound on what one open file holds in memory.
pub const DEFAULT_PART_SIZE: usize = 10 * 1024 * 1024;

/// Buffer per file of a local sink before its bytes go to the staging file: parts have no
/// minimum size on a disk, and ten files open at 10 MiB each were 100 MB of a run's memory
/// for nothing (issue 18).
pub const LOCAL_WRITE_BUFFER: usize = 1024 * 1024;

/// Where files go: an object store and the prefix all keys live under.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The store (local file system or S3).
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (empty for a local directory, which is the store's root).
    pub prefix: Path,
    /// The sink as the user wrote it, for messages.
    pub display: String,
    /// The directory of a local sink; `None` for object stores.
    pub local_root: Option<std::path::PathBuf>,
    /// Buffer size per file before a multipart upload starts, and the part size.
    pub part_size: usize,
    /// S3 only: lists and aborts the multipart uploads killed runs left.
    pub uploads: Option<UploadJanitor>,
    /// Where files are staged before they are published: `_tmp`, or `_tmp/<pipeline>` once
    /// [`Sink::for_pipeline`] is called, so that the start-of-run clean-up of one pipeline
    /// never removes the staged files of another one writing to the same sink.
    pub staging_dir: String,
}

/// The folder below the sink where files wait to be published (Spark and DuckDB skip `_` folders).
const STAGING_DIR: &str = "_tmp";

impl Sink {
    /// Stages this pipeline's files in a folder of its own, `_tmp/<pipeline>` (the name escaped
    /// like a partition value).
    pub fn for_pipeline(mut self, pipeline: &str) -> Sink {
        self.staging_dir = format!(
            "{STAGING_DIR}/{}",
            crate::load::partition::escape_path_value(pipeline)
        );
        self
    }

    /// Opens the sink at `url`: a path (created if missing), `file:///abs/path` or
    /// `s3://bucket/prefix` (credentials, region and endpoint from the standard `AWS_*`
    /// environment, e.g. `AWS_ENDPOINT=http://127.0.0.1:9000`, `AWS_ALLOW_HTTP=true`).
    pub fn open(url: &str) -> Result<Sink, StoreError> {
        Sink::open_with(url, &S3Options::default())
    }

    /// Opens the sink at `url` with explicit S3 settings (used for `s3://` URLs only).
    pub fn open_with(url: &str, s3: &S3Options) -> Result<Sink, StoreError> {
        let bad = |message: String| StoreError::BadUrl {
            url: url.to_string(),
            message,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket: write s3://bucket/prefix".into()));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            }
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k.expose());
            }
            if let Some(k) = &s3.secret_access_key {
                b = b.with_secret_access_key(k.expose());
            }
            if let Some(h) = s3.allow_http {
                b = b.with_allow_http(h);
            }
            if let Some(v) = s3.virtual_hosted_style {
                b = b.with_virtual_hosted_style_request(v);
            }
            if s3.checksum_sha256 {
                b = b.with_checksum_algorithm(Checksum::SHA256);
            }
            if s3.unsigned_payload {
                b = b.with_unsigned_payload(true);
            }
            let store = Arc::new(b.clone().build().map_err(|e| bad(e.to_string()))?);
            let uploads = UploadJanitor::new(&b, store.clone()).map_err(bad)?;
            let prefix = Path::parse(prefix).map_err(|e| bad(e.to_string()))?;
            return Ok(Sink {
                store,
                prefix,
                display: url.to_string(),
                local_root: None,
                part_size: s3.part_size.unwrap_or(DEFAULT_PART_SIZE),
                uploads: Some(uploads),
                staging_dir: STAGING_DIR.to_string(),
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
        if let Some(file) = dir.ancestors().find(|a| a.exists()).filter(|a| !a.is_dir()) {
            let what = if file == dir {
                "is a file".to_string()
            } else {
                format!("is below {}, which is a file", file.display())
            };
            return Err(bad(format!(
                "{what}, not a directory: sink.url must be a directory (created if missing); \
                 point it at another path, or move the file away"
            )));
        }
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
            local_root: Some(dir),
            part_size: LOCAL_WRITE_BUFFER,
            uploads: None,
            staging_dir: STAGING_DIR.to_string(),
        })
    }

    /// Where a file for `relative` is written before it is published. On S3 a file is written
    /// straight to its key (multipart uploads are invisible until completed); on local disk the
    /// store's own staging file (`<name>#N`) would sit next to the data, where Spark reads every
    /// file, so we stage under `_tmp/` (ignored by Spark and DuckDB) and rename into place.
    pub fn staging_key(&self, relative: &str) -> Option<String> {
        self.local_root
            .as_ref()
            .map(|_| self.staging_key_always(relative))
    }

    /// A fresh staging key for `relative` in the staging folder, on any store (see
    /// [`crate::load::writer::PartWriter::create_staged`]).
    pub fn staging_key_always(&self, relative: &str) -> String {
        format!(
            "{}/{:016x}-{}",
            self.staging_dir,
            fastrand::u64(..),
            relative.replace('/', "_")
        )
    }

    /// Makes a staged file visible under its final key (an atomic rename on local disk).
    pub async fn publish(&self, staging: &str, relative: &str) -> Result<(), StoreError> {
        let (from, to) = (self.key(staging), self.key(relative));
        self.store
            .rename(&from, &to)
            .await
            .map_err(|source| StoreError::Object {
                operation: "rename",
                path: to.to_string(),
                source,
            })
    }

    /// Removes what a killed run may have left: staged files of the staging folder (on S3 too: the
    /// parts of split answers are staged there) and the store's own `#N` staging files. Only
    /// the holder of the lease calls this, so no live writer is hurt. Returns how many files
    /// were removed. (Uploads a killed run never completed are aborted separately, see
    /// [`Sink::abort_orphan_uploads`].)
    pub async fn remove_leftovers(&self) -> Result<usize, StoreError> {
        let Some(root) = &self.local_root else {
            return self.remove_staged_objects().await;
        };
        let mut removed = 0;
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                // This pipeline's staging folder, and files staged at the top of `_tmp/` by
                // versions that did not keep a folder per pipeline.
                let staged = dir == root.join(&self.staging_dir) || dir == root.join(STAGING_DIR);
                let store_staging = name
                    .rsplit_once('#')
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if staged || store_staging {
                    std::fs::remove_file(&path).map_err(|source| StoreError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// A shard's start-of-run clean-up: removes every object of the staging folder except
    /// `keep` (the files its marks still hand to the other shards), the store's own `#N` files
    /// there included. Nothing outside the folder is touched: other shards write next to it.
    pub async fn remove_staged_except(
        &self,
        keep: &std::collections::BTreeSet<String>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for path in self.list_below(&self.staging_dir).await? {
            if !keep.contains(&path) {
                self.delete_if_exists(&path).await?;
                removed += 1;
            }
        }
        // The local store does not list its own `<name>#N` files: removed by name.
        if let Some(root) = &self.local_root
            && let Ok(entries) = std::fs::read_dir(root.join(&self.staging_dir))
        {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains('#') && entry.path().is_file() {
                    std::fs::remove_file(entry.path()).map_err(|source| StoreError::Io {
                        path: entry.path().display().to_string(),
                        source,
                    })?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Aborts the incomplete multipart uploads under each of `dirs` (relative to the sink, e.g.
    /// the pipeline's table folders): what runs killed mid-file left on S3. Only the lease
    /// holder calls this, and only for its own tables, so no live upload is hurt. Returns how
    /// many were aborted; a local sink has none.
    pub async fn abort_orphan_uploads(&self, dirs: &[&str]) -> Result<usize, StoreError> {
        let Some(janitor) = &self.uploads else {
            return Ok(0);
        };
        let mut aborted = 0;
        for dir in dirs {
            let prefix = format!("{}/", self.key(dir));
            for upload in janitor.list(&prefix).await? {
                tracing::info!(key = %upload.key, initiated = %upload.initiated,
                    "aborting a multipart upload an interrupted run left");
                janitor.abort(&upload).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    /// The full key of `relative` (a `/`-separated path below the sink). Its segments are
    /// taken as they are: partition values come escaped already (Hive's `%XX`,
    /// [`crate::load::partition::escape_path_value`]), and escaping them again (`Path::from`
    /// turns `%` into `%25`) would name the folder `metric=a%252Fb`, which Hive readers decode
    /// to `a%2Fb`, not the `a/b` of the `metric` column. So a name read back from a listing is
    /// the same key again. Only a segment that is no valid key part as it is (`.`, `..`,
    /// control characters) is escaped by the store.
    pub fn key(&self, relative: &str) -> Path {
        let mut key = self.prefix.clone();
        key.extend(relative.split('/').map(|segment| {
            object_store::path::PathPart::parse(segment)
                .unwrap_or_else(|_| object_store::path::PathPart::from(segment))
        }));
        key
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

    /// Reads a small object and its version; `None` when it does not exist.
    pub async fn get_versioned(
        &self,
        relative: &str,
    ) -> Result<Option<(Bytes, object_store::UpdateVersion)>, StoreError> {
        let key = self.key(relative);
        let err = |source| StoreError::Object {
            operation: "get",
            path: key.to_string(),
            source,
        };
        match self.store.get(&key).await {
            Ok(r) => {
                let version = object_store::UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r.bytes().await.map_err(err)?;
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(err(source)),
        }
    }

    /// Creates the object only if there is none (`If-None-Match: *` on S3, a no-clobber rename
    /// on disk): of racing writers exactly one gets `Some` (the new object's version), the
    /// others `None`. What leases, table claims and Delta commits are made of.
    pub async fn create(
        &self,
        relative: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<object_store::PutResult>, StoreError> {
        use object_store::{PutMode, PutOptions};
        let key = self.key(relative);
        match self
            .store
            .put_opts(
                &key,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
            Err(source) => Err(StoreError::Object {
                operation: "create",
                path: key.to_string(),
                source,
            }),
        }
    }

    /// Writes a small object only if it is still what was read: `expected` is its version then
    /// (`None`: it did not exist) and `previous` its bytes. Object stores check the version
    /// (`If-Match` / `If-None-Match`); local disk has no conditional update, so under the
    /// sink's `_state` lock the bytes on disk are compared with `previous` first (the run lease
    /// already keeps other runs out: this catches a store that lost or replaced the object).
    /// [`StoreError::Changed`] when it is not; the new version otherwise.
    pub async fn put_if_unchanged(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        expected: Option<object_store::UpdateVersion>,
        previous: Option<&[u8]>,
    ) -> Result<object_store::UpdateVersion, StoreError> {
        use object_store::{PutMode, PutOptions};
        let key = self.key(relative);
        let changed = || StoreError::Changed {
            path: key.to_string(),
        };
        let mode = if self.local_root.is_some() {
            let _lock = self.lock_state_dir().await?;
            let now = self.get_opt(relative).await?;
            if now.as_deref() != previous {
                return Err(changed());
            }
            PutMode::Overwrite
        } else {
            match expected {
                Some(v) => PutMode::Update(v),
                None => PutMode::Create,
            }
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(bytes), PutOptions::from(mode))
            .await
        {
            Ok(r) => Ok(object_store::UpdateVersion::from(r)),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotFound { .. },
            ) => Err(changed()),
            Err(source) => Err(StoreError::Object {
                operation: "put",
                path: key.to_string(),
                source,
            }),
        }
    }

    /// Local sinks: an exclusive `flock` of the `_state` folder, held until the file is dropped
    /// (local disk has no conditional update, so read-check-write sequences on `_state` run under
    /// it); `None` for object stores.
    pub(crate) async fn lock_state_dir(&self) -> Result<Option<std::fs::File>, StoreError> {
        let Some(root) = &self.local_root else {
            return Ok(None);
        };
        let dir = root.join("_state");
        let shown = dir.display().to_string();
        let locked = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let file = std::fs::File::open(&dir)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .expect("the lock task does not panic");
        locked.map(Some).map_err(|source| StoreError::Io {
            path: shown,
            source,
        })
    }

    /// Local sinks: true when nothing can be at `relative` (it is missing, or a folder on its
    /// way is a file).
    fn local_absent(&self, relative: &str) -> bool {
        let Some(root) = &self.local_root else {
            return false;
        };
        match std::fs::symlink_metadata(root.join(relative)) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ),
        }
    }

    /// True when the object exists.
    pub async fn exists(&self, relative: &str) -> Result<bool, StoreError> {
        let key = self.key(relative);
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(_) if self.local_absent(relative) => Ok(false),
            Err(source) => Err(StoreError::Object {
                operation: "head",
                path: key.to_string(),
                source,
            }),
        }
    }

    /// The size in bytes of an object.
    pub async fn size_of(&self, relative: &str) -> Result<u64, StoreError> {
        let key = self.key(relative);
        self.store
            .head(&key)
            .await
            .map(|m| m.size)
            .map_err(|source| StoreError::Object {
                operation: "head",
                path: key.to_string(),
                source,
            })
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

    /// Deletes every object of the staging folder (object stores: local sinks walk theirs).
    async fn remove_staged_objects(&self) -> Result<usize, StoreError> {
        use futures::TryStreamExt;
        let prefix = self.key(&self.staging_dir);
        let list_err = |source| StoreError::Object {
            operation: "list",
            path: prefix.to_string(),
            source,
        };
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(list_err)?;
        for o in &objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(StoreError::Object {
                        operation: "delete",
                        path: o.location.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(objects.len())
    }

    /// The names of the files directly in the folder `relative` (none when it does not exist).
    pub async fn list_dir(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(relative);
        match self.store.list_with_delimiter(Some(&key)).await {
            Ok(listing) => Ok(listing
                .objects
                .into_iter()
                .filter_map(|o| o.location.filename().map(str::to_string))
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(source) => Err(StoreError::Object {
                operation: "list",
                path: key.to_string(),
                source,
            }),
        }
    }

    /// The keys (relative to the sink) of every object below the folder `relative`, at any
    /// depth (none when it does not exist).
    pub async fn list_below(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        use futures::TryStreamExt;
        let key = self.key(relative);
        let listed: Result<Vec<object_store::ObjectMeta>, _> =
            self.store.list(Some(&key)).try_collect().await;
        let objects = match listed {
            Ok(o) => o,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(source) => {
                return Err(StoreError::Object {
                    operation: "list",
                    path: key.to_string(),
                    source,
                });
            }
        };
        let skip = self.prefix.parts().count();
        Ok(objects
            .into_iter()
            .map(|o| {
                o.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    /// Deletes an object if it exists.
    pub async fn delete_if_exists(&self, relative: &str) -> Result<(), StoreError> {
        let key = self.key(relative);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            // On local disk a path below a file cannot exist either (ENOTDIR, which the store
            // does not report as "not found").
            Err(_) if self.local_absent(relative) => Ok(()),
            Err(source) => Err(StoreError::Object {
                operation: "delete",
                path: key.to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// S3's `NoSuchBucket` is a missing bucket, named with the fix, not a missing object;
    /// other errors keep the store's message.
    #[test]
    fn a_missing_bucket_is_named_with_the_fix() {
        let err = |text: &str| StoreError::Object {
            operation: "create",
            path: "p/_state/x.lease".into(),
            source: object_store::Error::NotFound {
                path: "p/_state/x.lease".into(),
                source: text.into(),
            },
        };
        let named = err(
            "404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified \
                         bucket does not exist</Message><BucketName>vs</BucketName></Error>",
        );
        assert!(named.is_missing_bucket());
        let msg = named.to_string();
        assert!(msg.starts_with("the bucket 'vs' does not exist"), "{msg}");
        assert!(
            msg.contains("aws s3 mb s3://vs") && msg.contains("sink.url"),
            "{msg}"
        );
        let unnamed = err("<Error><Code>NoSuchBucket</Code></Error>").to_string();
        assert!(
            unnamed.starts_with("the bucket of sink.url does not exist"),
            "{unnamed}"
        );
        let key = err("<Error><Code>NoSuchKey</Code></Error>");
        assert!(!key.is_missing_bucket());
        assert!(
            key.to_string().starts_with("create p/_state/x.lease: "),
            "{key}"
        );
    }

    /// A local sink.url that is a file, or below one, is a configuration error saying so
    /// (not "File exists" / "Not a directory"), and the file is left alone.
    #[test]
    fn a_local_sink_on_a_file_says_it_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        for (url, what) in [
            (file.clone(), "is a file, not a directory".to_string()),
            (
                file.join("sub/out"),
                format!("is below {}, which is a file", file.display()),
            ),
        ] {
            let Err(e) = Sink::open(url.to_str().unwrap()) else {
                panic!("{url:?} opened");
            };
            assert!(e.is_config(), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&what) && msg.contains("must be a directory"),
                "{msg}"
            );
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }

    /// A run cleans its own staging folder (and what older versions left at the top of
    /// `_tmp/`), never the staged files of another pipeline writing to the same sink.
    #[tokio::test]
    async fn leftovers_of_another_pipeline_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let a = Sink::open(root).unwrap().for_pipeline("prod a");
        let b = Sink::open(root).unwrap().for_pipeline("report");
        let mine = a.staging_key_always("t/date=2026-11-01/part-x.parquet");
        let theirs = b.staging_key_always("t/date=2026-11-01/part-x.parquet");
        assert!(mine.starts_with("_tmp/prod a/"), "{mine}");
        for key in [mine.as_str(), theirs.as_str(), "_tmp/0123-legacy.parquet"] {
            a.put(key, b"x".to_vec()).await.unwrap();
        }
        assert_eq!(a.remove_leftovers().await.unwrap(), 2);
        assert!(a.get_opt(&mine).await.unwrap().is_none());
        assert!(b.get_opt(&theirs).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn lists_the_files_of_a_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        for p in [
            "t/date=2026-11-01/part-a.parquet",
            "t/date=2026-11-01/part-b-s1of2.parquet",
            "t/date=2026-11-01/deeper/x.parquet",
            "t/date=2026-11-02/part-c.parquet",
        ] {
            sink.put(p, b"x".to_vec()).await.unwrap();
        }
        let mut names = sink.list_dir("t/date=2026-11-01").await.unwrap();
        names.sort();
        assert_eq!(names, ["part-a.parquet", "part-b-s1of2.parquet"]);
        assert!(sink.list_dir("t/date=2026-11-09").await.unwrap().is_empty());
    }
}
