//! Long-lived background tasks that are restarted when they fail.
//!
//! A panic in a background task (the notifier's dispatcher, acknowledger and periodic sender, the
//! stream hub) must not silently stop that work for the rest of the process: [`supervise`] runs
//! the task, logs a panic at error level and starts a fresh one.

use std::future::Future;
use std::time::Duration;

/// How long a failed task waits before it is started again, so that a task that fails at once
/// does not spin.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs the future `make` builds as a task for the life of the process. If it panics, the panic
/// is logged (`tracing::error`) and a new future from `make` runs after [`RESTART_DELAY`]; if it
/// returns, it is not restarted. The first future is built before this returns, so what `make`
/// takes synchronously (a change feed, say) is taken at once. Call inside a Tokio runtime.
pub fn supervise<F, Fut>(name: &'static str, mut make: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let first = make();
    tokio::spawn(async move {
        let mut next = Some(first);
        for restarts in 0u64.. {
            let task = next.take().unwrap_or_else(&mut make);
            match tokio::spawn(task).await {
                Ok(()) => {
                    tracing::debug!(task = name, "background task ended");
                    return;
                }
                Err(e) if e.is_panic() => {
                    let panic = panic_message(e.into_panic());
                    tracing::error!(task = name, %panic, restarts = restarts + 1, "background task failed; restarting it");
                    tokio::time::sleep(RESTART_DELAY).await;
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
        }
    })
}

/// The message of a panic's payload, when it has one.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A task that panics is started again; one that returns is not.
    #[tokio::test]
    async fn a_panicking_task_is_restarted() {
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let handle = supervise("test", move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("deliberate");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), handle).await.expect("ends once it returns").unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two panics, two restarts");
    }
}
