//! OTLP receiver benchmark. Run with `cargo bench --bench otlp`. Prints figures and
//! ratios; asserts nothing (machines are noisy; tests never assert speed).
//!
//! 1. Decode + convert (the receiver's path: [`decode::metrics_batch`]), and that plus the
//!    model's fold into the telemetry state, in this process on one core: data points per
//!    second for a Claude-sized protobuf request (a real CLI capture from
//!    tests/fixtures/otlp) and for a large synthetic one (1 000 points), against prost's
//!    bare decode of the same bytes (what a receiver that builds the messages pays before
//!    converting anything) and prost decode followed by conversion.
//! 2. End to end over HTTP, then over gRPC to the same agent in the same run: the release
//!    `vibe-agent` binary as a child, sent the Claude-sized request (an HTTP POST, or a
//!    gRPC `MetricsService/Export` call over plaintext HTTP/2 with the `h2` crate, one call
//!    at a time per connection) for `BENCH_SECS` (default 20; the figure is 60) twice:
//!    paced open-loop at `BENCH_RATE` requests/s (default 10 000, the target) over
//!    `BENCH_PACED_CONNECTIONS` (default 64) connections, latency counted from each
//!    request's due time; then closed-loop over `BENCH_CONNECTIONS` (default 16) for the
//!    most it answers. Both print p50/p99 latency and the child's RSS before, during and
//!    after. The same floods then go to VictoriaMetrics (Debian `victoria-metrics`) as the
//!    peer, carrying the same samples: as OTLP where it takes OTLP (v1.92+), else as
//!    Prometheus text to `/api/v1/import/prometheus` (Debian 12 ships 1.79).
//!
//! `BENCH_HTTP=0` runs part 1 only. Children are killed by PID at the end, also on a panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use vibe_agent::otlp::Signal;
use vibe_agent::otlp::convert::{self, LabelPolicy};
use vibe_agent::otlp::decode::{self, Format};
use vibe_agent::otlp::state::{Payload, Receipt, TelemetryState, TelemetryUpdate};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The largest metrics body of the real-CLI delta capture.
fn claude_body() -> Vec<u8> {
    let dir = repo().join("tests/fixtures/otlp/proto-delta/run1");
    let index = std::fs::read_to_string(dir.join("requests.jsonl")).expect("fixtures");
    index
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["path"] == "/v1/metrics")
        .map(|v| std::fs::read(dir.join(v["file"].as_str().unwrap())).unwrap())
        .max_by_key(Vec::len)
        .expect("a metrics body")
}

/// The Claude body's points as Prometheus text, every attribute a label (what
/// VictoriaMetrics ingests at `/api/v1/import/prometheus`): the peer's request carries the
/// same samples, in the format it takes on this machine (Debian's 1.79 has no OTLP).
fn claude_text_body() -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    let req = ExportMetricsServiceRequest::decode(&claude_body()[..]).unwrap();
    let mut out = String::new();
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let pts = match &m.data {
            Some(Data::Sum(s)) => &s.data_points,
            Some(Data::Gauge(g)) => &g.data_points,
            _ => continue,
        };
        for p in pts {
            let labels: Vec<String> = p
                .attributes
                .iter()
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(v) => Some(format!("{}={v:?}", kv.key.replace('.', "_"))),
                    _ => None,
                })
                .collect();
            let v = match p.value {
                Some(number_data_point::Value::AsDouble(d)) => d,
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                None => continue,
            };
            out.push_str(&format!(
                "{}{{{}}} {v}\n",
                m.name.replace('.', "_"),
                labels.join(",")
            ));
        }
    }
    out.into_bytes()
}

/// The Claude body with its points repeated until it holds about `n`, each with its own
/// session id (the worst case for stream tracking).
fn big_body(n: usize) -> Vec<u8> {
    let mut req = ExportMetricsServiceRequest::decode(&claude_body()[..]).unwrap();
    let metrics = &mut req.resource_metrics[0].scope_metrics[0].metrics;
    let mut i = 0;
    while metrics.iter().map(points).sum::<usize>() < n {
        let mut m = metrics[i % metrics.len()].clone();
        if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) = &mut m.data {
            for p in &mut s.data_points {
                for kv in &mut p.attributes {
                    if kv.key == "session.id" {
                        kv.value = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                            value: Some(
                                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                    format!("session-{i}"),
                                ),
                            ),
                        });
                    }
                }
            }
        }
        metrics.push(m);
        i += 1;
    }
    req.encode_to_vec()
}

