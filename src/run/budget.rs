//! The memory budget of a run (`source.memory_limit`): what answers may hold at once, whatever
//! the size of the PCC.
//!
//! A window's units are fetched several at a time and consumed in plan order. What they hold
//! (the answer being read and decoded, the decoded series waiting for the writer) is reserved
//! here before a request is sent: a unit whose estimate does not fit waits for earlier units to
//! be written. So a big datacenter slows the run down instead of multiplying its memory by the
//! requests in flight.
//!
//! One exception keeps this from deadlocking: the unit the writer waits for never waits for
//! memory (the units after it, which hold the rest, wait for the writer). It may take the budget
//! over its limit by one unit's answer, which `source.max_answer_size` bounds.
//!
//! Estimates come from what earlier units of the same metric brought (points per series and per
//! millisecond, times the unit's discovered series and its span); a unit that brings more than
//! estimated grows its reservation once its data is in, without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Bytes a decoded point costs, from its request until the writer took it: its timestamp (8)
/// and its value (8, NaN for none: `SeriesData::values`). The answer's JSON (about 21
/// bytes a point) is not counted: it is decoded as it streams in (`extract::stream`), and
/// only about one series of it is held at a time.
pub const BYTES_PER_POINT_DECODED: u64 = 16;

/// What a decoded series costs besides its points (its tags and vectors).
pub const BYTES_PER_SERIES: u64 = 512;

/// The budget shared by the fetch tasks and the writer of a run.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    /// The unit (its position in the window) the writer waits for.
    next: u64,
    /// Reservations that had to wait, for the manifest.
    waits: u64,
    /// Highest total reserved.
    peak: u64,
}

/// Memory held by one unit; given back when dropped (after the writer took the unit's rows).
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        })
    }

    /// Waits until `bytes` fit in the budget, unless `unit` is the one the writer waits for
    /// (see the module doc), and takes them.
    pub async fn reserve(self: &Arc<MemoryBudget>, unit: u64, bytes: u64) -> Reservation {
        let mut waited = false;
        loop {
            let notified = self.changed.notified();
            {
                let mut s = self.state.lock().expect("budget lock");
                if s.used + bytes <= self.limit || unit <= s.next {
                    s.used += bytes;
                    s.peak = s.peak.max(s.used);
                    s.waits += u64::from(waited);
                    return Reservation {
                        budget: self.clone(),
                        bytes,
                    };
                }
            }
            waited = true;
            notified.await;
        }
    }

    /// The writer now waits for `unit` (positions count from 0 in each window).
    pub fn writer_at(&self, unit: u64) {
        self.state.lock().expect("budget lock").next = unit;
        self.changed.notify_waiters();
    }

    /// Reservations that had to wait so far.
    pub fn waits(&self) -> u64 {
        self.state.lock().expect("budget lock").waits
    }

    /// The most that was reserved at once.
    pub fn peak(&self) -> u64 {
        self.state.lock().expect("budget lock").peak
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl Reservation {
    /// Sets what the unit holds now: more once its data is in (taken without waiting: the
    /// memory is already used), less once its answer body is freed.
    pub fn resize(&mut self, bytes: u64) {
        let mut s = self.budget.state.lock().expect("budget lock");
        s.used = s.used - self.bytes + bytes;
        s.peak = s.peak.max(s.used);
        drop(s);
        if bytes < self.bytes {
            self.budget.changed.notify_waiters();
        }
        self.bytes = bytes;
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.resize(0);
    }
}

/// Points per series and per millisecond seen so far, per metric, to estimate what a unit will
/// bring before it is fetched.
#[derive(Debug, Default)]
pub struct Estimates {
    by_metric: Mutex<HashMap<String, f64>>,
}

/// vScope's step, 20 s, for a metric nothing is known of yet (one point per series per 20 s).
const DEFAULT_POINTS_PER_SERIES_MS: f64 = 1.0 / 20_000.0;

impl Estimates {
    /// The points a unit of `metric` with `series` series over `span_ms` should bring: the
    /// largest rate seen for the metric, else the largest seen for any, else vScope's step.
    pub fn points(&self, metric: &str, series: usize, span_ms: i64) -> u64 {
        let by = self.by_metric.lock().expect("estimates lock");
        let rate = by
            .get(metric)
            .copied()
            .or_else(|| by.values().copied().reduce(f64::max))
            .unwrap_or(DEFAULT_POINTS_PER_SERIES_MS);
        (rate * series.max(1) as f64 * span_ms.max(0) as f64).ceil() as u64
    }

    /// Records what a unit brought.
    pub fn record(&self, metric: &str, series: usize, span_ms: i64, points: u64) {
        if series == 0 || span_ms <= 0 {
            return;
        }
        let rate = points as f64 / (series as f64 * span_ms as f64);
        let mut by = self.by_metric.lock().expect("estimates lock");
        let e = by.entry(metric.to_string()).or_insert(rate);
        *e = e.max(rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A unit that does not fit waits until memory is given back; the unit the writer waits
    /// for never waits, even over the limit.
    #[tokio::test(start_paused = true)]
    async fn units_wait_for_memory_except_the_one_the_writer_needs() {
        let b = MemoryBudget::new(100);
        b.writer_at(0);
        let first = b.reserve(0, 80).await;
        let second = b.reserve(1, 10).await;
        let b2 = b.clone();
        let third = tokio::spawn(async move { b2.reserve(2, 50).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!third.is_finished(), "80 + 10 + 50 > 100: the third waits");
        // The head may go over the limit.
        let mut head_more = b.reserve(0, 500).await;
        assert_eq!(b.peak(), 590);
        head_more.resize(0);
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("memory given back lets it in")
            .unwrap();
        assert_eq!(third.bytes(), 50);
        assert_eq!(b.waits(), 1);
        drop((second, third));
        assert_eq!(b.state.lock().unwrap().used, 0);
    }

    /// The writer moving on lets a waiting unit in once it is the one needed.
    #[tokio::test(start_paused = true)]
    async fn the_unit_the_writer_reaches_stops_waiting() {
        let b = MemoryBudget::new(10);
        let _held = b.reserve(0, 10).await;
        let b2 = b.clone();
        let waiting = tokio::spawn(async move { b2.reserve(3, 10).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        b.writer_at(3);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the head never waits")
            .unwrap();
    }

    #[test]
    fn estimates_follow_the_largest_rate_seen() {
        let e = Estimates::default();
        // Nothing known: one point per series per 20 s.
        assert_eq!(e.points("m", 10, 86_400_000), 43_200);
        e.record("m", 10, 3_600_000, 36_000); // one point per second
        assert_eq!(e.points("m", 20, 3_600_000), 72_000);
        // Another metric borrows the largest rate known.
        assert_eq!(e.points("n", 1, 1_000), 1);
        e.record("m", 10, 3_600_000, 18_000);
        assert_eq!(
            e.points("m", 10, 3_600_000),
            36_000,
            "the largest rate is kept"
        );
    }
}
