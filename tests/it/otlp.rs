//! The OTLP receiver seen from outside: bodies the real Claude Code CLI sent (captured by
//! scripts/capture-otlp-fixtures into tests/fixtures/otlp) are posted to a running agent,
//! and `/metrics` must show exactly what the CLI counted — checked against an independent
//! fold of the same bodies and against the CLI's own events (cost = Σ api_request.cost_usd).
//! Then what goes wrong in the field: re-sent and reordered batches, resets, many
//! sessions, bad bodies, restarts, secrets, upstream outages, and the real CLI end to end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Agent, Listeners};

use crate::support::claude_cli::{claude_bin, run_turn};
use crate::support::{Config, Exposition, MetricsClient, WAIT, http_client, repo_root, wait_until};

const CANARY: &str = "vibe-canary-7f3a9c";

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// One captured request.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) encoding: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Captured {
    pub(crate) fn plain(&self) -> Vec<u8> {
        match self.encoding.as_deref() {
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("fixture gunzips");
                out
            }
            _ => self.body.clone(),
        }
    }

    fn is_json(&self) -> bool {
        self.content_type.contains("json")
    }
}

/// The runs of a scenario, each a list of requests in the order the CLI sent them.
pub(crate) fn scenario(name: &str) -> Vec<Vec<Captured>> {
    let dir = repo_root().join("tests/fixtures/otlp").join(name);
    let mut runs = Vec::new();
    for n in 1.. {
        let run = dir.join(format!("run{n}"));
        let Ok(index) = std::fs::read_to_string(run.join("requests.jsonl")) else {
            break;
        };
        runs.push(
            index
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("index line");
                    Captured {
                        path: v["path"].as_str().unwrap().to_string(),
                        content_type: v["content_type"].as_str().unwrap().to_string(),
                        encoding: v["content_encoding"].as_str().map(str::to_string),
                        body: std::fs::read(run.join(v["file"].as_str().unwrap())).unwrap(),
                    }
                })
                .collect(),
        );
    }
    assert!(!runs.is_empty(), "no fixture runs under {}", dir.display());
    runs
}

// ---------------------------------------------------------------------------------------
// An independent reading of the fixtures: what the CLI itself counted.
// ---------------------------------------------------------------------------------------

/// A number point as the reference sees it.
struct RefPoint {
    metric: String,
    attrs: BTreeMap<String, String>,
    start: u64,
    time: u64,
    value: f64,
    cumulative: bool,
}

/// An event's attributes, all as text.
type RefEvent = BTreeMap<String, String>;

fn json_value_text(v: &serde_json::Value) -> String {
    let (k, x) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("attribute value");
    match (k.as_str(), x) {
        (_, serde_json::Value::String(s)) => s.clone(),
        ("intValue" | "doubleValue" | "boolValue", x) => x.to_string(),
        (_, x) => x.to_string(),
    }
}

