//! The alert and recording rules (`rules/vibe-agent.yml`) and the Grafana dashboards
//! (`packaging/grafana/*.json`) of issue 7, against real engines and a real agent:
//!
//! - promtool (Debian `prometheus`) checks the rules and runs their unit tests;
//! - vmalert (Debian `victoria-metrics`) loads the same file with `-dryRun`;
//! - Prometheus scrapes an agent fed by every source and evaluates every rule without an
//!   error, and every recording rule yields a series;
//! - every metric a dashboard or a rule names is one the agent exports (read from that
//!   agent's `/metrics`) or one a rule records; `promtool check metrics` accepts that
//!   whole exposition.
//!
//! "Fed by every source": a fake systemd on a private `dbus-daemon` (the systemd tests'
//! fake, reused), recorded code-server and JupyterLab answers, a sampled path, a JuiceFS
//! mount (a mount table naming a directory with a `.stats` file), OTLP metrics and events
//! POSTed to the receiver with a forwarding upstream, and a Claude home with a transcript
//! (`tests/fixtures/rules/`). What cannot be produced here is in [`NOT_PRODUCED_HERE`],
//! with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Deserialize;
use serde_json::Value;
use vibe_agent::daemon::{self, Agent, Listeners};

use crate::support::fake_http::{FakeHttp, Reply};
use crate::support::{
    Config, Exposition, MetricsClient, Service, WAIT, assert_promtool_accepts, end_child, fixture,
    free_port, http_client, repo_root, toml_str, wait_until,
};
use crate::systemd::fake::{DbusDaemon, FakeSystemd, FakeUnit};

const PROMETHEUS_PACKAGE: &str =
    "Debian's `prometheus` package (`apt-get install prometheus`; scripts/test installs it)";
const VICTORIA_PACKAGE: &str = "Debian's `victoria-metrics` package (`apt-get install \
     victoria-metrics`; scripts/test installs it)";

const RULES: &str = "rules/vibe-agent.yml";
const RULE_TESTS: &str = "rules/tests/vibe-agent.test.yml";
const DASHBOARDS: [&str; 2] = [
    "packaging/grafana/vibe-services.json",
    "packaging/grafana/vibe-claude-code.json",
];

/// Families the dashboards or rules name that this test cannot make the agent export,
/// and why. Everything else must appear in the running agent's `/metrics`.
const NOT_PRODUCED_HERE: &[(&str, &str)] = &[
    (
        "vibe_service_processes",
        "per-service figures come from the unit's cgroup under the machine's own \
         system.slice (found from PID 1's cgroup); the fake systemd has no cgroups and the \
         test must not create any on the host",
    ),
    (
        "vibe_service_memory_rss_bytes",
        "as vibe_service_processes: needs the unit's cgroup under the host's system.slice",
    ),
    (
        "vibe_service_cpu_usage_cores",
        "as vibe_service_processes: needs the unit's cgroup under the host's system.slice",
    ),
];

/// Series that Prometheus (or VictoriaMetrics) makes for every scrape, not the agent.
const SCRAPE_SERIES: &[&str] = &["up"];

