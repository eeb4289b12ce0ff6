//! Claude transcripts (issue 5): agreement with ccusage (the peer) and the corpus
//! generator's ground truth; live tailing through the real notify tailer in a tempdir home
//! (appends in random chunks, partial lines, truncation, deletion, a new subagent directory,
//! a home created after start); restart exactness (lines appended while the agent was down,
//! `kill -9`); a real inotify queue overflow; transcripts written by the real Claude Code
//! CLI against ccusage; no transcript content in `/metrics` or the agent binary's logs.
//!
//! ccusage comes from npm (`ccusage@20.0.24`, installed into `target/test-deps/ccusage` by
//! `scripts/test`); `VIBE_TEST_CCUSAGE` may name another binary. The test fails, naming the
//! install command, when it is missing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Agent, Listeners};
use vibe_agent::transcripts::tail::{TailSettings, TranscriptTail};

use crate::support::agent_process::AgentProcess;
use crate::support::claude_cli::{claude_bin, run_turn};
use crate::support::{Config, Exposition, MetricsClient, WAIT, repo_root};

const CCUSAGE_INSTALL: &str = "npm install --prefix target/test-deps/ccusage ccusage@20.0.24";

/// The ccusage binary, or a failure that says how to install it.
pub fn ccusage() -> PathBuf {
    let path = std::env::var_os("VIBE_TEST_CCUSAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-deps/ccusage/node_modules/.bin/ccusage"));
    assert!(
        path.exists(),
        "ccusage (the peer for transcript accounting) is missing at {}: install it with \
         `{CCUSAGE_INSTALL}` (scripts/test does), or set VIBE_TEST_CCUSAGE",
        path.display()
    );
    path
}

