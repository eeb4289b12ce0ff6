//! The one path every OTLP request takes once its transport has read it, whether it came
//! over HTTP ([`super::receiver`]) or gRPC ([`super::grpc`]): the bearer-token check,
//! decompression with the body limit, decoding and conversion ([`super::decode`],
//! [`super::convert`]), the offer to the forwarder, the receipt queued for the model (which
//! folds it under the configured limits), and the verdict the transport turns into its own
//! reply (an HTTP status and body, or a gRPC status and `Export*ServiceResponse`).
//!
//! It owns no socket and no protocol framing: transports read bytes and headers, call
//! [`Ingest::authorize`] and then [`Ingest::accept`] or [`Ingest::refuse`], and answer.
//! Every request is counted exactly once, here, whatever the transport. The answer never
//! waits on the model: receipts go out with `try_send`, because the Claude CLI re-sends a
//! batch it did not get a success for.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use prost::Message;

use super::convert::{self, DropReason, LabelPolicy};
use super::decode::{self, Format};
use super::error::OtlpError;
use super::settings::OtlpSettings;
use super::signal::{Protocol, Signal};
use super::state::{Payload, Receipt, TelemetryUpdate};
use crate::model::Update;
use crate::sink::UpdateSink;

/// What every transport shares: the limits, the token, the model's queue and the forwarder.
pub struct Ingest {
    sink: UpdateSink,
    policy: LabelPolicy,
    max_body_bytes: usize,
    read_timeout: std::time::Duration,
    bearer: Option<String>,
    /// Points that could not be queued for the model, so far.
    queue_dropped_points: AtomicU64,
    forward: Option<super::forward::Forwarder>,
}

/// One request as its transport read it.
pub struct Request<'a> {
    pub protocol: Protocol,
    /// The bounded route label: the signal's `/v1/...` path, whatever prefix came before it.
    pub path: &'static str,
    pub signal: Signal,
    pub format: Format,
    /// The body as received.
    pub wire: Bytes,
    /// `Content-Type` as sent (passed on to the forwarder).
    pub content_type: &'a str,
    /// `Content-Encoding` of `wire`; `None` when the transport already decompressed it.
    pub encoding: Option<&'a str>,
}

/// Why a request is refused, in terms both transports map to their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No or the wrong bearer token (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated,
    /// Over `otlp.max_body_bytes` (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    TooLarge,
    /// Neither protobuf nor OTLP/JSON (HTTP 415; gRPC only carries protobuf).
    UnsupportedMediaType,
    /// The body does not decode, or cannot be read (HTTP 400, gRPC INVALID_ARGUMENT).
    BadRequest,
    /// The client did not finish sending within the time allowed (HTTP 408, gRPC
    /// DEADLINE_EXCEEDED).
    Timeout,
    /// No such route or method (HTTP 404, gRPC UNIMPLEMENTED).
    NotFound,
}

impl Refusal {
    /// The HTTP status, which is also the `status` label of `vibe_otlp_requests_total` for
    /// both transports (OTLP pairs each gRPC code with one).
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::Unauthenticated => 401,
            Refusal::TooLarge => 413,
            Refusal::UnsupportedMediaType => 415,
            Refusal::BadRequest => 400,
            Refusal::Timeout => 408,
            Refusal::NotFound => 404,
        }
    }

    fn of(err: &OtlpError) -> Self {
        match err {
            OtlpError::TooLarge { .. } => Refusal::TooLarge,
            OtlpError::UnsupportedContentType(_) => Refusal::UnsupportedMediaType,
            _ => Refusal::BadRequest,
        }
    }
}

/// A refused request: why, and what to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub why: Refusal,
    pub message: String,
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Taken; `rejected` points were not counted, for the reasons in `message`.
    Accepted { rejected: u64, message: String },
    /// Not taken; nothing of it was counted but the request itself.
    Refused(Refused),
}

/// The message a client gets without the bearer token.
pub const UNAUTHENTICATED_MESSAGE: &str =
    "missing or wrong bearer token; send Authorization: Bearer <otlp.bearer_token>";

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

impl Ingest {
    pub fn new(
        settings: &OtlpSettings,
        sink: UpdateSink,
        forward: Option<super::forward::Forwarder>,
    ) -> Self {
        Self {
            sink,
            policy: LabelPolicy::new(&settings.allow_labels),
            max_body_bytes: settings.max_body_bytes,
            read_timeout: settings.read_timeout,
            bearer: settings.bearer_token.clone(),
            queue_dropped_points: AtomicU64::new(0),
            forward,
        }
    }

    /// The largest body accepted, after decompression (`otlp.max_body_bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The time a client has to send a whole request once it has started
    /// (`otlp.read_timeout`).
    pub fn read_timeout(&self) -> std::time::Duration {
        self.read_timeout
    }

