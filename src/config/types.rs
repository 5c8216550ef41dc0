//! Value types of the configuration that other stages act on: the run's retry budget, the
//! S3 settings of the sink, the API v6 credentials. Defined here, next to what reads them from
//! the file, so that configuration depends on no later stage.

use crate::secret::Secret;

/// How many retries a whole run may spend (`source.retry_budget`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryBudget {
    /// No run-wide limit (only the per-request attempt cap).
    Unlimited,
    /// At most this many retries in the run.
    Count(u64),
    /// Retries may be at most this many per successful request so far, plus [`BUDGET_FLOOR`]:
    /// a server that answers most requests is ridden out whatever the run's size, one that is
    /// down (no success) gets the floor and no more.
    Ratio(f64),
}

/// Retries a [`RetryBudget::Ratio`] always allows, whatever the number of requests so far.
pub const BUDGET_FLOOR: u64 = 10;

impl Default for RetryBudget {
    /// One retry per two successful requests, plus the floor: a server failing a fifth of its
    /// answers needs a quarter of a retry per success, a dead one stops the run after 10.
    fn default() -> RetryBudget {
        RetryBudget::Ratio(0.5)
    }
}

/// S3 settings from `[sink.s3]`; anything unset comes from the standard `AWS_*` environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible store (OVHcloud, MinIO, Ceph...).
    pub endpoint: Option<String>,
    /// Region (OVHcloud: e.g. `gra`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<crate::secret::Secret>,
    /// Secret access key.
    pub secret_access_key: Option<crate::secret::Secret>,
    /// Allow `http://` endpoints (local test servers).
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path style.
    pub virtual_hosted_style: Option<bool>,
    /// Send SHA-256 checksums the server verifies. Off by default: OVHcloud Object Storage has
    /// rejected the checksum headers of recent AWS SDKs (`reference/peers.md` §0).
    pub checksum_sha256: bool,
    /// Sign requests with `UNSIGNED-PAYLOAD` (some S3-compatible servers need it).
    pub unsigned_payload: bool,
    /// Bytes buffered per file before it goes up as a multipart upload, and the size of each
    /// part (`None`: 10 MiB, `load::store::DEFAULT_PART_SIZE`). A file no larger is one PUT.
    pub part_size: Option<usize>,
}

/// Application key, application secret and consumer key of one API v6 application.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Application key (`X-Ovh-Application`). Not a secret by itself, but kept out of logs.
    pub application_key: String,
    /// Application secret: signs requests, never sent.
    pub application_secret: Secret,
    /// Consumer key: the user's grant to this application (`X-Ovh-Consumer`).
    pub consumer_key: Secret,
}

impl std::fmt::Debug for Credentials {
    /// Redacts all three values: even the application key identifies the account.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("application_key", &"<redacted>")
            .field("application_secret", &self.application_secret)
            .field("consumer_key", &self.consumer_key)
            .finish()
    }
}
