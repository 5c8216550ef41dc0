//! Adaptive pace under throttling: fewer requests in flight, and a lower start rate, while the
//! server answers 429 (or 503), back up to the configured pace when it stops.
//!
//! A shared endpoint such as OVH's metrics platform throttles per token; a batch job that keeps
//! its full concurrency while told to slow down only collects more 429s. The control is the one
//! TCP uses for congestion (AIMD): each throttled answer halves the number of requests allowed
//! in flight (at most once per [`DECREASE_EVERY`], so a burst of 429s from requests sent together
//! counts as one signal), each success adds `1 / limit` (one more request in flight per window
//! of successes), between 1 and `source.concurrency`. The start rate (`source.requests_per_second`)
//! is scaled by the same factor. The counters feed the run manifest (`throttled`,
//! `throttle_wait_seconds`, `min_in_flight`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Shortest time between two decreases: throttled answers to requests that were in flight
/// together are one signal, not several.
pub const DECREASE_EVERY: Duration = Duration::from_secs(1);

/// The adaptive limit on requests in flight, shared by every clone of a client.
#[derive(Debug)]
pub struct Throttle {
    max: usize,
    state: Mutex<State>,
    freed: Notify,
    throttled: AtomicU64,
    waited_ms: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Requests allowed in flight (fractional: additive increase moves it by `1 / limit`).
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    lowest: usize,
}

/// A request in flight; dropping it frees its place.
#[derive(Debug)]
pub struct InFlight<'a> {
    throttle: &'a Throttle,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.throttle.state.lock().expect("throttle lock");
        s.in_flight -= 1;
        drop(s);
        self.throttle.freed.notify_one();
    }
}

impl Throttle {
    /// A throttle allowing up to `max_in_flight` requests (at least 1).
    pub fn new(max_in_flight: usize) -> Throttle {
        let max = max_in_flight.max(1);
        Throttle {
            max,
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                last_decrease: None,
                lowest: max,
            }),
            freed: Notify::new(),
            throttled: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
        }
    }

    /// Waits for a place among the requests allowed in flight now.
    pub async fn enter(&self) -> InFlight<'_> {
        loop {
            let notified = self.freed.notified();
            {
                let mut s = self.state.lock().expect("throttle lock");
                if s.in_flight < s.allowed() {
                    s.in_flight += 1;
                    return InFlight { throttle: self };
                }
            }
            notified.await;
        }
    }

    /// How much slower than configured the start rate should be now (1.0: full rate): the
    /// configured concurrency over the current limit.
    pub fn slowdown(&self) -> f64 {
        let s = self.state.lock().expect("throttle lock");
        self.max as f64 / s.limit.max(1.0)
    }

    /// A request succeeded: one more request in flight after `limit` successes.
    pub fn on_success(&self) {
        let mut s = self.state.lock().expect("throttle lock");
        if s.limit < self.max as f64 {
            s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
            drop(s);
            self.freed.notify_waiters();
        }
    }

    /// The server throttled a request (429, or 503 when `count` is false: a sign of load, not
    /// counted as throttling in the manifest): halve the requests in flight, at most once per
    /// [`DECREASE_EVERY`].
    pub fn on_throttled(&self, count: bool) {
        if count {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut s = self.state.lock().expect("throttle lock");
        if s.last_decrease.is_some_and(|t| now - t < DECREASE_EVERY) {
            return;
        }
        s.last_decrease = Some(now);
        s.limit = (s.limit / 2.0).max(1.0);
        s.lowest = s.lowest.min(s.allowed());
        tracing::info!(
            in_flight = s.allowed(),
            "the server is throttling: fewer requests in flight"
        );
    }

    /// Records time a request spent waiting because it was throttled.
    pub fn record_wait(&self, wait: Duration) {
        self.waited_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// Throttled answers (429) so far.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Time spent waiting after throttled answers, summed over requests.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }

    /// The fewest requests in flight the throttle came down to.
    pub fn lowest(&self) -> usize {
        self.state.lock().expect("throttle lock").lowest
    }

    /// Requests allowed in flight now.
    pub fn allowed(&self) -> usize {
        self.state.lock().expect("throttle lock").allowed()
    }
}

impl State {
    fn allowed(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Multiplicative decrease (once per burst), additive increase back to the maximum.
    #[tokio::test(start_paused = true)]
    async fn halves_on_throttling_once_per_burst_and_grows_back_by_one_per_window() {
        let t = Throttle::new(8);
        assert_eq!(t.allowed(), 8);
        t.on_throttled(true);
        t.on_throttled(true);
        t.on_throttled(true);
        assert_eq!(t.allowed(), 4, "one burst, one decrease");
        assert_eq!(t.throttled(), 3);
        tokio::time::advance(DECREASE_EVERY).await;
        t.on_throttled(true);
        assert_eq!(t.allowed(), 2);
        tokio::time::advance(DECREASE_EVERY).await;
        t.on_throttled(false);
        tokio::time::advance(DECREASE_EVERY).await;
        t.on_throttled(true);
        assert_eq!(t.allowed(), 1, "never below one");
        assert_eq!(t.lowest(), 1);
        assert_eq!(t.throttled(), 5, "a 503 slows down but is not counted");
        assert!((t.slowdown() - 8.0).abs() < 1e-9);
        // From 1: one success to 2, about two more to 3, ... back to 8 in a little over
        // 1+2+...+7 = 28 successes (each success adds 1/limit of the limit it finds).
        let mut n = 0;
        while t.allowed() < 8 {
            t.on_success();
            n += 1;
            assert!(n < 40, "does not grow back");
        }
        assert!((28..=34).contains(&n), "{n}");
        t.on_success();
        assert_eq!(t.allowed(), 8, "never above the maximum");
        assert_eq!(t.lowest(), 1, "the lowest point is remembered");
    }

    /// No more requests enter than allowed; a place freed (or a raised limit) lets the next in.
    #[tokio::test(start_paused = true)]
    async fn holds_requests_beyond_the_limit_until_a_place_frees() {
        let t = Arc::new(Throttle::new(2));
        t.on_throttled(true);
        assert_eq!(t.allowed(), 1);
        let first = t.enter().await;
        let t2 = t.clone();
        let second = tokio::spawn(async move {
            let _p = t2.enter().await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !second.is_finished(),
            "a second request waits while one is in flight"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("freed place is taken")
            .unwrap();
        // Raising the limit wakes waiters too.
        let a = t.enter().await;
        let t3 = t.clone();
        let waiting = tokio::spawn(async move {
            let _p = t3.enter().await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        t.on_success();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a raised limit lets the waiter in")
            .unwrap();
        drop(a);
    }
}