fn json_attrs(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap().to_string(),
                        json_value_text(&kv["value"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn json_u64(v: &serde_json::Value) -> u64 {
    v.as_str()
        .map_or_else(|| v.as_u64().unwrap_or(0), |s| s.parse().unwrap())
}

fn proto_text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn proto_attrs(a: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    a.iter()
        .map(|kv| (kv.key.clone(), proto_text(&kv.value)))
        .collect()
}

/// Every number point and event in the requests.
fn reference(requests: &[Captured]) -> (Vec<RefPoint>, Vec<RefEvent>) {
    let mut points = Vec::new();
    let mut events = Vec::new();
    for r in requests {
        let body = r.plain();
        let metrics = r.path.ends_with("/metrics");
        match (r.is_json(), metrics) {
            (true, true) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                for rm in v["resourceMetrics"].as_array().unwrap() {
                    for sm in rm["scopeMetrics"].as_array().unwrap() {
                        for m in sm["metrics"].as_array().unwrap() {
                            let sum = &m["sum"];
                            let cumulative = sum["aggregationTemporality"].as_i64() == Some(2);
                            for p in sum["dataPoints"].as_array().unwrap() {
                                points.push(RefPoint {
                                    metric: m["name"].as_str().unwrap().to_string(),
                                    attrs: json_attrs(&p["attributes"]),
                                    start: json_u64(&p["startTimeUnixNano"]),
                                    time: json_u64(&p["timeUnixNano"]),
                                    value: p["asDouble"].as_f64().unwrap(),
                                    cumulative,
                                });
                            }
                        }
                    }
                }
            }
            (true, false) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                for rl in v["resourceLogs"].as_array().unwrap() {
                    for sl in rl["scopeLogs"].as_array().unwrap() {
                        for rec in sl["logRecords"].as_array().unwrap() {
                            events.push(json_attrs(&rec["attributes"]));
                        }
                    }
                }
            }
            (false, true) => {
                use opentelemetry_proto::tonic::metrics::v1::{
                    metric::Data, number_data_point::Value,
                };
                let req = ExportMetricsServiceRequest::decode(&body[..]).unwrap();
                for rm in &req.resource_metrics {
                    for sm in &rm.scope_metrics {
                        for m in &sm.metrics {
                            let Some(Data::Sum(sum)) = &m.data else {
                                panic!("CLI sends sums only")
                            };
                            for p in &sum.data_points {
                                points.push(RefPoint {
                                    metric: m.name.clone(),
                                    attrs: proto_attrs(&p.attributes),
                                    start: p.start_time_unix_nano,
                                    time: p.time_unix_nano,
                                    value: match p.value {
                                        Some(Value::AsDouble(d)) => d,
                                        Some(Value::AsInt(i)) => i as f64,
                                        None => panic!("point without value"),
                                    },
                                    cumulative: sum.aggregation_temporality == 2,
                                });
                            }
                        }
                    }
                }
            }
            (false, false) => {
                let req = ExportLogsServiceRequest::decode(&body[..]).unwrap();
                for rl in &req.resource_logs {
                    for sl in &rl.scope_logs {
                        for rec in &sl.log_records {
                            events.push(proto_attrs(&rec.attributes));
                        }
                    }
                }
            }
        }
    }
    (points, events)
}

/// What a correct receiver must total for `metric`, restricted to points whose attributes
/// include `filter`: delta points add up; a cumulative stream (all attributes and its start
/// time) contributes its last value.
fn reference_total(points: &[RefPoint], metric: &str, filter: &[(&str, &str)]) -> f64 {
    let mut cumulative: BTreeMap<(String, u64), (u64, f64)> = BTreeMap::new();
    let mut delta = 0.0;
    for p in points.iter().filter(|p| {
        p.metric == metric
            && filter
                .iter()
                .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
    }) {
        if p.cumulative {
            let key = (format!("{:?}", p.attrs), p.start);
            let e = cumulative.entry(key).or_insert((p.time, p.value));
            if p.time >= e.0 {
                *e = (p.time, p.value);
            }
        } else {
            delta += p.value;
        }
    }
    delta + cumulative.values().map(|(_, v)| v).sum::<f64>()
}

fn event_sum(events: &[RefEvent], name: &str, field: &str) -> f64 {
    events
        .iter()
        .filter(|e| e.get("event.name").map(String::as_str) == Some(name))
        .map(|e| e[field].parse::<f64>().unwrap())
        .sum()
}

fn event_count(events: &[RefEvent], name: &str) -> f64 {
    events
        .iter()
        .filter(|e| e.get("event.name").map(String::as_str) == Some(name))
        .count() as f64
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

// ---------------------------------------------------------------------------------------
// The agent with its receiver on 127.0.0.1:0
// ---------------------------------------------------------------------------------------

pub(crate) struct OtlpAgent {
    agent: Agent,
    pub(crate) metrics: MetricsClient,
    pub(crate) otlp_base: String,
    /// The OTLP/gRPC receiver's address.
    pub(crate) grpc_addr: std::net::SocketAddr,
    client: reqwest::Client,
    /// Requests sent so far, over either transport.
    pub(crate) posted: usize,
}

/// The receiver on a free port, totals saved every 200 ms, and what `config` adds.
pub(crate) fn otlp_settings(state_dir: &Path, config: impl FnOnce(Config) -> Config) -> Settings {
    config(
        Config::new()
            .otlp_listen("127.0.0.1:0")
            .otlp_grpc_listen("127.0.0.1:0")
            .set_str("otlp", "persist_interval", "200ms"),
    )
    .settings(state_dir)
}

impl OtlpAgent {
    pub(crate) async fn start(state_dir: &Path) -> Self {
        Self::start_with(state_dir, |c| c).await
    }

    /// `config` adds keys to the test config (see [`otlp_settings`]).
    pub(crate) async fn start_with(
        state_dir: &Path,
        config: impl FnOnce(Config) -> Config,
    ) -> Self {
        let settings = otlp_settings(state_dir, config);
        let listeners = Listeners::bind(&settings).await.expect("bind 127.0.0.1:0");
        let agent = daemon::start(settings, listeners).expect("agent starts");
        let addr = agent.otlp_addr.expect("the OTLP receiver listens");
        let grpc_addr = agent
            .otlp_grpc_addr
            .expect("the OTLP/gRPC receiver listens");
        Self {
            metrics: MetricsClient::new(agent.metrics_addr),
            otlp_base: format!("http://{addr}"),
            grpc_addr,
            agent,
            client: http_client(),
            posted: 0,
        }
    }

    async fn post_raw(
        &mut self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.otlp_base))
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        self.posted += 1;
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    async fn post(&mut self, c: &Captured) -> u16 {
        let (status, body) = self
            .post_raw(
                &c.path,
                &c.content_type,
                c.encoding.as_deref(),
                c.body.clone(),
            )
            .await;
        assert_eq!(
            status,
            200,
            "{} answered {status}: {}",
            c.path,
            String::from_utf8_lossy(&body)
        );
        status
    }

    /// Scrapes once every request posted so far has been applied by the model.
    pub(crate) async fn settled(&self) -> Exposition {
        let want = self.posted as f64;
        self.metrics
            .wait_for(&format!("{want} OTLP requests counted"), |m| {
                total(m, "vibe_otlp_requests_total") == want
            })
            .await
    }

    pub(crate) async fn shutdown(self) {
        self.agent.shutdown().await;
    }
}

/// The sum of every series of a family (or of the ones matching `filter`).
pub(crate) fn total_where(m: &Exposition, family: &str, filter: &[(&str, &str)]) -> f64 {
    m.samples()
        .iter()
        .filter(|s| s.name == family)
        .filter(|s| {
            filter
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
        .sum()
}

pub(crate) fn total(m: &Exposition, family: &str) -> f64 {
    total_where(m, family, &[])
}

fn series(m: &Exposition, family: &str) -> usize {
    m.samples().iter().filter(|s| s.name == family).count()
}

/// The Prometheus family of each Claude Code metric (docs/design.md).
pub(crate) const FAMILIES: &[(&str, &str)] = &[
    (
        "claude_code.session.count",
        "claude_code_session_count_total",
    ),
    ("claude_code.cost.usage", "claude_code_cost_usage_USD_total"),
    (
        "claude_code.token.usage",
        "claude_code_token_usage_tokens_total",
    ),
    (
        "claude_code.lines_of_code.count",
        "claude_code_lines_of_code_count_total",
    ),
    (
        "claude_code.code_edit_tool.decision",
        "claude_code_code_edit_tool_decision_total",
    ),
    ("claude_code.commit.count", "claude_code_commit_count_total"),
    (
        "claude_code.pull_request.count",
        "claude_code_pull_request_count_total",
    ),
    (
        "claude_code.active_time.total",
        "claude_code_active_time_seconds_total",
    ),
];

/// Every check a scenario's totals must pass, given what was posted.
pub(crate) fn assert_totals_match_the_cli(m: &Exposition, all: &[Captured], what: &str) {
    let (points, events) = reference(all);
    assert!(
        !points.is_empty() && !events.is_empty(),
        "{what}: fixtures hold points and events"
    );
    for (otlp, family) in FAMILIES {
        let want = reference_total(&points, otlp, &[]);
        let got = total(m, family);
        assert!(
            close(got, want),
            "{what}: {family} is {got}, the CLI counted {want}"
        );
    }
    // The CLI's own events agree with its metrics: cost and tokens.
    let cost = event_sum(&events, "api_request", "cost_usd");
    let got = total(m, "claude_code_cost_usage_USD_total");
    assert!(
        close(got, cost),
        "{what}: cost {got} != Σ api_request.cost_usd {cost}"
    );
    for (ty, field) in [
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cacheRead", "cache_read_tokens"),
        ("cacheCreation", "cache_creation_tokens"),
    ] {
        let want = event_sum(&events, "api_request", field);
        let got = total_where(m, "claude_code_token_usage_tokens_total", &[("type", ty)]);
        assert!(
            close(got, want),
            "{what}: tokens{{type={ty}}} {got} != Σ {field} {want}"
        );
    }
    for (event, family) in [
        ("api_request", "claude_code_api_requests_total"),
        (
            "api_request",
            "claude_code_api_request_duration_seconds_count",
        ),
        ("tool_result", "claude_code_tool_results_total"),
        (
            "tool_result",
            "claude_code_tool_result_duration_seconds_count",
        ),
        ("tool_decision", "claude_code_tool_decisions_total"),
        ("user_prompt", "claude_code_user_prompts_total"),
    ] {
        let want = event_count(&events, event);
        assert_eq!(total(m, family), want, "{what}: {family}");
    }
    let ms = event_sum(&events, "api_request", "duration_ms");
    let got = total(m, "claude_code_api_request_duration_seconds_sum");
    assert!(
        close(got, ms / 1000.0),
        "{what}: api duration sum {got} != {ms} ms"
    );
    // tool_result carries success and duration as strings ("true", "81").
    let ok = events
        .iter()
        .filter(|e| e.get("event.name").map(String::as_str) == Some("tool_result"))
        .filter(|e| e["success"] == "true")
        .count() as f64;
    assert_eq!(
        total_where(
            m,
            "claude_code_tool_results_total",
            &[("tool_name", "Bash"), ("success", "true")]
        ),
        ok,
        "{what}: successful Bash results"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_fixtures_add_up_to_what_the_cli_counted() {
    for name in [
        "proto-delta",
        "json-delta",
        "proto-cumulative",
        "json-cumulative-no-session",
        "proto-gzip",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = OtlpAgent::start(dir.path()).await;
        let runs = scenario(name);
        for c in runs.iter().flatten() {
            a.post(c).await;
        }
        let m = a.settled().await;
        let all: Vec<Captured> = runs.concat();
        assert_totals_match_the_cli(&m, &all, name);
        assert_eq!(
            total(&m, "claude_code_session_count_total"),
            runs.len() as f64,
            "{name}: one session start per CLI process"
        );
        // Labels are the allow-list only: no session, user or resource attributes.
        for s in m
            .samples()
            .iter()
            .filter(|s| s.name.starts_with("claude_code_"))
        {
            for (k, _) in &s.labels {
                assert!(
                    [
                        "model",
                        "type",
                        "query_source",
                        "start_type",
                        "tool_name",
                        "success",
                        "decision",
                        "source",
                        "status_code",
                        "le",
                        "speed",
                        "effort",
                        "language"
                    ]
                    .contains(&k.as_str()),
                    "{name}: label {k} on {}",
                    s.name
                );
            }
        }
        assert!(
            m.value("vibe_claude_telemetry_last_received_timestamp_seconds{signal=\"metrics\"}")
                .unwrap()
                > 1e9
        );
        assert!(
            m.value("vibe_claude_telemetry_last_received_timestamp_seconds{signal=\"logs\"}")
                .unwrap()
                > 1e9
        );
        a.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_and_sessions_without_ids_restart_counters_that_still_add_up() {
    // --continue reuses the session id with a new start time; without session ids two
    // processes send the very same label set. Both must read as resets, never as drops.
    let dir = tempfile::tempdir().unwrap();
    let mut a = OtlpAgent::start(dir.path()).await;
    let runs = scenario("proto-cumulative");
    for c in runs.iter().flatten() {
        a.post(c).await;
    }
    let m = a.settled().await;
    assert_eq!(
        total_where(
            &m,
            "claude_code_session_count_total",
            &[("start_type", "continue")]
        ),
        1.0
    );
    assert_eq!(
        total_where(
            &m,
            "claude_code_session_count_total",
            &[("start_type", "fresh")]
        ),
        2.0
    );
    let (points, _) = reference(&runs[2]);
    let sessions: std::collections::BTreeSet<_> = points
        .iter()
        .filter_map(|p| p.attrs.get("session.id"))
        .collect();
    let (points1, _) = reference(&runs[1]);
    let sessions1: std::collections::BTreeSet<_> = points1
        .iter()
        .filter_map(|p| p.attrs.get("session.id"))
        .collect();
    assert!(
        sessions1.is_subset(&sessions),
        "the fixture's --continue run reuses the session id: {sessions1:?} in {sessions:?}"
    );
    a.shutdown().await;

    let runs = scenario("json-cumulative-no-session");
    let (p1, _) = reference(&runs[0]);
    assert!(
        p1.iter().all(|p| !p.attrs.contains_key("session.id")),
        "no session.id in this fixture"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut a = OtlpAgent::start(dir.path()).await;
    for c in runs.iter().flatten() {
        a.post(c).await;
    }
    let m = a.settled().await;
    let cost: f64 = runs
        .iter()
        .map(|r| event_sum(&reference(r).1, "api_request", "cost_usd"))
        .sum();
    assert!(close(total(&m, "claude_code_cost_usage_USD_total"), cost));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_sent_and_reordered_batches_count_once() {
    // What the CLI does after a 5xx (or a connection lost mid-answer): it sends the same
    // batch again about 1 s and 2.5 s later. The agent answers 2xx without waiting, so in
    // practice this only follows a proxy's error or an agent restart mid-request; either
    // way a re-sent delta interval, cumulative value or event is recognised and not added.
    for name in ["proto-delta", "json-delta", "proto-cumulative"] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = OtlpAgent::start(dir.path()).await;
        let runs = scenario(name);
        for run in &runs {
            for c in run {
                a.post(c).await;
                a.post(c).await;
            }
            // And the run's batches once more, newest first (reordered delivery).
            for c in run.iter().rev() {
                a.post(c).await;
            }
        }
        let m = a.settled().await;
        assert_totals_match_the_cli(&m, &runs.concat(), name);
        assert!(
            total_where(
                &m,
                "vibe_otlp_points_dropped_total",
                &[("reason", "duplicate")]
            ) > 0.0
                || total_where(
                    &m,
                    "vibe_otlp_points_dropped_total",
                    &[("reason", "out_of_order")]
                ) > 0.0
        );
        a.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_batches_in_reverse_order_count_the_final_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = OtlpAgent::start(dir.path()).await;
    let runs = scenario("proto-cumulative");
    for run in &runs {
        for c in run.iter().rev() {
            a.post(c).await;
        }
    }
    let m = a.settled().await;
    assert_totals_match_the_cli(&m, &runs.concat(), "reversed");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_survive_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let runs = scenario("proto-cumulative");
    let mut a = OtlpAgent::start(dir.path()).await;
    for c in &runs[0] {
        a.post(c).await;
    }
    let before = a.settled().await;
    let cost1 = total(&before, "claude_code_cost_usage_USD_total");
    assert!(cost1 > 0.0);
    a.shutdown().await;
    assert!(
        dir.path().join("claude-telemetry.json").exists(),
        "state saved at shutdown"
    );

    let mut a = OtlpAgent::start(dir.path()).await;
    let m = a
        .metrics
        .wait_for("restored cost", |m| {
            total(m, "claude_code_cost_usage_USD_total") == cost1
        })
        .await;
    assert_eq!(total(&m, "claude_code_session_count_total"), 1.0);
    // The first run's last batch again (a client re-sending after the restart): the
    // cumulative streams were saved too, so nothing is added twice.
    for c in &runs[0] {
        a.post(c).await;
    }
    for c in runs[1..].iter().flatten() {
        a.post(c).await;
    }
    let m = a.settled().await;
    assert_totals_match_the_cli(&m, &runs.concat(), "across a restart");
    a.shutdown().await;
}

/// Writes a request by hand with `Transfer-Encoding: chunked` (as the CLI always does) and
/// returns the status code.
async fn post_chunked(base: &str, path: &str, headers: &str, body: &[u8]) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_gzip_bodies_under_any_path_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = OtlpAgent::start(dir.path()).await;
    let runs = scenario("proto-gzip");
    // The VictoriaMetrics/VictoriaLogs paths, and what the CLI posts to for a generic
    // endpoint with a prefix (OTEL_EXPORTER_OTLP_ENDPOINT=http://host:4318/insert/opentelemetry).
    let prefixes = ["/opentelemetry", "/insert/opentelemetry", "/a/b"];
    for (i, c) in runs.iter().flatten().enumerate() {
        let signal = if c.path.ends_with("/metrics") {
            "/v1/metrics"
        } else {
            "/v1/logs"
        };
        let path = format!("{}{signal}", prefixes[i % prefixes.len()]);
        let path = path.as_str();
        let headers = format!(
            "Content-Type: {}\r\nContent-Encoding: gzip\r\n",
            c.content_type
        );
        assert_eq!(c.encoding.as_deref(), Some("gzip"), "fixture is gzipped");
        assert_eq!(
            post_chunked(&a.otlp_base, path, &headers, &c.body).await,
            200
        );
        a.posted += 1;
    }
    let m = a.settled().await;
    assert_totals_match_the_cli(&m, &runs.concat(), "chunked gzip");
    // The path label is the signal's route, whatever the prefix: bounded.
    let paths: std::collections::BTreeSet<&str> = m
        .samples()
        .iter()
        .filter(|s| s.name == "vibe_otlp_requests_total")
        .flat_map(|s| &s.labels)
        .filter(|(k, _)| k == "path")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/v1/logs", "/v1/metrics"].into(),
        "{}",
        m.vibe_lines()
    );
    assert_eq!(
        total_where(
            &m,
            "vibe_otlp_requests_total",
            &[("protocol", "http"), ("status", "200")]
        ),
        a.posted as f64
    );
    // Traces are accepted (and would be forwarded), not converted.
    let (status, _) = a
        .post_raw(
            "/v1/traces",
            "application/json",
            None,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{}]}]}]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    let m = a.settled().await;
    assert_eq!(
        m.value("vibe_otlp_points_accepted_total{signal=\"traces\"}"),
        Some(2.0)
    );
    a.shutdown().await;
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_with_otlp_errors_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set("otlp", "max_body_bytes", "65536")).await;
    let json = "application/json";
    let proto = "application/x-protobuf";
    // Path, content type, content encoding, body, expected status, expected reason.
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/v1/metrics",
            json,
            None,
            b"{\"resourceMetrics\": [".to_vec(),
            400,
            "malformed",
        ),
        (
            "/v1/metrics",
            proto,
            None,
            vec![0xff; 100],
            400,
            "malformed",
        ),
        (
            "/v1/logs",
            json,
            None,
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#
                .to_vec(),
            400,
            "malformed",
        ),
        (
            "/v1/metrics",
            "text/plain",
            None,
            b"hello".to_vec(),
            415,
            "unsupported_content_type",
        ),
        (
            "/v1/logs",
            "application/xml",
            None,
            b"<a/>".to_vec(),
            415,
            "unsupported_content_type",
        ),
        (
            "/v1/metrics",
            json,
            None,
            vec![b' '; 70_000],
            413,
            "too_large",
        ),
        // A gzip bomb: 64 MiB of zeros in ~64 KiB; refused once 64 KiB are inflated.
        (
            "/v1/metrics",
            json,
            Some("gzip"),
            gzip(&vec![0u8; 64 << 20]),
            413,
            "too_large",
        ),
        (
            "/v1/metrics",
            json,
            Some("gzip"),
            b"not gzip".to_vec(),
            400,
            "bad_gzip",
        ),
        (
            "/v1/metrics",
            json,
            Some("br"),
            b"{}".to_vec(),
            400,
            "unsupported_encoding",
        ),
    ];
    for (path, ct, enc, body, want, reason) in cases {
        let (status, reply) = a.post_raw(path, ct, enc, body).await;
        assert_eq!(
            status,
            want,
            "{path} {ct} {enc:?}: {}",
            String::from_utf8_lossy(&reply)
        );
        if ct == json || ct.starts_with("text") || ct.contains("xml") {
            let v: serde_json::Value =
                serde_json::from_slice(&reply).expect("a JSON google.rpc.Status");
            assert!(v["message"].as_str().unwrap().len() > 10, "{v}");
        }
        let m = a.settled().await;
        assert!(
            m.value(&format!(
                "vibe_otlp_decode_errors_total{{reason=\"{reason}\"}}"
            ))
            .unwrap()
                >= 1.0,
            "{reason}"
        );
    }
    let (status, _) = a.post_raw("/v2/nothing", json, None, b"{}".to_vec()).await;
    assert_eq!(status, 404);
    // Partial success: a point the agent cannot convert is reported, the rest counted.
    let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"claude_code.commit.count","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","isMonotonic":true,
         "dataPoints":[{"timeUnixNano":"1000","asInt":"2"}]}},
        {"name":"x","summary":{"dataPoints":[{}]}}]}]}]}"#;
    let (status, reply) = a.post_raw("/v1/metrics", json, None, body.to_vec()).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1", "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("unsupported_type")
    );
    let m = a.settled().await;
    assert_eq!(total(&m, "claude_code_commit_count_total"), 2.0);
    a.shutdown().await;
}

