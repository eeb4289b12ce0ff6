//! The metrics listener: `/metrics` (Prometheus text 0.0.4, gzip when asked), `/` (a
//! landing page with every check's state), `/-/healthy` and `/-/ready`.
//!
//! Handlers only read the latest published snapshot; nothing is measured here. The rendered
//! exposition is cached per snapshot generation, so repeated scrapes between two model
//! updates cost a copy of bytes.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::exposition;
use crate::model::Snapshot;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The rendered exposition of one snapshot generation, plain and gzipped (lazily).
#[derive(Default)]
struct Rendered {
    generation: u64,
    plain: Bytes,
    gzip: Option<Bytes>,
}

#[derive(Clone)]
struct AppState {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cache: Arc<Mutex<Rendered>>,
}

impl AppState {
    fn exposition(&self, gzip: bool) -> Bytes {
        let snapshot = self.snapshots.borrow().clone();
        let mut cache = self.cache.lock().expect("render cache lock");
        if cache.generation != snapshot.generation || cache.plain.is_empty() {
            *cache = Rendered {
                generation: snapshot.generation,
                plain: Bytes::from(exposition::render(&snapshot)),
                gzip: None,
            };
        }
        if !gzip {
            return cache.plain.clone();
        }
        if cache.gzip.is_none() {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&cache.plain).expect("gzip into a Vec");
            cache.gzip = Some(Bytes::from(enc.finish().expect("gzip into a Vec")));
        }
        cache.gzip.clone().expect("just filled")
    }
}

/// The router over a snapshot channel.
pub fn router(snapshots: watch::Receiver<Arc<Snapshot>>) -> Router {
    let state = AppState {
        snapshots,
        cache: Arc::default(),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(landing))
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/ready", get(ready))
        .with_state(state)
}

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_guarded(listener, snapshots, None, None, shutdown).await
}

/// [`serve`] under a web config (TLS, basic auth, headers; see [`crate::webconfig`]);
/// `sink` receives the listener's counters.
pub async fn serve_guarded(
    listener: tokio::net::TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    guard: Option<Arc<crate::webconfig::guard::WebGuard>>,
    sink: Option<crate::sink::UpdateSink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::webconfig::serve::serve(listener, router(snapshots), guard, sink, shutdown).await
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !q_zero
        })
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let gzip = accepts_gzip(&headers);
    let body = state.exposition(gzip);
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.snapshots.borrow().ready() {
        (StatusCode::OK, "Ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: waiting for the first round of probes.\n",
        )
            .into_response()
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let snapshot = state.snapshots.borrow().clone();
    let mut rows = String::new();
    for c in snapshot.checks() {
        let (class, tag) = if c.ok { ("ok", "OK") } else { ("err", "ERROR") };
        rows.push_str(&format!(
            "<tr><td class=\"{class}\">{tag}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.name),
            esc(&c.detail)
        ));
    }
    let mut sources = String::new();
    for (name, h) in snapshot.sources.iter() {
        sources.push_str(&format!(
            "<tr><td class=\"{}\">{}</td><td>{}</td><td>{} errors{}</td></tr>\n",
            if h.up { "ok" } else { "err" },
            if h.up { "UP" } else { "DOWN" },
            esc(name.as_str()),
            h.errors_total,
            h.last_error
                .as_deref()
                .map(|e| format!("; last: {}", esc(e)))
                .unwrap_or_default()
        ));
    }
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>vibe-agent</title>\
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 8px}}.ok{{color:#080}}.err{{color:#b00;font-weight:bold}}</style>\
</head><body>\n<h1>vibe-agent</h1>\n<p>Host agent of the VIBE dev box, version {} (revision {}).</p>\n\
<ul><li><a href=\"/metrics\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul>\n\
<h2>Checks</h2>\n<table>\n{rows}</table>\n<h2>Sources</h2>\n<table>\n{sources}</table>\n</body></html>\n",
        esc(snapshot.build.version),
        esc(snapshot.build.revision),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let cases = [
            ("gzip", true),
            ("deflate, gzip;q=1.0, *;q=0.5", true),
            ("GZIP", true),
            ("gzip;q=0", false),
            ("identity", false),
            ("", false),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            assert_eq!(accepts_gzip(&h), want, "{value}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