/// Families the agent exports that no dashboard shows, on purpose.
const NOT_ON_A_DASHBOARD: &[&str] = &[
    // process_* of the agent: memory, CPU and fds are shown; these are for debugging.
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

/// A program from a Debian package, or a failure naming the package to install.
fn tool(name: &str, package: &str) -> PathBuf {
    let in_usr_bin = Path::new("/usr/bin").join(name);
    if in_usr_bin.exists() {
        return in_usr_bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("`{name}` is missing: install {package}"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------
// What the rules and dashboards say
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
}

impl Rule {
    fn name(&self) -> &str {
        self.record
            .as_deref()
            .or(self.alert.as_deref())
            .unwrap_or("<unnamed>")
    }
}

fn rule_file() -> RuleFile {
    let path = repo_root().join(RULES);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard(path: &str) -> Value {
    serde_json::from_slice(&fixture_at(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_at(path: &str) -> Vec<u8> {
    let p = repo_root().join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `(where, expression)` of a dashboard: panel targets (rows' nested panels too) and
/// the templating queries, Grafana's variables still in them.
fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("panel {title:?} {}", t["refId"]), e.to_string()));
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        // label_values(<selector>, <label>): the selector is PromQL
        let selector = q
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(sel, _)| sel.trim())
            .unwrap_or(q);
        out.push((format!("variable {}", v["name"]), selector.to_string()));
    }
    out
}

/// A dashboard expression as Prometheus would receive it: Grafana's interval variables
/// become durations, every other `$var` / `${var}` a plain value.
fn grafana_to_promql(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let braced = after.starts_with('{');
        let body = if braced { &after[1..] } else { after };
        let len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let name = &body[..len];
        out.push_str(match name {
            "__rate_interval" | "__interval" => "1m",
            "__range" => "1h",
            _ => "x",
        });
        let consumed = len + if braced { 2 } else { 0 };
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// The metric names an expression reads.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>, Vec<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(m) => &m.vs,
                _ => return Ok(true),
            };
            match &vs.name {
                Some(n) => {
                    self.0.insert(n.clone());
                }
                None => self.1.push(format!("{vs:?}")),
            }
            Ok(true)
        }
    }
    let ast = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new(), Vec::new());
    let _ = walk_expr(&mut names, &ast);
    if !names.1.is_empty() {
        return Err(format!(
            "selectors without a metric name cannot be checked: {:?}",
            names.1
        ));
    }
    Ok(names.0)
}

/// metric name → where it is read (rule or panel), over both dashboards and the rules.
fn names_read() -> BTreeMap<String, Vec<String>> {
    let mut read: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut add = |place: String, expr: &str| match metric_names(expr) {
        Ok(names) => {
            for n in names {
                read.entry(n).or_default().push(place.clone());
            }
        }
        Err(e) => errors.push(format!("{place}: {e}\n  {expr}")),
    };
    for g in rule_file().groups {
        for r in &g.rules {
            add(format!("{RULES} {}/{}", g.name, r.name()), &r.expr);
        }
    }
    for path in DASHBOARDS {
        for (place, expr) in dashboard_exprs(&dashboard(path)) {
            add(format!("{path} {place}"), &grafana_to_promql(&expr));
        }
    }
    assert!(
        errors.is_empty(),
        "expressions that do not parse as PromQL:\n{}",
        errors.join("\n")
    );
    read
}

