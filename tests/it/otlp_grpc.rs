//! The OTLP/gRPC receiver seen from outside. The real Claude Code CLI exports over gRPC
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`), delta and cumulative, and the agent's totals must
//! equal those of the same scenario over http/protobuf (sent, as a prefixed generic endpoint
//! makes the CLI send it, to `/insert/opentelemetry/v1/...`). Then, with a plain HTTP/2
//! client (the `h2` crate, so any frame can be sent): the CLI's captured bodies, gzip, the
//! bearer token, a message over the limit, a malformed one, and clients that open calls and
//! never finish them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http;

use crate::otlp::{
    OtlpAgent, assert_totals_match_the_cli, close, gzip, run_cli, scenario, total, total_where,
};
use crate::support::claude_cli::claude_bin;
use crate::support::{Exposition, WAIT, wait_until};

const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// gRPC codes (grpc/doc/statuscodes.md).
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const DEADLINE_EXCEEDED: u32 = 4;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const UNAUTHENTICATED: u32 = 16;

/// What a call came back with.
#[derive(Debug)]
struct Reply {
    code: u32,
    message: String,
    /// The reply message, without its gRPC frame header.
    body: Vec<u8>,
}

/// One HTTP/2 connection to the receiver.
struct GrpcClient {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

/// A length-prefixed gRPC message; `compressed` sets the flag byte.
fn frame(message: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn header_code(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

impl GrpcClient {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, conn) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Self {
            send,
            authority: addr.to_string(),
        }
    }

    /// Starts a call: headers sent, the stream left open for data.
    async fn start(
        &mut self,
        method: &str,
        headers: &[(&str, &str)],
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{method}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let send = self.send.clone().ready().await.expect("a stream slot");
        let mut send = send;
        send.send_request(req.body(()).unwrap(), false)
            .expect("send headers")
    }

    /// One whole call: `data` (already framed) and the end of the stream.
    async fn call(&mut self, method: &str, headers: &[(&str, &str)], data: Vec<u8>) -> Reply {
        let (resp, mut stream) = self.start(method, headers).await;
        stream
            .send_data(Bytes::from(data), true)
            .expect("send data");
        read_reply(resp).await
    }

    /// An `Export` of an encoded request, optionally gzipped, with optional metadata.
    async fn export(
        &mut self,
        method: &str,
        message: &[u8],
        gzipped: bool,
        auth: Option<&str>,
    ) -> Reply {
        let mut headers = Vec::new();
        let body = if gzipped {
            headers.push(("grpc-encoding", "gzip"));
            frame(&gzip(message), true)
        } else {
            frame(message, false)
        };
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        self.call(method, &headers, body).await
    }
}

async fn read_reply(resp: h2::client::ResponseFuture) -> Reply {
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .expect("a reply in time")
        .expect("a reply");
    assert_eq!(resp.status(), 200, "gRPC replies are HTTP 200");
    let (parts, mut body) = resp.into_parts();
    // A trailers-only reply carries the status in its headers.
    if let Some((code, message)) = header_code(&parts.headers) {
        return Reply {
            code,
            message,
            body: Vec::new(),
        };
    }
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("reply data");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers");
    let (code, message) = header_code(&trailers).expect("grpc-status in the trailers");
    let body = if data.len() >= 5 {
        data[5..].to_vec()
    } else {
        data
    };
    Reply {
        code,
        message,
        body,
    }
}

/// The gRPC method of a captured OTLP/HTTP request.
fn method_of(path: &str) -> &'static str {
    if path.ends_with("/v1/metrics") {
        METRICS
    } else if path.ends_with("/v1/logs") {
        LOGS
    } else {
        TRACES
    }
}

/// A protobuf metrics request adding `n` to `claude_code_commit_count_total` (delta; its
/// time depends on `n`, so different counts are not taken for a re-sent batch).
fn commits_proto(n: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric::Data, number_data_point::Value,
    };
    use prost::Message;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "claude_code.commit.count".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000 + n,
                            value: Some(Value::AsInt(n as i64)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn grpc_total(m: &Exposition, status: &str) -> f64 {
    total_where(
        m,
        "vibe_otlp_requests_total",
        &[("protocol", "grpc"), ("status", status)],
    )
}

/// A request an upstream received: path, content type, body.
type Forwarded = (String, String, Vec<u8>);

/// An OTLP/HTTP upstream that records what it is forwarded.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Vec<Forwarded>>>) {
    let got: Arc<Mutex<Vec<Forwarded>>> = Arc::default();
    let got2 = got.clone();
    let app = axum::Router::new().fallback(
        move |uri: http::Uri, headers: http::HeaderMap, body: Bytes| {
            let got = got2.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                got.lock()
                    .unwrap()
                    .push((uri.path().to_string(), ct, body.to_vec()));
                http::StatusCode::OK
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

/// The CLI's captured protobuf bodies sent over gRPC (every other one gzipped) count what
/// the CLI counted, and are forwarded upstream over OTLP/HTTP as they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clis_bodies_over_grpc_add_up_and_are_forwarded() {
    let (up, forwarded) = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = OtlpAgent::start_with(dir.path(), |c| {
        c.set_str(
            "claude.forward",
            "metrics_url",
            &format!("http://{up}/opentelemetry/v1/metrics"),
        )
        .set_str(
            "claude.forward",
            "logs_url",
            &format!("http://{up}/insert/opentelemetry/v1/logs"),
        )
    })
    .await;
    let mut c = GrpcClient::connect(a.grpc_addr).await;
    let runs = scenario("proto-delta");
    let all = runs.concat();
    for (i, req) in all.iter().enumerate() {
        // Every other call gzipped, as OTEL_EXPORTER_OTLP_COMPRESSION=gzip sends it.
        let r = c
            .export(method_of(&req.path), &req.body, i % 2 == 1, None)
            .await;
        assert_eq!(r.code, OK, "{}: {}", req.path, r.message);
        a.posted += 1;
    }
    let m = a.settled().await;
    assert_totals_match_the_cli(&m, &all, "proto-delta over gRPC");
    let want: Vec<Forwarded> = all
        .iter()
        .map(|c| {
            let path = if c.path.ends_with("/v1/metrics") {
                "/opentelemetry/v1/metrics"
            } else {
                "/insert/opentelemetry/v1/logs"
            };
            (
                path.to_string(),
                "application/x-protobuf".to_string(),
                c.plain(),
            )
        })
        .collect();
    let by_path = |v: &[Forwarded], p: &str| -> Vec<Forwarded> {
        v.iter().filter(|x| x.0 == p).cloned().collect()
    };
    wait_until(WAIT, "every body forwarded", async || {
        let got = forwarded.lock().unwrap().clone();
        for p in ["/opentelemetry/v1/metrics", "/insert/opentelemetry/v1/logs"] {
            if by_path(&got, p) != by_path(&want, p) {
                return Err(format!(
                    "{p}: {} of {}",
                    by_path(&got, p).len(),
                    by_path(&want, p).len()
                ));
            }
        }
        Ok(())
    })
    .await;
    assert_eq!(
        grpc_total(&m, "200"),
        all.len() as f64,
        "{}",
        m.vibe_lines()
    );
    let paths: Vec<_> = m
        .samples()
        .iter()
        .filter(|s| s.name == "vibe_otlp_requests_total")
        .map(|s| s.labels.clone())
        .collect();
    assert!(
        paths.iter().all(|l| l
            .iter()
            .any(|(k, v)| k == "path" && (v == "/v1/metrics" || v == "/v1/logs"))),
        "{paths:?}"
    );
    // Traces are accepted and counted by span, like over HTTP.
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(), Span::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    assert_eq!(c.export(TRACES, &spans, false, None).await.code, OK);
    a.posted += 1;
    let m = a.settled().await;
    assert_eq!(
        m.value("vibe_otlp_points_accepted_total{signal=\"traces\"}"),
        Some(2.0)
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bearer_token_is_unauthenticated_and_counts_nothing() {
    const TOKEN: &str = "grpc-token-5d1c88";
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set_str("otlp", "bearer_token", TOKEN)).await;
    let mut c = GrpcClient::connect(a.grpc_addr).await;
    let wrong = [
        None,
        Some("Bearer wrong-token".to_string()),
        Some(TOKEN.to_string()),
        Some(format!("Bearer {TOKEN}x")),
    ];
    for auth in &wrong {
        let r = c
            .export(METRICS, &commits_proto(5), false, auth.as_deref())
            .await;
        assert_eq!(r.code, UNAUTHENTICATED, "authorization {auth:?}: {r:?}");
        assert!(r.message.contains("bearer"), "{r:?}");
        assert!(!r.message.contains(TOKEN));
        a.posted += 1;
    }
    let m = a.settled().await;
    assert_eq!(grpc_total(&m, "401"), wrong.len() as f64);
    assert_eq!(total(&m, "claude_code_commit_count_total"), 0.0);
    assert_eq!(total(&m, "vibe_otlp_points_accepted_total"), 0.0);
    assert_eq!(total(&m, "vibe_otlp_received_bytes_total"), 0.0);
    let auth = format!("Bearer {TOKEN}");
    let r = c
        .export(METRICS, &commits_proto(3), true, Some(&auth))
        .await;
    assert_eq!(r.code, OK, "{r:?}");
    a.posted += 1;
    let m = a.settled().await;
    assert_eq!(total(&m, "claude_code_commit_count_total"), 3.0);
    assert!(!m.text.contains(TOKEN));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_and_unknown_calls_get_otlp_codes_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set("otlp", "max_body_bytes", "4096")).await;
    let mut c = GrpcClient::connect(a.grpc_addr).await;
    // Over the limit as sent, and (a gzip bomb) only once inflated.
    let big = vec![0x0a_u8; 5000];
    let r = c.call(METRICS, &[], frame(&big, false)).await;
    assert_eq!(r.code, RESOURCE_EXHAUSTED, "{r:?}");
    assert!(r.message.contains("otlp.max_body_bytes"), "{r:?}");
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let r = c
        .call(METRICS, &[("grpc-encoding", "gzip")], frame(&bomb, true))
        .await;
    assert_eq!(r.code, RESOURCE_EXHAUSTED, "{r:?}");
    // Not protobuf; a bad gzip stream; a call without a message.
    let r = c.call(METRICS, &[], frame(&[0xff; 100], false)).await;
    assert_eq!(r.code, INVALID_ARGUMENT, "{r:?}");
    let r = c.call(LOGS, &[], frame(&[0xff; 100], false)).await;
    assert_eq!(r.code, INVALID_ARGUMENT, "{r:?}");
    let r = c
        .call(
            METRICS,
            &[("grpc-encoding", "gzip")],
            frame(b"not gzip", true),
        )
        .await;
    assert_eq!(r.code, INVALID_ARGUMENT, "{r:?}");
    let r = c.call(METRICS, &[], Vec::new()).await;
    assert_eq!(r.code, INVALID_ARGUMENT, "{r:?}");
    a.posted += 6;
    // No such method.
    let r = c
        .call(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            &[],
            frame(b"", false),
        )
        .await;
    assert_eq!(r.code, UNIMPLEMENTED, "{r:?}");
    a.posted += 1;
    let m = a.settled().await;
    assert_eq!(grpc_total(&m, "413"), 2.0, "{}", m.vibe_lines());
    assert_eq!(grpc_total(&m, "400"), 4.0, "{}", m.vibe_lines());
    assert_eq!(grpc_total(&m, "404"), 1.0, "{}", m.vibe_lines());
    for (reason, n) in [("too_large", 2.0), ("malformed", 3.0), ("bad_gzip", 1.0)] {
        assert_eq!(
            m.value(&format!(
                "vibe_otlp_decode_errors_total{{reason=\"{reason}\"}}"
            )),
            Some(n),
            "{reason}: {}",
            m.vibe_lines()
        );
    }
    assert_eq!(total(&m, "vibe_otlp_points_accepted_total"), 0.0);
    // The connection still serves a good call; a point the agent cannot convert (a
    // summary) is reported in a partial success, the rest counted.
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::{Metric, Summary, SummaryDataPoint, metric};
    use prost::Message;
    let mut req = ExportMetricsServiceRequest::decode(&commits_proto(4)[..]).unwrap();
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(Metric {
            name: "x".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint::default()],
            })),
            ..Default::default()
        });
    let r = c.export(METRICS, &req.encode_to_vec(), false, None).await;
    assert_eq!(r.code, OK, "{r:?}");
    let reply = ExportMetricsServiceResponse::decode(&r.body[..]).expect("an Export reply");
    let partial = reply.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_data_points, 1, "{partial:?}");
    assert!(
        partial.error_message.contains("unsupported_type"),
        "{partial:?}"
    );
    a.posted += 1;
    let m = a.settled().await;
    assert_eq!(total(&m, "claude_code_commit_count_total"), 4.0);
    a.shutdown().await;
}

/// Clients that open calls and never finish them hold a stream each until
/// `otlp.read_timeout`, then get DEADLINE_EXCEEDED; meanwhile other clients are served, and
/// each stalled call is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_never_finish_time_out_and_do_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set_str("otlp", "read_timeout", "1s")).await;
    const CONNECTIONS: usize = 4;
    const STREAMS: usize = 16;
    let mut stalled = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = GrpcClient::connect(a.grpc_addr).await;
        for i in 0..STREAMS {
            let (resp, mut stream) = c.start(METRICS, &[]).await;
            // Half of them send part of a frame (a header promising 100 bytes, then 10).
            if i % 2 == 0 {
                let mut partial = 100u32.to_be_bytes().to_vec();
                partial.insert(0, 0);
                partial.extend_from_slice(&[0x0a; 10]);
                stream.send_data(Bytes::from(partial), false).unwrap();
            }
            stalled.push((resp, stream));
        }
        clients.push(c);
    }
    let started = Instant::now();
    // A fresh client is served while all of those hang.
    let mut good = GrpcClient::connect(a.grpc_addr).await;
    let r = good.export(METRICS, &commits_proto(2), false, None).await;
    assert_eq!(r.code, OK, "{r:?}");
    a.posted += 1;
    for (resp, _stream) in stalled {
        let r = read_reply(resp).await;
        assert_eq!(r.code, DEADLINE_EXCEEDED, "{r:?}");
        assert!(r.message.contains("otlp.read_timeout"), "{r:?}");
        a.posted += 1;
    }
    assert!(
        started.elapsed() < WAIT,
        "stalled calls were answered within the wait"
    );
    let m = a.settled().await;
    assert_eq!(grpc_total(&m, "408"), (CONNECTIONS * STREAMS) as f64);
    assert_eq!(
        m.value("vibe_otlp_decode_errors_total{reason=\"timeout\"}"),
        Some((CONNECTIONS * STREAMS) as f64)
    );
    assert_eq!(total(&m, "claude_code_commit_count_total"), 2.0);
    drop(clients);
    a.shutdown().await;
}

/// Every series of the Claude Code families and the event-derived counters, by label set,
/// except active time (wall-clock time the CLI measured, different in every run).
fn claude_series(m: &Exposition) -> BTreeMap<String, f64> {
    m.samples()
        .iter()
        .filter(|s| s.name.starts_with("claude_code_"))
        .filter(|s| !s.name.starts_with("claude_code_active_time"))
        .filter(|s| !s.name.contains("duration_seconds"))
        .map(|s| (format!("{}{:?}", s.name, s.labels), s.value))
        .collect()
}

/// The real CLI, delta and then cumulative, once over gRPC to one agent and once over
/// http/protobuf (to a prefixed endpoint) to another: every Claude Code series is equal,
/// to the unit, and matches the CLI's transcripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_cli_over_grpc_counts_what_it_counts_over_http() {
    claude_bin();
    let dir = tempfile::tempdir().unwrap();
    let grpc_state = dir.path().join("grpc");
    let http_state = dir.path().join("http");
    std::fs::create_dir_all(&grpc_state).unwrap();
    std::fs::create_dir_all(&http_state).unwrap();
    let g = OtlpAgent::start(&grpc_state).await;
    let h = OtlpAgent::start(&http_state).await;
    let grpc_endpoint = format!("http://{}", g.grpc_addr);
    let http_endpoint = format!("{}/insert/opentelemetry", h.otlp_base);
    let grpc_home = dir.path().join("home-grpc");
    let http_home = dir.path().join("home-http");
    for (n, temporality) in [(1.0, "delta"), (2.0, "cumulative")] {
        for (endpoint, home, protocol) in [
            (&grpc_endpoint, &grpc_home, "grpc"),
            (&http_endpoint, &http_home, "http/protobuf"),
        ] {
            let (e, hm, t) = (endpoint.clone(), home.clone(), temporality);
            tokio::task::spawn_blocking(move || run_cli(&e, &hm, protocol, t, &[]))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        for (a, home, what) in [(&g, &grpc_home, "grpc"), (&h, &http_home, "http")] {
            let (cost, _) = crate::otlp::transcript_usage(home);
            let m = a
                .metrics
                .wait_for(&format!("{what}: {n} sessions' telemetry"), |m| {
                    total(m, "claude_code_session_count_total") == n
                        && total(m, "claude_code_api_requests_total") == 2.0 * n
                        && close(total(m, "claude_code_cost_usage_USD_total"), cost)
                })
                .await;
            seen.push(m);
        }
        let (gm, hm) = (&seen[0], &seen[1]);
        assert!(grpc_total(gm, "200") > 0.0, "{}", gm.vibe_lines());
        assert_eq!(grpc_total(hm, "200"), 0.0);
        assert!(
            total_where(
                hm,
                "vibe_otlp_requests_total",
                &[
                    ("protocol", "http"),
                    ("path", "/v1/metrics"),
                    ("status", "200")
                ]
            ) > 0.0,
            "the prefixed HTTP endpoint is counted under /v1/metrics: {}",
            hm.vibe_lines()
        );
        let (gs, hs) = (claude_series(gm), claude_series(hm));
        for family in [
            "claude_code_session_count_total",
            "claude_code_cost_usage_USD_total",
            "claude_code_token_usage_tokens_total",
            "claude_code_api_requests_total",
            "claude_code_tool_results_total",
            "claude_code_user_prompts_total",
        ] {
            assert!(total(gm, family) > 0.0, "{family} over gRPC: {gs:?}");
        }
        assert_eq!(
            gs, hs,
            "after the {temporality} sessions: gRPC against HTTP"
        );
        for ty in ["input", "output", "cacheRead", "cacheCreation"] {
            let (_, tokens) = crate::otlp::transcript_usage(&grpc_home);
            assert_eq!(
                total_where(gm, "claude_code_token_usage_tokens_total", &[("type", ty)]),
                tokens[ty],
                "tokens{{type={ty}}} against the transcripts"
            );
        }
    }
    g.shutdown().await;
    h.shutdown().await;
}
