//! A spawned task tied to the window that started it, so that abandoning the window (an
//! error, a refusal, a dropped future) cancels its fetches instead of leaving them running.

/// A spawned fetch that is cancelled when its window is abandoned.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub(super) async fn join(mut self) -> T {
        match (&mut self.0).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a fetch task was cancelled while awaited: {e}"),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