/// Writes a corpus with the adopted generator; returns its manifest.
fn generate_corpus(out: &Path, size_mb: f64, seed: u32) -> serde_json::Value {
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/gen_claude_corpus.py"))
        .args(["--out", out.to_str().unwrap()])
        .args([
            "--size-mb",
            &size_mb.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(["--projects", "4", "--sessions", "6", "--days", "5"])
        .args(["--subagent-ratio", "0.3", "--malformed-rate", "0.01"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs scripts/gen_claude_corpus.py");
    assert!(status.success(), "corpus generator failed: {status}");
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// (day, model) → [input, output, cache_creation, cache_read], and model → cost.
type DayModel = BTreeMap<(String, String), [u64; 4]>;

fn ccusage_daily(corpus: &Path) -> (DayModel, BTreeMap<String, f64>) {
    let out = Command::new(ccusage())
        .args([
            "claude",
            "daily",
            "--json",
            "--offline",
            "--breakdown",
            "-z",
            "UTC",
        ])
        .env("CLAUDE_CONFIG_DIR", corpus)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ccusage");
    assert!(
        out.status.success(),
        "ccusage failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ccusage JSON");
    let mut days = DayModel::new();
    let mut cost = BTreeMap::new();
    for d in v["daily"].as_array().expect("daily[]") {
        let date = d["date"].as_str().unwrap().to_string();
        for m in d["modelBreakdowns"].as_array().unwrap() {
            let model = m["modelName"].as_str().unwrap().to_string();
            let n = |k: &str| m[k].as_u64().unwrap();
            days.insert(
                (date.clone(), model.clone()),
                [
                    n("inputTokens"),
                    n("outputTokens"),
                    n("cacheCreationTokens"),
                    n("cacheReadTokens"),
                ],
            );
            *cost.entry(model).or_insert(0.0) += m["cost"].as_f64().unwrap();
        }
    }
    (days, cost)
}

fn day_name(day: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs((day * 86400) as u64);
    humantime::format_rfc3339(t).to_string()[..10].to_string()
}

fn tail_settings(homes: Vec<String>, state_dir: &Path) -> TailSettings {
    TailSettings::for_homes(homes, state_dir)
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn token_totals_per_day_and_model_and_cost_equal_ccusage_and_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let manifest = generate_corpus(&corpus, 6.0, 7);
    let (peer, peer_cost) = ccusage_daily(&corpus);

    let mut tail = TranscriptTail::new(tail_settings(
        vec![corpus.to_string_lossy().into_owned()],
        &dir.path().join("state"),
    ))
    .with_daily_totals();
    tail.reconcile();

    let mut ours = DayModel::new();
    let mut our_cost: BTreeMap<String, f64> = BTreeMap::new();
    for u in tail.ledger().users().values() {
        for ((day, model), t) in &u.days {
            let e = ours.entry((day_name(*day), model.clone())).or_default();
            for (i, v) in [t.input, t.output, t.cache_creation, t.cache_read]
                .iter()
                .enumerate()
            {
                e[i] += v;
            }
        }
        for (model, m) in &u.models {
            *our_cost.entry(model.clone()).or_default() += m.cost_usd;
        }
    }
    assert!(!peer.is_empty(), "ccusage found no usage in the corpus");
    assert_eq!(ours, peer, "tokens per (day, model): agent vs ccusage");
    assert_eq!(
        our_cost.keys().collect::<Vec<_>>(),
        peer_cost.keys().collect::<Vec<_>>()
    );
    for (model, c) in &peer_cost {
        // Both sum f64 per response; the order of additions differs (ccusage per day, the
        // agent per model), which moves the last few bits only.
        assert!(
            close(our_cost[model], *c, 1e-9),
            "{model}: agent ${} vs ccusage ${c}",
            our_cost[model]
        );
    }

    // The generator's ground truth, including the <synthetic> error entries ccusage hides.
    for (date, d) in manifest["days"].as_object().unwrap() {
        for (model, t) in d["models"].as_object().unwrap() {
            if model == "<synthetic>" {
                continue;
            }
            let want = [
                "inputTokens",
                "outputTokens",
                "cacheCreationTokens",
                "cacheReadTokens",
            ]
            .map(|k| t[k].as_u64().unwrap());
            assert_eq!(
                ours.get(&(date.clone(), model.clone())),
                Some(&want),
                "{date} {model}"
            );
        }
    }
    let counts = &manifest["counts"];
    let messages: u64 = tail
        .ledger()
        .users()
        .values()
        .flat_map(|u| u.models.values())
        .map(|m| m.messages)
        .sum();
    let errors: u64 = tail.ledger().users().values().map(|u| u.api_errors).sum();
    assert_eq!(
        messages + errors,
        counts["unique_usage_entries"].as_u64().unwrap()
    );
    assert_eq!(errors, counts["api_error_lines"].as_u64().unwrap());
    let tools: u64 = tail
        .ledger()
        .users()
        .values()
        .flat_map(|u| u.tools.values())
        .sum();
    assert_eq!(tools, counts["tool_use_blocks"].as_u64().unwrap());
    let skipped: u64 = tail.stats().lines_skipped.values().sum();
    assert_eq!(
        skipped,
        counts["malformed_lines"].as_u64().unwrap(),
        "{:?}",
        tail.stats().lines_skipped
    );
    assert_eq!(tail.stats().lines_read, counts["lines"].as_u64().unwrap());
    assert_eq!(tail.stats().bytes_read, counts["bytes"].as_u64().unwrap());
}

// ---------------------------------------------------------------------------------------
// The agent in-process with Claude homes
// ---------------------------------------------------------------------------------------

/// Settings for an agent that watches `homes` (globs), with its state in `state_dir`.
fn settings(homes: &[String], state_dir: &Path, reconcile: &str) -> Settings {
    Config::new()
        .claude_homes(homes)
        .set_str("claude", "reconcile_interval", reconcile)
        .set_str("claude", "save_interval", "100ms")
        .settings(state_dir)
}

async fn start(settings: Settings) -> (Agent, MetricsClient) {
    let listeners = Listeners::bind(&settings).await.expect("bind");
    let agent = daemon::start(settings, listeners).expect("agent starts");
    let http = MetricsClient::new(agent.metrics_addr);
    (agent, http)
}

/// One content-block line of a response (usage 10 in, `out` out, 100 cache write, 1000
/// cache read), in session `session`.
fn response(session: &str, msg: &str, block: &str, out: u64) -> String {
    format!(
        r#"{{"type":"assistant","sessionId":"{session}","version":"2.1.3","requestId":"req_{msg}","timestamp":"2026-08-01T10:00:00.000Z","message":{{"id":"msg_{msg}","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{block}],"usage":{{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":{out}}}}}}}"#
    ) + "\n"
}

const TEXT: &str = r#"{"type":"text","text":"done"}"#;
const BASH: &str = r#"{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}"#;

fn output_tokens(m: &Exposition, user: &str) -> f64 {
    m.value(&format!(
        r#"vibe_claude_tokens_total{{user="{user}",model="claude-opus-4-8",type="output"}}"#
    ))
    .unwrap_or(0.0)
}

fn append(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A tiny deterministic generator for chunk sizes (no clock, no global RNG).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tailing_counts_appends_partial_lines_truncation_deletion_and_new_homes() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let alice = users.join("alice/.claude");
    std::fs::create_dir_all(&alice).unwrap();
    let pattern = users.join("*/.claude").to_string_lossy().into_owned();
    // An hour between reconcile scans: everything below is seen through inotify.
    let (agent, metrics) = start(settings(&[pattern], &dir.path().join("state"), "1h")).await;
    let me = vibe_agent::transcripts::tail::owner_name(&alice);

    // The `projects` directory and a session file appear after start.
    let session = alice.join("projects/-work-app/s1.jsonl");
    append(&session, &response("s1", "1", TEXT, 100));
    metrics
        .wait_for("the first response", |m| output_tokens(m, &me) == 100.0)
        .await;

    // Appends in random chunk sizes: every response counted once, whatever the cut.
    let mut text = String::new();
    for i in 2..=40 {
        text.push_str(&response("s1", &i.to_string(), TEXT, 1));
        text.push_str(&response("s1", &i.to_string(), BASH, 1)); // second block, same key
    }
    let mut rng = Lcg(5);
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(700) as usize).min(bytes.len() - at);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&session)
            .unwrap();
        f.write_all(&bytes[at..at + n]).unwrap();
        at += n;
    }
    let m = metrics
        .wait_for("39 more responses", |m| output_tokens(m, &me) == 139.0)
        .await;
    assert_eq!(
        m.value(&format!(
            r#"vibe_claude_tool_uses_total{{user="{me}",tool="Bash"}}"#
        )),
        Some(39.0)
    );
    assert_eq!(
        m.value(&format!(
            r#"vibe_claude_messages_total{{user="{me}",model="claude-opus-4-8"}}"#
        )),
        Some(40.0)
    );

    // A partial last line waits for its newline. Another file's line, written after it, is
    // the marker that the partial one has been read (events are handled in order).
    let partial = response("s1", "p", TEXT, 1000);
    let (head, tail) = partial.split_at(partial.len() / 2);
    append(&session, head);
    append(
        &alice.join("projects/-work-app/s2.jsonl"),
        &response("s2", "m", TEXT, 5),
    );
    let m = metrics
        .wait_for("the marker", |m| output_tokens(m, &me) == 144.0)
        .await;
    assert_eq!(
        output_tokens(&m, &me),
        144.0,
        "the partial line is not counted"
    );
    append(&session, tail);
    metrics
        .wait_for("the completed line", |m| output_tokens(m, &me) == 1144.0)
        .await;

    // Truncation and rewrite: old responses are not counted again, new ones are.
    std::fs::write(
        &session,
        response("s1", "1", TEXT, 100) + &response("s1", "t", TEXT, 10000),
    )
    .unwrap();
    metrics
        .wait_for("the rewritten file's new response", |m| {
            output_tokens(m, &me) == 11144.0
        })
        .await;

    // Deletion: totals stay; the file is no longer tracked. Recreated: read from the start.
    let before = metrics.scrape().await;
    let files = before
        .value("vibe_claude_transcript_files_watched")
        .unwrap();
    std::fs::remove_file(&session).unwrap();
    let m = metrics
        .wait_for("the deleted file to be dropped", |m| {
            m.value("vibe_claude_transcript_files_watched") == Some(files - 1.0)
        })
        .await;
    assert_eq!(
        output_tokens(&m, &me),
        11144.0,
        "deleting never lowers totals"
    );
    append(&session, &response("s1", "after-delete", TEXT, 20000));
    metrics
        .wait_for("the recreated file", |m| output_tokens(m, &me) == 31144.0)
        .await;

    // A subagent directory created and written at once (faster than its watch lands).
    let sub = alice.join("projects/-work-app/s1/subagents/agent-x.jsonl");
    append(&sub, &response("s1", "sub", BASH, 40000));
    let m = metrics
        .wait_for("the subagent's response", |m| {
            output_tokens(m, &me) == 71144.0
        })
        .await;
    assert_eq!(
        m.value(&format!(r#"vibe_claude_sessions_total{{user="{me}"}}"#)),
        Some(2.0),
        "subagent lines carry their parent's session"
    );

    // A new user's home, created after start, owned by another uid: its own `user` label.
    let bob = users.join("bob/.claude");
    std::fs::create_dir_all(&bob).unwrap();
    std::os::unix::fs::chown(&bob, Some(4242), None).unwrap();
    let bob_user = vibe_agent::transcripts::tail::owner_name(&bob);
    assert_ne!(bob_user, me);
    append(
        &bob.join("projects/p/b1.jsonl"),
        &response("b1", "b", TEXT, 7),
    );
    let m = metrics
        .wait_for("the new home's response", |m| {
            output_tokens(m, &bob_user) == 7.0
        })
        .await;
    assert_eq!(m.value("vibe_claude_transcript_homes"), Some(2.0));
    assert_eq!(output_tokens(&m, &me), 71144.0);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_exactly_counting_lines_appended_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/.claude");
    let state = dir.path().join("state");
    std::fs::create_dir_all(home.join("projects")).unwrap();
    let homes = vec![home.to_string_lossy().into_owned()];
    let me = vibe_agent::transcripts::tail::owner_name(&home);
    let a = home.join("projects/p/a.jsonl");
    let b = home.join("projects/p/b.jsonl");
    append(&a, &response("a", "1", TEXT, 1));
    append(&a, &response("a", "1", BASH, 1));
    append(&b, &response("b", "2", TEXT, 10));

    let (agent, metrics) = start(settings(&homes, &state, "1h")).await;
    metrics
        .wait_for("the first read", |m| output_tokens(m, &me) == 11.0)
        .await;
    agent.shutdown().await;

    // While the agent is down: appends (one line cut in half), a new file, a deletion.
    append(&a, &response("a", "3", TEXT, 100));
    let half = response("a", "4", TEXT, 1000);
    append(&a, &half[..half.len() / 3]);
    append(
        &home.join("projects/p/c.jsonl"),
        &response("c", "5", TEXT, 10000),
    );
    std::fs::remove_file(&b).unwrap();

    let (agent, metrics) = start(settings(&homes, &state, "1h")).await;
    let m = metrics
        .wait_for("the lines written while down", |m| {
            output_tokens(m, &me) == 10111.0
        })
        .await;
    assert_eq!(
        m.value(&format!(
            r#"vibe_claude_tool_uses_total{{user="{me}",tool="Bash"}}"#
        )),
        Some(1.0),
        "nothing counted twice"
    );
    append(&a, &half[half.len() / 3..]);
    metrics
        .wait_for("the line completed after the restart", |m| {
            output_tokens(m, &me) == 11111.0
        })
        .await;
    agent.shutdown().await;
}

/// `kill -9` of the agent process while it saves state often: whatever save was cut, the
/// next start resumes from a complete document and the totals equal one uninterrupted read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_saves_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/.claude");
    let state = dir.path().join("state");
    std::fs::create_dir_all(home.join("projects/p")).unwrap();
    let me = vibe_agent::transcripts::tail::owner_name(&home);
    let file = dir.path().join("agent.toml");
    let text = Config::new()
        .claude_homes(&[home.to_string_lossy()])
        .set_str("claude", "reconcile_interval", "1h")
        .set_str("claude", "save_interval", "50ms")
        .toml(&state);
    std::fs::write(&file, text).unwrap();

    let mut want = 0u64;
    let mut next = 0u64;
    for round in 0..4 {
        let mut agent = AgentProcess::start(&file);
        let metrics = MetricsClient::new(agent.metrics_addr().await);
        // Lines keep arriving (many small files and appends, so saves are frequent).
        for i in 0..60 {
            next += 1;
            let path = home.join(format!("projects/p/s{}.jsonl", i % 7));
            append(&path, &response("s", &next.to_string(), TEXT, 1 + round));
            want += 1 + round;
        }
        let now = want as f64;
        if round % 2 == 0 {
            metrics
                .wait_for("this round's lines", |m| output_tokens(m, &me) == now)
                .await;
        }
        agent.signal(Signal::KILL);
        agent.wait_exit(WAIT).expect("killed");
    }
    let mut agent = AgentProcess::start(&file);
    let metrics = MetricsClient::new(agent.metrics_addr().await);
    let total = want as f64;
    metrics
        .wait_for("every line, once", |m| output_tokens(m, &me) == total)
        .await;
    agent.signal(Signal::TERM);
    agent.wait_exit(WAIT);
}

/// The agent binary with debug logs reads a transcript whose prompt, tool input, tool
/// output, assistant text and malformed lines hold a canary secret (read at start, live, and
/// again after a rewrite, which logs at debug): the canary is in neither its logs, `/metrics`,
/// the landing page nor its state file. With `claude.project_label = false`, the project
/// directory's name (a path, which logs may name) does not become a label either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_content_never_reaches_metrics_or_logs() {
    const CANARY: &str = "CANARY-7f3a9c-SECRET";
    const PROJECT: &str = "-work-PROJECT-e41b";
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/.claude");
    let state = dir.path().join("state");
    let path = home.join(format!("projects/{PROJECT}/s.jsonl"));
    let prompt = format!(
        r#"{{"type":"user","sessionId":"s","timestamp":"2026-08-01T10:00:00.000Z","message":{{"role":"user","content":"my password is {CANARY}"}}}}"#
    ) + "\n";
    let tool_result = format!(
        r#"{{"type":"user","sessionId":"s","timestamp":"2026-08-01T10:00:01.000Z","message":{{"role":"user","content":[{{"tool_use_id":"t","type":"tool_result","content":"{CANARY}"}}]}},"toolUseResult":{{"stdout":"{CANARY}"}}}}"#
    ) + "\n";
    let tool_use = format!(
        r#"{{"type":"tool_use","id":"t","name":"Bash","input":{{"command":"echo {CANARY}"}}}}"#
    );
    let said = format!(r#"{{"type":"text","text":"the password is {CANARY}"}}"#);
    append(&path, &prompt);
    append(&path, &response("s", "1", &tool_use, 3));
    append(&path, &tool_result);
    append(&path, &response("s", "2", &said, 4));

    let file = dir.path().join("agent.toml");
    let text = Config::new()
        .log_level("debug")
        .claude_homes(&[home.to_string_lossy()])
        .set_str("claude", "reconcile_interval", "1h")
        .set_str("claude", "save_interval", "100ms")
        .set("claude", "project_label", "false")
        .toml(&state);
    std::fs::write(&file, text).unwrap();
    let mut agent = AgentProcess::start(&file);
    let metrics = MetricsClient::new(agent.metrics_addr().await);
    let me = vibe_agent::transcripts::tail::owner_name(&home);
    metrics
        .wait_for("the prompt and the responses", |m| {
            output_tokens(m, &me) == 7.0
                && m.value(&format!(r#"vibe_claude_prompts_total{{user="{me}"}}"#)) == Some(1.0)
        })
        .await;

    // Live: malformed lines quoting the canary (torn JSON, invalid UTF-8), then a response.
    append(&path, &format!("{{\"type\":\"user\",\"x\":\"{CANARY}\n"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(
            &[
                format!("{{\"type\":\"user\",\"x\":\"{CANARY}").as_bytes(),
                b"\xff\"}\n",
            ]
            .concat(),
        )
        .unwrap();
    append(&path, &response("s", "3", &said, 20));
    let skipped = |m: &Exposition| -> f64 {
        m.samples()
            .iter()
            .filter(|s| s.name == "vibe_claude_transcript_lines_skipped_total")
            .map(|s| s.value)
            .sum()
    };
    metrics
        .wait_for("the live lines", |m| {
            output_tokens(m, &me) == 27.0 && skipped(m) == 2.0
        })
        .await;

    // A rewrite (shorter than what was read): read again from the start, logged at debug.
    std::fs::write(&path, prompt.clone() + &response("s", "4", &said, 100)).unwrap();
    let m = metrics
        .wait_for("the rewritten file", |m| output_tokens(m, &me) == 127.0)
        .await;
    agent.wait_for_log("transcript replaced or truncated").await;

    assert!(!m.text.contains("CANARY"), "content leaked into /metrics");
    assert!(
        !m.text.contains("PROJECT-e41b"),
        "a project path became a label"
    );
    let landing = metrics.get("/").await.text().await.unwrap();
    assert!(
        !landing.contains("CANARY"),
        "content leaked into the landing page"
    );
    agent.signal(Signal::TERM);
    assert!(
        agent.wait_exit(WAIT).is_some(),
        "the agent stops on SIGTERM"
    );
    let log = agent.stderr();
    assert!(log.contains("DEBUG"), "debug logs were written:\n{log}");
    assert!(
        !log.contains("CANARY"),
        "content leaked into the logs:\n{log}"
    );
    for f in std::fs::read_dir(&state).unwrap() {
        let f = f.unwrap().path();
        let saved = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !saved.contains("CANARY"),
            "content leaked into {}",
            f.display()
        );
    }
}

/// Lines over `claude.max_line_bytes` (whole, or still growing), invalid UTF-8 and torn JSON
/// are skipped and counted by reason; the lines around them count.
#[test]
fn over_long_invalid_and_torn_lines_are_skipped_and_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/.claude");
    let path = home.join("projects/p/s.jsonl");
    let mut settings = tail_settings(
        vec![home.to_string_lossy().into_owned()],
        &dir.path().join("state"),
    );
    settings.max_line_bytes = 4096;
    let long = format!(
        r#"{{"type":"user","message":{{"role":"user","content":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    append(&path, &response("s", "1", TEXT, 1));
    append(&path, &(long.clone() + "\n"));
    append(&path, &response("s", "2", TEXT, 2));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"type\":\"user\",\"x\":\"\xff\"}\n{\"type\":\"assi\n")
        .unwrap();
    // An over-long line still being written: skipped now, its end skipped later.
    append(&path, &long[..6000]);
    let mut tail = TranscriptTail::new(settings);
    tail.reconcile();
    append(&path, &(long[6000..].to_string() + "\n"));
    append(&path, &response("s", "3", TEXT, 4));
    tail.reconcile();
    let out: u64 = tail
        .ledger()
        .users()
        .values()
        .flat_map(|u| u.models.values())
        .map(|m| m.tokens.output)
        .sum();
    assert_eq!(out, 7, "the lines around the bad ones count");
    let skipped = &tail.stats().lines_skipped;
    assert_eq!(skipped.get("too_long"), Some(&2), "{skipped:?}");
    assert_eq!(skipped.get("invalid_utf8"), Some(&1), "{skipped:?}");
    assert_eq!(skipped.get("invalid_json"), Some(&1), "{skipped:?}");
}

// ---------------------------------------------------------------------------------------
// Transcripts written by the real Claude Code CLI
// ---------------------------------------------------------------------------------------

/// One offline turn of the real CLI with HOME = `home`, telemetry off.
fn run_real_cli(home: &Path, extra: &[(&str, &str)]) {
    let mut env = vec![("EXPORT_WAIT", "0")];
    env.extend_from_slice(extra);
    run_turn("none", home, &env);
}

/// Two real CLI turns (a tool use, then a `--continue` that appends to the same session):
/// the agent's tokens per day and model equal ccusage's exactly, its cost is within 0.01 %,
/// both from the offline tailer and from the running agent's `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_written_by_the_real_cli_add_up_as_ccusage_counts_them() {
    claude_bin();
    ccusage();
    let target = repo_root().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let home = dir.path().join("home");
    let h = home.clone();
    tokio::task::spawn_blocking(move || {
        run_real_cli(&h, &[]);
        run_real_cli(&h, &[("CLI_ARGS", "--continue"), ("SCENARIO", "text")]);
    })
    .await
    .unwrap();
    let claude = home.join(".claude");
    let (peer, peer_cost) = ccusage_daily(&claude);
    assert!(
        !peer.is_empty(),
        "ccusage found no usage in the CLI's transcripts"
    );

    // The tailer's accounting, per day.
    let mut tail = TranscriptTail::new(tail_settings(
        vec![claude.to_string_lossy().into_owned()],
        &dir.path().join("offline-state"),
    ))
    .with_daily_totals();
    tail.reconcile();
    let mut ours = DayModel::new();
    for u in tail.ledger().users().values() {
        for ((day, model), t) in &u.days {
            let e = ours.entry((day_name(*day), model.clone())).or_default();
            for (i, v) in [t.input, t.output, t.cache_creation, t.cache_read]
                .iter()
                .enumerate()
            {
                e[i] += v;
            }
        }
    }
    assert_eq!(ours, peer, "tokens per (day, model): agent vs ccusage");
    assert_eq!(tail.stats().lines_skipped.values().sum::<u64>(), 0);

    // The running agent, through /metrics: tokens per model and type, cost per model.
    let (agent, metrics) = start(settings(
        &[claude.to_string_lossy().into_owned()],
        &dir.path().join("state"),
        "1h",
    ))
    .await;
    let me = vibe_agent::transcripts::tail::owner_name(&claude);
    let mut per_model: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for ((_, model), t) in &peer {
        let e = per_model.entry(model.clone()).or_default();
        for (sum, v) in e.iter_mut().zip(t) {
            *sum += v;
        }
    }
    let tokens = |m: &Exposition, model: &str, ty: &str| {
        m.value(&format!(
            r#"vibe_claude_tokens_total{{user="{me}",model="{model}",type="{ty}"}}"#
        ))
    };
    let m = metrics
        .wait_for("the CLI's responses", |m| {
            per_model
                .iter()
                .all(|(model, t)| tokens(m, model, "output") == Some(t[1] as f64))
        })
        .await;
    for (model, t) in &per_model {
        for (i, ty) in ["input", "output", "cache_creation", "cache_read"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                tokens(&m, model, ty),
                Some(t[i] as f64),
                "{model} {ty}: agent vs ccusage\n{}",
                m.vibe_lines()
            );
        }
        let cost = m
            .value(&format!(
                r#"vibe_claude_cost_usd_total{{user="{me}",model="{model}"}}"#
            ))
            .unwrap_or_else(|| panic!("no cost for {model}\n{}", m.vibe_lines()));
        assert!(
            close(cost, peer_cost[model], 1e-4),
            "{model}: agent ${cost} vs ccusage ${}",
            peer_cost[model]
        );
    }
    agent.shutdown().await;
}

/// A real inotify queue overflow, without touching host sysctls: the agent binary is
/// stopped (SIGSTOP) while more events than `fs.inotify.max_queued_events` are generated,
/// then new project, session and subagent directories and files are created, whose events
/// the kernel drops. On SIGCONT the agent sees the overflow, counts it as a watch error and
/// rescans, so every line is counted although the periodic reconcile is an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inotify_queue_overflow_while_the_agent_is_stopped_is_recovered_by_a_rescan() {
    let max_queued: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .expect("read fs.inotify.max_queued_events")
        .trim()
        .parse()
        .unwrap();
    assert!(
        max_queued <= 1 << 20,
        "fs.inotify.max_queued_events is {max_queued}: too large to overflow in a test"
    );
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/.claude");
    let state = dir.path().join("state");
    let first = home.join("projects/p/a.jsonl");
    append(&first, &response("a", "0", TEXT, 1));
    let me = vibe_agent::transcripts::tail::owner_name(&home);
    let file = dir.path().join("agent.toml");
    let text = Config::new()
        .claude_homes(&[home.to_string_lossy()])
        .set_str("claude", "reconcile_interval", "1h")
        .set_str("claude", "save_interval", "1s")
        .toml(&state);
    std::fs::write(&file, text).unwrap();
    let mut agent = AgentProcess::start(&file);
    let metrics = MetricsClient::new(agent.metrics_addr().await);
    metrics
        .wait_for("the first line", |m| output_tokens(m, &me) == 1.0)
        .await;
    let watch_errors = |m: &Exposition| {
        m.value("vibe_claude_transcript_watch_errors_total")
            .unwrap_or(0.0)
    };
    assert_eq!(watch_errors(&metrics.scrape().await), 0.0);

    agent.signal(Signal::STOP);
    // Alternating appends to two files: consecutive identical events would be coalesced.
    let appends = max_queued + 2000;
    let mut files = [&first, &home.join("projects/p/b.jsonl")].map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    });
    for i in 0..appends {
        let f = &mut files[(i % 2) as usize];
        f.write_all(response("a", &format!("fill{i}"), TEXT, 1).as_bytes())
            .unwrap();
    }
    drop(files);
    // Created after the queue overflowed: no event for any of these reaches the agent.
    let late = 30u64;
    for i in 0..late {
        append(
            &home.join(format!("projects/p/s{i}/subagents/agent-{i}.jsonl")),
            &response(&format!("s{i}"), &format!("sub{i}"), BASH, 1000),
        );
        append(
            &home.join(format!("projects/q{i}/late-{i}.jsonl")),
            &response(&format!("late{i}"), &format!("late{i}"), TEXT, 1000),
        );
    }
    agent.signal(Signal::CONT);

    let want = (1 + appends + 2 * late * 1000) as f64;
    let m = metrics
        .wait_for(
            "every line, including those whose events were dropped",
            |m| output_tokens(m, &me) == want,
        )
        .await;
    assert!(
        watch_errors(&m) >= 1.0,
        "the overflow was not seen (watch errors {})",
        watch_errors(&m)
    );
    assert_eq!(
        m.value(&format!(
            r#"vibe_claude_tool_uses_total{{user="{me}",tool="Bash"}}"#
        )),
        Some(late as f64)
    );
    agent.signal(Signal::TERM);
    agent.wait_exit(WAIT);
}
