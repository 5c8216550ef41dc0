//! What can go wrong with a sink, and the messages that say what to do about it. Its own
//! module because both the store ([`super::store`]) and the multipart-upload janitor
//! ([`super::uploads`]) report it.

/// What to do about an S3 `RequestTimeTooSkewed` refusal: only the clock can fix it, so the
/// message says so (object_store does not retry it, and neither do we).
fn clock_hint(e: &object_store::Error) -> &'static str {
    if e.to_string().contains("RequestTimeTooSkewed") {
        " (the S3 server refuses this machine's clock, more than 15 minutes off its own: \
         synchronise the clock, e.g. with NTP, then run again)"
    } else {
        ""
    }
}

/// The message of a failed object store operation: the store's own, with what to do where
/// only the user can fix it (a refused clock; a bucket that does not exist, which the store
/// reports as "Object at location ... not found" although no object is to blame).
fn object_message(operation: &str, path: &str, source: &object_store::Error) -> String {
    if let Some(bucket) = missing_bucket(source) {
        let shown = bucket
            .as_deref()
            .map_or_else(|| "of sink.url".to_string(), |b| format!("'{b}'"));
        let name = bucket.as_deref().unwrap_or("BUCKET");
        return format!(
            "the bucket {shown} does not exist (S3 answered NoSuchBucket to {operation} {path}): \
             create it first (e.g. `aws s3 mb s3://{name}`, with --endpoint-url for a store other \
             than AWS, or in the OVHcloud Control Panel), or fix the bucket name in sink.url, or \
             sink.s3.endpoint and sink.s3.region if the bucket is on another endpoint or region"
        );
    }
    format!("{operation} {path}: {source}{}", clock_hint(source))
}

/// `Some` when S3 answered `NoSuchBucket`: the bucket's name when the answer gives it.
fn missing_bucket(e: &object_store::Error) -> Option<Option<String>> {
    let text = e.to_string();
    if !text.contains("<Code>NoSuchBucket</Code>") {
        return None;
    }
    let name = text
        .split_once("<BucketName>")
        .and_then(|(_, rest)| rest.split_once("</BucketName>"))
        .map(|(name, _)| name.to_string())
        .filter(|n| !n.is_empty());
    Some(name)
}

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
    #[error("{}", object_message(operation, path, source))]
    Object {
        /// What we were doing (`put`, `get`, `delete`...).
        operation: &'static str,
        /// The object key.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// Listing or aborting incomplete multipart uploads failed.
    #[error("{operation} in {bucket}: {message}")]
    Uploads {
        /// `list uploads` or `abort upload`.
        operation: &'static str,
        /// The bucket URL.
        bucket: String,
        /// What failed.
        message: String,
    },
    /// A conditional write found the object changed or gone since it was read.
    #[error("{path} changed or disappeared since it was read")]
    Changed {
        /// The object key.
        path: String,
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

impl StoreError {
    /// True when the sink's bucket does not exist: a configuration error (sink.url, the
    /// endpoint or the region), not a failure a later run may get past.
    pub fn is_missing_bucket(&self) -> bool {
        matches!(self, StoreError::Object { source, .. } if missing_bucket(source).is_some())
    }

    /// True when only a change of the configuration can fix it (exit code 2): `sink.url` is not
    /// a usable sink (a file, an unsupported URL) or names a bucket that does not exist.
    pub fn is_config(&self) -> bool {
        matches!(self, StoreError::BadUrl { .. }) || self.is_missing_bucket()
    }
}
