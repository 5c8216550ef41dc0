//! The HTTP client of the metrics endpoint: `/api/query` for raw points, `/api/search/lookup`
//! for series discovery, `/api/version` to detect the dialect.
//!
//! The token travels only as the HTTP Basic password (reqwest marks the header sensitive); it
//! is never put in a URL, and server error bodies are scrubbed of it before they are kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use super::decode::{DecodeError, DecodeStats, SeriesData, decode_query_response};
use super::ratelimit::RateLimiter;
use super::retry::{FailureClass, RetryPolicy, classify};
use crate::config::Source;
use crate::dialect::Dialect;
use crate::secret::Secret;

/// A request that did not give a usable answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The server answered with an error status. `body` is scrubbed and cut to 512 bytes.
    #[error("{endpoint} answered HTTP {status}: {body}")]
    Status {
        /// Path called, e.g. `/api/query`.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Start of the body, secrets removed.
        body: String,
        /// What the status means for us.
        class: FailureClass,
    },
    /// Connect, TLS, timeout or a body cut short.
    #[error("{endpoint}: {message}")]
    Transport {
        /// Path called.
        endpoint: &'static str,
        /// What failed (no URL credentials: none are ever in the URL).
        message: String,
    },
    /// A 200 whose body is not a valid answer.
    #[error("{endpoint}: {source}")]
    Decode {
        /// Path called.
        endpoint: &'static str,
        /// The decoder's error.
        source: DecodeError,
    },
    /// Transient failures until the attempt cap.
    #[error("gave up after {attempts} attempts, last error: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<FetchError>,
    },
    /// The server said "too large" even for the smallest window we may split to.
    #[error("answer too large even for a {span_ms} ms window (source.min_split): {last}")]
    TooLargeAtMinimum {
        /// The window size that still failed.
        span_ms: i64,
        /// The server's error.
        last: Box<FetchError>,
    },
}

impl FetchError {
    /// How this failure should be handled.
    pub fn class(&self) -> FailureClass {
        match self {
            FetchError::Status { class, .. } => *class,
            FetchError::Transport { .. } | FetchError::Decode { .. } => FailureClass::Transient,
            FetchError::Exhausted { last, .. } => match last.class() {
                FailureClass::Auth => FailureClass::Auth,
                _ => FailureClass::Permanent,
            },
            FetchError::TooLargeAtMinimum { .. } => FailureClass::Permanent,
        }
    }
}

/// Counters of what the client did, for the run summary and the manifest.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent (retries included).
    pub requests: AtomicU64,
    /// Retries after a transient failure.
    pub retries: AtomicU64,
    /// Windows split in halves after a too-large answer.
    pub splits: AtomicU64,
    /// Response bytes received.
    pub bytes: AtomicU64,
}

/// The result of one raw extraction: series, decode counters and how many HTTP requests it took.
#[derive(Debug, Default)]
pub struct RawAnswer {
    /// Series with points in the window.
    pub series: Vec<SeriesData>,
    /// Decoder counters.
    pub stats: DecodeStats,
}

/// Client of one metrics endpoint.
#[derive(Debug, Clone)]
pub struct MetricsClient {
    http: reqwest::Client,
    base: url::Url,
    token: Secret,
    dialect: Dialect,
    policy: RetryPolicy,
    limiter: Arc<RateLimiter>,
    stats: Arc<ClientStats>,
    min_split_ms: i64,
}

#[derive(Deserialize)]
struct LookupAnswer {
    #[serde(default)]
    results: Vec<LookupResult>,
}

#[derive(Deserialize)]
struct LookupResult {
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl MetricsClient {
    /// Builds the HTTP client with the source's timeouts; the dialect is decided by the caller
    /// (see [`MetricsClient::detect_dialect`]).
    pub fn new(
        source: &Source,
        base: url::Url,
        dialect: Dialect,
    ) -> Result<MetricsClient, FetchError> {
        let http = reqwest::Client::builder()
            .connect_timeout(source.connect_timeout)
            .timeout(source.timeout)
            .user_agent(concat!("vscope-etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport {
                endpoint: "client",
                message: e.to_string(),
            })?;
        Ok(MetricsClient {
            http,
            base,
            token: source.token.clone(),
            dialect,
            policy: RetryPolicy::new(source.max_attempts),
            limiter: Arc::new(RateLimiter::new(source.requests_per_second)),
            stats: Arc::new(ClientStats::default()),
            min_split_ms: source.min_split_ms,
        })
    }

    /// The dialect this client speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Sets the dialect (after detection).
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = dialect;
    }

