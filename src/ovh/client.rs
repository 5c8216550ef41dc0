//! The signed HTTP client of OVHcloud API v6 (`reference/api.md` §3.2).
//!
//! Every authenticated call is signed with the application secret and consumer key and stamped
//! with the *server's* time: `GET /auth/time` is read once per client and the offset to the local
//! clock is cached, so a machine whose clock drifts still signs valid requests. Transient
//! failures are retried with the metrics client's rules and backoff
//! ([`crate::extract::retry`]); each attempt is signed again with a fresh timestamp.
//!
//! Secrets travel only in the `X-Ovh-Consumer` and `X-Ovh-Signature` headers, which are marked
//! sensitive; nothing here logs a header, and server messages are scrubbed of both secrets
//! before they are kept in an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;

use super::sign::signature;
use crate::config::Credentials;
use crate::extract::body::{
    BodyDecoder, BodyError, Encoding, ReadError, accept_encoding, content_encoding, read_body,
};
use crate::extract::ratelimit::RateLimiter;
use crate::extract::retry::{
    AttemptError, FailureClass, GaveUp, RetryBudget, RetryPolicy, RunLimits, classify_status,
    retry_loop,
};

/// The access rules a consumer key needs for everything vscope-etl calls; printed when a call
/// is refused, so the user can request a key that works in one go.
pub const ACCESS_RULES: &str = r#"[{"method":"GET","path":"/dedicatedCloud/*"},{"method":"POST","path":"/dedicatedCloud/*/user/*/metricsToken"}]"#;

/// The `errorCode` values with which API v6 refuses credentials or rights (python-ovh checks
/// them on 403; a bad signature comes back as a 400 with `INVALID_SIGNATURE`).
const AUTH_ERROR_CODES: [&str; 6] = [
    "INVALID_SIGNATURE",
    "INVALID_CREDENTIAL",
    "NOT_CREDENTIAL",
    "INVALID_KEY",
    "NOT_GRANTED_CALL",
    "FORBIDDEN",
];

/// Timeouts and retry settings of the client (taken from `[source]`, like the metrics client).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Whole-request deadline.
    pub timeout: std::time::Duration,
    /// TCP/TLS connect deadline.
    pub connect_timeout: std::time::Duration,
    /// Attempts per call before giving up on transient failures.
    pub max_attempts: u32,
    /// Calls started per second at most (0 = unlimited).
    pub requests_per_second: f64,
    /// Ask for gzip answers (`Accept-Encoding: gzip`, `source.gzip`).
    pub gzip: bool,
    /// Largest answer taken, decoded (`source.max_answer_size`); API v6 answers are small, the
    /// cap only stops a runaway one.
    pub max_answer_bytes: usize,
}

