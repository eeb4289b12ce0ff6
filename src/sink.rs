//! The sources' side of the model task's two channels: the bounded data queue and, beside
//! it, the request channel (as tokio-console's aggregator keeps its data and its commands
//! apart).
//!
//! The data queue is bounded so a flood from one source cannot grow memory without limit.
//! Sources never wait on it: [`UpdateSink::send`] drops the update when the queue is full
//! and counts the drop, which the model reports as `vibe_agent_updates_dropped_total`.
//! Requests (a watchdog ping, a save, a reload's clean-up) must not be dropped, and must not
//! queue behind a flood of data: [`UpdateSink::request`] waits for room on their own small
//! channel. The model answers a request after folding in every update queued before it.
//!
//! [`spawn_periodic`] is the one loop of the sources that sample on an interval (the probes,
//! the host, JuiceFS): sample at once, then every interval, a slow round delaying only its
//! own source.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::model::{Request, Update};

/// How many updates may wait for the model before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// How many requests may wait for the model before askers wait for room.
pub const REQUEST_CAPACITY: usize = 16;

/// A cloneable handle for sources to send updates (and requests) to the model.
#[derive(Clone, Debug)]
pub struct UpdateSink {
    tx: mpsc::Sender<Update>,
    requests: mpsc::Sender<Request>,
    dropped: Arc<AtomicU64>,
}

/// The model task's ends of the two channels, and the count of dropped updates.
#[derive(Debug)]
pub struct Inbox {
    pub updates: mpsc::Receiver<Update>,
    pub requests: mpsc::Receiver<Request>,
    dropped: Arc<AtomicU64>,
}

impl Inbox {
    /// Updates the sinks dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl UpdateSink {
    /// A sink and the receiving ends the model task reads.
    pub fn channel() -> (Self, Inbox) {
        let (tx, updates) = mpsc::channel(QUEUE_CAPACITY);
        let (requests, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                tx,
                requests,
                dropped: dropped.clone(),
            },
            Inbox {
                updates,
                requests: requests_rx,
                dropped,
            },
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

    /// Sends a request to the model on the request channel, waiting for room; false when
    /// the model has stopped. Sources of data use [`UpdateSink::send`].
    pub async fn request(&self, request: Request) -> bool {
        self.requests.send(request).await.is_ok()
    }

    /// Updates dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A source that samples in rounds: each round returns the updates it found.
pub trait Sample: Send + 'static {
    fn sample(&mut self) -> impl Future<Output = Vec<Update>> + Send;
}

/// Starts `source` into `tasks`: one round at once, then one every `interval` (a round that
/// overruns delays the next, it never piles up), each round's updates sent to `sink`.
pub fn spawn_periodic<S: Sample>(
    tasks: &mut JoinSet<()>,
    interval: Duration,
    sink: &UpdateSink,
    mut source: S,
) {
    let sink = sink.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for update in source.sample().await {
                sink.send(update);
            }
        }
    });
}