/// A client that sends headers and part of a body, then nothing, gets 408 at
/// `otlp.read_timeout` and is counted; the receiver serves others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set_str("otlp", "read_timeout", "300ms")).await;
    let addr = a.otlp_base.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"resourceMetrics\"",
        )
        .await
        .unwrap();
    let (status, _) = a
        .post_raw("/v1/metrics", "application/json", None, commits(3))
        .await;
    assert_eq!(status, 200, "served while another client stalls");
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, stalled.read_to_end(&mut resp))
        .await
        .expect("answered within the wait")
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("otlp.read_timeout"), "{text}");
    a.posted += 1;
    let m = a.settled().await;
    assert_eq!(
        m.value("vibe_otlp_decode_errors_total{reason=\"timeout\"}"),
        Some(1.0)
    );
    assert_eq!(total(&m, "claude_code_commit_count_total"), 3.0);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_keep_one_series_per_label_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = OtlpAgent::start_with(dir.path(), |c| c.set("otlp", "max_streams", "2000")).await;
    let mut want = 0.0;
    for batch in 0..100 {
        let points: Vec<String> = (0..100)
            .map(|i| {
                let session = format!("session-{batch}-{i}");
                format!(
                    r#"{{"attributes":[{{"key":"session.id","value":{{"stringValue":"{session}"}}}},
                    {{"key":"user.id","value":{{"stringValue":"u{i}"}}}},
                    {{"key":"model","value":{{"stringValue":"claude-sonnet-4-5"}}}}],
                    "startTimeUnixNano":"1000","timeUnixNano":"2000","asDouble":0.5}}"#
                )
            })
            .collect();
        want += 50.0;
        let body = format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"claude_code.cost.usage","unit":"USD",
            "sum":{{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{}]}}}}]}}]}}]}}"#,
            points.join(",")
        );
        let (status, _) = a
            .post_raw("/v1/metrics", "application/json", None, body.into_bytes())
            .await;
        assert_eq!(status, 200);
    }
    let m = a.settled().await;
    assert_eq!(
        series(&m, "claude_code_cost_usage_USD_total"),
        1,
        "one series for 10 000 sessions"
    );
    assert!(close(total(&m, "claude_code_cost_usage_USD_total"), want));
    let streams = m.value("vibe_otlp_streams").unwrap();
    assert!(streams <= 2000.0, "stream memory is bounded: {streams}");
    assert!(m.value("vibe_otlp_streams_evicted_total").unwrap() > 0.0);
    a.shutdown().await;

    // The series cap: distinct allow-listed values beyond it are refused and counted.
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set("otlp", "max_series_per_family", "5")).await;
    let points: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"attributes":[{{"key":"model","value":{{"stringValue":"m{i}"}}}}],"timeUnixNano":"{i}","asDouble":1}}"#))
        .collect();
    let body = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"claude_code.commit.count",
        "sum":{{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{}]}}}}]}}]}}]}}"#,
        points.join(",")
    );
    a.post_raw("/v1/metrics", "application/json", None, body.into_bytes())
        .await;
    let m = a.settled().await;
    assert_eq!(series(&m, "claude_code_commit_count_total"), 5);
    assert_eq!(
        m.value(
            "vibe_claude_telemetry_series_overflow_total{family=\"claude_code_commit_count_total\"}"
        ),
        Some(15.0)
    );
    a.shutdown().await;
}

