//! The OTLP/gRPC receiver on `listen.otlp_grpc`: the `Export` calls of the OTLP
//! `MetricsService`, `LogsService` and `TraceService`, served by tonic over HTTP/2 (h2c:
//! Claude Code's `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` and every Collector setup talk to 4317
//! this way).
//!
//! This module owns gRPC only: the routes, the framing and gzip (tonic's), the deadlines
//! and the connection and stream limits. Each call's message goes, as received, to the same
//! [`super::ingest`] path as an OTLP/HTTP protobuf body: the bearer token (from the
//! `authorization` metadata), the body limit, decoding, conversion, forwarding, the receipt
//! for the model and the partial-success reply are the HTTP receiver's, not a copy.
//!
//! Messages are handed over as bytes (a codec that does not decode): the protobuf decode is
//! [`super::wire`]'s, as for HTTP, and tonic's own decode errors (which it would answer with
//! INTERNAL) cannot happen. The call is taken as client-streaming, which is the same on the
//! wire as unary, so that framing errors, a message over the limit and a client that never
//! finishes reach the handler, are counted once like any refusal, and are answered with the
//! codes OTLP names: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,
//! UNAUTHENTICATED.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections (further clients wait in the kernel's
//! accept queue), [`MAX_CONCURRENT_STREAMS`] calls per connection, `otlp.read_timeout` for
//! a call's message to arrive, and [`MAX_CONNECTION_AGE`] before a connection is asked to go
//! away, so a client that opens streams or connections and never finishes holds nothing for
//! long.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codec::{CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Status, Streaming};

use super::decode::Format;
use super::ingest::{self, Ingest, Refusal, Refused, Request, Verdict};
use super::signal::{Protocol, Signal};

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Calls in flight on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_CONCURRENT_STREAMS: u32 = 64;
/// Age at which a connection is sent GOAWAY (clients reconnect; calls in flight finish).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
/// Time calls in flight get after GOAWAY before the connection is closed.
pub const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (such as running out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The gRPC method of a signal's `Export` call.
pub fn method(signal: Signal) -> &'static str {
    match signal {
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    }
}

/// A codec that hands messages over as bytes and sends replies already encoded.
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The gRPC status of a refusal.
fn status(Refused { why, message }: Refused) -> Status {
    let code = match why {
        Refusal::Unauthenticated => Code::Unauthenticated,
        Refusal::TooLarge => Code::ResourceExhausted,
        Refusal::BadRequest | Refusal::UnsupportedMediaType => Code::InvalidArgument,
        Refusal::Timeout => Code::DeadlineExceeded,
        Refusal::NotFound => Code::Unimplemented,
    };
    Status::new(code, message)
}

/// One `Export` call of `signal`.
async fn export(
    ingest: Arc<Ingest>,
    signal: Signal,
    request: tonic::Request<Streaming<Bytes>>,
) -> Result<tonic::Response<Vec<u8>>, Status> {
    let path = signal.http_path();
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    ingest
        .authorize(Protocol::Grpc, path, Some(signal), authorization)
        .map_err(status)?;
    let mut stream = request.into_inner();
    let refuse = |why, reason, message: String| {
        Err(status(ingest.refuse(
            Protocol::Grpc,
            path,
            Some(signal),
            0,
            why,
            Some(reason),
            message,
        )))
    };
    let wire = match tokio::time::timeout(ingest.read_timeout(), stream.message()).await {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => {
            return refuse(
                Refusal::BadRequest,
                "malformed",
                "the call ended without a message; send one Export*ServiceRequest".into(),
            );
        }
        // tonic's framing: a message over the limit (OUT_OF_RANGE before decompression,
        // RESOURCE_EXHAUSTED after), a bad gzip stream or a broken frame.
        Ok(Err(e)) => {
            return match e.code() {
                Code::OutOfRange | Code::ResourceExhausted => refuse(
                    Refusal::TooLarge,
                    "too_large",
                    format!(
                        "the message exceeds {} bytes; raise otlp.max_body_bytes or send \
                         smaller batches",
                        ingest.max_body_bytes()
                    ),
                ),
                _ if e.message().contains("decompressing") => refuse(
                    Refusal::BadRequest,
                    "bad_gzip",
                    format!("cannot gunzip the message: {}", e.message()),
                ),
                _ => refuse(
                    Refusal::BadRequest,
                    "read_error",
                    format!("the message could not be read: {}", e.message()),
                ),
            };
        }
        Err(_) => {
            return refuse(
                Refusal::Timeout,
                "timeout",
                format!(
                    "the message did not arrive within {:?} (otlp.read_timeout)",
                    ingest.read_timeout()
                ),
            );
        }
    };
    match ingest.accept(Request {
        protocol: Protocol::Grpc,
        path,
        signal,
        format: Format::Protobuf,
        wire,
        content_type: Format::Protobuf.content_type(),
        encoding: None,
    }) {
        Verdict::Accepted { rejected, message } => Ok(tonic::Response::new(
            ingest::export_response(signal, rejected, message),
        )),
        Verdict::Refused(refused) => Err(status(refused)),
    }
}

/// The tonic service of one signal's `Export` call.
#[derive(Clone)]
struct ExportCall {
    ingest: Arc<Ingest>,
    signal: Signal,
}

impl tonic::server::ClientStreamingService<Bytes> for ExportCall {
    type Response = Vec<u8>;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(export(self.ingest.clone(), self.signal, request))
    }
}

/// The routes: the three `Export` methods; anything else is UNIMPLEMENTED (and counted).
fn routes(ingest: Arc<Ingest>) -> axum::Router {
    let mut router = axum::Router::new();
    for signal in [Signal::Metrics, Signal::Logs, Signal::Traces] {
        let ingest = ingest.clone();
        router = router.route(
            method(signal),
            axum::routing::post(move |req: axum::extract::Request| {
                let call = ExportCall {
                    ingest: ingest.clone(),
                    signal,
                };
                let limit = ingest.max_body_bytes();
                async move {
                    tonic::server::Grpc::new(RawCodec)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .max_decoding_message_size(limit)
                        .client_streaming(call, req)
                        .await
                }
            }),
        );
    }
    router.fallback(move |req: axum::extract::Request| async move {
        let message = format!(
            "no such OTLP gRPC method {:?}; the receiver serves the Export call of \
             MetricsService, LogsService and TraceService",
            req.uri().path().chars().take(200).collect::<String>()
        );
        let refused = ingest.refuse(
            Protocol::Grpc,
            "other",
            None,
            0,
            Refusal::NotFound,
            None,
            message,
        );
        status(refused).into_http::<tonic::body::Body>()
    })
}

/// An accepted connection, holding its place among [`MAX_CONNECTIONS`] until it closes.
struct Conn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepted connections, one slot each: accepting waits while every slot is taken.
fn incoming(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = Result<Conn, Infallible>> + Send {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    futures_util::stream::unfold((listener, slots), |(listener, slots)| async move {
        let slot = slots.clone().acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((io, _)) => {
                    let _ = io.set_nodelay(true);
                    let conn = Conn { io, _slot: slot };
                    return Some((Ok(conn), (listener, slots)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OTLP/gRPC receiver cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    })
}

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // The handler answers DEADLINE_EXCEEDED at the read timeout; tonic's own timeout is
    // the backstop for anything after the read.
    let backstop = ingest.read_timeout() + Duration::from_secs(5);
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .timeout(backstop)
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(MAX_CONNECTION_AGE_GRACE)
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_routes(tonic::service::Routes::from(routes(ingest)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}