    /// Counters shared by all clones of this client.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    fn url(&self, path: &str) -> url::Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.token.is_empty() {
            rb
        } else {
            rb.basic_auth("read", Some(self.token.expose()))
        }
    }

    /// Decides the dialect: reference OpenTSDB answers `/api/version`; OVH's Erlenmeyer does not
    /// implement it (404), `reference/api.md` §2.8.
    pub async fn detect_dialect(&self) -> Result<Dialect, FetchError> {
        let url = self.url("/api/version");
        let result = self
            .send_with_retry(
                "/api/version",
                || self.authed(self.http.get(url.clone())),
                |_| Ok(()),
            )
            .await;
        match result {
            Ok(()) => Ok(Dialect::Opentsdb),
            Err(FetchError::Status {
                status: 404 | 405 | 501,
                ..
            }) => Ok(Dialect::Ovh),
            Err(e) => Err(e),
        }
    }

    /// The tag sets of every series of `metric` that the server knows (all datacenters).
    pub async fn lookup(&self, metric: &str) -> Result<Vec<BTreeMap<String, String>>, FetchError> {
        let body = serde_json::json!({
            "metric": metric,
            "tags": [{"key": "datacenter", "value": "*"}],
            // OpenTSDB cuts results at `limit` (default 25); Erlenmeyer ignores it.
            "limit": 1_000_000,
            "useMeta": true,
        })
        .to_string();
        let url = self.url("/api/search/lookup");
        self.send_with_retry(
            "/api/search/lookup",
            || {
                self.authed(self.http.post(url.clone()))
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            |bytes| {
                let answer: LookupAnswer =
                    serde_json::from_slice(bytes).map_err(|e| FetchError::Decode {
                        endpoint: "/api/search/lookup",
                        source: DecodeError::Malformed {
                            message: e.to_string(),
                            snippet: String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                                .into_owned(),
                        },
                    })?;
                Ok(answer.results.into_iter().map(|r| r.tags).collect())
            },
        )
        .await
    }

    /// Raw points of `metric` (optionally one datacenter) with `start_ms <= ts < end_ms`, with
    /// `aggregator: none` so every stored series comes back whole and undownsampled
    /// (`reference/api.md` §2.8). A too-large answer splits the window in halves.
    pub async fn query_raw(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<RawAnswer, FetchError> {
        match self
            .query_raw_once(metric, datacenter, start_ms, end_ms)
            .await
        {
            Err(e) if e.class() == FailureClass::TooLarge => {
                let span = end_ms - start_ms;
                if span / 2 < self.min_split_ms.max(1000) {
                    return Err(FetchError::TooLargeAtMinimum {
                        span_ms: span,
                        last: Box::new(e),
                    });
                }
                self.stats.splits.fetch_add(1, Ordering::Relaxed);
                // Split on a whole second: Erlenmeyer keeps only second precision in ranges.
                let mid = start_ms + (span / 2) / 1000 * 1000;
                tracing::info!(
                    metric,
                    ?datacenter,
                    start_ms,
                    end_ms,
                    "answer too large, splitting the window"
                );
                let left = Box::pin(self.query_raw(metric, datacenter, start_ms, mid)).await?;
                let right = Box::pin(self.query_raw(metric, datacenter, mid, end_ms)).await?;
                Ok(merge(left, right))
            }
            other => other,
        }
    }

    async fn query_raw_once(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<RawAnswer, FetchError> {
        let mut query = serde_json::json!({"metric": metric, "aggregator": "none"});
        if let Some(dc) = datacenter {
            query["filters"] = serde_json::json!([{"type": "literal_or", "tagk": "datacenter", "filter": dc, "groupBy": false}]);
        }
        // The server's end is inclusive: ask up to `end` and drop points stamped `end` here.
        let body = serde_json::json!({
            "start": start_ms,
            "end": end_ms,
            "msResolution": true,
            "queries": [query],
        })
        .to_string();
        let url = self.url("/api/query");
        self.send_with_retry(
            "/api/query",
            || {
                self.authed(self.http.post(url.clone()))
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            |bytes| {
                let (series, stats) =
                    decode_query_response(bytes, start_ms, end_ms).map_err(|source| {
                        FetchError::Decode {
                            endpoint: "/api/query",
                            source,
                        }
                    })?;
                Ok(RawAnswer { series, stats })
            },
        )
        .await
    }

    /// Sends a request, retrying transient failures (including undecodable 200 bodies) per the
    /// policy; other failures return at once.
    async fn send_with_retry<T>(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
        parse: impl Fn(&Bytes) -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiter.acquire().await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let (err, retry_after) = match self.send_once(endpoint, build()).await {
                Ok(bytes) => match parse(&bytes) {
                    Ok(v) => return Ok(v),
                    Err(e) => (e, None),
                },
                Err((e, retry_after)) => (e, retry_after),
            };
            if err.class() != FailureClass::Transient {
                return Err(err);
            }
            if attempt >= self.policy.max_attempts {
                return Err(FetchError::Exhausted {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            let delay = self.policy.delay(attempt, retry_after.as_deref(), &mut rng);
            tracing::warn!(endpoint, attempt, delay_ms = delay.as_millis() as u64, error = %err, "transient failure, retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
    ) -> Result<Bytes, (FetchError, Option<String>)> {
        let transport = |e: reqwest::Error| {
            (
                FetchError::Transport {
                    endpoint,
                    message: self.token.scrub(&error_chain(&e)),
                },
                None,
            )
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(transport)?;
        self.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if status.is_success() {
            return Ok(bytes);
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
        let body = self.token.scrub(text.trim());
        let class = classify(status.as_u16(), &body, self.dialect);
        Err((
            FetchError::Status {
                endpoint,
                status: status.as_u16(),
                body,
                class,
            },
            retry_after,
        ))
    }
}

/// `e` and its sources on one line (reqwest's Display alone hides the cause, e.g. "connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Joins the answers of two adjacent halves of a window (left before right).
fn merge(left: RawAnswer, right: RawAnswer) -> RawAnswer {
    let mut stats = left.stats;
    stats.add(&right.stats);
    let mut by_key: BTreeMap<(String, BTreeMap<String, String>), SeriesData> = BTreeMap::new();
    for s in left.series.into_iter().chain(right.series) {
        match by_key.entry((s.metric.clone(), s.tags.clone())) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(s);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                e.ts.extend_from_slice(&s.ts);
                e.values.extend_from_slice(&s.values);
            }
        }
    }
    RawAnswer {
        series: by_key.into_values().collect(),
        stats,
    }
}
