//! The sources' side of the model's queue.
//!
//! The queue is bounded so a flood from one source cannot grow memory without limit.
//! Sources never wait on it: [`UpdateSink::send`] drops the update when the queue is full
//! and counts the drop, which the model reports as `vibe_agent_updates_dropped_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::model::Update;

/// How many updates may wait for the model before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// A cloneable handle for sources to send updates to the model.
#[derive(Clone, Debug)]
pub struct UpdateSink {
    tx: mpsc::Sender<Update>,
    dropped: Arc<AtomicU64>,
}

impl UpdateSink {
    /// A sink and the receiving end the model task reads.
    pub fn channel() -> (Self, mpsc::Receiver<Update>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (
            Self {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Queues `update`, or counts it as dropped when the queue is full or closed; true when
    /// queued.
    pub fn send(&self, update: Update) -> bool {
        if self.tx.try_send(update).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues a request that must not be dropped (a save, a ping), waiting for room; false
    /// when the model has stopped. Sources of data use [`UpdateSink::send`].
    pub async fn send_wait(&self, update: Update) -> bool {
        self.tx.send(update).await.is_ok()
    }

    /// Updates dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
