//! OTLP receiver benchmark. Run with `cargo bench --bench otlp`. Prints figures and
//! ratios; asserts nothing (machines are noisy; tests never assert speed).
//!
//! 1. Decode + convert (the receiver's path: [`decode::metrics_batch`]), and that plus the
//!    model's fold into the telemetry state, in this process on one core: data points per
//!    second for a Claude-sized protobuf request (a real CLI capture from
//!    tests/fixtures/otlp) and for a large synthetic one (1 000 points), against prost's
//!    bare decode of the same bytes (what a receiver that builds the messages pays before
//!    converting anything) and prost decode followed by conversion.
//! 2. End to end over HTTP: the release `vibe-agent` binary as a child, flooded for
//!    `BENCH_SECS` (default 20; the figure is 60) by `BENCH_CONNECTIONS` (default
//!    16) kept-alive connections posting the Claude-sized request; requests per second,
//!    p50/p99 latency, and the child's RSS before, during and after. The same flood then
//!    goes to VictoriaMetrics' own OTLP endpoint (Debian `victoria-metrics`) as the peer.
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
        let batch = decode::metrics_batch(body, Format::Protobuf, &policy).unwrap();
        state.apply(TelemetryUpdate::Receipt(Box::new(Receipt {
            at: iters as f64,
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

async fn flood(url: String, body: Vec<u8>, secs: u64, connections: usize, pid: u32) -> String {
    let body = axum::body::Bytes::from(body);
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    let rss_before = rss_mib(pid);
    for _ in 0..connections {
        let url = url.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < stop {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
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
    format!(
        "{:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors; RSS {rss_before:.1} MiB before, \
         {rss_peak:.1} MiB peak, {:.1} MiB after",
        lat.len() as f64 / secs as f64,
        q(0.5),
        q(0.99),
        rss_mib(pid)
    )
}

fn agent(state: &Path, metrics: u16, otlp: u16) -> Peer {
    let cfg = state.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "service = []\n[listen]\nmetrics = \"127.0.0.1:{metrics}\"\notlp = \"127.0.0.1:{otlp}\"\n\
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let conns: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
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
    let (mp, op) = (free_port(), free_port());
    let a = agent(state.path(), mp, op);
    wait_port(op);
    let line = rt.block_on(flood(
        format!("http://127.0.0.1:{op}/v1/metrics"),
        claude_body(),
        secs,
        conns,
        a.child.id(),
    ));
    println!(
        "vibe-agent over HTTP ({secs} s, {conns} connections, 2 cores shared with the load): {line}"
    );
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
        let probe = rt.block_on(async {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(format!("http://127.0.0.1:{port}/opentelemetry/v1/metrics"))
                .header("content-type", "application/x-protobuf")
                .body(claude_body())
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        if probe.as_ref().map_or(true, |s| !(200..300).contains(s)) {
            println!(
                "peer victoria-metrics does not accept OTLP here ({probe:?}; OTLP ingestion needs v1.92+): no HTTP ratio"
            );
            return;
        }
        let line = rt.block_on(flood(
            format!("http://127.0.0.1:{port}/opentelemetry/v1/metrics"),
            claude_body(),
            secs,
            conns,
            p.child.id(),
        ));
        println!("peer victoria-metrics /opentelemetry/v1/metrics, same flood: {line}");
    } else {
        println!("peer victoria-metrics not installed (Debian victoria-metrics): no HTTP ratio");
    }
}
