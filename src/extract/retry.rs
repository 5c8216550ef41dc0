//! Which failures are worth another try, and how long to wait before it.
//!
//! Rules (design §2, `reference/reliability.md` §c): 429/408/5xx, transport errors and truncated
//! or empty bodies are transient; 401/403 and the OVH bad-token 500 end the run; 413 and the
//! fetch-limit 500 split the window instead of retrying it unchanged; any other 4xx is permanent.
//! `Retry-After` is honoured (seconds or HTTP-date, clamped); otherwise full-jitter backoff.

use std::time::{Duration, SystemTime};

use crate::dialect::Dialect;

/// What to do about one failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again after a delay.
    Transient,
    /// Retrying cannot help (bad request, unknown metric on OpenTSDB...).
    Permanent,
    /// The token is refused: stop the whole run (exit code 3).
    Auth,
    /// The answer would be too large: split the window in halves.
    TooLarge,
}

/// Classifies an HTTP error status and its body.
pub fn classify(status: u16, body: &str, dialect: Dialect) -> FailureClass {
    if status != 500 {
        return classify_status(status);
    }
    let lower = body.to_ascii_lowercase();
    if is_bad_token_text(&lower, dialect) {
        FailureClass::Auth
    } else if is_fetch_limit_text(&lower) {
        FailureClass::TooLarge
    } else {
        FailureClass::Transient
    }
}

/// Classifies an HTTP error status alone, for APIs whose bodies carry no extra rule (OVHcloud
/// API v6 adds its own `errorCode` rules on top, `crate::ovh::client`): 401/403 refuse the
/// credentials, 413 is too large, 408/429/5xx are transient, any other status is permanent.
pub fn classify_status(status: u16) -> FailureClass {
    match status {
        401 | 403 => FailureClass::Auth,
        413 => FailureClass::TooLarge,
        408 | 429 => FailureClass::Transient,
        s if s >= 500 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// Warp 10 (behind OVH's endpoint) rejects a bad token with a 500 whose text mentions it.
fn is_bad_token_text(lower: &str, dialect: Dialect) -> bool {
    dialect == Dialect::Ovh
        && (lower.contains("invalid token")
            || lower.contains("token is invalid")
            || lower.contains("invalid read token")
            || (lower.contains("authenticate") && lower.contains("token")))
}

/// The texts of OpenTSDB's 413s and Warp 10's fetch limit (`FETCH exceeded limit of N
/// datapoints`): sending the same request again cannot succeed.
fn is_fetch_limit_text(lower: &str) -> bool {
    lower.contains("exceeded limit")
        || lower.contains("exceed maximum")
        || lower.contains("attempted to fetch more than")
        || lower.contains("maximum amount of")
}

/// Backoff settings of one client.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles each attempt.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Largest `Retry-After` honoured; longer ones are clamped.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// A policy with the usual delays and `max_attempts` attempts.
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }

    /// Full-jitter exponential backoff before attempt `attempt + 1` (`attempt` ≥ 1 failed so
    /// far): uniform in `[0, min(max, base·2^(attempt-1))]`, so synchronized clients spread out.
    pub fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.max_backoff);
        Duration::from_nanos(rng.u64(0..=ceiling.as_nanos() as u64))
    }

    /// The delay before the next attempt: the server's `Retry-After` when it gave a usable one
    /// (clamped to `max_retry_after`), else [`RetryPolicy::backoff`].
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<&str>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        match retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())) {
            Some(d) if !d.is_zero() => d.min(self.max_retry_after),
            _ => self.backoff(attempt, rng),
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in
/// the past gives zero; garbage gives `None` (normal backoff applies).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(when.timestamp()).ok()?);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_and_bodies() {
        use FailureClass::*;
        assert_eq!(classify(429, "", Dialect::Ovh), Transient);
        assert_eq!(classify(503, "", Dialect::Opentsdb), Transient);
        assert_eq!(classify(401, "Not authorized", Dialect::Ovh), Auth);
        assert_eq!(classify(403, "", Dialect::Opentsdb), Auth);
        assert_eq!(classify(400, "Invalid query: x", Dialect::Ovh), Permanent);
        assert_eq!(classify(404, "", Dialect::Ovh), Permanent);
        assert_eq!(
            classify(
                413,
                "Sorry, you have attempted to fetch more than our limit",
                Dialect::Opentsdb
            ),
            TooLarge
        );
        assert_eq!(
            classify(
                500,
                "FETCH exceeded limit of 20000000 datapoints, current count is 20000001",
                Dialect::Ovh
            ),
            TooLarge
        );
        assert_eq!(
            classify(
                500,
                "Exception at 'AUTHENTICATE': invalid token",
                Dialect::Ovh
            ),
            Auth
        );
        assert_eq!(
            classify(500, "SocketTimeoutException", Dialect::Ovh),
            Transient
        );
    }

    #[test]
    fn retry_after_seconds_dates_and_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // 2023-11-14T22:13:30Z is 10 s after `now`.
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_ceiling() {
        let p = RetryPolicy::new(4);
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..10 {
            let ceiling = p.base.saturating_mul(1 << (attempt - 1)).min(p.max_backoff);
            for _ in 0..100 {
                assert!(p.backoff(attempt, &mut rng) <= ceiling);
            }
        }
        assert_eq!(p.delay(1, Some("1000"), &mut rng), p.max_retry_after);
        assert_eq!(p.delay(1, Some("3"), &mut rng), Duration::from_secs(3));
    }
}