/// The agent binary, run as a child with its logs captured.
struct AgentProcess {
    child: std::process::Child,
    stderr_path: PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        crate::support::end_child(&mut self.child, Duration::from_secs(5), false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_never_reaches_metrics_or_logs() {
    // The canary fixture has the secret in the prompt text (OTEL_LOG_USER_PROMPTS=1), the
    // Bash command (OTEL_LOG_TOOL_DETAILS=1) and the account e-mail; the agent runs as its
    // own process with debug logs, and also gets malformed bodies quoting the secret.
    let runs = scenario("canary");
    let all = runs.concat();
    assert!(
        all.iter()
            .any(|c| String::from_utf8_lossy(&c.body).contains(&format!("{CANARY}@example.com"))),
        "the fixture carries the canary e-mail"
    );
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = crate::support::free_port();
    let otlp_port = crate::support::free_port();
    let text = Config::new()
        .metrics_listen(&format!("127.0.0.1:{metrics_port}"))
        .otlp_listen(&format!("127.0.0.1:{otlp_port}"))
        .log_level("debug")
        .toml(dir.path());
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, text).unwrap();
    let stderr_path = dir.path().join("agent.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vibe-agent"))
        .arg("--config")
        .arg(&cfg)
        .stdout(std::fs::File::create(dir.path().join("agent.out")).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start vibe-agent");
    let proc = AgentProcess { child, stderr_path };
    let metrics = MetricsClient::new(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    let otlp = format!("http://127.0.0.1:{otlp_port}");
    let client = http_client();
    wait_until(WAIT, "the agent's receiver to answer", async || {
        client
            .post(format!("{otlp}/v1/metrics"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let mut posted = 1.0;
    for c in &all {
        let resp = client
            .post(format!("{otlp}{}", c.path))
            .header("content-type", &c.content_type)
            .body(c.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        posted += 1.0;
    }
    // Malformed bodies quoting the secret, and the secret as a content type.
    for (path, body) in [
        (
            "/v1/logs",
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{CANARY}"}}]}}]}}]}}"#
            ),
        ),
        (
            "/v1/metrics",
            format!(
                r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"{CANARY}","sum":{{"dataPoints":[{{"asInt":"{CANARY}"}}]}}}}]}}]}}]}}"#
            ),
        ),
    ] {
        let resp = client
            .post(format!("{otlp}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        posted += 1.0;
    }
    let resp = client
        .post(format!("{otlp}/v1/logs"))
        .header("content-type", format!("application/{CANARY}"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    posted += 1.0;
    let m = metrics
        .wait_for("every request counted", |m| {
            total(m, "vibe_otlp_requests_total") == posted
        })
        .await;
    assert!(
        total(&m, "claude_code_api_requests_total") > 0.0,
        "the events were counted"
    );
    assert!(
        !m.text.contains(CANARY),
        "the canary is in /metrics:\n{}",
        m.text
    );
    let landing = metrics.get("/").await.text().await.unwrap();
    assert!(
        !landing.contains(CANARY),
        "the canary is on the landing page"
    );
    let log = std::fs::read_to_string(&proc.stderr_path).unwrap()
        + &std::fs::read_to_string(dir.path().join("agent.out")).unwrap();
    assert!(
        log.contains("OTLP request refused"),
        "debug logs were written:\n{log}"
    );
    assert!(
        !log.contains(CANARY),
        "the canary is in the agent's logs:\n{log}"
    );
    drop(proc);
    let saved =
        std::fs::read_to_string(dir.path().join("claude-telemetry.json")).unwrap_or_default();
    assert!(!saved.contains(CANARY), "the canary is in the state file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_survives_an_upstream_that_fails_stalls_and_recovers() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // The upstream: answers 503 to the first 3 requests, then stalls on the 4th until the
    // test has posted everything (`release`), then 200; records the bodies it accepted, in
    // order.
    #[derive(Default)]
    struct Upstream {
        calls: AtomicUsize,
        got: std::sync::Mutex<Vec<Vec<u8>>>,
        release: tokio::sync::Notify,
    }
    let up = Arc::new(Upstream::default());
    let up2 = up.clone();
    let app = axum::Router::new().route(
        "/insert/opentelemetry/v1/logs",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let up = up2.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/json");
                    let n = up.calls.fetch_add(1, Ordering::SeqCst);
                    if n < 3 {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    if n == 3 {
                        up.release.notified().await;
                    }
                    up.got.lock().unwrap().push(body.to_vec());
                    StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let logs_url = format!("http://{up_addr}/insert/opentelemetry/v1/logs");
    let mut a = OtlpAgent::start_with(dir.path(), |c| {
        c.set_str("claude.forward", "logs_url", &logs_url)
    })
    .await;
    let logs: Vec<Captured> = scenario("json-delta")
        .concat()
        .into_iter()
        .filter(|c| c.path.ends_with("/logs"))
        .collect();
    assert!(!logs.is_empty());
    for c in &logs {
        let started = std::time::Instant::now();
        a.post(c).await;
        // Never blocked by the upstream (which may be stalled right now).
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the receiver waited on the upstream"
        );
    }
    // End the stall (a stored permit if the upstream has not reached it yet).
    up.release.notify_one();
    let want: Vec<Vec<u8>> = logs.iter().map(|c| c.body.clone()).collect();
    wait_until(WAIT, "every body forwarded in order", async || {
        let got = up.got.lock().unwrap().clone();
        if got == want {
            Ok(())
        } else {
            Err(format!("{} of {} bodies", got.len(), want.len()))
        }
    })
    .await;
    let m = a
        .metrics
        .wait_for("forward counters", |m| {
            m.value("vibe_otlp_forwarded_total{signal=\"logs\"}") == Some(want.len() as f64)
        })
        .await;
    assert!(
        m.value("vibe_otlp_forward_retries_total{signal=\"logs\"}")
            .unwrap()
            >= 3.0
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_overflow_drops_the_oldest_bodies_and_counts_exactly_those() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // The upstream: the first request stalls until the test releases it; every body it
    // accepts is recorded, in order.
    #[derive(Default)]
    struct Upstream {
        calls: AtomicUsize,
        got: std::sync::Mutex<Vec<Vec<u8>>>,
        release: tokio::sync::Notify,
    }
    let up = Arc::new(Upstream::default());
    let up2 = up.clone();
    let app = axum::Router::new().route(
        "/insert/opentelemetry/v1/logs",
        axum::routing::post(move |body: axum::body::Bytes| {
            let up = up2.clone();
            async move {
                if up.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    up.release.notified().await;
                }
                up.got.lock().unwrap().push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Twenty valid log bodies of one size, each saying which one it is.
    const N: usize = 20;
    let bodies: Vec<Vec<u8>> = (0..N as u64)
        .map(|i| {
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{}"}}]}}]}}]}}"#,
                1_700_000_000_000_000_000 + i
            )
            .into_bytes()
        })
        .collect();
    let size = bodies[0].len();
    assert!(bodies.iter().all(|b| b.len() == size));
    // Three bodies fit in the queue, four do not.
    let cap = 3 * size + size / 2;

    let dir = tempfile::tempdir().unwrap();
    let logs_url = format!("http://{up_addr}/insert/opentelemetry/v1/logs");
    let mut a = OtlpAgent::start_with(dir.path(), |c| {
        c.set("otlp", "forward_queue_bytes", cap.to_string())
            .set_str("claude.forward", "logs_url", &logs_url)
    })
    .await;
    let post = async |a: &mut OtlpAgent, body: &[u8]| {
        let started = std::time::Instant::now();
        let (status, reply) = a
            .post_raw("/v1/logs", "application/json", None, body.to_vec())
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the receiver waited on the upstream"
        );
    };

    // Body 0 goes out and stalls the upstream; the other 19 queue behind it.
    post(&mut a, &bodies[0]).await;
    wait_until(WAIT, "the upstream holds body 0", async || {
        match up.calls.load(Ordering::SeqCst) {
            0 => Err("no request yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    for b in &bodies[1..] {
        post(&mut a, b).await;
    }
    // While it stalls: the three newest wait, under the cap; bodies 1..=16 were dropped.
    let dropped = "vibe_otlp_forward_dropped_total{signal=\"logs\",reason=\"overflow\"}";
    let queued = "vibe_otlp_forward_queue_bytes{signal=\"logs\"}";
    let m = a
        .metrics
        .wait_for("overflow counted while the upstream stalls", |m| {
            m.value(dropped) == Some((N - 4) as f64)
        })
        .await;
    assert_eq!(m.value(queued), Some((3 * size) as f64));
    assert!(m.value(queued).unwrap() <= cap as f64);
    assert_eq!(
        m.value("vibe_otlp_forwarded_total{signal=\"logs\"}"),
        Some(0.0)
    );

    up.release.notify_one();
    let m = a
        .metrics
        .wait_for("the queue sent", |m| {
            m.value("vibe_otlp_forwarded_total{signal=\"logs\"}") == Some(4.0)
                && m.value(queued) == Some(0.0)
        })
        .await;
    let got = up.got.lock().unwrap().clone();
    // What arrived: the body in flight, then the newest three, in order.
    let want: Vec<Vec<u8>> = [0, N - 3, N - 2, N - 1]
        .iter()
        .map(|&i| bodies[i].clone())
        .collect();
    assert_eq!(
        got.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>(),
        want.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
    );
    // The counter is exactly the bodies the upstream never received.
    assert_eq!(m.value(dropped), Some((N - got.len()) as f64));
    assert_eq!(
        m.value("vibe_otlp_forward_dropped_total{signal=\"logs\",reason=\"rejected\"}"),
        Some(0.0)
    );
    a.shutdown().await;
}

/// A JSON metrics body adding `n` to `claude_code_commit_count_total`.
/// A delta of `n` commits; its time depends on `n`, so bodies with different counts are not
/// taken for a re-sent batch.
pub(crate) fn commits(n: u64) -> Vec<u8> {
    let time = 1_700_000_000_000_000_000u64 + n;
    format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"claude_code.commit.count",
        "sum":{{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","isMonotonic":true,
        "dataPoints":[{{"timeUnixNano":"{time}","asInt":"{n}"}}]}}}}]}}]}}]}}"#
    )
    .into_bytes()
}

