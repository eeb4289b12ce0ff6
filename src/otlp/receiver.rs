//! The OTLP/HTTP receiver: `POST /v1/metrics`, `/v1/logs`, `/v1/traces` and the
//! VictoriaMetrics/VictoriaLogs aliases, on the OTLP listener.
//!
//! A request is read (chunked or not, up to the limit), decompressed, decoded, converted
//! by the pure functions in [`super::convert`], and handed to the model with `try_send`:
//! the answer never waits on the model or on anything else, because the Claude CLI
//! re-sends a batch it did not get a 2xx for. Status codes follow OTLP/HTTP: 200 with an
//! `Export*ServiceResponse` (partial success when points were rejected), 400 for a body
//! that does not decode, 413 over the limit, 415 for other content types, 401 without the
//! configured bearer token; error bodies are `google.rpc.Status` in the request's
//! encoding. Attribute values never reach a log line: failures are logged by reason only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use prost::Message;

use super::convert::{self, DropReason, LabelPolicy};
use super::decode::{self, Format};
use super::error::OtlpError;
use super::settings::OtlpSettings;
use super::signal::Signal;
use super::state::{Payload, Receipt, TelemetryUpdate};
use crate::model::Update;
use crate::sink::UpdateSink;

/// `google.rpc.Status`, the body of OTLP error responses.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// What every handler shares.
pub struct Receiver {
    sink: UpdateSink,
    policy: LabelPolicy,
    max_body_bytes: usize,
    bearer: Option<String>,
    /// Points that could not be queued for the model, so far.
    queue_dropped_points: AtomicU64,
    forward: Option<super::forward::Forwarder>,
}

impl Receiver {
    pub fn new(
        settings: &OtlpSettings,
        sink: UpdateSink,
        forward: Option<super::forward::Forwarder>,
    ) -> Self {
        Self {
            sink,
            policy: LabelPolicy::new(&settings.allow_labels),
            max_body_bytes: settings.max_body_bytes,
            bearer: settings.bearer_token.clone(),
            queue_dropped_points: AtomicU64::new(0),
            forward,
        }
    }
}

/// The receiver's routes.
pub fn router(receiver: Arc<Receiver>) -> Router {
    let route = |path: &'static str, signal: Signal| {
        post(
            move |State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body| async move {
                handle(r, path, signal, headers, body).await
            },
        )
    };
    Router::new()
        .route("/v1/metrics", route("/v1/metrics", Signal::Metrics))
        .route("/v1/logs", route("/v1/logs", Signal::Logs))
        .route("/v1/traces", route("/v1/traces", Signal::Traces))
        .route(
            "/opentelemetry/v1/metrics",
            route("/opentelemetry/v1/metrics", Signal::Metrics),
        )
        .route(
            "/opentelemetry/v1/logs",
            route("/opentelemetry/v1/logs", Signal::Logs),
        )
        .route(
            "/opentelemetry/v1/traces",
            route("/opentelemetry/v1/traces", Signal::Traces),
        )
        .route(
            "/insert/opentelemetry/v1/logs",
            route("/insert/opentelemetry/v1/logs", Signal::Logs),
        )
        .fallback(not_found)
        .with_state(receiver)
}

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    receiver: Arc<Receiver>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(receiver))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found(State(r): State<Arc<Receiver>>) -> Response {
    r.receipt("other", 404, None, 0, None, Payload::None);
    status_response(
        Format::Json,
        StatusCode::NOT_FOUND,
        "no such OTLP route; use /v1/metrics, /v1/logs or /v1/traces".into(),
    )
}

