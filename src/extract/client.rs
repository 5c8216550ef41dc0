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

use super::body::{
    BodyDecoder, BodyError, Encoding, ReadError, accept_encoding, content_encoding, read_body,
    stream_body,
};
use super::decode::{DecodeError, DecodeStats, SeriesData};
use super::error::FetchError;
use super::ratelimit::RateLimiter;
use super::retry::{
    AttemptError, FailureClass, GaveUp, RetryPolicy, RunLimits, classify, retry_loop,
};
use super::series_group::SeriesGroup;
use super::stream::AnswerStream;
use super::throttle::Throttle;
use crate::config::{Protocol, Source};
use crate::dialect::Dialect;
use crate::secret::Secret;

/// Longest wait for the answer to the one-second query of [`MetricsClient::probe_token`].
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Counters of what the client did, for the run summary and the manifest.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent (retries included).
    pub requests: AtomicU64,
    /// Retries after a transient failure.
    pub retries: AtomicU64,
    /// Windows split in halves after a too-large answer.
    pub splits: AtomicU64,
    /// Decoded bytes of 2xx answer bodies handed to their reader as they streamed in (what the
    /// JSON decoder was given; an answer cut short counts what came of it).
    pub bytes: AtomicU64,
    /// Body bytes received from the network, as sent (compressed when gzip), for every answer
    /// read: taken, refused, cut short or error pages.
    pub bytes_on_wire: AtomicU64,
}

/// How the server's throttling went for a run: the manifest's `throttled`,
/// `throttle_wait_seconds` and `min_in_flight`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleReport {
    /// Answers that were 429.
    pub throttled: u64,
    /// Seconds requests spent waiting after a 429, summed over requests.
    pub wait_seconds: f64,
    /// The fewest requests in flight the client came down to (`source.concurrency` when the
    /// server never throttled).
    pub min_in_flight: usize,
}

