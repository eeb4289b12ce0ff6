//! Scrape benchmark: the release `vibe-agent` against Debian's `prometheus-node-exporter`,
//! both started by this program and measured in the same run, so the ratios hold on any
//! machine. Run with `cargo bench --bench scrape`.
//!
//! It prints figures and ratios and asserts nothing (machines are noisy; tests never
//! assert speed). What it measures, in this order so the idle figures are not disturbed by
//! the scrapes:
//!
//! 1. idle CPU over 60 s (utime+stime from `/proc/PID/stat`, as % of one core), with the
//!    agent's default probe and sampling intervals and no scrapes at all;
//! 2. resident memory (VmRSS from `/proc/PID/status`) after 20 s of that idle period;
//! 3. `/metrics` latency: after a warm-up, sequential GETs on one kept-alive connection,
//!    plain and with `Accept-Encoding: gzip` (what Prometheus sends), median/p90/p99, and
//!    the server's own CPU time per scrape; then RSS again, after all those scrapes.
//!
//! Every default source of the agent is on (default services, paths, units and Claude
//! homes); only the listeners move to free loopback ports and the state directory to a
//! temporary one. Both children are killed by PID at the end, also on a panic.
//!
//! Knobs (environment): `BENCH_SCRAPES` (default 500 per peer and encoding),
//! `BENCH_IDLE_SECS` (default 60), `BENCH_RSS_SECS` (default 20).

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// Scrapes before measuring: the first ones fill caches and grow buffers.
const WARMUP_SCRAPES: usize = 20;
/// A peer/encoding pair stops early when its scrapes take longer than this in total.
const LATENCY_BUDGET: Duration = Duration::from_secs(25);

/// A child process under measurement, killed by PID when dropped.
struct Peer {
    name: &'static str,
    child: Child,
    port: u16,
}