    /// Checks the `Authorization` header (HTTP) or metadata (gRPC) against
    /// `otlp.bearer_token`; without a configured token everything passes. A refusal is
    /// counted, and its verdict returned.
    pub fn authorize(
        &self,
        protocol: Protocol,
        path: &'static str,
        signal: Option<Signal>,
        authorization: Option<&str>,
    ) -> Result<(), Refused> {
        let Some(token) = &self.bearer else {
            return Ok(());
        };
        let given = authorization.and_then(bearer_credentials).unwrap_or("");
        if same_secret(given.as_bytes(), token.as_bytes()) {
            return Ok(());
        }
        self.receipt(protocol, path, 401, signal, 0, None, Payload::None);
        Err(Refused {
            why: Refusal::Unauthenticated,
            message: UNAUTHENTICATED_MESSAGE.into(),
        })
    }

    /// Counts a request its transport refused before it had a body to offer (unreadable,
    /// too large, timed out, no such route), and returns the verdict to answer with.
    #[allow(clippy::too_many_arguments)]
    pub fn refuse(
        &self,
        protocol: Protocol,
        path: &'static str,
        signal: Option<Signal>,
        wire_bytes: u64,
        why: Refusal,
        reason: Option<&'static str>,
        message: String,
    ) -> Refused {
        tracing::debug!(
            protocol = protocol.as_str(),
            path,
            reason = reason.unwrap_or(""),
            status = why.http_status(),
            "OTLP request refused"
        );
        self.receipt(
            protocol,
            path,
            why.http_status(),
            signal,
            wire_bytes,
            reason,
            Payload::None,
        );
        Refused { why, message }
    }

    /// Counts a request refused because of `err` (its reason goes to
    /// `vibe_otlp_decode_errors_total`).
    pub fn refuse_error(
        &self,
        protocol: Protocol,
        path: &'static str,
        signal: Signal,
        wire_bytes: u64,
        err: OtlpError,
    ) -> Refused {
        self.refuse(
            protocol,
            path,
            Some(signal),
            wire_bytes,
            Refusal::of(&err),
            Some(err.reason()),
            err.to_string(),
        )
    }

    /// Decompresses, decodes and converts one request, offers it to the forwarder and
    /// queues it for the model. Attribute values never reach a log line: failures are
    /// logged by reason only.
    pub fn accept(&self, req: Request<'_>) -> Verdict {
        let Request {
            protocol,
            path,
            signal,
            format,
            wire,
            content_type,
            encoding,
        } = req;
        let wire_bytes = wire.len() as u64;
        let refuse = |e| Verdict::Refused(self.refuse_error(protocol, path, signal, wire_bytes, e));
        let plain = match encoding {
            None => {
                if wire.len() > self.max_body_bytes {
                    return refuse(OtlpError::TooLarge {
                        limit: self.max_body_bytes,
                    });
                }
                std::borrow::Cow::Borrowed(&wire[..])
            }
            Some(_) => match decode::decompress(&wire, encoding, self.max_body_bytes) {
                Ok(p) => std::borrow::Cow::Owned(p),
                Err(e) => return refuse(e),
            },
        };
        let (payload, drops) = match signal {
            Signal::Metrics => match decode::metrics_batch(&plain, format, &self.policy) {
                Ok(batch) => {
                    let drops = batch.drops.clone();
                    (Payload::Metrics(batch), drops)
                }
                Err(e) => return refuse(e),
            },
            Signal::Logs => match decode::logs(&plain, format) {
                Ok(req) => {
                    let batch = convert::logs(&req);
                    let drops = batch.drops.clone();
                    (Payload::Logs(batch), drops)
                }
                Err(e) => return refuse(e),
            },
            Signal::Traces => match decode::trace_spans(&plain, format) {
                Ok(spans) => (
                    Payload::Traces {
                        spans: spans as u64,
                    },
                    Default::default(),
                ),
                Err(e) => return refuse(e),
            },
        };
        drop(plain);
        if let Some(f) = &self.forward {
            f.offer(signal, wire, content_type, encoding);
        }
        let points = match &payload {
            Payload::Metrics(b) => b.points.len() as u64,
            Payload::Logs(b) => b.events.len() as u64,
            _ => 0,
        };
        let (mut rejected, mut message) = drops.rejections();
        if !self.receipt(protocol, path, 200, Some(signal), wire_bytes, None, payload) && points > 0
        {
            rejected += points;
            if !message.is_empty() {
                message.push_str(", ");
            }
            message.push_str(&format!(
                "{points} {}: the agent is overloaded",
                DropReason::QueueFull.as_str()
            ));
        }
        Verdict::Accepted { rejected, message }
    }

    /// Queues a receipt for the model; false when the queue was full.
    #[allow(clippy::too_many_arguments)]
    fn receipt(
        &self,
        protocol: Protocol,
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
            protocol,
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
}

/// The protobuf `Export*ServiceResponse` of `signal`, with a partial success when points
/// were rejected or there is something to say. The OTLP/HTTP protobuf body and the gRPC
/// reply message.
pub fn export_response(signal: Signal, rejected: u64, message: String) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1 as l;
    use opentelemetry_proto::tonic::collector::metrics::v1 as m;
    use opentelemetry_proto::tonic::collector::trace::v1 as t;
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
