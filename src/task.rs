//! Tasks that end with their owner.

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};

/// A spawned task aborted when this handle is dropped: a caller that is itself cancelled
/// (a daemon shutting down, a timeout) does not leave its work running behind it.
pub struct AbortOnDrop<T>(JoinHandle<T>);

impl<T: Send + 'static> AbortOnDrop<T> {
    /// Spawn `fut` on the current runtime.
    pub fn spawn(fut: impl Future<Output = T> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(fut))
    }
}

impl<T> AbortOnDrop<T> {
    /// Wait for the task to end by itself (an error if it panicked).
    pub async fn join(mut self) -> Result<T, JoinError> {
        (&mut self.0).await
    }
}

impl<T> From<JoinHandle<T>> for AbortOnDrop<T> {
    fn from(h: JoinHandle<T>) -> Self {
        AbortOnDrop(h)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