impl Peer {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }

    /// utime+stime of the whole process (all threads), in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = procfs::process::Process::new(self.pid() as i32)
            .and_then(|p| p.stat())
            .unwrap_or_else(|e| panic!("{}: /proc/{}/stat: {e}", self.name, self.pid()));
        (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
    }

    /// VmRSS in bytes.
    fn rss_bytes(&self) -> u64 {
        let status = procfs::process::Process::new(self.pid() as i32)
            .and_then(|p| p.status())
            .unwrap_or_else(|e| panic!("{}: /proc/{}/status: {e}", self.name, self.pid()));
        status.vmrss.expect("VmRSS is present for a live process") * 1024
    }

    fn threads(&self) -> i64 {
        procfs::process::Process::new(self.pid() as i32)
            .and_then(|p| p.stat())
            .map_or(0, |s| s.num_threads)
    }

    /// Waits until the port accepts connections (no HTTP request, so the idle figures
    /// start from a process that has served nothing).
    fn wait_listening(&mut self, deadline: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited before listening: {status}", self.name);
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < deadline,
                "{} did not listen on 127.0.0.1:{} within {deadline:?}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released; the child binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latency figures of one peer and encoding.
struct Latency {
    samples: Vec<Duration>,
    body_bytes: usize,
    server_cpu_per_scrape: f64,
}

impl Latency {
    fn quantile(&self, q: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        let i = ((s.len() as f64 - 1.0) * q).round() as usize;
        s[i]
    }
}

/// The first three fields of /proc/loadavg, to show how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

async fn scrape(client: &reqwest::Client, url: &str, gzip: bool) -> usize {
    let mut req = client.get(url);
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let resp = req.send().await.expect("scrape answers");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.bytes().await.expect("scrape body").len()
}

fn measure_latency(peer: &Peer, gzip: bool, count: usize) -> Latency {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // One client per run: one kept-alive connection, as Prometheus scrapes.
    // reqwest is built without a rustls provider of its own.
    vibe_agent::tlsclient::install_default_provider();
    let client = reqwest::Client::builder()
        .no_gzip()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let url = peer.url();
    rt.block_on(async {
        let mut body_bytes = 0;
        for _ in 0..WARMUP_SCRAPES {
            body_bytes = scrape(&client, &url, gzip).await;
        }
        let cpu_before = peer.cpu_seconds();
        let mut samples = Vec::with_capacity(count);
        let budget = Instant::now();
        while samples.len() < count && budget.elapsed() < LATENCY_BUDGET {
            let t = Instant::now();
            scrape(&client, &url, gzip).await;
            samples.push(t.elapsed());
        }
        let server_cpu_per_scrape = (peer.cpu_seconds() - cpu_before) / samples.len() as f64;
        Latency {
            samples,
            body_bytes,
            server_cpu_per_scrape,
        }
    })
}

fn start_agent(dir: &Path) -> Peer {
    let port = free_port();
    let otlp_port = free_port();
    let config = dir.join("agent.toml");
    // Only the listeners and the state directory move; every source keeps its defaults.
    std::fs::write(
        &config,
        format!(
            "[listen]\nmetrics = \"127.0.0.1:{port}\"\notlp = \"127.0.0.1:{otlp_port}\"\notlp_grpc = \"\"\n\n\
             [agent]\nstate_dir = \"{}\"\n",
            dir.join("state").display()
        ),
    )
    .expect("write bench config");
    std::fs::create_dir_all(dir.join("state")).expect("state dir");
    let log = std::fs::File::create(dir.join("vibe-agent.log")).expect("agent log");
    let child = Command::new(env!("CARGO_BIN_EXE_vibe-agent"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vibe-agent");
    Peer {
        name: "vibe-agent",
        child,
        port,
    }
}

fn start_node_exporter(dir: &Path) -> Peer {
    let port = free_port();
    let log = std::fs::File::create(dir.join("node-exporter.log")).expect("node_exporter log");
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus-node-exporter");
    Peer {
        name: "node_exporter",
        child,
        port,
    }
}

fn main() {
    if !Path::new(NODE_EXPORTER).exists() {
        eprintln!(
            "{NODE_EXPORTER} is missing: the benchmark compares against it.\n\
             Install it with: sudo apt-get install -y prometheus-node-exporter"
        );
        std::process::exit(2);
    }
    let scrapes = env_num("BENCH_SCRAPES", 500) as usize;
    let idle = Duration::from_secs(env_num("BENCH_IDLE_SECS", 60));
    let rss_at = Duration::from_secs(env_num("BENCH_RSS_SECS", 20)).min(idle);

    let load_before = loadavg();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut agent = start_agent(dir.path());
    let mut node = start_node_exporter(dir.path());
    agent.wait_listening(Duration::from_secs(10));
    node.wait_listening(Duration::from_secs(10));
    eprintln!(
        "vibe-agent pid {} on :{}, node_exporter pid {} on :{}; idle for {}s ...",
        agent.pid(),
        agent.port,
        node.pid(),
        node.port,
        idle.as_secs()
    );

    // Idle: no scrapes at all. RSS part-way, CPU over the whole period.
    let t0 = Instant::now();
    let cpu0 = [agent.cpu_seconds(), node.cpu_seconds()];
    std::thread::sleep(rss_at);
    let rss_idle = [agent.rss_bytes(), node.rss_bytes()];
    std::thread::sleep(idle.saturating_sub(t0.elapsed()));
    let wall = t0.elapsed().as_secs_f64();
    let cpu_idle = [
        (agent.cpu_seconds() - cpu0[0]) / wall * 100.0,
        (node.cpu_seconds() - cpu0[1]) / wall * 100.0,
    ];
    let threads = [agent.threads(), node.threads()];

    eprintln!("scraping: {scrapes} sequential GETs per peer and encoding ...");
    let lat = [
        [
            measure_latency(&agent, false, scrapes),
            measure_latency(&agent, true, scrapes),
        ],
        [
            measure_latency(&node, false, scrapes),
            measure_latency(&node, true, scrapes),
        ],
    ];
    let rss_scraped = [agent.rss_bytes(), node.rss_bytes()];
    drop(agent);
    drop(node);

    let mut out = String::new();
    let row = |out: &mut String, what: &str, a: String, n: String, ratio: String| {
        let _ = writeln!(out, "| {what:<38} | {a:>12} | {n:>13} | {ratio:>11} |");
    };
    let _ = writeln!(
        out,
        "\nvibe-agent {} vs node_exporter (Debian), same run, {} cores",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| {:<38} | {:>12} | {:>13} | {:>11} |",
        "figure", "vibe-agent", "node_exporter", "node / vibe"
    );
    let _ = writeln!(out, "|{:-<40}|{:->14}|{:->15}|{:->13}|", "", "", "", "");
    for (e, enc) in ["plain", "gzip"].iter().enumerate() {
        let (a, n) = (&lat[0][e], &lat[1][e]);
        for (q, qname) in [(0.5, "median"), (0.9, "p90"), (0.99, "p99")] {
            let (da, dn) = (a.quantile(q), n.quantile(q));
            row(
                &mut out,
                &format!("/metrics {enc} {qname} (ms)"),
                format!("{:.3}", ms(da)),
                format!("{:.3}", ms(dn)),
                format!("{:.1}x", dn.as_secs_f64() / da.as_secs_f64()),
            );
        }
        row(
            &mut out,
            &format!("/metrics {enc} server CPU/scrape (ms)"),
            format!("{:.3}", a.server_cpu_per_scrape * 1e3),
            format!("{:.3}", n.server_cpu_per_scrape * 1e3),
            if a.server_cpu_per_scrape > 0.0 {
                format!("{:.1}x", n.server_cpu_per_scrape / a.server_cpu_per_scrape)
            } else {
                "-".into()
            },
        );
        row(
            &mut out,
            &format!("/metrics {enc} body (KiB)"),
            format!("{:.1}", a.body_bytes as f64 / 1024.0),
            format!("{:.1}", n.body_bytes as f64 / 1024.0),
            format!("{:.1}x", n.body_bytes as f64 / a.body_bytes as f64),
        );
        row(
            &mut out,
            &format!("/metrics {enc} scrapes measured"),
            a.samples.len().to_string(),
            n.samples.len().to_string(),
            String::new(),
        );
    }
    row(
        &mut out,
        &format!("RSS idle, after {}s (MiB)", rss_at.as_secs()),
        format!("{:.1}", mib(rss_idle[0])),
        format!("{:.1}", mib(rss_idle[1])),
        format!("{:.1}x", rss_idle[1] as f64 / rss_idle[0] as f64),
    );
    row(
        &mut out,
        "RSS after the scrapes (MiB)",
        format!("{:.1}", mib(rss_scraped[0])),
        format!("{:.1}", mib(rss_scraped[1])),
        format!("{:.1}x", rss_scraped[1] as f64 / rss_scraped[0] as f64),
    );
    row(
        &mut out,
        &format!("idle CPU over {:.0}s (% of one core)", wall),
        format!("{:.3}", cpu_idle[0]),
        format!("{:.3}", cpu_idle[1]),
        if cpu_idle[0] > 0.0 {
            format!("{:.1}x", cpu_idle[1] / cpu_idle[0])
        } else {
            "-".into()
        },
    );
    row(
        &mut out,
        "threads",
        threads[0].to_string(),
        threads[1].to_string(),
        String::new(),
    );
    let _ = writeln!(
        out,
        "\nMachine load average (1 5 15 min): {load_before} at start, {} at end.",
        loadavg()
    );
    let tick_pct = 100.0 / procfs::ticks_per_second() as f64 / wall;
    let _ = writeln!(
        out,
        "\nCPU resolution: one clock tick = {tick_pct:.3}% over the idle period.\n\
         Targets: median plain under 1 ms and >= 5x faster than node_exporter; RSS idle under \
         12 MiB; idle CPU under 0.5%."
    );
    let median = lat[0][0].quantile(0.5);
    let speedup = lat[1][0].quantile(0.5).as_secs_f64() / median.as_secs_f64();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(
        out,
        "  median {:.3} ms < 1 ms: {}; {speedup:.1}x >= 5x: {}; RSS {:.1} MiB < 12 MiB: {}; \
         CPU {:.3}% < 0.5%: {}",
        ms(median),
        verdict(median < Duration::from_millis(1)),
        verdict(speedup >= 5.0),
        mib(rss_idle[0]),
        verdict(rss_idle[0] < 12 * 1024 * 1024),
        cpu_idle[0],
        verdict(cpu_idle[0] < 0.5),
    );
    print!("{out}");
}
