//! The integration tests' small DSL: write a config, run the agent in-process on a port-0
//! listener, scrape `/metrics` and read series from it, wait for a condition with a
//! deadline, and run the real and fake services the agent probes.
//!
//! Every child process a fixture starts is killed by its PID when the fixture drops; every
//! server listens on 127.0.0.1 only.

#![allow(dead_code)] // each test module uses a different part of the DSL

pub mod agent_process;
pub mod claude_cli;
pub mod fake_http;
pub mod jupyterlab;
pub mod logs;
pub mod pki;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Agent, Listeners};
use vibe_agent::model::{Check, Snapshot};

/// How long a test waits for the agent to see something before it fails. Generous: the
/// machine has two cores and several tests (and JupyterLabs) run at once.
pub const WAIT: Duration = Duration::from_secs(60);

/// The repository root, for fixtures and the test-deps directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/fixtures`, as bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// `promtool check metrics` over an exposition: it must exit 0 and print nothing.
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (`bash scripts/test` does)"
            )
        });
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\n--- exposition ---\n{text}",
        out.status
    );
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A TOML string literal (quoted and escaped).
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Polls `probe` every 50 ms until it returns `Ok`, or panics after `timeout` with `what`
/// and the last `Err` it returned (what was seen instead).
pub async fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends a child this test started: SIGTERM to its PID, up to `grace` to exit, then SIGKILL
/// (to the process group it leads when `group`, so its own children go too). The child is
/// reaped only at the end, so until then its PID and group id cannot be reused by another
/// process. Returns how it exited.
pub fn end_child(child: &mut Child, grace: Duration, group: bool) -> ExitStatus {
    use rustix::process::{
        Pid, Signal, WaitId, WaitIdOptions, kill_process, kill_process_group, waitid,
    };
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    let pid = Pid::from_child(child);
    let _ = kill_process(pid, Signal::TERM);
    let exited = || {
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        matches!(waitid(WaitId::Pid(pid), opts), Ok(Some(_)))
    };
    let deadline = Instant::now() + grace;
    while !exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group {
        let _ = kill_process_group(pid, Signal::KILL);
    } else if !exited() {
        let _ = kill_process(pid, Signal::KILL);
    }
    child.wait().expect("wait for a child we started")
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// One `[[service]]` block.
#[derive(Clone, Debug)]
pub struct Service {
    name: String,
    kind: &'static str,
    port: Option<u16>,
    health_url: Option<String>,
    token: Option<String>,
    interval: String,
    timeout: String,
    extra: Vec<String>,
}

impl Service {
    fn new(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.into(),
            kind,
            port: None,
            health_url: None,
            token: None,
            interval: "500ms".into(),
            timeout: "500ms".into(),
            extra: Vec::new(),
        }
    }

    /// code-server on `port`, health at `/healthz`.
    pub fn code_server(name: &str, port: u16) -> Self {
        let mut s = Self::new(name, "code-server");
        s.port = Some(port);
        s.health_url = Some(format!("http://127.0.0.1:{port}/healthz"));
        s
    }

    /// JupyterLab on `port` under `/jupyter/`, with an inline token.
    pub fn jupyter(name: &str, port: u16, token: &str) -> Self {
        let mut s = Self::new(name, "jupyter");
        s.port = Some(port);
        s.health_url = Some(format!("http://127.0.0.1:{port}/jupyter/api"));
        s.token = Some(token.into());
        s
    }

    /// No token in the agent's config (a JupyterLab whose token the agent must find, or
    /// whose `/api/status` is not probed).
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// A generic HTTP service on `port`, health at `path`.
    pub fn http(name: &str, port: u16, path: &str) -> Self {
        let mut s = Self::new(name, "http");
        s.port = Some(port);
        s.health_url = Some(format!("http://127.0.0.1:{port}{path}"));
        s
    }

    /// Only a systemd unit to check.
    pub fn unit_only(name: &str, unit: &str) -> Self {
        Self::new(name, "http").with(&format!("unit = {}", toml_str(unit)))
    }

    /// Only a port to check.
    pub fn port_only(name: &str, port: u16) -> Self {
        let mut s = Self::new(name, "http");
        s.port = Some(port);
        s
    }

    /// Probe interval and timeout, e.g. `("1s", "500ms")`.
    pub fn every(mut self, interval: &str, timeout: &str) -> Self {
        self.interval = interval.into();
        self.timeout = timeout.into();
        self
    }

    /// Another `key = value` line, verbatim.
    pub fn with(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    fn toml(&self) -> String {
        let mut t = format!(
            "[[service]]\nname = {}\nkind = {}\ninterval = {}\ntimeout = {}\n",
            toml_str(&self.name),
            toml_str(self.kind),
            toml_str(&self.interval),
            toml_str(&self.timeout),
        );
        if let Some(p) = self.port {
            t.push_str(&format!("port = {p}\n"));
        }
        if let Some(u) = &self.health_url {
            t.push_str(&format!("health_url = {}\n", toml_str(u)));
        }
        if let Some(tok) = &self.token {
            t.push_str(&format!("token = {}\n", toml_str(tok)));
        }
        for line in &self.extra {
            t.push_str(line);
            t.push('\n');
        }
        t
    }
}

/// An agent config for tests: metrics on 127.0.0.1:0, no OTLP receivers, no statusline
/// socket, no Claude homes,
/// no extra systemd units, only the services and paths the test names, fast host sampling.
/// Any other key is set with [`Config::set`] (a later value replaces an earlier one or a
/// default), so every test builds its file the same way, never by editing text.
#[derive(Clone, Debug, Default)]
pub struct Config {
    services: Vec<Service>,
    host_paths: Vec<String>,
    /// `(table, key, TOML value)`, in the order set.
    keys: Vec<(String, String, String)>,
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn service(mut self, s: Service) -> Self {
        self.services.push(s);
        self
    }

    pub fn host_path(mut self, p: impl AsRef<Path>) -> Self {
        self.host_paths
            .push(p.as_ref().to_string_lossy().into_owned());
        self
    }

    /// `key = value` in `[table]` (e.g. `"claude.forward"`); `value` is TOML, e.g.
    /// `toml_str("x")`, `"[]"` or `"65536"`.
    pub fn set(mut self, table: &str, key: &str, value: impl Into<String>) -> Self {
        self.keys.push((table.into(), key.into(), value.into()));
        self
    }

    /// `key = "value"` in `[table]`.
    pub fn set_str(self, table: &str, key: &str, value: &str) -> Self {
        self.set(table, key, toml_str(value))
    }

    /// `agent.log_level`.
    pub fn log_level(self, level: &str) -> Self {
        self.set_str("agent", "log_level", level)
    }

    /// `listen.metrics`.
    pub fn metrics_listen(self, addr: &str) -> Self {
        self.set_str("listen", "metrics", addr)
    }

    /// `listen.otlp` (the receiver is off by default).
    pub fn otlp_listen(self, addr: &str) -> Self {
        self.set_str("listen", "otlp", addr)
    }

    /// `listen.otlp_grpc` (the receiver is off by default).
    pub fn otlp_grpc_listen(self, addr: &str) -> Self {
        self.set_str("listen", "otlp_grpc", addr)
    }

    /// `listen.statusline` (the socket is off by default).
    pub fn statusline_socket(self, path: &Path) -> Self {
        self.set_str("listen", "statusline", &path.to_string_lossy())
    }

    /// `claude.homes`.
    pub fn claude_homes(self, homes: &[impl AsRef<str>]) -> Self {
        let homes: Vec<String> = homes.iter().map(|h| toml_str(h.as_ref())).collect();
        self.set("claude", "homes", format!("[{}]", homes.join(", ")))
    }

    /// The TOML text; `state_dir` is the agent's state directory.
    pub fn toml(&self, state_dir: &Path) -> String {
        let paths: Vec<String> = self.host_paths.iter().map(|p| toml_str(p)).collect();
        let mut tables: Vec<(String, Vec<(String, String)>)> = [
            (
                "listen",
                vec![
                    ("metrics", toml_str("127.0.0.1:0")),
                    ("otlp", toml_str("")),
                    ("otlp_grpc", toml_str("")),
                    ("statusline", toml_str("")),
                ],
            ),
            (
                "agent",
                vec![
                    ("state_dir", toml_str(&state_dir.to_string_lossy())),
                    ("log_level", toml_str("info")),
                ],
            ),
            ("systemd", vec![("units", "[]".to_string())]),
            (
                "host",
                vec![
                    ("paths", format!("[{}]", paths.join(", "))),
                    ("interval", toml_str("300ms")),
                    ("fs_timeout", toml_str("2s")),
                ],
            ),
            ("claude", vec![("homes", "[]".to_string())]),
        ]
        .into_iter()
        .map(|(t, keys)| {
            let keys = keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            (t.to_string(), keys)
        })
        .collect();
        for (table, key, value) in &self.keys {
            let i = match tables.iter().position(|(t, _)| t == table) {
                Some(i) => i,
                None => {
                    tables.push((table.clone(), Vec::new()));
                    tables.len() - 1
                }
            };
            let keys = &mut tables[i].1;
            match keys.iter_mut().find(|(k, _)| k == key) {
                Some(kv) => kv.1 = value.clone(),
                None => keys.push((key.clone(), value.clone())),
            }
        }
        let mut t = String::new();
        if self.services.is_empty() {
            t.push_str("service = []\n");
        }
        for (table, keys) in &tables {
            t.push_str(&format!("[{table}]\n"));
            for (k, v) in keys {
                t.push_str(&format!("{k} = {v}\n"));
            }
            t.push('\n');
        }
        for s in &self.services {
            t.push_str(&s.toml());
            t.push('\n');
        }
        t
    }

    pub fn settings(&self, state_dir: &Path) -> Settings {
        let text = self.toml(state_dir);
        Settings::from_toml(&text, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("test config does not load: {e}\n{text}"))
    }
}

// ---------------------------------------------------------------------------------------
// The agent in-process, and what it exposes
// ---------------------------------------------------------------------------------------

/// An HTTP client for the agent's listener: no proxy, a generous timeout (tests never
/// assert speed), no automatic decompression (reqwest is built without it).
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a rustls provider of its own.
    vibe_agent::tlsclient::install_default_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// Talks to an agent's metrics listener, in-process or a child process.
pub struct MetricsClient {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl MetricsClient {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base_url: format!("http://{addr}"),
            client: http_client(),
        }
    }

    /// GET a path on the agent's listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on the agent: {e}"))
    }

    /// One scrape of `/metrics`.
    pub async fn scrape(&self) -> Exposition {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status(), 200, "/metrics status");
        Exposition::new(resp.text().await.expect("/metrics body"))
    }

    /// Scrapes until `pred` holds for one exposition, or panics after [`WAIT`] showing the
    /// last exposition's `vibe_` lines.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Exposition) -> bool) -> Exposition {
        wait_until(WAIT, what, async || {
            let m = self.scrape().await;
            if pred(&m) { Ok(m) } else { Err(m.vibe_lines()) }
        })
        .await
    }
}

