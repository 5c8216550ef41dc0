//! Which failures are worth another try, and how long to wait before it.
//!
//! Rules (design §2, `reference/reliability.md` §c): 429/408/5xx, transport errors and truncated
//! or empty bodies are transient; 401/403 and the OVH bad-token 500 end the run; 413 and the
//! fetch-limit 500 split the window instead of retrying it unchanged; any other 4xx is permanent.
//! `Retry-After` is honoured (seconds or HTTP-date, clamped); otherwise full-jitter backoff.
//!
//! Two classes exist because of the real OVH endpoint rather than OpenTSDB:
//! - **Throttled** (429): a shared endpoint that throttles is healthy and busy. The request waits
//!   as told and tries again without spending an attempt or the run's retry budget (bounded by
//!   [`RetryPolicy::max_throttled`] and the deadline); the client slows down meanwhile
//!   ([`super::throttle`]).
//! - **Opaque** (an `ovh` 500 whose text names no cause): Erlenmeyer HEAD (`core/warp.go`,
//!   `Query()`) replaces a Warp 10 error by its `X-Warp10-Error-Message` header and then fails to
//!   parse that as JSON, so a fetch limit, a bad token and a WarpScript error all arrive as
//!   `500 invalid character 'E' looking for beginning of value`. It is retried a little
//!   ([`RetryPolicy::opaque_attempts`]), then handed to the caller, which asks whether the token
//!   still works and otherwise treats it as a possible fetch limit (splits).
//!
//! On top of the per-request attempt cap, [`RunLimits`] bounds a whole run: a retry budget
//! (`source.retry_budget`, so a server that is down cannot turn a run into a retry storm) and a
//! deadline (`source.deadline`: no request starts after it, and no retry waits past it).
//! [`retry_loop`] applies all of it to any request; the metrics client uses it, and its tests run
//! on paused tokio time.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::dialect::Dialect;

/// What to do about one failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again after a delay.
    Transient,
    /// The server asks us to slow down (429): wait as told and try again; costs no attempt and
    /// no retry budget.
    Throttled,
    /// An `ovh` 500 whose text names no cause (Erlenmeyer HEAD's `invalid character 'E' ...`):
    /// maybe a fetch limit, maybe a refused token, maybe a passing WarpScript failure.
    Opaque,
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
    } else if dialect == Dialect::Ovh && !is_known_transient_text(&lower) {
        FailureClass::Opaque
    } else {
        FailureClass::Transient
    }
}