/// A call to API v6 that did not give a usable answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OvhError {
    /// The API answered with an error status. `detail` holds the error code, message (scrubbed
    /// of secrets) and query id; `hint` says what to do, naming the missing right when the
    /// credentials or rights were refused.
    #[error("OVHcloud API v6 {method} {endpoint} answered HTTP {status}{detail}{hint}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Path template called, e.g. `/dedicatedCloud/{serviceName}/datacenter`.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The body's `errorCode`, when present.
        error_code: Option<String>,
        /// `: CODE "message" (query id ...)`, secrets removed.
        detail: String,
        /// What to do about it (empty when nothing useful can be said).
        hint: String,
        /// What the failure means for us.
        class: FailureClass,
    },
    /// Connect, TLS, timeout or a body cut short.
    #[error("OVHcloud API v6 {method} {endpoint}: {message}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Path template called.
        endpoint: &'static str,
        /// What failed.
        message: String,
    },
    /// A 2xx whose body decodes to more than `source.max_answer_size`: not read further.
    #[error(
        "OVHcloud API v6 {method} {endpoint}: the answer is larger than source.max_answer_size \
         ({limit} bytes); it was not read further"
    )]
    AnswerTooLarge {
        /// HTTP method.
        method: &'static str,
        /// Path template called.
        endpoint: &'static str,
        /// The cap, in bytes.
        limit: usize,
    },
    /// A 2xx whose body cannot be decoded: a corrupt or cut gzip stream (retried like a body
    /// cut short), or a `Content-Encoding` that was not asked for.
    #[error("OVHcloud API v6 {method} {endpoint}: {source}")]
    Body {
        /// HTTP method.
        method: &'static str,
        /// Path template called.
        endpoint: &'static str,
        /// What is wrong with the body.
        source: BodyError,
    },
    /// A 2xx whose body is not the JSON we expect.
    #[error("OVHcloud API v6 {method} {endpoint}: unexpected answer: {message}")]
    Decode {
        /// HTTP method.
        method: &'static str,
        /// Path template called.
        endpoint: &'static str,
        /// The decoder's message and the start of the body.
        message: String,
    },
    /// Transient failures until the attempt cap.
    #[error("gave up after {attempts} attempts, last error: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<OvhError>,
    },
    /// The run's retry budget (`source.retry_budget`) is spent.
    #[error(
        "run retry budget (source.retry_budget) spent after {attempts} attempt(s), last error: {last}"
    )]
    BudgetSpent {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<OvhError>,
    },
    /// The run deadline (`source.deadline`) passed before the call could start or finish
    /// retrying.
    #[error(
        "OVHcloud API v6 {method} {endpoint}: deferred, the run deadline (source.deadline) was reached after {attempts} attempt(s)"
    )]
    Deadline {
        /// Method.
        method: &'static str,
        /// Path template called.
        endpoint: &'static str,
        /// Attempts made (0: none started).
        attempts: u32,
    },
    /// `POST .../metricsToken` answered 404: the call may have been withdrawn from the public
    /// API (it is absent from the 2024 API schemas, `reference/api.md` §3.3).
    #[error(
        "OVHcloud API v6 answered 404 to POST /dedicatedCloud/{service_name}/user/{user_id}/metricsToken: \
         this call may have been withdrawn from the public API (it is missing from the API schemas \
         published since 2024), or the user id does not exist. Get a vScope read token another \
         way (ask OVHcloud support; docs/connect.md) and set source.token and \
         source.url directly, e.g. token = \"${{VSCOPE_METRICS_TOKEN}}\" and \
         url = \"${{VSCOPE_OPENTSDB_ENDPOINT}}\""
    )]
    MetricsTokenUnavailable {
        /// The PCC.
        service_name: String,
        /// The user whose token was asked for.
        user_id: i64,
    },
    /// `source.url` is left out and the `metricsToken` answer's `opentsdbEndpoint` is not a
    /// usable URL.
    #[error(
        "the metricsToken answer's opentsdbEndpoint is not a usable http(s) URL ({message}): \
         set source.url to your metrics endpoint, e.g. https://opentsdb.gra1-ovh.metrics.ovh.net"
    )]
    BadEndpoint {
        /// Why it was refused (names the value, unless it carries credentials).
        message: String,
    },
    /// No user id was configured and the PCC has no user named `admin` to fall back on.
    #[error(
        "no [source.ovh] user_id is set and the PCC {service_name} has no user named 'admin': \
         set source.ovh.user_id (GET /dedicatedCloud/{service_name}/user lists the ids)"
    )]
    NoUser {
        /// The PCC.
        service_name: String,
    },
}