impl OtlpAgent {
    /// POSTs a JSON metrics body with this `Authorization` header (none when `None`).
    async fn post_authorized(
        &mut self,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .client
            .post(format!("{}/v1/metrics", self.otlp_base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(v) = authorization {
            req = req.header("authorization", v);
        }
        let resp = req.send().await.expect("POST /v1/metrics");
        self.posted += 1;
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }
}

/// Requests without the token are refused (401, UNAUTHENTICATED), counted by status, and
/// count nothing else; the right token is accepted under either case of the scheme; the
/// token never reaches /metrics.
async fn assert_bearer_token_enforced(a: &mut OtlpAgent, token: &str) {
    let refused = [
        None,
        Some("Bearer wrong-token-9c2e".to_string()),
        Some(token.to_string()),
        Some(format!("Basic {token}")),
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {}", &token[..token.len() - 1])),
    ];
    for auth in &refused {
        let (status, reply) = a.post_authorized(auth.as_deref(), commits(5)).await;
        assert_eq!(status, 401, "Authorization {auth:?}");
        let v: serde_json::Value =
            serde_json::from_slice(&reply).expect("a JSON google.rpc.Status");
        assert_eq!(v["code"], 16, "{v}");
        assert!(v["message"].as_str().unwrap().contains("bearer"), "{v}");
        assert!(!String::from_utf8_lossy(&reply).contains(token));
    }
    let m = a.settled().await;
    assert_eq!(
        m.value("vibe_otlp_requests_total{path=\"/v1/metrics\",status=\"401\"}"),
        Some(refused.len() as f64)
    );
    assert_eq!(total(&m, "claude_code_commit_count_total"), 0.0);
    assert_eq!(total(&m, "vibe_otlp_points_accepted_total"), 0.0);
    assert_eq!(total(&m, "vibe_otlp_received_bytes_total"), 0.0);
    assert_eq!(total(&m, "vibe_otlp_decode_errors_total"), 0.0);
    assert!(!m.text.contains(token), "the token is in /metrics");

    // The scheme's case does not matter (RFC 9110); the token's does (refused above).
    for (auth, n) in [
        (format!("Bearer {token}"), 2),
        (format!("bearer {token}"), 3),
    ] {
        let (status, reply) = a.post_authorized(Some(&auth), commits(n)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    }
    let m = a.settled().await;
    assert_eq!(
        m.value("vibe_otlp_requests_total{path=\"/v1/metrics\",status=\"200\"}"),
        Some(2.0)
    );
    assert_eq!(total(&m, "claude_code_commit_count_total"), 5.0);
    assert_eq!(
        m.value("vibe_otlp_points_accepted_total{signal=\"metrics\"}"),
        Some(2.0)
    );
    assert!(!m.text.contains(token), "the token is in /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_refuses_requests_without_it() {
    const TOKEN: &str = "otlp-token-4b7d0e1a";
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        OtlpAgent::start_with(dir.path(), |c| c.set_str("otlp", "bearer_token", TOKEN)).await;
    assert_bearer_token_enforced(&mut a, TOKEN).await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_file_is_read_without_its_trailing_newline() {
    const TOKEN: &str = "otlp-file-token-e83f52";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("otlp.token");
    // As `echo "$TOKEN" > file` writes it.
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let mut a = OtlpAgent::start_with(dir.path(), |c| {
        c.set_str("otlp", "bearer_token_file", &file.to_string_lossy())
    })
    .await;
    assert_bearer_token_enforced(&mut a, TOKEN).await;
    a.shutdown().await;

    // A file that cannot be read stops the configuration, naming the key and the file.
    let missing = dir.path().join("no-such.token");
    let text = format!("[otlp]\nbearer_token_file = \"{}\"\n", missing.display());
    let e = Settings::from_toml(&text, Path::new("otlp-test.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("otlp.bearer_token_file"), "{e}");
    assert!(e.contains("no-such.token"), "{e}");
}

/// One offline CLI turn against `endpoint` with telemetry in `protocol` and `temporality`.
pub(crate) fn run_cli(
    endpoint: &str,
    home: &Path,
    protocol: &str,
    temporality: &str,
    extra: &[(&str, &str)],
) {
    let mut env = vec![
        ("OTLP_PROTOCOL", protocol),
        ("TEMPORALITY", temporality),
        ("EXPORT_INTERVAL_MS", "300"),
        ("SSE_DELAY", "0.02"),
    ];
    env.extend_from_slice(extra);
    run_turn(endpoint, home, &env);
}

/// Tokens by type and the cost the CLI's own price formula gives, from the transcripts the
/// CLI wrote under `home` (docs/claude-code.md: one API response may span several lines with
/// the same message id and request id: count it once; claude-sonnet-4-5 costs 3 / 15 USD
/// per million input / output tokens, cache writes 1.25x and cache reads 0.1x input).
pub(crate) fn transcript_usage(home: &Path) -> (f64, BTreeMap<&'static str, f64>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut tokens: BTreeMap<&'static str, f64> = BTreeMap::new();
    let projects = home.join(".claude/projects");
    for dir in std::fs::read_dir(&projects).expect("transcripts written") {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if v["type"] != "assistant" {
                    continue;
                }
                let key = (v["message"]["id"].to_string(), v["requestId"].to_string());
                if !seen.insert(key) {
                    continue;
                }
                let u = &v["message"]["usage"];
                for (ty, field) in [
                    ("input", "input_tokens"),
                    ("output", "output_tokens"),
                    ("cacheRead", "cache_read_input_tokens"),
                    ("cacheCreation", "cache_creation_input_tokens"),
                ] {
                    *tokens.entry(ty).or_default() += u[field].as_f64().unwrap_or(0.0);
                }
            }
        }
    }
    let cost = (tokens["input"] * 3.0
        + tokens["output"] * 15.0
        + tokens["cacheCreation"] * 3.0 * 1.25
        + tokens["cacheRead"] * 3.0 * 0.1)
        / 1e6;
    (cost, tokens)
}

/// The real CLI against the running agent: a cumulative protobuf session and a delta JSON
/// session, then an agent restart. The totals must match what the CLI's transcripts say
/// was used, and survive the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_cli_twice_then_a_restart_adds_up() {
    claude_bin();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let a = OtlpAgent::start(dir.path()).await;
    let endpoint = a.otlp_base.clone();
    let h = home.clone();
    let e = endpoint.clone();
    tokio::task::spawn_blocking(move || run_cli(&e, &h, "http/protobuf", "cumulative", &[]))
        .await
        .unwrap();
    let h = home.clone();
    let e = endpoint.clone();
    tokio::task::spawn_blocking(move || run_cli(&e, &h, "http/json", "delta", &[]))
        .await
        .unwrap();
    let (cost, tokens) = transcript_usage(&home);
    let m = a
        .metrics
        .wait_for("two sessions' telemetry", |m| {
            total(m, "claude_code_session_count_total") == 2.0
                && total(m, "claude_code_api_requests_total") == 4.0
                && close(total(m, "claude_code_cost_usage_USD_total"), cost)
        })
        .await;
    for (ty, want) in &tokens {
        let got = total_where(&m, "claude_code_token_usage_tokens_total", &[("type", ty)]);
        assert_eq!(got, *want, "tokens{{type={ty}}} against the transcripts");
    }
    let before: Vec<(String, f64)> = FAMILIES
        .iter()
        .map(|(_, f)| (f.to_string(), total(&m, f)))
        .collect();
    a.shutdown().await;

    let a = OtlpAgent::start(dir.path()).await;
    let m = a
        .metrics
        .wait_for("totals restored", |m| {
            total(m, "claude_code_session_count_total") == 2.0
        })
        .await;
    for (family, want) in before {
        assert!(
            close(total(&m, &family), want),
            "{family} after the restart"
        );
    }
    assert_eq!(total(&m, "claude_code_api_requests_total"), 4.0);
    a.shutdown().await;
}