/// The agent running in this test's runtime, on 127.0.0.1:0. Derefs to a
/// [`MetricsClient`] on its listener.
pub struct TestAgent {
    pub agent: Agent,
    http: MetricsClient,
    _state_dir: tempfile::TempDir,
}

impl std::ops::Deref for TestAgent {
    type Target = MetricsClient;
    fn deref(&self) -> &MetricsClient {
        &self.http
    }
}

impl TestAgent {
    pub async fn start(config: &Config) -> Self {
        let state_dir = tempfile::tempdir().expect("state dir");
        let settings = config.settings(state_dir.path());
        let listeners = Listeners::bind(&settings).await.expect("bind 127.0.0.1:0");
        let agent = daemon::start(settings, listeners).expect("agent starts");
        let http = MetricsClient::new(agent.metrics_addr);
        Self {
            agent,
            http,
            _state_dir: state_dir,
        }
    }

    /// The latest snapshot's checks (what `vibe-agent check` and the landing page show).
    pub fn checks(&self) -> Vec<Check> {
        self.snapshot().checks()
    }

    /// The check named `name` (e.g. "jupyter status"), or a panic listing them all.
    pub fn check(&self, name: &str) -> Check {
        let checks = self.checks();
        checks
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.agent.snapshots.borrow().clone()
    }