fn recorded_names() -> BTreeSet<String> {
    rule_file()
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().filter_map(|r| r.record.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// An agent fed by every source
// ---------------------------------------------------------------------------------------

/// Replaces the `@…@` placeholders of `tests/fixtures/rules/` (see its README).
fn from_template(name: &str, session: &str) -> Vec<u8> {
    let now = jiff::Timestamp::now();
    let nanos = now.as_nanosecond();
    let iso = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    // A response a minute earlier gives the 5-hour block a burn rate and a projection.
    let earlier = (now - jiff::SignedDuration::from_secs(60))
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let text = String::from_utf8(fixture(&format!("rules/{name}"))).expect("UTF-8 fixture");
    text.replace("@START@", &(nanos - 60_000_000_000).to_string())
        .replace("@NOW@", &nanos.to_string())
        .replace("@ISO@", &iso)
        .replace("@TS@", &iso)
        .replace("@TS_EARLIER@", &earlier)
        .replace("@SESSION@", session)
        .into_bytes()
}

/// The agent with every source fed, and everything it talks to.
struct FullBox {
    agent: Option<Agent>,
    metrics_addr: std::net::SocketAddr,
    metrics: MetricsClient,
    _systemd: FakeSystemd,
    _bus: DbusDaemon,
    _code_server: FakeHttp,
    _jupyter: FakeHttp,
    _upstream: FakeHttp,
    _dir: tempfile::TempDir,
}

impl FullBox {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let state = root.join("state");
        let data = root.join("data");
        let jfs = root.join("jfs");
        let home = root.join("home/.claude");
        let project = home.join("projects/-work-demo");
        for d in [&state, &data, &jfs, &project] {
            std::fs::create_dir_all(d).expect("create test directories");
        }
        std::fs::write(jfs.join(".stats"), fixture("juicefs/stats-1.2.txt")).unwrap();
        let mountinfo = root.join("mountinfo");
        std::fs::write(
            &mountinfo,
            format!(
                "645 28 0:53 / {} rw,relatime shared:318 - fuse.juicefs JuiceFS:vibe \
                 rw,user_id=0,group_id=0,default_permissions,allow_other\n",
                jfs.display()
            ),
        )
        .unwrap();
        let session = "5e55a0d1-0000-4000-8000-000000000001";
        std::fs::write(
            project.join(format!("{session}.jsonl")),
            from_template("transcript.jsonl", session),
        )
        .unwrap();

        let bus = DbusDaemon::start();
        let systemd = FakeSystemd::start(
            &bus.address,
            &[
                ("code-server.service", FakeUnit::running()),
                ("jupyter.service", FakeUnit::running()),
                (
                    "juicefs-fs.service",
                    FakeUnit {
                        restarts: 2,
                        ..FakeUnit::running()
                    },
                ),
            ],
        )
        .await;
        let code_server = FakeHttp::code_server("healthz-alive.http");
        let jupyter = FakeHttp::jupyterlab();
        let upstream = FakeHttp::always(Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                .to_vec(),
        ));
        let upstream_url = |path: &str| format!("http://{}{path}", upstream.addr);
        let unit = |name: &str| format!("unit = {}", toml_str(name));

        let settings = Config::new()
            .otlp_listen("127.0.0.1:0")
            .set_str("systemd", "bus", &bus.address)
            .set("systemd", "units", r#"["juicefs-*.service"]"#)
            .set_str("systemd", "resync_interval", "1s")
            .set_str("systemd", "poll_interval", "200ms")
            .set_str("systemd", "call_timeout", "2s")
            .host_path(&data)
            .set_str("juicefs", "mountinfo", &mountinfo.to_string_lossy())
            .set_str("juicefs", "interval", "1s")
            .set_str("juicefs", "timeout", "1s")
            .set_str("juicefs", "metrics_url", "http://127.0.0.1:9/metrics")
            .set("otlp", "max_series_per_family", "3")
            .claude_homes(&[home.to_string_lossy()])
            .set_str("claude", "reconcile_interval", "1s")
            .set_str("claude", "save_interval", "200ms")
            .set_str(
                "claude.forward",
                "metrics_url",
                &upstream_url("/opentelemetry/v1/metrics"),
            )
            .set_str(
                "claude.forward",
                "logs_url",
                &upstream_url("/insert/opentelemetry/v1/logs"),
            )
            .service(
                Service::code_server("code-server", code_server.port())
                    .every("3s", "3s")
                    .with(&unit("code-server.service")),
            )
            .service(
                Service::jupyter("jupyter", jupyter.port(), "sekrit")
                    .every("3s", "3s")
                    .with(&unit("jupyter.service")),
            )
            .settings(&state);
        let listeners = Listeners::bind(&settings).await.expect("bind 127.0.0.1:0");
        let agent = daemon::start(settings, listeners).expect("agent starts");
        let otlp = agent.otlp_addr.expect("OTLP receiver on");

        let client = http_client();
        for (path, body) in [
            ("/v1/metrics", from_template("otlp-metrics.json", session)),
            ("/v1/logs", from_template("otlp-logs.json", session)),
        ] {
            let resp = client
                .post(format!("http://{otlp}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {path}: {e}"));
            assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        }
        // A body that is not OTLP: refused, and counted in vibe_otlp_decode_errors_total.
        let resp = client
            .post(format!("http://{otlp}/v1/metrics"))
            .header("content-type", "application/x-protobuf")
            .body(&b"\xff\xff\xff not protobuf"[..])
            .send()
            .await
            .expect("POST a broken body");
        assert!(resp.status().is_client_error(), "{}", resp.status());

        Self {
            metrics_addr: agent.metrics_addr,
            metrics: MetricsClient::new(agent.metrics_addr),
            agent: Some(agent),
            _systemd: systemd,
            _bus: bus,
            _code_server: code_server,
            _jupyter: jupyter,
            _upstream: upstream,
            _dir: dir,
        }
    }

    /// Scrapes until every name in `want` has a sample and both services are up, or fails
    /// listing what is still missing.
    async fn wait_for_families(&self, want: &BTreeSet<String>) -> Exposition {
        wait_until(
            WAIT,
            "every family the dashboards and rules read",
            async || {
                let m = self.metrics.scrape().await;
                let have = exported_names(&m);
                let missing: Vec<&String> = want.iter().filter(|n| !have.contains(*n)).collect();
                let up = m.is(r#"vibe_service_up{service="code-server"}"#, 1.0)
                    && m.is(r#"vibe_service_up{service="jupyter"}"#, 1.0);
                if missing.is_empty() && up {
                    Ok(m)
                } else {
                    Err(format!(
                        "missing from /metrics: {missing:?}; services up: {up}\n{}",
                        m.vibe_lines()
                    ))
                }
            },
        )
        .await
    }

    async fn shutdown(mut self) {
        self.agent.take().unwrap().shutdown().await;
    }
}

/// Family names (`# TYPE`) and sample names (histograms' `_bucket`, `_sum`, `_count`).
fn exported_names(m: &Exposition) -> BTreeSet<String> {
    m.families()
        .into_iter()
        .chain(m.samples().iter().map(|s| s.name.clone()))
        .collect()
}

/// What the dashboards and rules read that the agent must export here.
fn names_the_agent_must_export() -> BTreeSet<String> {
    let recorded = recorded_names();
    names_read()
        .into_keys()
        .filter(|n| !recorded.contains(n))
        .filter(|n| !SCRAPE_SERIES.contains(&n.as_str()))
        .filter(|n| !NOT_PRODUCED_HERE.iter().any(|(f, _)| f == n))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------

/// A Prometheus server scraping one agent every second and evaluating the rules every
/// second, on 127.0.0.1; killed by PID on drop.
struct Prometheus {
    child: Child,
    base_url: String,
    log: PathBuf,
    client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Prometheus {
    async fn start(agent: std::net::SocketAddr) -> Self {
        let bin = tool("prometheus", PROMETHEUS_PACKAGE);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: vibe-agent\n    static_configs:\n\
                 \x20     - targets: ['{agent}']\n\
                 \x20       labels: {{ ip: 127.0.0.1, ins: vibe-test-1, cls: vibe-test }}\n",
                rules = repo_root().join(RULES).display(),
            ),
        )
        .unwrap();
        let log = dir.path().join("prometheus.log");
        // A free port can be taken between the check and Prometheus' bind: try another.
        for _ in 0..5 {
            let port = free_port();
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            // From here on the child is ended by Drop, whatever happens.
            let mut p = Self {
                child,
                base_url: format!("http://127.0.0.1:{port}"),
                log: log.clone(),
                client: http_client(),
                _dir: None,
            };
            if p.wait_ready().await {
                p._dir = Some(dir);
                return p;
            }
            let said = p.log();
            assert!(
                said.contains("address already in use"),
                "Prometheus exited:\n{said}"
            );
        }
        panic!("Prometheus found no free port in 5 tries");
    }

    /// Polls `/-/ready`; false when Prometheus exited first.
    async fn wait_ready(&mut self) -> bool {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let url = format!("{}/-/ready", self.base_url);
            if let Ok(r) = self.client.get(url).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus not ready after {WAIT:?}:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `data` of an API answer.
    async fn api(&self, path_and_query: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path_and_query}", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query} on Prometheus: {e}"));
        let v: Value = r.json().await.expect("Prometheus answers JSON");
        assert_eq!(v["status"], "success", "{path_and_query}: {v}");
        v["data"].clone()
    }

    async fn query(&self, promql: &str) -> Vec<Value> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", self.base_url)).unwrap();
        url.query_pairs_mut().append_pair("query", promql);
        let path = format!("{}?{}", url.path(), url.query().unwrap());
        self.api(&path)
            .await
            .get("result")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        end_child(&mut self.child, Duration::from_secs(5), false);
    }
}

