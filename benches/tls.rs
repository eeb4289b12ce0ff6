//! TLS benchmark: `/metrics` of the release `vibe-agent` over plain HTTP, over TLS, and
//! over TLS with basic auth, beside Debian's `prometheus-node-exporter` serving the same
//! web config file, all started by this program and measured in the same run. Run with
//! `cargo bench --bench tls`.
//!
//! Prints figures and ratios, asserts nothing. Two measures per peer:
//!
//! 1. keep-alive: after a warm-up, sequential GETs on one kept-alive connection (as
//!    Prometheus scrapes), median/p90/p99;
//! 2. handshake: a new connection for every GET (TCP connect, the TLS handshake, one
//!    request), median/p90, and the server's CPU time per connection; the difference to
//!    plain HTTP on new connections is the handshake's cost.
//!
//! Certificates come from `openssl` (a throwaway P-256 CA); the password hash is bcrypt's
//! default cost (10), as `htpasswd -B` writes it. Knob: `BENCH_SCRAPES` (default 500).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const WARMUP: usize = 20;
const BUDGET: Duration = Duration::from_secs(25);
const PASSWORD: &str = "bench-password";

struct Peer {
    name: String,
    child: Child,
    port: u16,
    https: bool,
    auth: bool,
}

impl Peer {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/metrics", self.port)
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = procfs::process::Process::new(self.child.id() as i32)
            .and_then(|p| p.stat())
            .expect("/proc/PID/stat");
        (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
    }

    fn wait_listening(&mut self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("{} exited: {s}", self.name);
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} not listening",
                self.name
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (Debian's `openssl`)");
    assert!(st.success(), "openssl {args:?}: {st}");
}

/// CA and server certificate for 127.0.0.1 in `dir`; returns the CA's path.
fn make_pki(dir: &Path) -> PathBuf {
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(p256);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=bench-ca",
    ]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    openssl(dir, &ca);
    let mut req = vec!["req"];
    req.extend(p256);
    req.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=bench",
    ]);
    openssl(dir, &req);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    dir.join("ca.crt")
}

fn start_agent(dir: &Path, name: &str, web: Option<&Path>) -> Peer {
    let port = free_port();
    let state = dir.join(format!("state-{name}"));
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.join(format!("{name}.toml"));
    let web_line = web
        .map(|w| format!("web_config_file = \"{}\"\n", w.display()))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[listen]\nmetrics = \"127.0.0.1:{port}\"\notlp = \"\"\n{web_line}\n[agent]\nstate_dir = \"{}\"\n",
            state.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
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
        name: name.into(),
        child,
        port,
        https: web.is_some(),
        auth: web.is_some_and(|w| {
            std::fs::read_to_string(w)
                .unwrap()
                .contains("basic_auth_users")
        }),
    }
}

fn client(ca: &Path, keep_alive: bool) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        vibe_agent::tlsclient::ring_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .pool_max_idle_per_host(if keep_alive { 1 } else { 0 })
        .build()
        .unwrap()
}

struct Figures {
    samples: Vec<Duration>,
    cpu_per_request: f64,
}

