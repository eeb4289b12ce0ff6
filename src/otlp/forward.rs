//! Forwarding: each received body, unchanged (with its content type and encoding), is
//! sent on to a configured upstream per signal, e.g. VictoriaLogs'
//! `/insert/opentelemetry/v1/logs`.
//!
//! The receiver never waits on an upstream: [`Forwarder::offer`] appends to a bounded
//! in-memory queue (a cap in bytes; when full the oldest bodies are dropped and counted)
//! and returns. One task per upstream sends the queue in order, retrying 429, 5xx and
//! connection errors with exponential backoff (or the upstream's `Retry-After`); other 4xx
//! answers drop the body (retrying cannot help) and count it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::Notify;

use super::Signal;

/// First retry delay; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Time one upstream request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Item {
    body: Bytes,
    content_type: String,
    encoding: Option<String>,
}

/// Counters of one upstream.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub dropped_overflow: AtomicU64,
    pub dropped_rejected: AtomicU64,
    pub queued_bytes: AtomicU64,
}

/// A copy of the counters for the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForwardStats {
    /// (signal, sent, retries, dropped_overflow, dropped_rejected, queued_bytes)
    pub upstreams: Vec<(Signal, u64, u64, u64, u64, u64)>,
}

struct Upstream {
    signal: Signal,
    url: String,
    queue: Mutex<VecDeque<Item>>,
    wake: Notify,
    cap_bytes: usize,
    stats: UpstreamStats,
}

/// The receiver's handle.
#[derive(Clone)]
pub struct Forwarder {
    upstreams: Arc<Vec<Arc<Upstream>>>,
}

impl Forwarder {
    /// A forwarder for `(signal, url)` pairs and the tasks that drain it (the caller
    /// spawns them). `cap_bytes` bounds each upstream's queue (`otlp.forward_queue_bytes`).
    /// `None` when no upstream is configured.
    pub fn new(
        urls: &[(Signal, Option<String>)],
        cap_bytes: usize,
    ) -> Option<(
        Self,
        Vec<impl std::future::Future<Output = ()> + Send + 'static>,
    )> {
        let ups: Vec<Arc<Upstream>> = urls
            .iter()
            .filter_map(|(s, u)| {
                u.as_ref().map(|u| {
                    Arc::new(Upstream {
                        signal: *s,
                        url: u.clone(),
                        queue: Mutex::new(VecDeque::new()),
                        wake: Notify::new(),
                        cap_bytes,
                        stats: UpstreamStats::default(),
                    })
                })
            })
            .collect();
        if ups.is_empty() {
            return None;
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .ok()?;
        let tasks = ups
            .iter()
            .map(|u| drain(u.clone(), client.clone()))
            .collect();
        Some((
            Self {
                upstreams: Arc::new(ups),
            },
            tasks,
        ))
    }

    /// Queues a body for the signal's upstream, dropping the oldest when over the cap.
    pub fn offer(&self, signal: Signal, body: Bytes, content_type: &str, encoding: Option<&str>) {
        for u in self.upstreams.iter().filter(|u| u.signal == signal) {
            if body.len() > u.cap_bytes {
                u.stats.dropped_overflow.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut q = u.queue.lock().expect("forward queue lock");
            let mut bytes = u.stats.queued_bytes.load(Ordering::Relaxed) as usize + body.len();
            while bytes > u.cap_bytes {
                let Some(old) = q.pop_front() else { break };
                bytes -= old.body.len();
                u.stats.dropped_overflow.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(Item {
                body: body.clone(),
                content_type: content_type.to_string(),
                encoding: encoding.map(str::to_string),
            });
            u.stats.queued_bytes.store(bytes as u64, Ordering::Relaxed);
            drop(q);
            u.wake.notify_one();
        }
    }

    /// The counters now.
    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            upstreams: self
                .upstreams
                .iter()
                .map(|u| {
                    let s = &u.stats;
                    (
                        u.signal,
                        s.sent.load(Ordering::Relaxed),
                        s.retries.load(Ordering::Relaxed),
                        s.dropped_overflow.load(Ordering::Relaxed),
                        s.dropped_rejected.load(Ordering::Relaxed),
                        s.queued_bytes.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }
}

enum Outcome {
    Sent,
    Rejected,
    Retry(Option<Duration>),
}

async fn send(client: &reqwest::Client, url: &str, item: &Item) -> Outcome {
    let mut req = client
        .post(url)
        .header("content-type", item.content_type.as_str())
        .body(item.body.clone());
    if let Some(enc) = &item.encoding {
        req = req.header("content-encoding", enc.as_str());
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match status {
                200..=299 => Outcome::Sent,
                429 | 500..=599 => Outcome::Retry(
                    resp.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs),
                ),
                _ => Outcome::Rejected,
            }
        }
        Err(_) => Outcome::Retry(None),
    }
}

async fn drain(u: Arc<Upstream>, client: reqwest::Client) {
    loop {
        let item = {
            let mut q = u.queue.lock().expect("forward queue lock");
            let item = q.pop_front();
            if let Some(i) = &item {
                u.stats
                    .queued_bytes
                    .fetch_sub(i.body.len() as u64, Ordering::Relaxed);
            }
            item
        };
        let Some(item) = item else {
            u.wake.notified().await;
            continue;
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            match send(&client, &u.url, &item).await {
                Outcome::Sent => {
                    u.stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Rejected => {
                    u.stats.dropped_rejected.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Retry(after) => {
                    u.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