/// The evaluated rules of a `/api/v1/rules` answer whose health is not "ok", with the error.
fn rule_errors(data: &Value) -> Vec<String> {
    data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["health"] != "unknown")
        .filter(|r| r["health"] != "ok" || r.get("lastError").is_some_and(|e| e != ""))
        .map(|r| format!("{}: health {} {}", r["name"], r["health"], r["lastError"]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let promtool = tool("promtool", PROMETHEUS_PACKAGE);
    let (ok, out) = run(Command::new(&promtool).args(["check", "rules", RULES]));
    assert!(ok, "promtool check rules {RULES}:\n{out}");
    let n: usize = rule_file().groups.iter().map(|g| g.rules.len()).sum();
    assert!(
        out.contains(&format!("SUCCESS: {n} rules found")),
        "promtool saw another number of rules than the file's {n}:\n{out}"
    );
    let (ok, out) = run(Command::new(&promtool).args(["test", "rules", RULE_TESTS]));
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn vmalert_loads_the_rules_and_rejects_a_broken_file() {
    let vmalert = tool("vmalert", VICTORIA_PACKAGE);
    let (ok, out) = run(Command::new(&vmalert)
        .arg(format!("-rule={RULES}"))
        .arg("-dryRun"));
    assert!(ok, "vmalert -rule={RULES} -dryRun:\n{out}");

    // The dry run does check expressions: a broken one fails it.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "groups:\n  - name: broken\n    rules:\n      - record: x:y:z\n        expr: sum(\n",
    )
    .unwrap();
    let (ok, out) = run(Command::new(&vmalert)
        .arg(format!("-rule={}", broken.display()))
        .arg("-dryRun"));
    assert!(!ok, "vmalert accepted a broken expression:\n{out}");
}

#[test]
fn dashboards_take_the_datasource_and_boxes_from_variables() {
    let uids = ["vibe-services", "vibe-claude-code"];
    for (path, uid) in DASHBOARDS.iter().zip(uids) {
        let d = dashboard(path);
        assert_eq!(d["uid"], uid, "{path}");
        assert!(d["schemaVersion"].as_u64().unwrap_or(0) >= 36, "{path}");
        let vars = d["templating"]["list"].as_array().expect("templating list");
        let var = |name: &str| {
            vars.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{path}: no variable {name}"))
        };
        assert_eq!(var("datasource")["type"], "datasource", "{path}");
        assert_eq!(var("datasource")["query"], "prometheus", "{path}");
        for name in ["ins", "instance"] {
            let q = var(name)["query"]["query"].as_str().unwrap_or("");
            assert!(q.starts_with("label_values("), "{path} ${name}: {q}");
        }

        fn each_panel(list: &Value, f: &mut dyn FnMut(&Value)) {
            for p in list.as_array().into_iter().flatten() {
                f(p);
                each_panel(&p["panels"], f);
            }
        }
        let mut problems = Vec::new();
        let mut targets = 0;
        each_panel(&d["panels"], &mut |p| {
            let title = p["title"].as_str().unwrap_or("?");
            if p["type"] != "row" && p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("panel {title:?}: datasource {}", p["datasource"]));
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                targets += 1;
                let expr = t["expr"].as_str().unwrap_or("");
                if t["datasource"]["uid"] != "${datasource}" {
                    problems.push(format!(
                        "panel {title:?}: target datasource {}",
                        t["datasource"]
                    ));
                }
                // Every query is scoped by the box variables, and names no box itself.
                let scoped =
                    expr.contains(r#"ins=~"$ins""#) && expr.contains(r#"instance=~"$instance""#);
                let global = expr.starts_with("max(claude_code:cost_burn_threshold");
                if !scoped && !global {
                    problems.push(format!(
                        "panel {title:?}: not scoped to $ins/$instance: {expr}"
                    ));
                }
                for fixed in ["instance=\"", "ins=\"", "ip=\"", "cls=\""] {
                    if expr.contains(fixed) {
                        problems.push(format!("panel {title:?}: hard-coded {fixed}: {expr}"));
                    }
                }
            }
        });
        assert!(targets > 30, "{path}: only {targets} queries");
        assert!(problems.is_empty(), "{path}:\n{}", problems.join("\n"));
    }
}