/// Reads a probe answer: `Some(true)` when a series carries `query.index` (Erlenmeyer adds it
/// to every series), `Some(false)` when series come without it, `None` when there is no series
/// to tell by.
fn probe_marks(bytes: &[u8]) -> Result<Option<bool>, String> {
    type Answer = Vec<serde_json::Map<String, serde_json::Value>>;
    // Bare non-finite `dps` values are read as the decoder reads them (quoted).
    let answer: Answer = match serde_json::from_slice(bytes) {
        Ok(answer) => answer,
        Err(e) => super::decode::with_bare_values_quoted(bytes)
            .and_then(|quoted| serde_json::from_slice(&quoted).ok())
            .ok_or_else(|| e.to_string())?,
    };
    Ok(answer
        .first()
        .map(|series| series.get("query").and_then(|q| q.get("index")).is_some()))
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
    pub(super) http: reqwest::Client,
    base: url::Url,
    pub(super) token: Secret,
    dialect: Dialect,
    /// The API the points are read through: OpenTSDB's, or Warp 10's own (`warp10.rs`).
    protocol: Protocol,
    policy: RetryPolicy,
    limiter: Arc<RateLimiter>,
    throttle: Arc<Throttle>,
    limits: Arc<RunLimits>,
    pub(super) stats: Arc<ClientStats>,
    pub(super) min_split_ms: i64,
    max_answer_bytes: usize,
    timeout: std::time::Duration,
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
    /// (see [`MetricsClient::detect_dialect`]). With `source.gzip`, every request says
    /// `Accept-Encoding: gzip`.
    pub fn new(
        source: &Source,
        base: url::Url,
        dialect: Dialect,
    ) -> Result<MetricsClient, FetchError> {
        let http = reqwest::Client::builder()
            .default_headers(accept_encoding(source.gzip))
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
            protocol: source.protocol,
            policy: RetryPolicy::new(source.max_attempts),
            limiter: Arc::new(RateLimiter::new(source.requests_per_second)),
            throttle: Arc::new(Throttle::new(source.concurrency)),
            limits: Arc::new(RunLimits::new(source.retry_budget, source.deadline)),
            stats: Arc::new(ClientStats::default()),
            min_split_ms: source.min_split_ms,
            max_answer_bytes: source.max_answer_bytes,
            timeout: source.timeout,
        })
    }

    /// Shares run-wide limits (retry budget, deadline) with other clients of the run, such as
    /// the API v6 client, so the budget counts every request of the run once.
    pub fn with_limits(mut self, limits: Arc<RunLimits>) -> MetricsClient {
        self.limits = limits;
        self
    }

    /// The endpoint's base URL (no credentials: the token travels as the Basic password).
    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// The dialect this client speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The API the points are read through.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sets the dialect (after detection).
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = dialect;
    }

    /// Counters shared by all clones of this client.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// How often the server throttled, how long requests waited for it, and how far the client
    /// slowed down.
    pub fn throttle_report(&self) -> ThrottleReport {
        ThrottleReport {
            throttled: self.throttle.throttled(),
            wait_seconds: self.throttle.waited().as_secs_f64(),
            min_in_flight: self.throttle.lowest(),
        }
    }

    /// The run-wide retry budget and deadline, shared by all clones of this client (the
    /// deadline counts from the client's creation, i.e. the start of the run).
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    pub(super) fn url(&self, path: &str) -> url::Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u
    }

    /// An authenticated `POST` of a JSON `body` to `url` (every query and lookup).
    fn post_json(&self, url: &url::Url, body: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.post(url.clone()))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.token.is_empty() {
            rb
        } else {
            rb.basic_auth("read", Some(self.token.expose()))
        }
    }

    /// Decides the dialect and says why: reference OpenTSDB answers `/api/version`; OVH's
    /// Erlenmeyer does not implement it (404), `reference/api.md` §2.8. When `/api/version`
    /// fails some other way (a proxy answering 5xx or 400 there), the second sign is asked
    /// for: a small `/api/query` over the last hour of `probe_metric`, whose answer carries
    /// `query.index` only from Erlenmeyer. Authentication failures stay fatal; an answer that
    /// shows neither sign is an error asking for an explicit `source.dialect`.
    pub async fn detect_dialect(
        &self,
        probe_metric: &str,
    ) -> Result<(Dialect, &'static str), FetchError> {
        let url = self.url("/api/version");
        let result = self
            .send_with_retry(
                "/api/version",
                || self.authed(self.http.get(url.clone())),
                whole(|_| Ok(())),
            )
            .await;
        let version_error = match result {
            Ok(()) => return Ok((Dialect::Opentsdb, "/api/version answered")),
            Err(FetchError::Status {
                status: 404 | 405 | 501,
                ..
            }) => return Ok((Dialect::Ovh, "/api/version is not implemented (Erlenmeyer)")),
            Err(e) if e.class() == FailureClass::Auth => return Err(e),
            Err(e) => e,
        };
        tracing::info!(error = %version_error, "/api/version failed; probing /api/query for query.index");
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let body = serde_json::json!({
            "start": now_s - 3600,
            "end": now_s,
            "queries": [{"metric": probe_metric, "aggregator": "none"}],
        })
        .to_string();
        let url = self.url("/api/query");
        let marks = self
            .send_with_retry(
                "/api/query",
                || self.post_json(&url, &body),
                whole(|bytes| {
                    probe_marks(bytes).map_err(|message| FetchError::Decode {
                        endpoint: "/api/query",
                        source: DecodeError::Malformed {
                            message,
                            snippet: String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                                .into_owned(),
                        },
                    })
                }),
            )
            .await?;
        match marks {
            Some(true) => Ok((Dialect::Ovh, "answers carry query.index (Erlenmeyer)")),
            Some(false) => Ok((Dialect::Opentsdb, "answers carry no query.index")),
            None => Err(FetchError::DialectUnknown {
                version_error: version_error.to_string(),
            }),
        }
    }

    /// The tag sets of every series of `metric` that the server knows (all datacenters):
    /// `/api/search/lookup`, or Warp 10's `/api/v0/find` with `source.protocol = "warp10"`.
    pub async fn lookup(&self, metric: &str) -> Result<Vec<BTreeMap<String, String>>, FetchError> {
        if self.protocol == Protocol::Warp10 {
            return self.warp_find(metric).await;
        }
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
            || self.post_json(&url, &body),
            whole(|bytes| {
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
            }),
        )
        .await
    }

    /// Raw points of `metric` (optionally one datacenter) with `start_ms <= ts < end_ms`, with
    /// `aggregator: none` so every stored series comes back whole and undownsampled
    /// (`reference/api.md` §2.8). A too-large answer (the server's 413 or fetch-limit 500, or a
    /// body over `source.max_answer_size`) is an error of class
    /// [`FailureClass::TooLarge`]: the caller splits the window with [`Self::query_raw_split`].
    pub async fn query_raw(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<RawAnswer, FetchError> {
        self.query_raw_group(metric, datacenter, None, start_ms, end_ms)
            .await
    }

    /// [`Self::query_raw`] for the series of one [`SeriesGroup`] only: a `regexp` filter per
    /// constrained label, and, since a server may match more than the expression says (OpenTSDB's
    /// `regexp` is a `find()`), series outside the group are dropped from the answer, so two
    /// groups never both bring a series.
    pub async fn query_raw_group(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        group: Option<&SeriesGroup>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<RawAnswer, FetchError> {
        if self.protocol == Protocol::Warp10 {
            return self
                .warp_fetch(metric, datacenter, group, start_ms, end_ms)
                .await
                .map(|mut answer| {
                    if let Some(g) = group.filter(|g| !g.is_all()) {
                        answer.series.retain(|s| g.contains(&s.tags));
                    }
                    answer
                });
        }
        let mut filters = Vec::new();
        if let Some(dc) = datacenter {
            filters.push(serde_json::json!({"type": "literal_or", "tagk": "datacenter", "filter": dc, "groupBy": false}));
        }
        for (label, regex) in group.map(SeriesGroup::filters).unwrap_or_default() {
            filters.push(serde_json::json!({"type": "regexp", "tagk": label, "filter": regex, "groupBy": false}));
        }
        let mut query = serde_json::json!({"metric": metric, "aggregator": "none"});
        if !filters.is_empty() {
            query["filters"] = serde_json::Value::Array(filters);
        }
        // We keep [start, end). OpenTSDB serves [start, end]: ask up to `end` and drop points
        // stamped `end` here. OVH serves (start, end]: Erlenmeyer turns start/end into a Warp 10
        // FETCH between two ISO dates (ovh/erlenmeyer `proto/opentsdb/query.go`, `selection()`),
        // and FETCH ignores "timestamps at or before now - timespan" (senx/warp10-platform
        // `FETCH.java`), i.e. a point stamped exactly `start`. So ask from one millisecond
        // before (Erlenmeyer keeps only whole seconds of it, `time.Unix(ts/1000, ts%1000)`, which
        // still puts the excluded bound just before `start`: vScope points are whole seconds).
        let ask_from = match self.dialect {
            Dialect::Opentsdb => start_ms,
            Dialect::Ovh => start_ms - 1,
        };
        let body = serde_json::json!({
            "start": ask_from,
            "end": end_ms,
            "msResolution": true,
            "queries": [query],
        })
        .to_string();
        let url = self.url("/api/query");
        self.send_with_retry(
            "/api/query",
            || self.post_json(&url, &body),
            || Streamed::new(start_ms, end_ms, metric),
        )
        .await
        .map(|mut answer| {
            if let Some(g) = group.filter(|g| !g.is_all()) {
                answer.series.retain(|s| g.contains(&s.tags));
            }
            answer
        })
    }

    /// Asks for one second of `metric` (one datacenter), a query far too small for any fetch
    /// limit. This is how a refused token is told from a fetch limit when the `ovh` endpoint
    /// answers only an opaque 500 (Erlenmeyer HEAD, [`FailureClass::Opaque`]): `Ok` when the
    /// server answered; an error of class [`FailureClass::Auth`] when it refused the token, or
    /// gave the opaque 500 even for this ([`FetchError::TokenLikelyRefused`]).
    pub async fn probe_token(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        at_ms: i64,
    ) -> Result<(), FetchError> {
        let start = at_ms.div_euclid(1000) * 1000;
        // A check, not the work: two attempts (an opaque 500 gets its second chance), each
        // at most PROBE_TIMEOUT and a quarter of the time left before the run deadline, so a
        // stalled server cannot make the check eat the run.
        let mut probe = self.clone();
        probe.policy.max_attempts = 2;
        probe.timeout = self.timeout.min(PROBE_TIMEOUT);
        if let Some(left) = self.limits.remaining() {
            probe.timeout = probe.timeout.min(left / 4);
        }
        match probe
            .query_raw(metric, datacenter, start, start + 1000)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class() == FailureClass::Opaque => {
                Err(FetchError::TokenLikelyRefused { last: Box::new(e) })
            }
            Err(e) => Err(e),
        }
    }

    /// Server-side downsampling of every series of `metric` (optionally one datacenter) into
    /// epoch-aligned buckets of `interval_ms` stamped with their start — the same buckets as our
    /// client-side rollups — whatever the dialect:
    /// - `opentsdb`: buckets are already epoch-aligned and start-stamped; the end is inclusive,
    ///   so we ask up to `end - 1 ms`.
    /// - `ovh`: `aggregator: none` skips downsampling there, so each series is its own group
    ///   (a group-by on every catalogue label); Warp 10 buckets are `(t - span, t]` stamped at
    ///   `t` and aligned on the query end, so we shift the range one second earlier (vScope
    ///   points are whole seconds and Erlenmeyer keeps second precision), giving buckets
    ///   `[b, b + span)`, and restamp `t + 1 s - span`. Fill `nan` keeps empty buckets empty
    ///   (the default fill invents edge values).
    ///
    /// The bounds of `range` must be multiples of `interval_ms`.
    pub async fn query_downsampled(
        &self,
        metric: &str,
        labels: &[String],
        datacenter: Option<&str>,
        interval_ms: i64,
        function: crate::semantics::aggregator::Aggregator,
        range: std::ops::Range<i64>,
    ) -> Result<RawAnswer, FetchError> {
        let (start_ms, end_ms) = (range.start, range.end);
        let mut filters: Vec<serde_json::Value> = labels
            .iter()
            .filter(|l| datacenter.is_none() || l.as_str() != "datacenter")
            .map(|l| serde_json::json!({"type": "wildcard", "tagk": l, "filter": "*", "groupBy": true}))
            .collect();
        if let Some(dc) = datacenter {
            filters.push(serde_json::json!({"type": "literal_or", "tagk": "datacenter", "filter": dc, "groupBy": true}));
        }
        let spec = format!("{interval_ms}ms-{}-nan", function.name());
        let (q_start, q_end, shift) = match self.dialect {
            Dialect::Opentsdb => (start_ms, end_ms - 1, 0),
            Dialect::Ovh => (start_ms - 1000, end_ms - 1000, 1000 - interval_ms),
        };
        let body = serde_json::json!({
            "start": q_start,
            "end": q_end,
            "msResolution": true,
            "queries": [{"metric": metric, "aggregator": "max", "downsample": spec, "filters": filters}],
        })
        .to_string();
        let url = self.url("/api/query");
        let RawAnswer { mut series, stats } = self
            .send_with_retry(
                "/api/query",
                || self.post_json(&url, &body),
                || Streamed::new(i64::MIN, i64::MAX, metric),
            )
            .await?;
        for s in &mut series {
            for t in &mut s.ts {
                *t += shift;
            }
            // Keep buckets inside the requested range only.
            let keep: Vec<bool> = s.ts.iter().map(|t| *t >= start_ms && *t < end_ms).collect();
            let mut i = 0;
            s.ts.retain(|_| {
                i += 1;
                keep[i - 1]
            });
            let mut j = 0;
            s.values.retain(|_| {
                j += 1;
                keep[j - 1]
            });
        }
        series.retain(|s| !s.ts.is_empty());
        Ok(RawAnswer { series, stats })
    }

    /// Sends a request, retrying transient failures (including undecodable 200 bodies) per the
    /// policy and the run limits ([`retry_loop`]); other failures return at once. Each attempt's
    /// timeout is `source.timeout`, cut to the time left before the run deadline.
    pub(super) async fn send_with_retry<R: ReadAnswer>(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
        reader: impl Fn() -> R,
    ) -> Result<R::Output, FetchError> {
        let mut rng = fastrand::Rng::new();
        let attempt = |_n: u32, left: Option<std::time::Duration>| {
            let mut rb = build();
            rb = rb.timeout(self.timeout);
            if let Some(left) = left {
                rb = rb.timeout(self.timeout.min(left));
            }
            let reader = &reader;
            async move {
                // A place among the requests allowed in flight first, then a start slot: both
                // shrink while the server throttles.
                let _in_flight = self.throttle.enter().await;
                self.limiter.acquire_slowed(self.throttle.slowdown()).await;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                let (error, retry_after) = match self.send_once(endpoint, rb, reader()).await {
                    Ok(read) => match read.finish() {
                        Ok(v) => {
                            self.throttle.on_success();
                            return Ok(v);
                        }
                        Err(e) => (e, None),
                    },
                    Err((e, retry_after)) => (e, retry_after),
                };
                Err(AttemptError {
                    class: error.class(),
                    error,
                    retry_after,
                })
            }
        };
        let on_retry = |err: &FetchError, class, n: u32, delay: std::time::Duration| {
            if class == FailureClass::Throttled {
                self.throttle.on_throttled(true);
                self.throttle.record_wait(delay);
                tracing::info!(
                    endpoint,
                    attempt = n,
                    delay_ms = delay.as_millis() as u64,
                    "throttled by the server (429), waiting"
                );
                return;
            }
            if matches!(err, FetchError::Status { status: 503, .. }) {
                // Service unavailable: a sign of load, so slow down as for a 429.
                self.throttle.on_throttled(false);
            }
            tracing::warn!(endpoint, attempt = n, delay_ms = delay.as_millis() as u64, error = %err, "transient failure, retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        };
        retry_loop(&self.policy, &self.limits, &mut rng, attempt, on_retry)
            .await
            .map_err(|gave_up| match gave_up {
                GaveUp::NotRetryable(e) => e,
                GaveUp::Exhausted { attempts, last } => FetchError::Exhausted {
                    attempts,
                    last: Box::new(last),
                },
                GaveUp::Throttled { attempts, last } => FetchError::Throttled {
                    endpoint,
                    attempts,
                    last: Box::new(last),
                },
                GaveUp::BudgetSpent { attempts, last } => FetchError::BudgetSpent {
                    attempts,
                    last: Box::new(last),
                },
                GaveUp::Deadline {
                    attempts,
                    last,
                    wanted,
                } => FetchError::Deadline {
                    attempts,
                    last: last.map(Box::new),
                    wanted,
                },
            })
    }

    /// One attempt: the request, and a 2xx answer's body read into `reader` (its result is
    /// the caller's to take), or the error with the server's `Retry-After`.
    async fn send_once<R: ReadAnswer>(
        &self,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
        mut reader: R,
    ) -> Result<R, (FetchError, Option<String>)> {
        let transport = |e: reqwest::Error| (self.transport_error(endpoint, &e), None);
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status.is_success() {
            self.read_capped(endpoint, resp, &mut reader)
                .await
                .map_err(|e| (e, None))?;
            return Ok(reader);
        }
        // An error page: its start is all we keep (decoded when gzip; an unknown encoding is
        // shown as it came).
        let encoding = content_encoding(resp.headers()).unwrap_or(Encoding::Identity);
        let mut page = BodyDecoder::new(encoding, ERROR_PAGE_BYTES, None);
        let mut resp = resp;
        if let Err(ReadError::Transport(e)) =
            read_body(&mut resp, &mut page, &self.stats.bytes_on_wire).await
        {
            return Err(transport(e));
        }
        let text = String::from_utf8_lossy(page.decoded());
        // One line: error pages (a proxy's HTML) must not break the log into pieces.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut body = self.token.scrub(&text);
        // Warp 10 read directly says what failed in its status and page, as OpenTSDB does:
        // no Erlenmeyer in between to make a 500 opaque or a refused token a 500.
        let rules = match self.protocol {
            Protocol::Opentsdb => self.dialect,
            Protocol::Warp10 => {
                if let Some(reason) = error_page_reason(&body) {
                    body = reason;
                }
                Dialect::Opentsdb
            }
        };
        let class = classify(status.as_u16(), &body, rules);
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

    /// A connect, TLS, timeout or body failure, its causes on one line, scrubbed of the token.
    fn transport_error(&self, endpoint: &'static str, e: &reqwest::Error) -> FetchError {
        FetchError::Transport {
            endpoint,
            message: self.token.scrub(&error_chain(e)),
        }
    }

    /// Reads a successful answer of at most `source.max_answer_size` decoded bytes, gzip or
    /// plain, into `reader` as it comes: a larger one (announced by `Content-Length`, or seen
    /// while decoding) is dropped unread past the limit, so one huge answer, or a gzip bomb,
    /// cannot take the memory of the run. The announced length is the size on the wire
    /// (compressed when gzip); gzip never makes data more than a few bytes per 64 KiB longer,
    /// so an announced size over the limit is an answer over it. Every chunk received counts
    /// in `bytes_on_wire`; the decoded bytes handed to the reader in `bytes`.
    async fn read_capped<R: ReadAnswer>(
        &self,
        endpoint: &'static str,
        mut resp: reqwest::Response,
        reader: &mut R,
    ) -> Result<(), FetchError> {
        let limit = self.max_answer_bytes;
        let announced = resp.content_length();
        let too_large = |announced| FetchError::AnswerTooLarge {
            endpoint,
            limit,
            announced,
        };
        if let Some(n) = announced
            && n > limit as u64
        {
            return Err(too_large(Some(n)));
        }
        let body_error = |source| match source {
            BodyError::TooLarge { .. } => too_large(announced),
            source => FetchError::Body { endpoint, source },
        };
        let encoding = content_encoding(resp.headers()).map_err(body_error)?;
        let mut body = BodyDecoder::streaming(encoding, limit);
        let mut refused = None;
        let mut sink = |decoded: &[u8]| {
            self.stats
                .bytes
                .fetch_add(decoded.len() as u64, Ordering::Relaxed);
            match reader.push(decoded) {
                Ok(()) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            }
        };
        let read = stream_body(&mut resp, &mut body, &self.stats.bytes_on_wire, &mut sink).await;
        match read {
            Ok(()) => Ok(()),
            Err(ReadError::Body(BodyError::Stopped)) => {
                Err(refused.expect("the reader says why it stopped"))
            }
            Err(ReadError::Transport(e)) => Err(self.transport_error(endpoint, &e)),
            Err(ReadError::Body(e)) => Err(body_error(e)),
        }
    }
}

/// How a successful answer's body is read: each piece of the decoded body as it comes off the
/// connection, then the result once the body is complete.
pub(super) trait ReadAnswer: Send {
    type Output;
    /// The next decoded bytes; an error stops the reading (the attempt fails with it).
    fn push(&mut self, decoded: &[u8]) -> Result<(), FetchError>;
    /// The result, once every byte was pushed.
    fn finish(self) -> Result<Self::Output, FetchError>;
}

/// Small answers (`/api/version`, lookups, the dialect probe): gathered whole, then parsed.
pub(super) struct Whole<F> {
    body: Vec<u8>,
    parse: F,
}

/// A [`Whole`] reader for each attempt, parsing with `parse`.
pub(super) fn whole<T, F>(parse: F) -> impl Fn() -> Whole<F>
where
    F: Fn(&Bytes) -> Result<T, FetchError> + Copy,
{
    move || Whole {
        body: Vec::new(),
        parse,
    }
}

impl<T, F: Fn(&Bytes) -> Result<T, FetchError> + Send> ReadAnswer for Whole<F> {
    type Output = T;

    fn push(&mut self, decoded: &[u8]) -> Result<(), FetchError> {
        self.body.extend_from_slice(decoded);
        Ok(())
    }

    fn finish(self) -> Result<T, FetchError> {
        (self.parse)(&Bytes::from(self.body))
    }
}

/// `/api/query` answers: decoded series by series as the body streams in ([`AnswerStream`]),
/// so memory holds the decoded columns, not the JSON.
struct Streamed(AnswerStream);

impl Streamed {
    fn new(start_ms: i64, end_ms: i64, metric: &str) -> Streamed {
        Streamed(AnswerStream::new(start_ms, end_ms, Some(metric)))
    }
}

impl ReadAnswer for Streamed {
    type Output = RawAnswer;

    fn push(&mut self, decoded: &[u8]) -> Result<(), FetchError> {
        self.0.push(decoded).map_err(query_decode_error)
    }

    fn finish(self) -> Result<RawAnswer, FetchError> {
        let (series, stats) = self.0.finish().map_err(query_decode_error)?;
        Ok(RawAnswer { series, stats })
    }
}

fn query_decode_error(source: DecodeError) -> FetchError {
    FetchError::Decode {
        endpoint: "/api/query",
        source,
    }
}

/// The reason Warp 10 gave for a failed request, from Jetty's error page (`sendError(status,
/// reason)` gives `<title>Error 403 Invalid token.</title>`): `Invalid token.`, so that the
/// run's message says it in a few words instead of quoting HTML. `None` for any other body.
fn error_page_reason(page: &str) -> Option<String> {
    let start = page.find("<title>")? + "<title>".len();
    let end = start + page[start..].find("</title>")?;
    let title = page[start..end].trim();
    // Jetty's titles are `Error <status> <reason>`; a proxy's page (nginx: `503 Service
    // Temporarily Unavailable`) is not Warp's and stays as it is.
    let reason = title
        .strip_prefix("Error ")?
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    (!reason.is_empty()).then(|| format!("Warp 10: {reason}"))
}

/// The start of an error page kept for the error message, in bytes.
const ERROR_PAGE_BYTES: usize = 512;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DialectChoice, Discovery, Endpoint};
    use crate::semantics::aggregator::Aggregator;
    use crate::semantics::rollup::{Rollup, RollupColumn};
    use crate::sim::SimConfig;

    fn source() -> Source {
        Source {
            endpoint: Endpoint::Sim(Box::default()),
            token: Secret::default(),
            dialect: DialectChoice::Auto,
            concurrency: 4,
            requests_per_second: 0.0,
            shard_rate: crate::config::ShardRate::Share,
            timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
            max_attempts: 2,
            retry_budget: crate::extract::retry::RetryBudget::default(),
            deadline: None,
            discovery: Discovery::Lookup,
            min_split_ms: 60_000,
            max_answer_bytes: crate::config::DEFAULT_MAX_ANSWER_BYTES,
            memory_limit_bytes: crate::config::DEFAULT_MEMORY_LIMIT_BYTES,
            query_downsample: false,
            gzip: true,
            protocol: Protocol::Opentsdb,
            ovh: None,
        }
    }

    /// The dialect probe reads answers whose `dps` hold bare `NaN` or infinities, as the
    /// decoder does: it only looks for `query.index`.
    #[test]
    fn the_dialect_probe_reads_answers_with_bare_non_finite_values() {
        let ovh =
            br#"[{"metric":"m","tags":{},"query":{"index":0},"dps":{"1":NaN,"2":-Infinity}}]"#;
        assert_eq!(probe_marks(ovh), Ok(Some(true)));
        let tsd = br#"[{"metric":"m","tags":{},"dps":[[1,Infinity],[2,1e999]]}]"#;
        assert_eq!(probe_marks(tsd), Ok(Some(false)));
        assert!(probe_marks(br#"[{"metric":NaN}]"#).is_err());
    }

    #[test]
    fn jetty_pages_are_read_for_their_reason() {
        let page = "<html> <head> <meta http-equiv=\"Content-Type\" content=\"text/html\"/> \
                    <title>Error 403 Invalid token.</title> </head> <body><h2>HTTP ERROR 403</h2>";
        assert_eq!(
            error_page_reason(page).as_deref(),
            Some("Warp 10: Invalid token.")
        );
        assert_eq!(error_page_reason("<html>nginx</html>"), None);
        assert_eq!(
            error_page_reason("<title>503 Service Temporarily Unavailable</title>"),
            None
        );
        assert_eq!(error_page_reason("<title>Error 500 </title>"), None);
    }

    /// An answer about another metric is not retried: the same request gets the same answer.
    #[test]
    fn an_answer_about_another_metric_is_permanent() {
        let e = FetchError::Decode {
            endpoint: "/api/query",
            source: DecodeError::WrongMetric {
                asked: "a".into(),
                answered: "b".into(),
            },
        };
        assert_eq!(e.class(), FailureClass::Permanent);
        let malformed = FetchError::Decode {
            endpoint: "/api/query",
            source: DecodeError::Empty,
        };
        assert_eq!(malformed.class(), FailureClass::Transient);
    }

    /// `auto`: when `/api/version` fails with something else than "not implemented" (here a
    /// proxy's 500), the dialect comes from `query.index` in a probe answer; no sign at all is
    /// an error that asks for an explicit dialect.
    #[tokio::test]
    async fn auto_detection_falls_back_to_query_index_when_api_version_fails() {
        use axum::http::StatusCode;
        use axum::routing::{get, post};
        let cases: [(&'static str, Option<Dialect>); 3] = [
            (
                r#"[{"metric":"m","tags":{},"aggregateTags":[],"query":{"index":0},"dps":{}}]"#,
                Some(Dialect::Ovh),
            ),
            (
                r#"[{"metric":"m","tags":{},"aggregateTags":[],"dps":{}}]"#,
                Some(Dialect::Opentsdb),
            ),
            ("[]", None),
        ];
        for (answer, expected) in cases {
            let app = axum::Router::new()
                .route(
                    "/api/version",
                    get(|| async { (StatusCode::BAD_GATEWAY, "proxy error") }),
                )
                .route("/api/query", post(move || async move { answer }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let mut src = source();
            src.max_attempts = 1;
            let client = MetricsClient::new(
                &src,
                url::Url::parse(&format!("http://{addr}")).unwrap(),
                Dialect::Ovh,
            )
            .unwrap();
            let got = client.detect_dialect("vscope.vm.cpu.usage.perc").await;
            match (got, expected) {
                (Ok((d, why)), Some(e)) => {
                    assert_eq!(d, e, "{answer}");
                    assert!(why.contains("query.index"), "{why}");
                }
                (Err(e @ FetchError::DialectUnknown { .. }), None) => {
                    let msg = e.to_string();
                    assert!(msg.contains("source.dialect"), "{msg}");
                    assert!(msg.contains("502"), "names the /api/version failure: {msg}");
                }
                (other, _) => panic!("{answer}: unexpected {other:?}"),
            }
            server.abort();
        }
    }

    /// Against the simulator: answers travel gzip when both sides agree (the client's
    /// `Accept-Encoding: gzip` is what makes the simulator compress), and the client counts
    /// fewer bytes on the wire than it decodes; when the server ignores the header, or the
    /// client does not send it (`source.gzip = false`), both counts are equal. The series are
    /// the same in all three cases.
    #[tokio::test]
    async fn answers_travel_gzip_and_the_wire_bytes_are_counted() {
        let start = 1_793_491_200_000; // 2026-11-01T00:00:00Z
        let end = start + 6 * 3_600_000;
        let mut answers = Vec::new();
        for (client_gzip, sim_gzip) in [(true, true), (true, false), (false, true)] {
            // OpenTSDB's own server compresses; Erlenmeyer (`ovh`) would answer plain.
            let cfg = SimConfig {
                dialect: Dialect::Opentsdb,
                datacenters: 1,
                vms_per_datacenter: 4,
                gzip: sim_gzip,
                ..SimConfig::default()
            };
            let sim = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
                .await
                .unwrap();
            let mut src = source();
            src.gzip = client_gzip;
            let client = MetricsClient::new(
                &src,
                url::Url::parse(&sim.base_url()).unwrap(),
                Dialect::Opentsdb,
            )
            .unwrap();
            let raw = client
                .query_raw("vscope.vm.cpu.usage.perc", None, start, end)
                .await
                .unwrap();
            assert_eq!(raw.series.len(), 4);
            let decoded = client.stats().bytes.load(Ordering::Relaxed);
            let wire = client.stats().bytes_on_wire.load(Ordering::Relaxed);
            assert!(decoded > 10_000, "{decoded} bytes");
            if client_gzip && sim_gzip {
                assert!(
                    wire * 2 < decoded,
                    "{wire} bytes on the wire for {decoded} decoded"
                );
            } else {
                assert_eq!(
                    wire, decoded,
                    "client gzip {client_gzip}, sim gzip {sim_gzip}"
                );
            }
            answers.push(
                raw.series
                    .into_iter()
                    .map(|s| (s.tags, s.ts, s.values))
                    .collect::<Vec<_>>(),
            );
            sim.shutdown().await;
        }
        assert!(answers[0] == answers[1] && answers[1] == answers[2]);
    }

    /// A 200 whose gzip body is corrupt is a transient failure, retried like a body cut short,
    /// with a message that says so; a gzip error page is decoded for its message; an unknown
    /// `Content-Encoding` fails at once (retrying cannot help).
    #[tokio::test]
    async fn corrupt_gzip_is_retried_and_gzip_error_pages_are_read() {
        use axum::http::{StatusCode, header};
        use std::io::Write;
        let page = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b"<html><body>upstream is resting</body></html>")
                .unwrap();
            e.finish().unwrap()
        };
        let hits = Arc::new(AtomicU64::new(0));
        let h = Arc::clone(&hits);
        let app = axum::Router::new()
            .route(
                "/corrupt/api/query",
                axum::routing::post(move || {
                    h.fetch_add(1, Ordering::Relaxed);
                    async {
                        (
                            [(header::CONTENT_ENCODING, "gzip")],
                            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage, not deflate"
                                .to_vec(),
                        )
                    }
                }),
            )
            .route(
                "/page/api/query",
                axum::routing::post(move || async move {
                    (
                        StatusCode::NOT_FOUND,
                        [(header::CONTENT_ENCODING, "gzip")],
                        page,
                    )
                }),
            )
            .route(
                "/brotli/api/query",
                axum::routing::post(|| async { ([(header::CONTENT_ENCODING, "br")], "[]") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut src = source();
        src.max_attempts = 3;
        let client = |path: &str| {
            MetricsClient::new(
                &src,
                url::Url::parse(&format!("http://{addr}/{path}")).unwrap(),
                Dialect::Ovh,
            )
            .unwrap()
        };
        let c = client("corrupt");
        let e = c.query_raw("m", None, 0, 60_000).await.unwrap_err();
        match &e {
            FetchError::Exhausted { attempts: 3, last } => {
                assert!(matches!(**last, FetchError::Body { .. }), "{last}");
                assert!(last.to_string().contains("corrupt gzip body"), "{last}");
            }
            other => panic!("expected 3 attempts, got {other}"),
        }
        assert_eq!(hits.load(Ordering::Relaxed), 3);
        assert_eq!(c.stats().retries.load(Ordering::Relaxed), 2);
        let e = client("page")
            .query_raw("m", None, 0, 60_000)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, FetchError::Status { status: 404, body, .. } if body.contains("upstream is resting")),
            "{e}"
        );
        let c = client("brotli");
        let e = c.query_raw("m", None, 0, 60_000).await.unwrap_err();
        assert!(
            e.to_string().contains("unsupported Content-Encoding 'br'"),
            "{e}"
        );
        assert_eq!(c.stats().requests.load(Ordering::Relaxed), 1, "not retried");
        server.abort();
    }

    /// Issue 3: for each dialect, the server's downsample of the same series equals our
    /// client-side rollup of the raw points once normalised to start-stamped epoch buckets.
    #[tokio::test]
    async fn server_downsampling_equals_the_client_rollup_in_both_dialects() {
        const H: i64 = 3_600_000;
        let start = 1_793_491_200_000; // 2026-11-01T00:00:00Z
        let end = start + 6 * H;
        let labels = vec!["datacenter".to_string(), "vm".to_string()];
        for dialect in [Dialect::Opentsdb, Dialect::Ovh] {
            let cfg = SimConfig {
                dialect,
                datacenters: 1,
                vms_per_datacenter: 3,
                ..SimConfig::default()
            };
            let sim = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
                .await
                .unwrap();
            let client = MetricsClient::new(
                &source(),
                url::Url::parse(&sim.base_url()).unwrap(),
                dialect,
            )
            .unwrap();
            let metric = "vscope.vm.cpu.usage.perc";
            let raw = client.query_raw(metric, None, start, end).await.unwrap();
            assert_eq!(raw.series.len(), 3);
            for agg in [
                Aggregator::Avg,
                Aggregator::Min,
                Aggregator::Max,
                Aggregator::Sum,
                Aggregator::Count,
            ] {
                let server = client
                    .query_downsampled(metric, &labels, None, H, agg, start..end)
                    .await
                    .unwrap();
                assert_eq!(server.series.len(), raw.series.len(), "{dialect} {agg}");
                let rollup = Rollup::new(H, vec![agg]).unwrap();
                for s in &raw.series {
                    let mut out = rollup.output();
                    rollup.apply_into(&s.ts, &s.values, &mut out);
                    let expected: Vec<f64> = match &out.columns[0] {
                        RollupColumn::Float(v) => v.iter().map(|x| x.unwrap()).collect(),
                        RollupColumn::Int(v) => v.iter().map(|x| *x as f64).collect(),
                    };
                    let got = server
                        .series
                        .iter()
                        .find(|g| g.tags.get("vm") == s.tags.get("vm"))
                        .unwrap_or_else(|| panic!("{dialect}: no server series for {:?}", s.tags));
                    assert_eq!(got.ts, out.bucket_ts, "{dialect} {agg}: bucket stamps");
                    for (&g, e) in got.values.iter().zip(&expected) {
                        assert!(!g.is_nan(), "{dialect} {agg}: a bucket without value");
                        assert!(
                            (g - e).abs() <= 1e-9 * e.abs().max(1.0),
                            "{dialect} {agg}: {g} != {e}"
                        );
                    }
                }
            }
            sim.shutdown().await;
        }
    }
}
