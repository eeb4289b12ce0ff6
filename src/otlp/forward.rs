//! Forwarding: each received body, unchanged (with its content type and encoding), is
//! sent on to a configured upstream per signal, e.g. VictoriaLogs'
//! `/insert/opentelemetry/v1/logs`.
//!
//! The receiver never waits on an upstream: [`Forwarder::offer`] appends to a bounded
//! in-memory queue (a cap in bytes; when full the oldest bodies are dropped and counted)
//! and returns. One task per upstream sends the queue in order, retrying 429, 5xx and
//! connection errors with exponential backoff (or the upstream's `Retry-After`); other 4xx
//! answers drop the body (retrying cannot help) and count it.
//!
//! Upstreams may be https (checked against the system's CAs or a `ca_file`) and get the
//! configured headers and bearer token with every body ([`UpstreamOptions`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::Notify;

use super::signal::Signal;

/// First retry delay; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Time one upstream request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the upstreams are reached: TLS, extra headers, a bearer token (`[claude.forward]`).
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    pub tls: crate::tlsclient::ClientTls,
    pub headers: Vec<(String, String)>,
    pub bearer_token: Option<String>,
}

impl UpstreamOptions {
    pub fn from_settings(s: &super::settings::ForwardSettings) -> Self {
        Self {
            tls: s.tls.clone(),
            headers: s.headers.clone(),
            bearer_token: s.bearer_token.clone(),
        }
    }

    /// The headers every request carries; secrets marked sensitive (kept out of debug output).
    fn header_map(&self) -> Result<reqwest::header::HeaderMap, String> {
        use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        if let Some(token) = &self.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("bearer token: {e}"))?;
            value.set_sensitive(true);
            map.insert(AUTHORIZATION, value);
        }
        Ok(map)
    }
}

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
        options: &UpstreamOptions,
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
        let client = options
            .header_map()
            .and_then(|headers| {
                crate::tlsclient::reqwest_builder(&options.tls)?
                    .timeout(REQUEST_TIMEOUT)
                    .default_headers(headers)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .inspect_err(|e| {
                tracing::error!(error = %e, "cannot build the forwarding client; nothing is forwarded")
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the test upstream received: (content type, encoding, body), in order.
    type Got = Arc<Mutex<Vec<(String, Option<String>, Bytes)>>>;

    /// An upstream on 127.0.0.1 that answers 200 and records each request.
    async fn upstream() -> (String, Got, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/logs", listener.local_addr().unwrap());
        (url, Got::default(), listener)
    }

    fn serve(listener: tokio::net::TcpListener, got: Got) {
        let app = axum::Router::new().route(
            "/v1/logs",
            axum::routing::post(move |h: axum::http::HeaderMap, body: Bytes| {
                let got = got.clone();
                async move {
                    let text = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
                    got.lock().unwrap().push((
                        text("content-type").unwrap_or_default(),
                        text("content-encoding"),
                        body,
                    ));
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    /// A body of `len` bytes that says which one it is.
    fn body(n: usize, len: usize) -> Bytes {
        let mut b = format!("body-{n:02}-").into_bytes();
        b.resize(len, b'.');
        Bytes::from(b)
    }

    fn queued(f: &Forwarder) -> Vec<Bytes> {
        let q = f.upstreams[0].queue.lock().unwrap();
        q.iter().map(|i| i.body.clone()).collect()
    }

    fn logs_stats(f: &Forwarder) -> (u64, u64, u64, u64, u64) {
        let (sig, sent, retries, over, rej, q) = f.stats().upstreams[0];
        assert_eq!(sig, Signal::Logs);
        (sent, retries, over, rej, q)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overflow_drops_the_oldest_and_the_rest_is_sent_in_order() {
        const CAP: usize = 100;
        let (url, got, listener) = upstream().await;
        let (f, tasks) = Forwarder::new(
            &[(Signal::Metrics, None), (Signal::Logs, Some(url))],
            CAP,
            &UpstreamOptions::default(),
        )
        .expect("one upstream configured");

        // Nothing drains yet (the tasks are not spawned): ten 30-byte bodies, 3 fit.
        for n in 0..10 {
            f.offer(Signal::Logs, body(n, 30), "application/json", Some("gzip"));
            let (_, _, over, _, q) = logs_stats(&f);
            assert!(q as usize <= CAP, "{q} bytes queued over the cap {CAP}");
            assert_eq!(over, n.saturating_sub(2) as u64, "after body {n}");
        }
        assert_eq!(queued(&f), [body(7, 30), body(8, 30), body(9, 30)]);
        assert_eq!(logs_stats(&f), (0, 0, 7, 0, 90));

        // A 70-byte body needs room for 70: the two oldest go (90 + 70 - 60 = 100).
        f.offer(Signal::Logs, body(10, 70), "application/json", Some("gzip"));
        assert_eq!(queued(&f), [body(9, 30), body(10, 70)]);
        assert_eq!(logs_stats(&f), (0, 0, 9, 0, 100));

        // A body larger than the cap is dropped itself; the queue is untouched.
        f.offer(Signal::Logs, body(11, CAP + 1), "application/json", None);
        assert_eq!(queued(&f), [body(9, 30), body(10, 70)]);
        assert_eq!(logs_stats(&f), (0, 0, 10, 0, 100));

        // A signal without an upstream queues nothing.
        f.offer(Signal::Metrics, body(12, 10), "application/json", None);
        assert_eq!(logs_stats(&f), (0, 0, 10, 0, 100));

        // The upstream answers: what remains goes out in order, headers kept.
        serve(listener, got.clone());
        for t in tasks {
            tokio::spawn(t);
        }
        let want: Vec<_> = [body(9, 30), body(10, 70)]
            .into_iter()
            .map(|b| ("application/json".to_string(), Some("gzip".to_string()), b))
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while logs_stats(&f).0 < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "not sent: {:?}",
                logs_stats(&f)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*got.lock().unwrap(), want);
        assert_eq!(logs_stats(&f), (2, 0, 10, 0, 0));
        assert!(queued(&f).is_empty());
    }
}