#[test]
fn grafana_variables_become_plain_promql() {
    assert_eq!(
        grafana_to_promql(r#"rate(a{ins=~"$ins", x="${user}"}[$__rate_interval]) / $__range"#),
        r#"rate(a{ins=~"x", x="x"}[1m]) / 1h"#
    );
    assert_eq!(
        metric_names("sum(rate(a_total[5m])) / on () group_left () b:c:d + vector(1) - time()")
            .unwrap(),
        BTreeSet::from(["a_total".to_string(), "b:c:d".to_string()])
    );
    assert!(metric_names("sum(").is_err());
}

/// Prometheus scrapes the agent, loads every rule, evaluates each without an error, and
/// every recording rule yields a series from the agent's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_the_agent_evaluates_every_rule_without_error() {
    let full = FullBox::start().await;
    full.wait_for_families(&names_the_agent_must_export()).await;
    let prom = Prometheus::start(full.metrics_addr).await;

    wait_until(WAIT, "the agent's target up in Prometheus", async || {
        let t = prom.api("/api/v1/targets").await;
        let active = t["activeTargets"].as_array().cloned().unwrap_or_default();
        if !active.is_empty() && active.iter().all(|t| t["health"] == "up") {
            Ok(())
        } else {
            Err(format!("{t:#}"))
        }
    })
    .await;

    let file = rule_file();
    let records: Vec<String> = recorded_names().into_iter().collect();
    wait_until(WAIT, "a series from every recording rule", async || {
        // A rule that fails on the agent's data fails the test at once, with its error.
        let broken = rule_errors(&prom.api("/api/v1/rules").await);
        assert!(
            broken.is_empty(),
            "rules with errors:\n{}",
            broken.join("\n")
        );
        let mut empty = Vec::new();
        for r in &records {
            if prom.query(r).await.is_empty() {
                empty.push(r.clone());
            }
        }
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!("no series yet: {empty:?}"))
        }
    })
    .await;

    let groups = wait_until(WAIT, "every rule evaluated", async || {
        let data = prom.api("/api/v1/rules").await;
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let unevaluated: Vec<String> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] == "unknown")
            .map(|r| r["name"].to_string())
            .collect();
        if !groups.is_empty() && unevaluated.is_empty() {
            Ok(groups)
        } else {
            Err(format!("not evaluated yet: {unevaluated:?}"))
        }
    })
    .await;

    let want: BTreeMap<String, usize> = file
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.rules.len()))
        .collect();
    let got: BTreeMap<String, usize> = groups
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap_or("").to_string(),
                g["rules"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(got, want, "groups and rule counts Prometheus loaded");
    let unhealthy = rule_errors(&serde_json::json!({ "groups": groups }));
    assert!(
        unhealthy.is_empty(),
        "rules with errors:\n{}",
        unhealthy.join("\n")
    );

    // The recording rules compute from the agent's own figures, with the target labels.
    let cost = prom
        .query(r#"claude_code:cost_cumulative_total{ins="vibe-test-1", cls="vibe-test"}"#)
        .await;
    assert_eq!(cost.len(), 1, "{cost:?}");
    let value: f64 = cost[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        (value - 0.0123).abs() < 1e-9,
        "cost {value}, the fixture sent 0.0123"
    );
    let down = prom
        .query(r#"vibe:ins:services_down{ins="vibe-test-1"}"#)
        .await;
    assert_eq!(down[0]["value"][1], "0", "both services are up: {down:?}");
    // A healthy box raises none of the outage alerts.
    let alerts = prom
        .query(r#"ALERTS{alertname=~"CodeServerDown|JupyterLabDown|VibeUnitFailed|JuiceFSDown|JuiceFSStuck"}"#)
        .await;
    assert!(
        alerts.is_empty(),
        "outage alerts on a healthy box: {alerts:#?}\n{}",
        prom.log()
    );

    drop(prom);
    full.shutdown().await;
}

/// Every metric a dashboard or rule names is exported by the agent (when every source is
/// fed) or recorded by a rule; every family the agent exports is on a dashboard; and
/// promtool accepts the whole exposition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboards_and_rules_is_exported_or_recorded() {
    let read = names_read();
    let recorded = recorded_names();
    let must_export = names_the_agent_must_export();
    assert!(
        must_export.len() > 80,
        "only {} names read?",
        must_export.len()
    );

    let full = FullBox::start().await;
    let m = full.wait_for_families(&must_export).await;
    let exported = exported_names(&m);

    let unknown: Vec<String> = read
        .iter()
        .filter(|(n, _)| {
            !exported.contains(*n)
                && !recorded.contains(*n)
                && !SCRAPE_SERIES.contains(&n.as_str())
                && !NOT_PRODUCED_HERE.iter().any(|(f, _)| f == n)
        })
        .map(|(n, places)| format!("{n} (read by {})", places.join(", ")))
        .collect();
    assert!(
        unknown.is_empty(),
        "names nothing exports or records:\n{}",
        unknown.join("\n")
    );

    // The allow-list holds only what the contract says the agent exports (the services'
    // families, src/probe/expose.rs).
    let exposition_src = String::from_utf8(fixture_at("src/probe/expose.rs")).unwrap();
    for (family, why) in NOT_PRODUCED_HERE {
        assert!(
            exposition_src.contains(&format!("\"{family}\"")),
            "{family} is allow-listed ({why}) but src/probe/expose.rs does not build it"
        );
    }

    // Every family the agent exported is on a dashboard (or left off on purpose).
    let dashboard_names: BTreeSet<String> = DASHBOARDS
        .iter()
        .flat_map(|p| dashboard_exprs(&dashboard(p)))
        .filter_map(|(_, e)| metric_names(&grafana_to_promql(&e)).ok())
        .flatten()
        .collect();
    let shown_via_rules: BTreeSet<String> = rule_file()
        .groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter(|r| {
            r.record
                .as_ref()
                .is_some_and(|n| dashboard_names.contains(n))
        })
        .filter_map(|r| metric_names(&r.expr).ok())
        .flatten()
        .collect();
    let not_shown: Vec<String> = m
        .families()
        .into_iter()
        .filter(|f| !dashboard_names.contains(f) && !shown_via_rules.contains(f))
        .filter(|f| {
            // a histogram is shown through its _bucket/_sum/_count series
            !["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| dashboard_names.contains(&format!("{f}{s}")))
        })
        .filter(|f| !NOT_ON_A_DASHBOARD.contains(&f.as_str()))
        .collect();
    assert!(
        not_shown.is_empty(),
        "families the agent exports that no dashboard shows (add a panel to \
         packaging/grafana/build.py, or list them in NOT_ON_A_DASHBOARD): {not_shown:?}"
    );

    // promtool's linter accepts the full exposition.
    assert_promtool_accepts(&m.text);

    full.shutdown().await;
}