impl OvhError {
    /// How this failure should be handled: [`FailureClass::Auth`] ends the command with exit
    /// code 3.
    pub fn class(&self) -> FailureClass {
        match self {
            OvhError::Status { class, .. } => *class,
            OvhError::Transport { .. } | OvhError::Decode { .. } => FailureClass::Transient,
            OvhError::Body { source, .. } => match source {
                BodyError::Unsupported { .. } => FailureClass::Permanent,
                _ => FailureClass::Transient,
            },
            OvhError::AnswerTooLarge { .. } => FailureClass::Permanent,
            OvhError::Exhausted { last, .. } => match last.class() {
                FailureClass::Auth => FailureClass::Auth,
                _ => FailureClass::Permanent,
            },
            OvhError::MetricsTokenUnavailable { .. }
            | OvhError::NoUser { .. }
            | OvhError::BadEndpoint { .. }
            | OvhError::BudgetSpent { .. }
            | OvhError::Deadline { .. } => FailureClass::Permanent,
        }
    }

    /// True for a 404 answer (an object deleted between its listing and its fetch).
    pub fn is_not_found(&self) -> bool {
        matches!(self, OvhError::Status { status: 404, .. })
    }
}

/// Counters of one client, for the inventory report.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// HTTP requests sent (retries and `/auth/time` included).
    pub requests: AtomicU64,
    /// Retries after a transient failure.
    pub retries: AtomicU64,
    /// Bytes of the 2xx answer bodies read whole, decoded.
    pub bytes: AtomicU64,
    /// Body bytes received from the network as sent (compressed when gzip), every answer.
    pub bytes_on_wire: AtomicU64,
}

/// Client of one API v6 endpoint with one set of credentials. Cheap to clone: clones share the
/// connection pool, the cached server time offset, the rate limiter and the counters.
#[derive(Clone)]
pub struct OvhClient {
    http: reqwest::Client,
    base: url::Url,
    credentials: Arc<Credentials>,
    time_delta: Arc<tokio::sync::OnceCell<i64>>,
    policy: RetryPolicy,
    limiter: Arc<RateLimiter>,
    limits: Arc<RunLimits>,
    timeout: std::time::Duration,
    max_answer_bytes: usize,
    stats: Arc<ApiStats>,
}

impl std::fmt::Debug for OvhClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvhClient")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// The error body of API v6: `{"class": "Client::...", "message": "...", "errorCode": "...",
/// "details": {...}}`; every field optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiErrorBody {
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

