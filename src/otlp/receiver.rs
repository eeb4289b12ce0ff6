//! The OTLP/HTTP receiver on the OTLP listener: `POST` to any path that ends in
//! `/v1/metrics`, `/v1/logs` or `/v1/traces`, whatever prefix comes before it (so
//! `/opentelemetry/v1/metrics`, `/insert/opentelemetry/v1/logs` and the paths a Claude Code
//! setup with a prefixed `OTEL_EXPORTER_OTLP_ENDPOINT` produces all work).
//!
//! This module owns HTTP only: the route, the headers and reading the body (chunked or
//! not, up to the limit). Everything after that is the transport-neutral
//! [`super::ingest`] path the gRPC receiver shares. Status codes follow OTLP/HTTP: 200 with
//! an `Export*ServiceResponse` (partial success when points were rejected), 400 for a body
//! that does not decode, 413 over the limit, 415 for other content types, 401 without the
//! configured bearer token; error bodies are `google.rpc.Status` in the request's
//! encoding.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use prost::Message;

use super::decode::Format;
use super::error::OtlpError;
use super::ingest::{self, Ingest, Refusal, Refused, Request, Verdict};
use super::signal::{Protocol, Signal};

/// `google.rpc.Status`, the body of OTLP error responses.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The signal a request path names, and its bounded route label: any path that ends in
/// `/v1/metrics`, `/v1/logs` or `/v1/traces`.
pub fn route(path: &str) -> Option<(Signal, &'static str)> {
    [Signal::Metrics, Signal::Logs, Signal::Traces]
        .into_iter()
        .map(|s| (s, s.http_path()))
        .find(|(_, suffix)| path.ends_with(suffix))
}

/// The receiver's routes: one handler that routes by the path's ending.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new().fallback(dispatch).with_state(ingest)
}

/// Serves on an already-bound listener until `shutdown` completes; under the web config
/// `guard` (TLS, basic auth) when there is one, its counters sent to `sink`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    guard: Option<Arc<crate::webconfig::guard::WebGuard>>,
    sink: crate::sink::UpdateSink,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::webconfig::serve::serve(listener, router(ingest), guard, Some(sink), shutdown).await
}

async fn dispatch(
    State(r): State<Arc<Ingest>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((signal, path)) = route(uri.path()) else {
        let message =
            "no such OTLP route; use a path ending in /v1/metrics, /v1/logs or /v1/traces";
        r.refuse(
            Protocol::Http,
            "other",
            None,
            0,
            Refusal::NotFound,
            None,
            message.into(),
        );
        return status_response(Format::Json, StatusCode::NOT_FOUND, message.into());
    };
    if method != Method::POST {
        let mut resp = status_response(
            Format::Json,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} takes POST"),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    handle(r, path, signal, headers, body).await
}

/// The HTTP answer to a verdict.
fn reply(format: Format, signal: Signal, verdict: Verdict) -> Response {
    match verdict {
        Verdict::Accepted { rejected, message } => {
            success_response(format, signal, rejected, message)
        }
        Verdict::Refused(refused) => refused_response(format, refused),
    }
}

fn refused_response(format: Format, Refused { why, message }: Refused) -> Response {
    let status = StatusCode::from_u16(why.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    status_response(format, status, message)
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
    let body = match format {
        Format::Protobuf => ingest::export_response(signal, rejected, message),
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

async fn handle(
    r: Arc<Ingest>,
    path: &'static str,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let format = Format::from_content_type(content_type);
    let reply_format = *format.as_ref().unwrap_or(&Format::Json);
    let authorization = header_str(&headers, header::AUTHORIZATION);
    if let Err(refused) = r.authorize(Protocol::Http, path, Some(signal), authorization) {
        return refused_response(reply_format, refused);
    }
    let format = match format {
        Ok(f) => f,
        Err(e) => {
            let refused = r.refuse_error(Protocol::Http, path, signal, 0, e);
            return refused_response(reply_format, refused);
        }
    };
    let limit = r.max_body_bytes();
    let wire = match tokio::time::timeout(r.read_timeout(), read_body(body, limit)).await {
        Err(_) => {
            let refused = r.refuse(
                Protocol::Http,
                path,
                Some(signal),
                0,
                Refusal::Timeout,
                Some("timeout"),
                format!(
                    "the body did not arrive within {:?} (otlp.read_timeout)",
                    r.read_timeout()
                ),
            );
            return refused_response(format, refused);
        }
        Ok(Ok(b)) => b,
        Ok(Err(Some(e))) => {
            let refused = r.refuse_error(Protocol::Http, path, signal, limit as u64, e);
            return refused_response(format, refused);
        }
        Ok(Err(None)) => {
            let refused = r.refuse(
                Protocol::Http,
                path,
                Some(signal),
                0,
                Refusal::BadRequest,
                Some("read_error"),
                "the request body could not be read".into(),
            );
            return refused_response(format, refused);
        }
    };
    let verdict = r.accept(Request {
        protocol: Protocol::Http,
        path,
        signal,
        format,
        wire,
        content_type: content_type.unwrap_or(""),
        encoding: header_str(&headers, header::CONTENT_ENCODING),
    });
    reply(format, signal, verdict)
}

#[cfg(test)]
mod tests {
    use super::route;
    use crate::otlp::Signal;

    #[test]
    fn any_prefix_routes_by_the_signal_path_it_ends_in() {
        let cases = [
            ("/v1/metrics", Some((Signal::Metrics, "/v1/metrics"))),
            ("/v1/logs", Some((Signal::Logs, "/v1/logs"))),
            ("/v1/traces", Some((Signal::Traces, "/v1/traces"))),
            (
                "/opentelemetry/v1/metrics",
                Some((Signal::Metrics, "/v1/metrics")),
            ),
            (
                "/insert/opentelemetry/v1/logs",
                Some((Signal::Logs, "/v1/logs")),
            ),
            ("/a/b/c/v1/traces", Some((Signal::Traces, "/v1/traces"))),
            ("/v1/metrics/", None),
            ("/v1/metricsx", None),
            ("/v2/metrics", None),
            ("/", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }
}