fn points(m: &opentelemetry_proto::tonic::metrics::v1::Metric) -> usize {
    match &m.data {
        Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => s.data_points.len(),
        _ => 0,
    }
}

fn in_process(name: &str, body: &[u8]) {
    let n_points: usize = ExportMetricsServiceRequest::decode(body)
        .unwrap()
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(points)
        .sum();
    let policy = LabelPolicy::default();
    let budget = Duration::from_secs(3);

    let t = Instant::now();
    let mut iters = 0u64;
    while t.elapsed() < budget {
        std::hint::black_box(ExportMetricsServiceRequest::decode(body).unwrap());
        iters += 1;
    }
    let bare = (iters as f64 * n_points as f64) / t.elapsed().as_secs_f64();

    // What the receiver does with a protobuf body: convert it as it is read.
    let t = Instant::now();
    let mut iters = 0u64;
    while t.elapsed() < budget {
        std::hint::black_box(decode::metrics_batch(body, Format::Protobuf, &policy).unwrap());
        iters += 1;
    }
    let convert = (iters as f64 * n_points as f64) / t.elapsed().as_secs_f64();

    // The earlier path, kept for OTLP/JSON: decode into prost messages, then convert.
    let t = Instant::now();
    let mut iters = 0u64;
    while t.elapsed() < budget {
        let req = decode::metrics(body, Format::Protobuf).unwrap();
        std::hint::black_box(convert::metrics(&req, &policy));
        iters += 1;
    }
    let via_prost = (iters as f64 * n_points as f64) / t.elapsed().as_secs_f64();

    // Plus the model's fold into the telemetry state.
    let mut state = TelemetryState::default();
    let t = Instant::now();
    let mut iters = 0u64;
    while t.elapsed() < budget {
        let mut batch = decode::metrics_batch(body, Format::Protobuf, &policy).unwrap();
        // Fresh times: every delta is added, none dropped as re-sent.
        for p in &mut batch.points {
            p.time_unix_nano += iters * 1_000_000_000;
        }
        state.apply(TelemetryUpdate::Receipt(Box::new(Receipt {
            at: iters as f64,
            protocol: vibe_agent::otlp::Protocol::Http,
            path: "/v1/metrics",
            status: 200,
            signal: Some(Signal::Metrics),
            wire_bytes: body.len() as u64,
            decode_error: None,
            payload: Payload::Metrics(batch),
            queue_dropped_points_total: 0,
        })));
        iters += 1;
    }
    let full = (iters as f64 * n_points as f64) / t.elapsed().as_secs_f64();
    println!(
        "{name}: {n_points} points/request, {} bytes:\n  decode+convert {:.2} M points/s \
         (target 1.00); with the model's fold {:.2} M/s\n  peer paths: prost decode alone \
         {:.2} M/s (ratio {:.2}); prost decode then convert {:.2} M/s (ratio {:.2})",
        body.len(),
        convert / 1e6,
        full / 1e6,
        bare / 1e6,
        convert / bare,
        via_prost / 1e6,
        convert / via_prost,
    );
}