    pub async fn shutdown(self) {
        self.agent.shutdown().await;
    }
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses `name{a="x",b="y"} 1` (labels optional, escapes `\\`, `\"`, `\n`). Enough to
/// read the agent's own exposition back; promtool is what judges the format.
/// A series read back: name, labels, and the value's text.
type Series<'a> = (String, Vec<(String, String)>, &'a str);

fn parse_series(line: &str) -> Option<Series<'_>> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let rest = &line[name_end..];
    let Some(mut s) = rest.strip_prefix('{') else {
        return Some((name, Vec::new(), rest.trim()));
    };
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((name, labels, after.trim()));
        }
        let (key, quoted) = s.split_once('=')?;
        let body = quoted.strip_prefix('"')?;
        let mut chars = body.char_indices();
        let mut value = String::new();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = &body[close + 1..];
    }
}

/// One scrape's text, with lookups by series selector.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    samples: Vec<Sample>,
}

impl Exposition {
    pub fn new(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (name, labels, rest) = parse_series(l)?;
                let value = rest.split_whitespace().next()?.parse().ok()?;
                Some(Sample {
                    name,
                    labels,
                    value,
                })
            })
            .collect();
        Self { text, samples }
    }

    /// The value of the first series matching `selector`: a name with a subset of its
    /// labels, e.g. `vibe_port_listening{service="jupyter"}`.
    pub fn value(&self, selector: &str) -> Option<f64> {
        let (name, want, _) =
            parse_series(selector).unwrap_or_else(|| panic!("bad selector {selector}"));
        self.samples
            .iter()
            .find(|s| s.name == name && want.iter().all(|w| s.labels.contains(w)))
            .map(|s| s.value)
    }

    /// Whether `selector` currently equals `want`.
    pub fn is(&self, selector: &str, want: f64) -> bool {
        self.value(selector) == Some(want)
    }

    /// Names of the families declared with `# TYPE`.
    pub fn families(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The `vibe_` sample lines, for failure messages.
    pub fn vibe_lines(&self) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with("vibe_"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn series_selectors_match_label_subsets_and_escapes() {
    let m = Exposition::new(
        "# TYPE a gauge\na 1\nb{x=\"1\",y=\"q\\\"z\"} 2.5\nb{x=\"2\",y=\"\"} NaN\nc{p=\"/\"} +Inf\n"
            .into(),
    );
    assert_eq!(m.value("a"), Some(1.0));
    assert_eq!(m.value("b{x=\"1\"}"), Some(2.5));
    assert_eq!(m.value("b{y=\"q\\\"z\"}"), Some(2.5));
    assert!(m.value("b{x=\"2\"}").unwrap().is_nan());
    assert_eq!(m.value("c"), Some(f64::INFINITY));
    assert_eq!(m.value("b{x=\"3\"}"), None);
    assert_eq!(m.value("d"), None);
    assert_eq!(m.families(), vec!["a"]);
}