impl Figures {
    fn q(&self, q: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort();
        s[((s.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
    }
}

fn measure(peer: &Peer, client: &reqwest::Client, count: usize) -> Figures {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = peer.url();
    rt.block_on(async {
        let get = async || {
            let mut req = client.get(&url);
            if peer.auth {
                req = req.basic_auth("prometheus", Some(PASSWORD));
            }
            let resp = req.send().await.expect("scrape");
            assert!(
                resp.status().is_success(),
                "{}: {}",
                peer.name,
                resp.status()
            );
            resp.bytes().await.expect("body");
        };
        for _ in 0..WARMUP {
            get().await;
        }
        let cpu = peer.cpu_seconds();
        let mut samples = Vec::with_capacity(count);
        let budget = Instant::now();
        while samples.len() < count && budget.elapsed() < BUDGET {
            let t = Instant::now();
            get().await;
            samples.push(t.elapsed());
        }
        Figures {
            cpu_per_request: (peer.cpu_seconds() - cpu) / samples.len() as f64 * 1e3,
            samples,
        }
    })
}

fn main() {
    vibe_agent::tlsclient::install_default_provider();
    let count: usize = std::env::var("BENCH_SCRAPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let ca = make_pki(dir.path());
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    let tls_only = dir.path().join("web-tls.yml");
    std::fs::write(
        &tls_only,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let with_auth = dir.path().join("web-auth.yml");
    std::fs::write(
        &with_auth,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{}'\n",
            cert.display(),
            key.display(),
            bcrypt::hash(PASSWORD, bcrypt::DEFAULT_COST).unwrap()
        ),
    )
    .unwrap();

    let mut peers = vec![
        start_agent(dir.path(), "vibe-agent http", None),
        start_agent(dir.path(), "vibe-agent https", Some(&tls_only)),
        start_agent(dir.path(), "vibe-agent https+auth", Some(&with_auth)),
    ];
    if Path::new(NODE_EXPORTER).exists() {
        let port = free_port();
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", with_auth.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter");
        peers.push(Peer {
            name: "node_exporter https+auth".into(),
            child,
            port,
            https: true,
            auth: true,
        });
    } else {
        eprintln!("{NODE_EXPORTER} is missing: measuring the agent alone");
    }
    for p in &mut peers {
        p.wait_listening();
    }
    // Let the agents' first probe rounds pass.
    std::thread::sleep(Duration::from_secs(3));

    println!(
        "\n/metrics over TLS, {count} requests per row, same run, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| {:<26} | {:>10} | {:>8} | {:>8} | {:>8} | {:>15} |",
        "peer", "connection", "p50 ms", "p90 ms", "p99 ms", "server CPU ms/req"
    );
    println!(
        "|{:-<28}|{:->12}|{:->10}|{:->10}|{:->10}|{:->17}|",
        "", "", "", "", "", ""
    );
    let mut medians = Vec::new();
    for p in &peers {
        for keep_alive in [true, false] {
            let f = measure(p, &client(&ca, keep_alive), count);
            println!(
                "| {:<26} | {:>10} | {:>8.3} | {:>8.3} | {:>8.3} | {:>15.3} |",
                p.name,
                if keep_alive { "keep-alive" } else { "new" },
                f.q(0.5),
                f.q(0.9),
                f.q(0.99),
                f.cpu_per_request
            );
            medians.push((p.name.clone(), keep_alive, f.q(0.5), f.cpu_per_request));
        }
    }
    let find = |name: &str, ka: bool| {
        medians
            .iter()
            .find(|(n, k, _, _)| n == name && *k == ka)
            .map(|(_, _, m, c)| (*m, *c))
    };
    if let (Some(http_new), Some(tls_new), Some(tls_ka), Some(http_ka)) = (
        find("vibe-agent http", false),
        find("vibe-agent https", false),
        find("vibe-agent https", true),
        find("vibe-agent http", true),
    ) {
        println!(
            "\nhandshake cost (https new - http new): {:.3} ms median latency, {:.3} ms server CPU per connection",
            tls_new.0 - http_new.0,
            tls_new.1 - http_new.1
        );
        println!(
            "keep-alive over TLS vs plain: {:.3} ms vs {:.3} ms median ({:.2}x); target: under 1 ms: {}",
            tls_ka.0,
            http_ka.0,
            tls_ka.0 / http_ka.0,
            if tls_ka.0 < 1.0 { "met" } else { "MISSED" }
        );
    }
    if let (Some(a), Some(n)) = (
        find("vibe-agent https+auth", true),
        find("node_exporter https+auth", true),
    ) {
        println!(
            "https+basic auth keep-alive: vibe-agent {:.3} ms, node_exporter {:.3} ms median ({:.1}x)",
            a.0,
            n.0,
            n.0 / a.0
        );
    }
}