/// A child process under measurement, killed by PID when dropped.
struct Peer {
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn flood(
    target: Target,
    req: Request,
    secs: u64,
    connections: usize,
    pid: u32,
) -> (String, f64) {
    let req = std::sync::Arc::new(req);
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    let rss_before = rss_mib(pid);
    for _ in 0..connections {
        let target = target.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = target.connect().await;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < stop {
                let t = Instant::now();
                if conn.post(&req).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut rss_peak = rss_before;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_peak = rss_peak.max(rss_mib(pid));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let rps = lat.len() as f64 / secs as f64;
    let line = format!(
        "{rps:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors; RSS {rss_before:.1} MiB before, \
         {rss_peak:.1} MiB peak, {:.1} MiB after",
        q(0.5),
        q(0.99),
        rss_mib(pid)
    );
    (line, rps)
}

/// Open-loop load: request `i` is due at `start + i / rate`, spread over `connections`
/// kept-alive connections (request `i` on connection `i mod connections`, as wrk2 does).
/// Latency is counted from the due time, so a slow answer delays the requests queued
/// behind it and shows in the figure (no coordinated omission); the service time (from
/// the actual send) is printed beside it. RSS is sampled every 500 ms and printed every
/// 10 s, so growth under the flood is visible.
async fn paced(
    target: Target,
    req: Request,
    rate: f64,
    secs: u64,
    connections: usize,
    pid: u32,
) -> (String, f64) {
    let req = std::sync::Arc::new(req);
    let start = Instant::now() + Duration::from_millis(100);
    let stop = start + Duration::from_secs(secs);
    let rss_before = rss_mib(pid);
    let mut tasks = Vec::new();
    for k in 0..connections {
        let target = target.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = target.connect().await;
            let (mut from_due, mut service) = (Vec::new(), Vec::new());
            let mut errors = 0u64;
            let mut i = k as u64;
            loop {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= stop {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                if conn.post(&req).await {
                    let done = Instant::now();
                    from_due.push(done - due);
                    service.push(done - sent);
                } else {
                    errors += 1;
                }
                i += connections as u64;
            }
            (from_due, service, errors)
        }));
    }
    let mut rss_peak = rss_before;
    let mut marks = Vec::new();
    let mut next_mark = start + Duration::from_secs(10);
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = rss_mib(pid);
        rss_peak = rss_peak.max(rss);
        if Instant::now() >= next_mark {
            marks.push(format!("{rss:.1}"));
            next_mark += Duration::from_secs(10);
        }
    }
    let (mut from_due, mut service) = (Vec::new(), Vec::new());
    let mut errors = 0;
    for t in tasks {
        let (d, s, e) = t.await.unwrap();
        from_due.extend(d);
        service.extend(s);
        errors += e;
    }
    from_due.sort();
    service.sort();
    let q = |lat: &[Duration], p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let line = format!(
        "{:.0} requests/s answered (target {rate:.0}), {errors} errors; from the due time p50 {:.2} ms, \
         p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; service time p50 {:.2} ms, p99 {:.2} ms; \
         RSS {rss_before:.1} MiB before, every 10 s [{}], peak {rss_peak:.1} MiB, {:.1} MiB after",
        from_due.len() as f64 / secs as f64,
        q(&from_due, 0.5),
        q(&from_due, 0.99),
        q(&from_due, 0.999),
        q(&from_due, 1.0),
        q(&service, 0.5),
        q(&service, 0.99),
        marks.join(", "),
        rss_mib(pid)
    );
    (line, q(&from_due, 0.99))
}

fn agent(state: &Path, metrics: u16, otlp: u16, otlp_grpc: u16) -> Peer {
    let cfg = state.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "service = []\n[listen]\nmetrics = \"127.0.0.1:{metrics}\"\notlp = \"127.0.0.1:{otlp}\"\n\
             otlp_grpc = \"127.0.0.1:{otlp_grpc}\"\n\
             [agent]\nstate_dir = \"{}\"\nlog_level = \"warn\"\n[systemd]\nunits = []\n\
             [host]\npaths = []\n[claude]\nhomes = []\n",
            state.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vibe-agent"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vibe-agent");
    Peer { child }
}

/// A request body and its content type. `time_slots` are the byte offsets of the points'
/// `time_unix_nano` (fixed64): each request gets fresh times there, so the receiver adds
/// every delta instead of dropping a re-sent batch.
#[derive(Clone)]
struct Request {
    body: Vec<u8>,
    content_type: &'static str,
    time_slots: Vec<usize>,
}

