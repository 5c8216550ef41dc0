//! A start-rate limiter: requests begin at most `n` per second, evenly spaced, across all tasks.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces request starts by `1/rate` seconds. Cheaper and more predictable than a token bucket
/// for a batch job: no burst at start-up hits the server.
#[derive(Debug)]
pub struct RateLimiter {
    period: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` = 0 disables limiting.
    pub fn new(per_second: f64) -> RateLimiter {
        let period = (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second));
        RateLimiter {
            period,
            next: Mutex::new(None),
        }
    }

    /// Waits until this caller may start a request.
    pub async fn acquire(&self) {
        self.acquire_slowed(1.0).await;
    }

    /// Waits until this caller may start a request, with starts spaced `slowdown` times wider
    /// than configured (the adaptive throttle slows the rate down while the server throttles).
    pub async fn acquire_slowed(&self, slowdown: f64) {
        let Some(period) = self.period else { return };
        let period = period.mul_f64(slowdown.max(1.0));
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = match *next {
                Some(t) if t > now => t,
                _ => now,
            };
            *next = Some(slot + period);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_starts_evenly() {
        let limiter = RateLimiter::new(10.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(Instant::now() - t0, Duration::from_millis(400));
        let t2 = Instant::now();
        limiter.acquire_slowed(4.0).await;
        limiter.acquire_slowed(4.0).await;
        assert_eq!(Instant::now() - t2, Duration::from_millis(100 + 400));
        let unlimited = RateLimiter::new(0.0);
        let t1 = Instant::now();
        unlimited.acquire().await;
        assert_eq!(Instant::now(), t1);
    }
}