/// Classifies an HTTP error status alone, for APIs whose bodies carry no extra rule (OVHcloud
/// API v6 adds its own `errorCode` rules on top, `crate::ovh::client`): 401/403 refuse the
/// credentials, 413 is too large, 429 throttles, 408/5xx are transient, any other status is
/// permanent.
pub fn classify_status(status: u16) -> FailureClass {
    match status {
        401 | 403 => FailureClass::Auth,
        413 => FailureClass::TooLarge,
        429 => FailureClass::Throttled,
        408 => FailureClass::Transient,
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

/// Texts of `ovh` 500s that name a passing cause, as Erlenmeyer logs them when Warp's text
/// comes through (`proto/opentsdb/query.go`, `executeQuery`): a storage timeout is worth a
/// plain retry, not a split.
fn is_known_transient_text(lower: &str) -> bool {
    lower.contains("sockettimeoutexception")
        || lower.contains("timeout")
        || lower.contains("timed out")
        || lower.contains("unavailable")
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
    /// Attempts given to an [`FailureClass::Opaque`] failure before it is handed back to the
    /// caller (a passing failure gets its second chance; a fetch limit does not cost many).
    pub opaque_attempts: u32,
    /// Throttled answers (429) one request may wait through before giving up: a server that
    /// throttles one request this many times in a row is not just busy.
    pub max_throttled: u32,
}

impl RetryPolicy {
    /// A policy with the usual delays and `max_attempts` attempts.
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            opaque_attempts: 2,
            max_throttled: 30,
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

pub use crate::config::{BUDGET_FLOOR, RetryBudget};

/// Run-wide limits shared by every clone of a client: the retry budget and the deadline.
#[derive(Debug)]
pub struct RunLimits {
    budget: RetryBudget,
    deadline: Option<Instant>,
    successes: AtomicU64,
    retries: AtomicU64,
}

impl RunLimits {
    /// Limits starting now: `deadline` is measured from this call (the start of the run).
    pub fn new(budget: RetryBudget, deadline: Option<Duration>) -> RunLimits {
        RunLimits {
            budget,
            deadline: deadline.map(|d| Instant::now() + d),
            successes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Time left before the deadline; `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True once the deadline has passed: no new request may start.
    pub fn deadline_passed(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }

    /// Retries spent so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn record_success(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when it is spent.
    fn try_spend(&self) -> bool {
        let allowed = match self.budget {
            RetryBudget::Unlimited => u64::MAX,
            RetryBudget::Count(n) => n,
            RetryBudget::Ratio(r) => {
                (r * self.successes.load(Ordering::Relaxed) as f64) as u64 + BUDGET_FLOOR
            }
        };
        self.retries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < allowed).then_some(n + 1)
            })
            .is_ok()
    }
}

/// One failed attempt, as [`retry_loop`] sees it.
#[derive(Debug)]
pub struct AttemptError<E> {
    /// The failure.
    pub error: E,
    /// What it means.
    pub class: FailureClass,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<String>,
}

/// Why [`retry_loop`] gave up.
#[derive(Debug, PartialEq)]
pub enum GaveUp<E> {
    /// The failure is not transient: retrying cannot help.
    NotRetryable(E),
    /// The per-request attempt cap was reached.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: E,
    },
    /// The server throttled this request [`RetryPolicy::max_throttled`] times in a row.
    Throttled {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: E,
    },
    /// The run's retry budget is spent.
    BudgetSpent {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: E,
    },
    /// The run deadline passed, or the next wait would end after it: the request is deferred
    /// to the next run rather than started or waited for.
    Deadline {
        /// Attempts made (0: none started).
        attempts: u32,
        /// The last failure, if an attempt was made.
        last: Option<E>,
        /// The wait that would have passed the deadline, if that is why.
        wanted: Option<Duration>,
    },
}

/// Runs `attempt` until it succeeds or one of the limits says stop. `attempt(n, budget)` makes
/// attempt `n` (1-based); `budget` is the time left before the run deadline, which the attempt
/// should use as its own timeout when shorter. `on_retry(error, class, n, delay)` is called before
/// each wait (logs, counters, the throttle). Waits are `tokio::time::sleep`, so tests can pause
/// time.
///
/// Throttled attempts (429) do not count towards `max_attempts` nor spend the run's budget;
/// [`FailureClass::Opaque`] failures get [`RetryPolicy::opaque_attempts`] attempts and are then
/// returned as [`GaveUp::Exhausted`], so the caller can decide what they mean.
pub async fn retry_loop<T, E, F, Fut>(
    policy: &RetryPolicy,
    limits: &RunLimits,
    rng: &mut fastrand::Rng,
    mut attempt: F,
    mut on_retry: impl FnMut(&E, FailureClass, u32, Duration),
) -> Result<T, GaveUp<E>>
where
    F: FnMut(u32, Option<Duration>) -> Fut,
    Fut: Future<Output = Result<T, AttemptError<E>>>,
{
    let mut n = 0u32;
    // Attempts that count towards the caps (throttled ones do not), and throttles in a row.
    let (mut counted, mut throttled) = (0u32, 0u32);
    loop {
        if limits.deadline_passed() {
            return Err(GaveUp::Deadline {
                attempts: n,
                last: None,
                wanted: None,
            });
        }
        n += 1;
        let err = match attempt(n, limits.remaining()).await {
            Ok(v) => {
                limits.record_success();
                return Ok(v);
            }
            Err(e) => e,
        };
        let cap = match err.class {
            FailureClass::Transient => policy.max_attempts,
            FailureClass::Opaque => policy.opaque_attempts.min(policy.max_attempts),
            FailureClass::Throttled => u32::MAX,
            _ => return Err(GaveUp::NotRetryable(err.error)),
        };
        if err.class == FailureClass::Throttled {
            throttled += 1;
            if throttled >= policy.max_throttled {
                return Err(GaveUp::Throttled {
                    attempts: n,
                    last: err.error,
                });
            }
        } else {
            throttled = 0;
            counted += 1;
            if counted >= cap {
                return Err(GaveUp::Exhausted {
                    attempts: n,
                    last: err.error,
                });
            }
        }
        let delay = policy.delay(counted.max(throttled), err.retry_after.as_deref(), rng);
        if let Some(left) = limits.remaining()
            && delay >= left
        {
            return Err(GaveUp::Deadline {
                attempts: n,
                last: Some(err.error),
                wanted: Some(delay),
            });
        }
        if err.class != FailureClass::Throttled && !limits.try_spend() {
            return Err(GaveUp::BudgetSpent {
                attempts: n,
                last: err.error,
            });
        }
        on_retry(&err.error, err.class, n, delay);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_and_bodies() {
        use FailureClass::*;
        assert_eq!(classify(429, "", Dialect::Ovh), Throttled);
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
        // Erlenmeyer HEAD: Warp's text replaced by Go's JSON decoder error, whatever the cause.
        let head = "invalid character 'E' looking for beginning of value";
        assert_eq!(classify(500, head, Dialect::Ovh), Opaque);
        assert_eq!(classify(500, head, Dialect::Opentsdb), Transient);
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

    /// A scripted server for [`retry_loop`]: attempt n gets `script[n-1]`; records when each
    /// attempt started (paused tokio time, so the instants are exact).
    struct Script {
        steps: Vec<Result<(), (FailureClass, Option<String>)>>,
        at: std::sync::Mutex<Vec<Duration>>,
        budgets: std::sync::Mutex<Vec<Option<Duration>>>,
        t0: Instant,
    }

    impl Script {
        fn new(steps: Vec<Result<(), (FailureClass, Option<&str>)>>) -> Script {
            Script {
                steps: steps
                    .into_iter()
                    .map(|s| s.map_err(|(c, r)| (c, r.map(str::to_string))))
                    .collect(),
                at: Default::default(),
                budgets: Default::default(),
                t0: Instant::now(),
            }
        }

        async fn run(
            &self,
            policy: &RetryPolicy,
            limits: &RunLimits,
        ) -> Result<u32, GaveUp<String>> {
            let mut rng = fastrand::Rng::with_seed(3);
            retry_loop(
                policy,
                limits,
                &mut rng,
                |n, budget| async move {
                    self.at.lock().unwrap().push(Instant::now() - self.t0);
                    self.budgets.lock().unwrap().push(budget);
                    match &self.steps[(n - 1) as usize] {
                        Ok(()) => Ok(n),
                        Err((class, ra)) => Err(AttemptError {
                            error: format!("attempt {n}"),
                            class: *class,
                            retry_after: ra.clone(),
                        }),
                    }
                },
                |_, _, _, _| {},
            )
            .await
        }

        fn times(&self) -> Vec<Duration> {
            self.at.lock().unwrap().clone()
        }
    }

    fn unlimited() -> RunLimits {
        RunLimits::new(RetryBudget::Unlimited, None)
    }

    use FailureClass::{Auth, Opaque, Permanent, Throttled, TooLarge, Transient};

    /// Case 1: 429 with `Retry-After: 7` then 200: one extra request, exactly 7 s later; a
    /// longer `Retry-After` is clamped to `max_retry_after`.
    #[tokio::test(start_paused = true)]
    async fn case01_retry_after_seconds_is_honoured_and_clamped() {
        let p = RetryPolicy::new(4);
        let s = Script::new(vec![Err((Transient, Some("7"))), Ok(())]);
        assert_eq!(s.run(&p, &unlimited()).await, Ok(2));
        assert_eq!(s.times(), [Duration::ZERO, Duration::from_secs(7)]);
        let s = Script::new(vec![Err((Transient, Some("100000"))), Ok(())]);
        assert_eq!(s.run(&p, &unlimited()).await, Ok(2));
        assert_eq!(s.times()[1], p.max_retry_after);
    }

    /// Case 1 with a deadline: a `Retry-After` that would end past the run deadline defers the
    /// request at once instead of sleeping into the deadline.
    #[tokio::test(start_paused = true)]
    async fn case01_retry_after_past_the_deadline_defers_without_waiting() {
        let p = RetryPolicy::new(4);
        let limits = RunLimits::new(RetryBudget::Unlimited, Some(Duration::from_secs(5)));
        let s = Script::new(vec![Err((Transient, Some("7"))), Ok(())]);
        let t0 = Instant::now();
        assert_eq!(
            s.run(&p, &limits).await,
            Err(GaveUp::Deadline {
                attempts: 1,
                last: Some("attempt 1".into()),
                wanted: Some(Duration::from_secs(7)),
            })
        );
        assert_eq!(
            Instant::now(),
            t0,
            "no sleep towards a wait that cannot end in time"
        );
        // Each attempt is told how long it may take at most.
        assert_eq!(s.budgets.lock().unwrap()[0], Some(Duration::from_secs(5)));
    }

    /// Case 2: an HTTP-date is waited for; a date in the past and garbage fall back to the
    /// jittered backoff (at most `base` before the second attempt).
    #[tokio::test(start_paused = true)]
    async fn case02_retry_after_http_date_past_date_and_garbage() {
        let p = RetryPolicy::new(4);
        let date = (chrono::Utc::now() + chrono::Duration::seconds(10))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let s = Script::new(vec![Err((Transient, Some(&date))), Ok(())]);
        assert_eq!(s.run(&p, &unlimited()).await, Ok(2));
        let waited = s.times()[1];
        assert!(
            waited > Duration::from_secs(8) && waited <= Duration::from_secs(10),
            "{waited:?}"
        );
        for value in ["Thu, 01 Jan 2015 00:00:00 GMT", "in a little while"] {
            let s = Script::new(vec![Err((Transient, Some(value))), Ok(())]);
            assert_eq!(s.run(&p, &unlimited()).await, Ok(2));
            assert!(s.times()[1] <= p.base, "{value}: {:?}", s.times()[1]);
        }
    }

    /// Case 3: 503, 503, 200 succeeds on the third attempt with full-jitter waits bounded by
    /// base·2^(n-1); four 5xx in a row hit the attempt cap of 4 and stop there.
    #[tokio::test(start_paused = true)]
    async fn case03_5xx_bursts_use_bounded_full_jitter_and_the_attempt_cap() {
        let p = RetryPolicy::new(4);
        let s = Script::new(vec![Err((Transient, None)), Err((Transient, None)), Ok(())]);
        assert_eq!(s.run(&p, &unlimited()).await, Ok(3));
        let t = s.times();
        assert!(t[1] <= p.base, "{t:?}");
        assert!(t[2] - t[1] <= p.base * 2, "{t:?}");
        let s = Script::new(vec![Err((Transient, None)); 5]);
        assert_eq!(
            s.run(&p, &unlimited()).await,
            Err(GaveUp::Exhausted {
                attempts: 4,
                last: "attempt 4".into()
            })
        );
        assert_eq!(s.times().len(), 4);
    }

    /// Cases 4, 12, 13: too-large, permanent and refused-token answers are never retried by the
    /// loop (the client splits the window for too-large; auth ends the run).
    #[tokio::test(start_paused = true)]
    async fn case04_12_13_non_transient_failures_are_not_retried() {
        let p = RetryPolicy::new(4);
        for class in [TooLarge, Permanent, Auth] {
            let s = Script::new(vec![Err((class, None)), Ok(())]);
            assert_eq!(
                s.run(&p, &unlimited()).await,
                Err(GaveUp::NotRetryable("attempt 1".into()))
            );
            assert_eq!(s.times().len(), 1, "{class:?}");
        }
    }

    /// A throttled server is healthy: 429s cost neither attempts nor the run's budget, each
    /// wait is the server's `Retry-After`, and only `max_throttled` 429s in a row give up.
    #[tokio::test(start_paused = true)]
    async fn throttled_attempts_spend_no_attempt_and_no_budget() {
        let p = RetryPolicy::new(2);
        let limits = RunLimits::new(RetryBudget::Count(0), None);
        let mut steps = vec![Err((Throttled, Some("1"))); 5];
        steps.push(Ok(()));
        let s = Script::new(steps);
        assert_eq!(s.run(&p, &limits).await, Ok(6));
        assert_eq!(s.times()[5], Duration::from_secs(5), "{:?}", s.times());
        assert_eq!(limits.retries(), 0);
        // Throttles between transient failures do not reset the attempt cap.
        let limits = RunLimits::new(RetryBudget::Unlimited, None);
        let s = Script::new(vec![
            Err((Transient, None)),
            Err((Throttled, Some("1"))),
            Err((Transient, None)),
            Ok(()),
        ]);
        assert_eq!(
            s.run(&p, &limits).await,
            Err(GaveUp::Exhausted {
                attempts: 3,
                last: "attempt 3".into()
            })
        );
        let mut p = RetryPolicy::new(2);
        p.max_throttled = 3;
        let s = Script::new(vec![Err((Throttled, Some("1"))); 4]);
        assert_eq!(
            s.run(&p, &limits).await,
            Err(GaveUp::Throttled {
                attempts: 3,
                last: "attempt 3".into()
            })
        );
    }

    /// An opaque `ovh` 500 is tried `opaque_attempts` times, then handed back to the caller
    /// (which decides between a refused token and a fetch limit).
    #[tokio::test(start_paused = true)]
    async fn opaque_failures_get_a_short_retry_then_go_back_to_the_caller() {
        let p = RetryPolicy::new(8);
        let s = Script::new(vec![Err((Opaque, None)), Ok(())]);
        assert_eq!(s.run(&p, &unlimited()).await, Ok(2));
        let s = Script::new(vec![Err((Opaque, None)); 8]);
        assert_eq!(
            s.run(&p, &unlimited()).await,
            Err(GaveUp::Exhausted {
                attempts: p.opaque_attempts,
                last: format!("attempt {}", p.opaque_attempts)
            })
        );
    }

    /// The run-wide retry budget: a count is spent across requests; a ratio allows
    /// `ratio × successful requests + BUDGET_FLOOR` retries.
    #[tokio::test(start_paused = true)]
    async fn run_retry_budget_is_shared_by_all_requests() {
        let p = RetryPolicy::new(4);
        let limits = RunLimits::new(RetryBudget::Count(3), None);
        let flaky = || Script::new(vec![Err((Transient, None)), Ok(())]);
        for _ in 0..3 {
            assert_eq!(flaky().run(&p, &limits).await, Ok(2));
        }
        assert_eq!(
            flaky().run(&p, &limits).await,
            Err(GaveUp::BudgetSpent {
                attempts: 1,
                last: "attempt 1".into()
            })
        );
        assert_eq!(limits.retries(), 3);

        let limits = RunLimits::new(RetryBudget::Ratio(0.1), None);
        let healthy = || Script::new(vec![Ok(())]);
        for _ in 0..100 {
            healthy().run(&p, &limits).await.unwrap();
        }
        // 100 successes: 10 % of them plus the floor of 10 = 20 retries.
        let mut spent = 0;
        while flaky().run(&p, &limits).await.is_ok() {
            spent += 1;
        }
        // Each flaky request ends in a success too, so the allowance grows slowly.
        assert!((20..=23).contains(&spent), "{spent}");
        // A server that never answers gets the floor and no more, whatever the requests.
        let limits = RunLimits::new(RetryBudget::Ratio(0.5), None);
        let dead = || Script::new(vec![Err((Transient, None)); 4]);
        let mut retries = 0;
        for _ in 0..20 {
            if let Err(GaveUp::Exhausted { attempts, .. } | GaveUp::BudgetSpent { attempts, .. }) =
                dead().run(&p, &limits).await
            {
                retries += attempts - 1;
            }
        }
        assert_eq!(u64::from(retries), BUDGET_FLOOR);
    }

    /// Case 15: after the deadline no request starts; a request waiting to retry is told its
    /// remaining time.
    #[tokio::test(start_paused = true)]
    async fn case15_no_request_starts_after_the_deadline() {
        let p = RetryPolicy::new(4);
        let limits = RunLimits::new(RetryBudget::Unlimited, Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limits.deadline_passed());
        let s = Script::new(vec![Ok(())]);
        assert_eq!(
            s.run(&p, &limits).await,
            Err(GaveUp::Deadline {
                attempts: 0,
                last: None,
                wanted: None
            })
        );
        assert!(s.times().is_empty(), "no attempt after the deadline");
    }
}