impl OvhClient {
    /// A client of the API at `base` (e.g. `https://eu.api.ovh.com/1.0`). No request is made
    /// until the first call.
    pub fn new(
        base: url::Url,
        credentials: Credentials,
        settings: &ClientSettings,
    ) -> Result<OvhClient, OvhError> {
        let http = reqwest::Client::builder()
            .default_headers(accept_encoding(settings.gzip))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("vscope-etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OvhError::Transport {
                method: "-",
                endpoint: "client",
                message: e.to_string(),
            })?;
        Ok(OvhClient {
            http,
            base,
            credentials: Arc::new(credentials),
            time_delta: Arc::new(tokio::sync::OnceCell::new()),
            policy: RetryPolicy::new(settings.max_attempts),
            limiter: Arc::new(RateLimiter::new(settings.requests_per_second)),
            limits: Arc::new(RunLimits::new(RetryBudget::Unlimited, None)),
            timeout: settings.timeout,
            max_answer_bytes: settings.max_answer_bytes,
            stats: Arc::new(ApiStats::default()),
        })
    }

    /// Applies a run's retry budget and deadline (`source.retry_budget`, `source.deadline`)
    /// to every call; without it only the per-call attempt cap applies.
    pub fn with_limits(mut self, limits: Arc<RunLimits>) -> OvhClient {
        self.limits = limits;
        self
    }

    /// The run limits this client spends from (shared with the metrics client in a run).
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// The API base URL.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// Counters shared by all clones.
    pub fn stats(&self) -> &ApiStats {
        &self.stats
    }

    /// `server time - local time` in seconds, read from `GET /auth/time` on first use and cached
    /// for the life of the client (python-ovh and go-ovh do the same).
    pub async fn time_delta(&self) -> Result<i64, OvhError> {
        self.time_delta
            .get_or_try_init(|| async {
                let bytes = self
                    .send_with_retry("GET", "/auth/time", "/auth/time", None, None)
                    .await?;
                let text = String::from_utf8_lossy(&bytes);
                let server: i64 = text.trim().parse().map_err(|_| OvhError::Decode {
                    method: "GET",
                    endpoint: "/auth/time",
                    message: format!("not a unix time: {}", snippet(&bytes)),
                })?;
                let delta = server - unix_now();
                tracing::debug!(delta_secs = delta, "API v6 server time offset");
                Ok(delta)
            })
            .await
            .copied()
    }

    /// A signed `GET` of `path` (below the base, starting with `/`, already URL-safe), decoded
    /// as `T`. `endpoint` is the path template, used in logs and errors.
    pub async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
    ) -> Result<T, OvhError> {
        let bytes = self.call("GET", endpoint, path, None, true).await?;
        decode("GET", endpoint, &bytes)
    }

    /// A signed `POST` of `path` with an optional JSON body, decoded as `T`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, OvhError> {
        let bytes = self.call("POST", endpoint, path, body, true).await?;
        decode("POST", endpoint, &bytes)
    }

    /// Sends a call, signed with the server-corrected time when `signed`.
    async fn call(
        &self,
        method: &'static str,
        endpoint: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        signed: bool,
    ) -> Result<Bytes, OvhError> {
        let delta = if signed {
            Some(self.time_delta().await?)
        } else {
            None
        };
        self.send_with_retry(method, endpoint, path, body, delta)
            .await
    }

    /// Sends a call, retrying transient failures per the policy; other failures return at
    /// once. With `time_delta`, each attempt is signed with a fresh server-corrected timestamp.
    async fn send_with_retry(
        &self,
        method: &'static str,
        endpoint: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        time_delta: Option<i64>,
    ) -> Result<Bytes, OvhError> {
        let url = self.url(path).map_err(|message| OvhError::Transport {
            method,
            endpoint,
            message,
        })?;
        // Compact JSON, as python-ovh sends; the signature covers these exact bytes.
        let body: Vec<u8> = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut rng = fastrand::Rng::new();
        let attempt = |n: u32, left: Option<std::time::Duration>| {
            let timestamp = time_delta.map(|d| unix_now() + d);
            let mut rb = self.request(method, &url, &body, timestamp);
            if let Some(left) = left {
                rb = rb.timeout(self.timeout.min(left));
            }
            async move {
                self.limiter.acquire().await;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                match self.send_once(method, endpoint, rb).await {
                    Ok(bytes) => Ok(bytes),
                    Err((error, retry_after)) => {
                        tracing::debug!(method, endpoint, attempt = n, error = %error, "API v6 call failed");
                        Err(AttemptError {
                            class: error.class(),
                            error,
                            retry_after,
                        })
                    }
                }
            }
        };
        let on_retry = |err: &OvhError, _class, n: u32, delay: std::time::Duration| {
            tracing::warn!(method, endpoint, attempt = n, delay_ms = delay.as_millis() as u64,
                error = %err, "transient API v6 failure, retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        };
        retry_loop(&self.policy, &self.limits, &mut rng, attempt, on_retry)
            .await
            .map_err(|gave_up| match gave_up {
                GaveUp::NotRetryable(e) => e,
                GaveUp::Exhausted { attempts, last } | GaveUp::Throttled { attempts, last } => {
                    OvhError::Exhausted {
                        attempts,
                        last: Box::new(last),
                    }
                }
                GaveUp::BudgetSpent { attempts, last } => OvhError::BudgetSpent {
                    attempts,
                    last: Box::new(last),
                },
                GaveUp::Deadline { attempts, .. } => OvhError::Deadline {
                    method,
                    endpoint,
                    attempts,
                },
            })
    }

    /// `base + path` as one URL; it is both what is sent and what is signed.
    fn url(&self, path: &str) -> Result<url::Url, String> {
        let text = format!("{}{}", self.base.as_str().trim_end_matches('/'), path);
        url::Url::parse(&text).map_err(|e| format!("cannot build the URL of {path}: {e}"))
    }

    /// Builds one attempt: the application header always, the signature headers when signed.
    fn request(
        &self,
        method: &'static str,
        url: &url::Url,
        body: &[u8],
        timestamp: Option<i64>,
    ) -> reqwest::RequestBuilder {
        let m = match method {
            "POST" => reqwest::Method::POST,
            _ => reqwest::Method::GET,
        };
        let c = &self.credentials;
        let mut rb = self
            .http
            .request(m, url.clone())
            .header("X-Ovh-Application", c.application_key.as_str());
        if let Some(ts) = timestamp {
            let sig = signature(
                c.application_secret.expose(),
                c.consumer_key.expose(),
                method,
                url.as_str(),
                body,
                ts,
            );
            rb = rb
                .header("X-Ovh-Consumer", sensitive(c.consumer_key.expose()))
                .header("X-Ovh-Timestamp", ts.to_string())
                .header("X-Ovh-Signature", sensitive(&sig));
        }
        if !body.is_empty() {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        rb
    }

    async fn send_once(
        &self,
        method: &'static str,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
    ) -> Result<Bytes, (OvhError, Option<String>)> {
        let transport = |e: reqwest::Error| {
            (
                OvhError::Transport {
                    method,
                    endpoint,
                    message: self.scrub(&error_chain(&e)),
                },
                None,
            )
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let query_id = resp
            .headers()
            .get("X-Ovh-QueryID")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let success = (200..300).contains(&status);
        let body_error = |source| match source {
            BodyError::TooLarge { limit } => OvhError::AnswerTooLarge {
                method,
                endpoint,
                limit,
            },
            source => OvhError::Body {
                method,
                endpoint,
                source,
            },
        };
        // An error body is read only for its message: its start is enough, and an unknown
        // encoding is shown as it came.
        let (encoding, limit) = match content_encoding(resp.headers()) {
            Ok(e) if success => (e, self.max_answer_bytes),
            Err(e) if success => return Err((body_error(e), None)),
            Ok(e) => (e, ERROR_BODY_BYTES),
            Err(_) => (Encoding::Identity, ERROR_BODY_BYTES),
        };
        if success
            && let Some(n) = resp.content_length()
            && n > limit as u64
        {
            return Err((body_error(BodyError::TooLarge { limit }), None));
        }
        let mut body = BodyDecoder::new(encoding, limit, resp.content_length());
        let mut resp = resp;
        match read_body(&mut resp, &mut body, &self.stats.bytes_on_wire).await {
            Err(ReadError::Transport(e)) => return Err(transport(e)),
            // An error body is kept as far as it could be read.
            Err(ReadError::Body(e)) if success => return Err((body_error(e), None)),
            Ok(()) | Err(ReadError::Body(_)) => {}
        }
        let wire = body.wire_bytes();
        let bytes = if success {
            body.finish().map_err(|e| (body_error(e), None))?
        } else {
            body.decoded().to_vec()
        };
        tracing::debug!(
            method,
            endpoint,
            status,
            bytes = bytes.len(),
            wire,
            "API v6 answer"
        );
        if success {
            self.stats
                .bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            return Ok(Bytes::from(bytes));
        }
        Err((
            self.status_error(method, endpoint, status, &bytes, query_id),
            retry_after,
        ))
    }

    /// The typed error of a non-2xx answer.
    fn status_error(
        &self,
        method: &'static str,
        endpoint: &'static str,
        status: u16,
        bytes: &[u8],
        query_id: Option<String>,
    ) -> OvhError {
        let parsed: ApiErrorBody = serde_json::from_slice(bytes).unwrap_or_default();
        let message = match &parsed.message {
            Some(m) => self.scrub(m),
            None => self.scrub(&snippet(bytes)),
        };
        let code = parsed.error_code.clone();
        let class = classify_v6(status, code.as_deref(), &message);
        let mut detail = String::new();
        if let Some(c) = code.as_deref().or(parsed.class.as_deref()) {
            detail.push_str(&format!(": {c}"));
        }
        if !message.is_empty() {
            detail.push_str(&format!(
                "{}\"{}\"",
                if detail.is_empty() { ": " } else { " " },
                message
            ));
        }
        if let Some(q) = &query_id {
            detail.push_str(&format!(" (query id {q})"));
        }
        let hint = if class == FailureClass::Auth {
            auth_hint(
                method,
                endpoint,
                status,
                code.as_deref(),
                &message,
                &iam_actions(parsed.details.as_ref()),
            )
        } else {
            String::new()
        };
        OvhError::Status {
            method,
            endpoint,
            status,
            error_code: code,
            detail,
            hint,
            class,
        }
    }

    /// Removes both secrets from server text.
    fn scrub(&self, text: &str) -> String {
        let c = &self.credentials;
        c.consumer_key.scrub(&c.application_secret.scrub(text))
    }
}

/// API v6 classification: the credential `errorCode`s (and a bad signature, which is a 400) end
/// the command like a 401/403; everything else follows the status rules of the metrics client.
/// API v6 never splits anything, so "too large" is simply permanent here.
pub fn classify_v6(status: u16, error_code: Option<&str>, message: &str) -> FailureClass {
    let auth_code = error_code.is_some_and(|c| AUTH_ERROR_CODES.contains(&c));
    if auth_code || message.trim().eq_ignore_ascii_case("invalid signature") {
        return FailureClass::Auth;
    }
    match classify_status(status) {
        FailureClass::TooLarge => FailureClass::Permanent,
        c => c,
    }
}

/// The access rule an endpoint template needs: `{...}` segments become `*`.
pub fn access_rule(method: &str, endpoint: &str) -> String {
    let path: Vec<&str> = endpoint
        .split('/')
        .map(|seg| if seg.starts_with('{') { "*" } else { seg })
        .collect();
    format!("{method} {}", path.join("/"))
}

/// What to do when credentials or rights are refused: which key is wrong, or which right the
/// consumer key is missing.
fn auth_hint(
    method: &str,
    endpoint: &str,
    status: u16,
    code: Option<&str>,
    message: &str,
    iam: &[String],
) -> String {
    let rule = access_rule(method, endpoint);
    let new_key = format!(
        "request a consumer key with POST /auth/credential and accessRules {ACCESS_RULES}, then \
         open its validationUrl"
    );
    let mut hint = match code {
        Some("INVALID_SIGNATURE") => ". The request signature was refused: the application \
             secret (source.ovh.application_secret or OVH_APPLICATION_SECRET) does not belong to \
             the application key, or the consumer key is wrong (check also that the endpoint \
             region is the one the keys were created on)"
            .to_string(),
        _ if message.eq_ignore_ascii_case("invalid signature") => ". The request signature was \
             refused: the application secret (source.ovh.application_secret or \
             OVH_APPLICATION_SECRET) does not belong to the application key, or the consumer key \
             is wrong"
            .to_string(),
        Some("INVALID_KEY") => ". The application key is unknown: check \
             source.ovh.application_key (or OVH_APPLICATION_KEY) and that source.ovh.endpoint is \
             the region it was created on"
            .to_string(),
        Some("INVALID_CREDENTIAL") | Some("NOT_CREDENTIAL") => format!(
            ". The consumer key (source.ovh.consumer_key or OVH_CONSUMER_KEY) is unknown, \
             expired or was never validated: {new_key}"
        ),
        _ if status == 401 => {
            format!(". The call was not authenticated (no valid consumer key): {new_key}")
        }
        _ => format!(". The consumer key lacks the right {rule}: {new_key}"),
    };
    if !iam.is_empty() {
        hint.push_str(&format!(
            "; IAM refused the actions {} (grant them in an IAM policy)",
            iam.join(", ")
        ));
    }
    hint
}

/// The IAM actions an answer says were refused (`details.unauthorizedActionsByIAM` and
/// `details.unauthorizedActionsByAuthentication`, go-ovh `error.go`).
fn iam_actions(details: Option<&serde_json::Value>) -> Vec<String> {
    let Some(d) = details else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in [
        "unauthorizedActionsByIAM",
        "unauthorizedActionsByAuthentication",
    ] {
        match d.get(key) {
            Some(serde_json::Value::String(s)) => {
                out.extend(s.split(',').map(|a| a.trim().to_string()))
            }
            Some(serde_json::Value::Array(a)) => {
                out.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)))
            }
            _ => {}
        }
    }
    out.retain(|a| !a.is_empty());
    out
}

