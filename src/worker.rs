//! A blocking worker: one dedicated OS thread that runs filesystem calls which may hang
//! (statvfs on a stalled FUSE or NFS mount blocks in uninterruptible sleep).
//!
//! Calls are single-flight: while a call is still running, the next one is refused at once
//! with [`WorkerError::Busy`] instead of queueing behind it, so a hung mount costs exactly
//! one blocked thread, never a pile of them, and the async runtime never waits on it. The
//! thread ends when its [`BlockingWorker`] is dropped and its current call has returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack of a worker thread: filesystem calls need little.
const WORKER_STACK_BYTES: usize = 128 * 1024;

/// Why a call on the worker gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The previous call has not returned yet (the target is still hung).
    #[error("the previous call has not returned yet")]
    Busy,
    /// This call did not return within the timeout; it keeps the worker busy until it does.
    #[error("no result within the timeout")]
    Timeout,
}

/// One dedicated thread for calls that may block forever.
#[derive(Debug)]
pub struct BlockingWorker {
    tx: std_mpsc::Sender<Job>,
    busy: Arc<AtomicBool>,
}

impl BlockingWorker {
    /// Starts the thread, named `name` (seen in `top -H` and `/proc/PID/task/*/comm`).
    pub fn new(name: &str) -> std::io::Result<Self> {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                for job in rx {
                    job();
                }
            })?;
        Ok(Self {
            tx,
            busy: Arc::new(AtomicBool::new(false)),
        })
    }

    /// True while a call is running (a hung call keeps it true).
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Runs `f` on the worker thread and waits at most `timeout` for its result.
    pub async fn run<T, F>(&self, timeout: Duration, f: F) -> Result<T, WorkerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(WorkerError::Busy);
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let busy = self.busy.clone();
        let job: Job = Box::new(move || {
            let out = f();
            busy.store(false, Ordering::Release);
            let _ = reply_tx.send(out);
        });
        if self.tx.send(job).is_err() {
            // The thread is gone (it cannot be: it lives as long as `tx`), so report busy.
            return Err(WorkerError::Busy);
        }
        match tokio::time::timeout(timeout, reply_rx).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) | Err(_) => Err(WorkerError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[tokio::test]
    async fn runs_calls_and_refuses_while_hung() {
        let w = BlockingWorker::new("test-worker").unwrap();
        assert_eq!(w.run(Duration::from_secs(5), || 41 + 1).await, Ok(42));

        let (release_tx, release_rx) = channel::<()>();
        let hung = w
            .run(Duration::from_millis(50), move || release_rx.recv().is_ok())
            .await;
        assert_eq!(hung, Err(WorkerError::Timeout));
        assert!(w.is_busy());
        // Single-flight: nothing queues behind the hung call.
        for _ in 0..100 {
            assert_eq!(
                w.run(Duration::from_secs(5), || 1).await,
                Err(WorkerError::Busy)
            );
        }
        release_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while w.is_busy() {
            assert!(
                std::time::Instant::now() < deadline,
                "worker never recovered"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(w.run(Duration::from_secs(5), || 7).await, Ok(7));
    }
}
