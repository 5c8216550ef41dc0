//! What a request to the metrics endpoint can fail with, and what each failure means for the
//! run ([`FetchError::class`]).

use super::body::BodyError;
use super::decode::DecodeError;
use super::retry::FailureClass;

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
    /// A 200 whose body cannot be decoded: a corrupt or cut gzip stream (retried like a body
    /// cut short), or a `Content-Encoding` that was not asked for.
    #[error("{endpoint}: {source}")]
    Body {
        /// Path called.
        endpoint: &'static str,
        /// What is wrong with the body.
        source: BodyError,
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
    /// `source.dialect = "auto"` found no sign of either dialect.
    #[error(
        "cannot tell the server's dialect: /api/version failed ({version_error}) and the probe query \
         returned no series to look for query.index; set source.dialect = \"ovh\" or \"opentsdb\""
    )]
    DialectUnknown {
        /// Why `/api/version` did not settle it.
        version_error: String,
    },
    /// The server throttled one request (429) too many times in a row
    /// ([`RetryPolicy::max_throttled`]): it is not just busy.
    ///
    /// [`RetryPolicy::max_throttled`]: crate::extract::retry::RetryPolicy::max_throttled
    #[error(
        "{endpoint}: the server throttled the request {attempts} times in a row (429), last: {last}; \
         lower source.concurrency and source.requests_per_second, or run at a quieter time"
    )]
    Throttled {
        /// Path called.
        endpoint: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<FetchError>,
    },
    /// The run's retry budget (`source.retry_budget`) is spent: the server fails too often for
    /// retries to be worth it.
    #[error(
        "run retry budget (source.retry_budget) spent after {attempts} attempt(s), last error: {last}"
    )]
    BudgetSpent {
        /// Attempts made for this request.
        attempts: u32,
        /// The last failure.
        last: Box<FetchError>,
    },
    /// The run deadline (`source.deadline`) passed before the request could start or finish
    /// retrying: deferred to the next run, nothing of it is committed.
    #[error("deferred: the run deadline (source.deadline) was reached{}", deadline_detail(*.attempts, .last, *.wanted))]
    Deadline {
        /// Attempts made for this request (0: never started).
        attempts: u32,
        /// The last failure, if any attempt was made.
        last: Option<Box<FetchError>>,
        /// The wait that would have passed the deadline (a `Retry-After` or backoff).
        wanted: Option<std::time::Duration>,
    },
    /// The answer body is larger than `source.max_answer_size`: it was not read further (a
    /// `/api/query` window is then split, see [`MetricsClient::query_raw_split`]).
    ///
    /// [`MetricsClient::query_raw_split`]: crate::extract::MetricsClient::query_raw_split
    #[error(
        "{endpoint}: the answer is larger than source.max_answer_size ({limit} bytes{}); \
         it was not read further",
        .announced.map(|n| format!(", announced {n} bytes")).unwrap_or_default()
    )]
    AnswerTooLarge {
        /// Path called.
        endpoint: &'static str,
        /// `source.max_answer_size` in bytes.
        limit: usize,
        /// The `Content-Length` the server announced, if it did.
        announced: Option<u64>,
    },
    /// Even a one-second query was refused with an opaque `ovh` 500: Warp 10 refused the
    /// token, and Erlenmeyer HEAD did not pass its message on (`reference/api.md` §2.5).
    #[error(
        "even a one-second query is refused with an unexplained HTTP 500 ({last}): the read token \
         is the likely cause (Warp 10 refuses it and OVH's proxy does not pass the reason on); \
         check source.token, or get a new one with `vscope-etl token`"
    )]
    TokenLikelyRefused {
        /// The opaque failure of the probe.
        last: Box<FetchError>,
    },
    /// The server said "too large" (or the answer was over `source.max_answer_size`, or gave an
    /// opaque 500 that may mean a fetch limit) even for the smallest window we may split to,
    /// and the series could not be split further (one series, or nothing known of them).
    #[error(
        "answer too large even for a {span_ms} ms window and the smallest group of series we \
         can tell apart (source.min_split, source.max_answer_size; series are split only with \
         source.discovery = \"lookup\" or \"inventory\"): {last}"
    )]
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
            // An answer to another query is the server's (or a proxy's) doing, the same on
            // every try (a cache answers it again): retrying would spend the budget for the same
            // wrong answer. The unit fails, named with both metrics, and the next run asks again.
            FetchError::Decode {
                source: DecodeError::WrongMetric { .. },
                ..
            } => FailureClass::Permanent,
            FetchError::Transport { .. } | FetchError::Decode { .. } => FailureClass::Transient,
            FetchError::Body { source, .. } => match source {
                BodyError::Unsupported { .. } => FailureClass::Permanent,
                _ => FailureClass::Transient,
            },
            FetchError::AnswerTooLarge { .. } => FailureClass::TooLarge,
            FetchError::TokenLikelyRefused { .. } => FailureClass::Auth,
            FetchError::Exhausted { last, .. } => match last.class() {
                FailureClass::Auth => FailureClass::Auth,
                FailureClass::Opaque => FailureClass::Opaque,
                _ => FailureClass::Permanent,
            },
            FetchError::TooLargeAtMinimum { .. }
            | FetchError::Throttled { .. }
            | FetchError::DialectUnknown { .. }
            | FetchError::BudgetSpent { .. }
            | FetchError::Deadline { .. } => FailureClass::Permanent,
        }
    }

    /// True when the request was deferred by the run deadline rather than failed.
    pub fn is_deferred(&self) -> bool {
        matches!(self, FetchError::Deadline { .. })
    }
}

fn deadline_detail(
    attempts: u32,
    last: &Option<Box<FetchError>>,
    wanted: Option<std::time::Duration>,
) -> String {
    let mut out = String::new();
    if let Some(w) = wanted {
        out.push_str(&format!(
            " (the next try would wait {:.1} s, past it)",
            w.as_secs_f64()
        ));
    }
    if attempts == 0 {
        out.push_str(" before the request started");
    } else if let Some(l) = last {
        out.push_str(&format!(" after {attempts} attempt(s), last error: {l}"));
    }
    out
}
