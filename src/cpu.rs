//! CPU-bound work inside async code: decoding an answer, computing rollups, encoding Parquet
//! pages. On a 2-core machine a worker thread busy for tens of milliseconds delays the timers,
//! timeouts and lease renewals scheduled on it, so such work tells the runtime first
//! ([`tokio::task::block_in_place`]: the worker's other tasks move to another thread).

/// Runs `f`, letting the runtime move its other tasks off this worker while it does; plain call
/// outside a multi-threaded runtime (unit tests on the current-thread runtime, plain threads),
/// where `block_in_place` is not allowed.
pub fn off_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_plain_threads() {
        assert_eq!(off_async(|| 2 + 2), 4);
    }

    #[tokio::test]
    async fn runs_on_the_current_thread_runtime() {
        assert_eq!(off_async(|| 3), 3);
    }

    /// On a multi-threaded runtime, a timer keeps firing while a worker is busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_busy_worker_does_not_hold_up_the_timers() {
        let ticker = tokio::spawn(async {
            let t0 = std::time::Instant::now();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            t0.elapsed()
        });
        tokio::task::yield_now().await;
        off_async(|| std::thread::sleep(std::time::Duration::from_millis(300)));
        let waited = ticker.await.unwrap();
        assert!(
            waited < std::time::Duration::from_millis(250),
            "the timer waited {waited:?} for the busy worker"
        );
    }
}