fn status_response(format: Format, status: StatusCode, message: String) -> Response {
    // gRPC codes: INVALID_ARGUMENT 3, NOT_FOUND 5, UNAUTHENTICATED 16, RESOURCE_EXHAUSTED 8.
    let code = match status.as_u16() {
        404 => 5,
        401 => 16,
        413 => 8,
        _ => 3,
    };
    let body = match format {
        Format::Protobuf => RpcStatus { code, message }.encode_to_vec(),
        Format::Json => serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
            .unwrap_or_default(),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

fn success_response(format: Format, signal: Signal, rejected: u64, message: String) -> Response {
    use opentelemetry_proto::tonic::collector::logs::v1 as l;
    use opentelemetry_proto::tonic::collector::metrics::v1 as m;
    use opentelemetry_proto::tonic::collector::trace::v1 as t;
    let body = match format {
        Format::Protobuf => {
            let partial = rejected > 0 || !message.is_empty();
            match signal {
                Signal::Metrics => m::ExportMetricsServiceResponse {
                    partial_success: partial.then_some(m::ExportMetricsPartialSuccess {
                        rejected_data_points: rejected as i64,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
                Signal::Logs => l::ExportLogsServiceResponse {
                    partial_success: partial.then_some(l::ExportLogsPartialSuccess {
                        rejected_log_records: rejected as i64,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
                Signal::Traces => t::ExportTraceServiceResponse {
                    partial_success: partial.then_some(t::ExportTracePartialSuccess {
                        rejected_spans: rejected as i64,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
            }
        }
        Format::Json => {
            let key = match signal {
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
                Signal::Traces => "rejectedSpans",
            };
            let v = if rejected > 0 || !message.is_empty() {
                serde_json::json!({"partialSuccess": {key: rejected.to_string(), "errorMessage": message}})
            } else {
                serde_json::json!({})
            };
            serde_json::to_vec(&v).unwrap_or_default()
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme's case does
/// not matter (RFC 9110, 11.1), and the spaces after it are skipped.
fn bearer_credentials(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Reads the body, refusing more than `limit` bytes (chunked bodies have no length).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Option<OtlpError>> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| None)?;
        if buf.len() + chunk.len() > limit {
            return Err(Some(OtlpError::TooLarge { limit }));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

impl Receiver {
    /// Queues a receipt for the model; false when the queue was full.
    fn receipt(
        &self,
        path: &'static str,
        status: u16,
        signal: Option<Signal>,
        wire_bytes: u64,
        decode_error: Option<&'static str>,
        payload: Payload,
    ) -> bool {
        let points = match &payload {
            Payload::Metrics(b) => b.points.len() as u64,
            Payload::Logs(b) => b.events.len() as u64,
            Payload::Traces { spans } => *spans,
            Payload::None => 0,
        };
        let receipt = Receipt {
            at: crate::common::unix_now(),
            path,
            status,
            signal,
            wire_bytes,
            decode_error,
            payload,
            queue_dropped_points_total: self.queue_dropped_points.load(Ordering::Relaxed),
        };
        let queued = self
            .sink
            .send(Update::ClaudeTelemetry(TelemetryUpdate::Receipt(Box::new(
                receipt,
            ))));
        if !queued {
            self.queue_dropped_points
                .fetch_add(points, Ordering::Relaxed);
        }
        queued
    }

    fn refuse(
        &self,
        path: &'static str,
        signal: Signal,
        format: Format,
        wire_bytes: u64,
        err: OtlpError,
    ) -> Response {
        let status = match err {
            OtlpError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OtlpError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        tracing::debug!(
            path,
            reason = err.reason(),
            status = status.as_u16(),
            "OTLP request refused"
        );
        self.receipt(
            path,
            status.as_u16(),
            Some(signal),
            wire_bytes,
            Some(err.reason()),
            Payload::None,
        );
        status_response(format, status, err.to_string())
    }
}

async fn handle(
    r: Arc<Receiver>,
    path: &'static str,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let format = Format::from_content_type(content_type);
    let reply_format = *format.as_ref().unwrap_or(&Format::Json);
    if let Some(token) = &r.bearer {
        let given = header_str(&headers, header::AUTHORIZATION)
            .and_then(bearer_credentials)
            .unwrap_or("");
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            r.receipt(path, 401, Some(signal), 0, None, Payload::None);
            return status_response(
                reply_format,
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token; send Authorization: Bearer <otlp.bearer_token>"
                    .into(),
            );
        }
    }
    let format = match format {
        Ok(f) => f,
        Err(e) => return r.refuse(path, signal, reply_format, 0, e),
    };
    let wire = match read_body(body, r.max_body_bytes).await {
        Ok(b) => b,
        Err(Some(e)) => return r.refuse(path, signal, format, r.max_body_bytes as u64, e),
        Err(None) => {
            r.receipt(
                path,
                400,
                Some(signal),
                0,
                Some("read_error"),
                Payload::None,
            );
            return status_response(
                format,
                StatusCode::BAD_REQUEST,
                "the request body could not be read".into(),
            );
        }
    };
    let wire_bytes = wire.len() as u64;
    let encoding = header_str(&headers, header::CONTENT_ENCODING);
    let plain = match decode::decompress(&wire, encoding, r.max_body_bytes) {
        Ok(p) => p,
        Err(e) => return r.refuse(path, signal, format, wire_bytes, e),
    };
    let (payload, drops) = match signal {
        Signal::Metrics => match decode::metrics_batch(&plain, format, &r.policy) {
            Ok(batch) => {
                let drops = batch.drops.clone();
                (Payload::Metrics(batch), drops)
            }
            Err(e) => return r.refuse(path, signal, format, wire_bytes, e),
        },
        Signal::Logs => match decode::logs(&plain, format) {
            Ok(req) => {
                let batch = convert::logs(&req);
                let drops = batch.drops.clone();
                (Payload::Logs(batch), drops)
            }
            Err(e) => return r.refuse(path, signal, format, wire_bytes, e),
        },
        Signal::Traces => match decode::trace_spans(&plain, format) {
            Ok(spans) => (
                Payload::Traces {
                    spans: spans as u64,
                },
                Default::default(),
            ),
            Err(e) => return r.refuse(path, signal, format, wire_bytes, e),
        },
    };
    if let Some(f) = &r.forward {
        f.offer(signal, wire, content_type.unwrap_or(""), encoding);
    }
    let points = match &payload {
        Payload::Metrics(b) => b.points.len() as u64,
        Payload::Logs(b) => b.events.len() as u64,
        _ => 0,
    };
    let (mut rejected, mut message) = drops.rejections();
    if !r.receipt(path, 200, Some(signal), wire_bytes, None, payload) && points > 0 {
        rejected += points;
        if !message.is_empty() {
            message.push_str(", ");
        }
        message.push_str(&format!(
            "{points} {}: the agent is overloaded",
            DropReason::QueueFull.as_str()
        ));
    }
    success_response(format, signal, rejected, message)
}

#[cfg(test)]
mod tests {
    use super::{bearer_credentials, same_secret};

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_give_nothing() {
        assert_eq!(bearer_credentials("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_credentials("Basic abc"), None);
        assert_eq!(bearer_credentials("Bearerabc"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
        assert_eq!(bearer_credentials("Bearer "), Some(""));
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"token", b"token2"));
        assert!(!same_secret(b"", b"token"));
    }
}