fn decode<T: DeserializeOwned>(
    method: &'static str,
    endpoint: &'static str,
    bytes: &[u8],
) -> Result<T, OvhError> {
    serde_json::from_slice(bytes).map_err(|e| OvhError::Decode {
        method,
        endpoint,
        message: format!("{e}; body starts with {}", snippet(bytes)),
    })
}

/// The start of an error body kept to read its message, in bytes.
const ERROR_BODY_BYTES: usize = 64 << 10;

/// A header value hidden from `Debug` output of the request (reqwest honours the flag).
fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// The first 200 bytes of a body, for messages.
fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        .trim()
        .to_string()
}

/// Local unix time in seconds.
fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `e` and its sources on one line.
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
    use crate::secret::Secret;

    #[test]
    fn credential_codes_are_auth_whatever_the_status() {
        use FailureClass::*;
        assert_eq!(classify_v6(400, Some("INVALID_SIGNATURE"), ""), Auth);
        assert_eq!(classify_v6(400, None, "Invalid signature"), Auth);
        assert_eq!(classify_v6(403, Some("NOT_GRANTED_CALL"), ""), Auth);
        assert_eq!(classify_v6(403, None, "whatever"), Auth);
        assert_eq!(classify_v6(401, None, ""), Auth);
        assert_eq!(classify_v6(400, None, "Bad parameter"), Permanent);
        assert_eq!(classify_v6(404, None, ""), Permanent);
        assert_eq!(classify_v6(413, None, ""), Permanent);
        assert_eq!(classify_v6(429, None, ""), Throttled);
        assert_eq!(classify_v6(503, None, ""), Transient);
        assert_eq!(classify_v6(460, None, "Service expired"), Permanent);
    }

    #[test]
    fn hints_name_the_missing_right_or_the_wrong_key() {
        assert_eq!(
            access_rule(
                "GET",
                "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/vm"
            ),
            "GET /dedicatedCloud/*/datacenter/*/vm"
        );
        let h = auth_hint(
            "POST",
            "/dedicatedCloud/{serviceName}/user/{userId}/metricsToken",
            403,
            Some("NOT_GRANTED_CALL"),
            "This call has not been granted",
            &["pccVMware:apiovh:user/metricsToken/create".into()],
        );
        assert!(
            h.contains("POST /dedicatedCloud/*/user/*/metricsToken")
                && h.contains("pccVMware:apiovh:user/metricsToken/create"),
            "{h}"
        );
        let h = auth_hint("GET", "/x", 400, Some("INVALID_SIGNATURE"), "", &[]);
        assert!(h.contains("application_secret"), "{h}");
        let h = auth_hint("GET", "/x", 403, Some("INVALID_CREDENTIAL"), "", &[]);
        assert!(
            h.contains("consumer_key") && h.contains("/auth/credential"),
            "{h}"
        );
        let h = auth_hint("GET", "/x", 403, Some("INVALID_KEY"), "", &[]);
        assert!(h.contains("application_key"), "{h}");
    }

    #[test]
    fn iam_details_are_read_as_strings_or_lists() {
        let d = serde_json::json!({"unauthorizedActionsByIAM": "a:b, c:d"});
        assert_eq!(iam_actions(Some(&d)), ["a:b", "c:d"]);
        let d = serde_json::json!({"unauthorizedActionsByAuthentication": ["x"]});
        assert_eq!(iam_actions(Some(&d)), ["x"]);
        assert!(iam_actions(None).is_empty());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_a_fresh_signature() {
        use std::sync::atomic::AtomicUsize;
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&seen));
        let app = axum::Router::new()
            .route(
                "/1.0/auth/time",
                axum::routing::get(|| async { unix_now().to_string() }),
            )
            .route(
                "/1.0/thing",
                axum::routing::get(move |headers: axum::http::HeaderMap| {
                    let (h, s) = (Arc::clone(&h), Arc::clone(&s));
                    async move {
                        let sig = headers
                            .get("X-Ovh-Signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        s.lock().unwrap().push(sig);
                        if h.fetch_add(1, Ordering::SeqCst) == 0 {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                "busy".to_string(),
                            )
                        } else {
                            (axum::http::StatusCode::OK, "[1,2]".to_string())
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let c = test_client(&format!("http://{addr}/1.0"));
        let got: Vec<i64> = c.get("/thing", "/thing").await.unwrap();
        assert_eq!(got, [1, 2]);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(c.stats().retries.load(Ordering::Relaxed), 1);
        let sigs = seen.lock().unwrap().clone();
        assert!(
            sigs.iter().all(|s| s.starts_with("$1$") && s.len() == 43),
            "{sigs:?}"
        );
        server.abort();
    }

    /// A client of `base` with test credentials, 5 s timeouts, 3 attempts and no rate limit.
    fn test_client(base: &str) -> OvhClient {
        OvhClient::new(
            url::Url::parse(base).unwrap(),
            Credentials {
                application_key: "ak".into(),
                application_secret: Secret::new("as"),
                consumer_key: Secret::new("ck"),
            },
            &ClientSettings {
                timeout: std::time::Duration::from_secs(5),
                connect_timeout: std::time::Duration::from_secs(5),
                max_attempts: 3,
                requests_per_second: 0.0,
                gzip: true,
                max_answer_bytes: 1 << 20,
            },
        )
        .unwrap()
    }

    /// The run limits reach API v6 calls too: with a retry budget of 0, a refused connection
    /// (transient) is not retried although 3 attempts are allowed; after the deadline no call
    /// starts.
    #[tokio::test]
    async fn run_limits_apply_to_api_v6_calls() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = |budget, deadline| {
            test_client(&format!("http://127.0.0.1:{port}/1.0"))
                .with_limits(Arc::new(RunLimits::new(budget, deadline)))
        };
        let c = client(RetryBudget::Count(0), None);
        let e = c.get::<Vec<i64>>("/thing", "/thing").await.unwrap_err();
        assert!(
            matches!(e, OvhError::BudgetSpent { attempts: 1, .. }),
            "{e}"
        );
        assert_eq!(c.stats().requests.load(Ordering::Relaxed), 1);
        let c = client(RetryBudget::Unlimited, Some(std::time::Duration::ZERO));
        let e = c.get::<Vec<i64>>("/thing", "/thing").await.unwrap_err();
        assert!(matches!(e, OvhError::Deadline { attempts: 0, .. }), "{e}");
        assert_eq!(c.stats().requests.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn credentials_never_format_their_values() {
        let c = Credentials {
            application_key: "ak-visible?".into(),
            application_secret: Secret::new("as-123456"),
            consumer_key: Secret::new("ck-123456"),
        };
        let s = format!("{c:?}");
        assert!(
            !s.contains("ak-visible") && !s.contains("as-123456") && !s.contains("ck-123456"),
            "{s}"
        );
    }
}