static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A client that keeps one connection alive (each load task sends one request at a time).
fn one_connection() -> reqwest::Client {
    // reqwest is built without a rustls provider of its own.
    vibe_agent::tlsclient::install_default_provider();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// Where a load task sends its requests.
#[derive(Clone)]
enum Target {
    /// OTLP/HTTP: POST to this URL.
    Http(String),
    /// OTLP/gRPC: the metrics `Export` call on this address, over plaintext HTTP/2.
    Grpc(std::net::SocketAddr),
}

/// One kept-alive connection of a load task, which sends one request at a time on it.
enum Conn {
    Http(reqwest::Client, String),
    Grpc(h2::client::SendRequest<axum::body::Bytes>, String),
}

const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

impl Target {
    async fn connect(&self) -> Conn {
        match self {
            Target::Http(url) => Conn::Http(one_connection(), url.clone()),
            Target::Grpc(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                tcp.set_nodelay(true).unwrap();
                let (send, conn) = h2::client::handshake(tcp).await.expect("HTTP/2");
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Conn::Grpc(send, format!("http://{addr}{GRPC_EXPORT}"))
            }
        }
    }
}

impl Conn {
    /// Sends the next request and reads the whole answer; true on success (a 2xx, or gRPC
    /// status OK).
    async fn post(&mut self, req: &Request) -> bool {
        match self {
            Conn::Http(client, url) => req.post(client, url).await,
            Conn::Grpc(send, uri) => grpc_export(send, uri, req).await.unwrap_or(false),
        }
    }
}

/// One gRPC `Export` call: the body in a gRPC frame, then the reply and its trailers.
async fn grpc_export(
    send: &mut h2::client::SendRequest<axum::body::Bytes>,
    uri: &str,
    req: &Request,
) -> Result<bool, h2::Error> {
    let body = req.next_body();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = send.clone().ready().await?;
    let (resp, mut stream) = ready.send_request(request, false)?;
    stream.send_data(frame.into(), true)?;
    let resp = resp.await?;
    let ok = |h: &axum::http::HeaderMap| h.get("grpc-status").map(|v| v == "0");
    if let Some(status) = ok(resp.headers()) {
        return Ok(status);
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(body
        .trailers()
        .await?
        .as_ref()
        .and_then(ok)
        .unwrap_or(false))
}

impl Request {
    /// POSTs the next body and reads the answer; true on a 2xx.
    async fn post(&self, client: &reqwest::Client, url: &str) -> bool {
        let r = client
            .post(url)
            .header("content-type", self.content_type)
            .body(self.next_body())
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        }
    }

    /// The body to send next: with fresh point times when it has slots.
    fn next_body(&self) -> axum::body::Bytes {
        let mut body = self.body.clone();
        if !self.time_slots.is_empty() {
            let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let time = 1_800_000_000_000_000_000u64 + seq * 1_000;
            for (k, &at) in self.time_slots.iter().enumerate() {
                body[at..at + 8].copy_from_slice(&(time + k as u64).to_le_bytes());
            }
        }
        body.into()
    }
}

/// The Claude body, each point's time set to a marker whose bytes locate its slot.
fn otlp_request() -> Request {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    const MARK: u64 = 0x7e57_0000_0000_0000;
    let mut req = ExportMetricsServiceRequest::decode(&claude_body()[..]).unwrap();
    let mut k = 0;
    let mut mark = |t: &mut u64| {
        *t = MARK + k;
        k += 1;
    };
    for m in req
        .resource_metrics
        .iter_mut()
        .flat_map(|r| &mut r.scope_metrics)
        .flat_map(|s| &mut s.metrics)
    {
        match &mut m.data {
            Some(Data::Sum(s)) => s
                .data_points
                .iter_mut()
                .for_each(|p| mark(&mut p.time_unix_nano)),
            Some(Data::Gauge(g)) => g
                .data_points
                .iter_mut()
                .for_each(|p| mark(&mut p.time_unix_nano)),
            Some(Data::Histogram(h)) => h
                .data_points
                .iter_mut()
                .for_each(|p| mark(&mut p.time_unix_nano)),
            _ => {}
        }
    }
    let body = req.encode_to_vec();
    let time_slots: Vec<usize> = (0..k)
        .map(|i| {
            let needle = (MARK + i).to_le_bytes();
            body.windows(8)
                .position(|w| w == needle)
                .expect("the marker is in the body")
        })
        .collect();
    Request {
        body,
        content_type: "application/x-protobuf",
        time_slots,
    }
}

/// Both floods against one server: paced at `rate` (the latency figure), then closed-loop
/// (the most it answers). Returns the paced p99 in ms and the closed-loop requests/s.
fn measure(
    rt: &tokio::runtime::Runtime,
    name: &str,
    target: Target,
    req: Request,
    pid: u32,
    load: &Load,
) -> (f64, f64) {
    let (line, p99) = rt.block_on(paced(
        target.clone(),
        req.clone(),
        load.rate,
        load.secs,
        load.paced_connections,
        pid,
    ));
    println!(
        "{name}, paced ({} s, {} connections, 2 cores shared with the load): {line}",
        load.secs, load.paced_connections
    );
    let (line, rps) = rt.block_on(flood(target, req, load.secs, load.connections, pid));
    println!(
        "{name}, closed loop ({} s, {} connections, 2 cores shared with the load): {line}",
        load.secs, load.connections
    );
    (p99, rps)
}

struct Load {
    secs: u64,
    rate: f64,
    paced_connections: usize,
    connections: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let load = Load {
        secs: env_or("BENCH_SECS", 20),
        rate: env_or("BENCH_RATE", 10_000.0),
        paced_connections: env_or("BENCH_PACED_CONNECTIONS", 64),
        connections: env_or("BENCH_CONNECTIONS", 16),
    };
    in_process("claude-sized request", &claude_body());
    in_process("1000-point request", &big_body(1000));
    if std::env::var("BENCH_HTTP").as_deref() == Ok("0") {
        return;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let (mp, op, gp) = (free_port(), free_port(), free_port());
    let a = agent(state.path(), mp, op, gp);
    wait_port(op);
    wait_port(gp);
    let (agent_p99, agent_rps) = measure(
        &rt,
        "vibe-agent /v1/metrics",
        Target::Http(format!("http://127.0.0.1:{op}/v1/metrics")),
        otlp_request(),
        a.child.id(),
        &load,
    );
    // The same requests over gRPC, to the same agent, in the same run.
    let (grpc_p99, grpc_rps) = measure(
        &rt,
        "vibe-agent gRPC MetricsService/Export",
        Target::Grpc(([127, 0, 0, 1], gp).into()),
        otlp_request(),
        a.child.id(),
        &load,
    );
    println!(
        "ratios vibe-agent gRPC/HTTP: closed-loop requests/s {:.2}; paced p99 {:.2} (below 1: \
         gRPC answers sooner)",
        grpc_rps / agent_rps,
        grpc_p99 / agent_p99
    );
    let counts = rt.block_on(async {
        let text = one_connection()
            .get(format!("http://127.0.0.1:{mp}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("vibe_otlp_points_"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    println!("vibe-agent after the HTTP and gRPC floods: {counts}");
    drop(a);

    let vm = Path::new("/usr/bin/victoria-metrics");
    if vm.exists() {
        let port = free_port();
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(vm)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics");
        let p = Peer { child };
        wait_port(port);
        let accepts = |url: &str, req: &Request| rt.block_on(req.post(&one_connection(), url));
        let otlp = format!("http://127.0.0.1:{port}/opentelemetry/v1/metrics");
        let import = format!("http://127.0.0.1:{port}/api/v1/import/prometheus");
        let text = Request {
            body: claude_text_body(),
            content_type: "text/plain",
            time_slots: Vec::new(),
        };
        let (name, url, req) = if accepts(&otlp, &otlp_request()) {
            (
                "peer victoria-metrics /opentelemetry/v1/metrics",
                otlp,
                otlp_request(),
            )
        } else if accepts(&import, &text) {
            println!(
                "peer victoria-metrics takes no OTLP here (v1.92+ does): the same {} samples \
                 as Prometheus text, {} bytes",
                String::from_utf8_lossy(&text.body).lines().count(),
                text.body.len()
            );
            (
                "peer victoria-metrics /api/v1/import/prometheus",
                import,
                text,
            )
        } else {
            println!("peer victoria-metrics takes neither OTLP nor the text import: no HTTP ratio");
            return;
        };
        let (peer_p99, peer_rps) = measure(&rt, name, Target::Http(url), req, p.child.id(), &load);
        println!(
            "ratios vibe-agent/peer: closed-loop requests/s {:.2}; paced p99 {:.2} (below 1: \
             the agent answers sooner)",
            agent_rps / peer_rps,
            agent_p99 / peer_p99
        );
    } else {
        println!("peer victoria-metrics not installed (Debian victoria-metrics): no HTTP ratio");
    }
}
