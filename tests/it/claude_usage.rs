//! Claude usage the way ccusage's users read it (issue 19): per project, today since local
//! midnight, the active 5-hour block's burn rate and projection — each equal to ccusage
//! 20.0.24's JSON on a generated corpus with recent timestamps (tokens exact, cost within
//! 1e-6 relative); a LiteLLM-format price file; and `vibe-agent statusline` over the agent's
//! Unix socket, with the JSON the real Claude Code CLI passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use vibe_agent::common::unix_now;
use vibe_agent::transcripts::tail::{TailSettings, TranscriptTail};

use crate::support::repo_root;
use crate::transcripts::{ccusage, close};

/// Generates a corpus into `out` with the adopted generator, its newest usage at `end_at`
/// ("now-8h", ...).
fn generate(out: &Path, seed: u32, size_mb: f64, shape: &[&str], end_at: &str) {
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/gen_claude_corpus.py"))
        .args(["--out", out.to_str().unwrap()])
        .args([
            "--size-mb",
            &size_mb.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(shape)
        .args(["--end-at", end_at])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs scripts/gen_claude_corpus.py");
    assert!(status.success(), "corpus generator failed: {status}");
}

/// A Claude home whose history ends 8 hours ago (several days, several projects) and one
/// more session that ended a minute ago, alone in its 5-hour block: the block is active,
/// "today" has usage, projects differ.
pub fn recent_corpus(home: &Path) {
    let history = home.join("history");
    generate(
        &history,
        11,
        3.0,
        &["--projects", "5", "--sessions", "4", "--days", "3"],
        "now-8h",
    );
    let recent = home.join("recent");
    generate(
        &recent,
        12,
        0.03,
        &["--projects", "1", "--sessions", "1", "--days", "0"],
        "now-1m",
    );
    let projects = home.join("projects");
    std::fs::create_dir_all(&projects).unwrap();
    for part in [&history, &recent] {
        for e in std::fs::read_dir(part.join("projects")).unwrap() {
            let e = e.unwrap();
            let to = projects.join(e.file_name());
            if to.exists() {
                // The same project in both parts: move its files over.
                for f in std::fs::read_dir(e.path()).unwrap() {
                    let f = f.unwrap();
                    std::fs::rename(f.path(), to.join(f.file_name())).unwrap();
                }
            } else {
                std::fs::rename(e.path(), to).unwrap();
            }
        }
        std::fs::remove_dir_all(part).unwrap();
    }
}

fn ccusage_json(corpus: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(ccusage())
        .arg("claude")
        .args(args)
        .args(["--json", "--offline"])
        .env("CLAUDE_CONFIG_DIR", corpus)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ccusage");
    assert!(
        out.status.success(),
        "ccusage {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ccusage JSON")
}

/// [input, output, cache_creation, cache_read] of a ccusage row.
fn row_tokens(v: &serde_json::Value) -> [u64; 4] {
    [
        "inputTokens",
        "outputTokens",
        "cacheCreationTokens",
        "cacheReadTokens",
    ]
    .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
}

fn tokens4(t: &vibe_agent::transcripts::ledger::ProjectTotals) -> [u64; 4] {
    [
        t.tokens.input,
        t.tokens.output,
        t.tokens.cache_creation,
        t.tokens.cache_read,
    ]
}

fn scan(home: &Path, state: &Path, zone: &str) -> TranscriptTail {
    let mut s = TailSettings::for_homes(vec![home.to_string_lossy().into_owned()], state);
    s.time_zone = jiff::tz::TimeZone::get(zone).unwrap();
    let mut tail = TranscriptTail::new(s);
    tail.reconcile();
    tail
}

#[test]
fn per_project_today_and_the_active_block_equal_ccusage_on_a_recent_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    recent_corpus(&home);
    // A zone far from UTC, so "today" is not the UTC day.
    let zone = "Asia/Tokyo";
    let tail = scan(&home, &dir.path().join("state"), zone);

    // Per project: ccusage daily --instances, summed over days.
    let peer = ccusage_json(&home, &["daily", "--instances", "-z", "UTC"]);
    let mut want: BTreeMap<String, ([u64; 4], f64)> = BTreeMap::new();
    for (project, days) in peer["projects"].as_object().expect("projects{}") {
        let e = want.entry(project.clone()).or_default();
        for d in days.as_array().unwrap() {
            for (i, v) in row_tokens(d).iter().enumerate() {
                e.0[i] += v;
            }
            e.1 += d["totalCost"].as_f64().unwrap();
        }
    }
    let now = unix_now();
    let totals = tail.totals(now);
    let users: Vec<_> = totals.users.values().collect();
    assert_eq!(users.len(), 1, "one home, one user");
    let u = users[0];
    assert!(want.len() >= 3, "the corpus has several projects: {want:?}");
    assert_eq!(
        u.projects.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "project names: agent vs ccusage"
    );
    for (project, (tokens, cost)) in &want {
        let p = &u.projects[project];
        assert_eq!(tokens4(p), *tokens, "{project}: tokens");
        assert!(
            close(p.cost_usd, *cost, 1e-6),
            "{project}: ${} vs ${cost}",
            p.cost_usd
        );
    }
    assert_eq!(u.project_overflow, 0);

    // Today in the zone: ccusage daily -z ZONE, today's row.
    let today = jiff::Timestamp::from_second(now as i64)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get(zone).unwrap())
        .date()
        .to_string();
    let peer = ccusage_json(&home, &["daily", "-z", zone]);
    let row = peer["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == today.as_str())
        .unwrap_or_else(|| panic!("ccusage has no row for {today}: {peer}"));
    let t = &u.today.tokens;
    assert_eq!(
        [t.input, t.output, t.cache_creation, t.cache_read],
        row_tokens(row),
        "today's tokens"
    );
    let want_cost = row["totalCost"].as_f64().unwrap();
    assert!(
        close(u.today.cost_usd, want_cost, 1e-6),
        "today: ${} vs ${want_cost}",
        u.today.cost_usd
    );

    // The active block, its burn rate and projection: ccusage blocks --active. The
    // projection depends on the time of the call, so ours is taken just before and just
    // after ccusage's and must bracket it.
    let before = unix_now();
    let peer = ccusage_json(&home, &["blocks", "--active"]);
    let after = unix_now();
    let blocks = peer["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "ccusage sees one active block: {peer}");
    let pb = &blocks[0];
    let block = tail.totals(before).users[&u_name(&tail)]
        .block
        .expect("the agent sees an active block");
    let ts =
        |k: &str| vibe_agent::transcripts::line::parse_timestamp(pb[k].as_str().unwrap()).unwrap();
    assert_eq!((block.start, block.end), (ts("startTime"), ts("endTime")));
    let tc = &pb["tokenCounts"];
    assert_eq!(
        [
            block.tokens.input,
            block.tokens.output,
            block.tokens.cache_creation,
            block.tokens.cache_read
        ],
        [
            "inputTokens",
            "outputTokens",
            "cacheCreationInputTokens",
            "cacheReadInputTokens"
        ]
        .map(|k| tc[k].as_u64().unwrap()),
        "block tokens"
    );
    assert_eq!(block.total_tokens(), pb["totalTokens"].as_u64().unwrap());
    let peer_cost = pb["costUSD"].as_f64().unwrap();
    assert!(
        close(block.cost_usd, peer_cost, 1e-6),
        "block ${} vs ${peer_cost}",
        block.cost_usd
    );
    let rate = block.burn_rate().expect("a burn rate");
    let br = &pb["burnRate"];
    for (ours, key) in [
        (rate.tokens_per_minute, "tokensPerMinute"),
        (
            rate.tokens_per_minute_for_indicator,
            "tokensPerMinuteForIndicator",
        ),
        (rate.cost_usd_per_hour, "costPerHour"),
    ] {
        let theirs = br[key].as_f64().unwrap();
        assert!(
            close(ours, theirs, 1e-6),
            "burnRate.{key}: {ours} vs {theirs}"
        );
    }
    // ccusage rounds: tokens to the unit, cost to the cent, minutes to the minute.
    let pp = &pb["projection"];
    let early = block.projection(before).unwrap();
    let late = block.projection(after).unwrap();
    let tokens = pp["totalTokens"].as_f64().unwrap();
    assert!(
        late.tokens.round() <= tokens && tokens <= early.tokens.round(),
        "projected tokens {tokens} outside [{}, {}]",
        late.tokens,
        early.tokens
    );
    let cost = pp["totalCost"].as_f64().unwrap();
    assert!(
        (late.cost_usd * 100.0).round() / 100.0 - 0.011 <= cost
            && cost <= (early.cost_usd * 100.0).round() / 100.0 + 0.011,
        "projected cost {cost} outside [{}, {}]",
        late.cost_usd,
        early.cost_usd
    );
    let minutes = pp["remainingMinutes"].as_f64().unwrap();
    assert!(
        late.remaining_minutes.round() - 1.0 <= minutes
            && minutes <= early.remaining_minutes.round() + 1.0,
        "remaining minutes {minutes}"
    );
}

fn u_name(tail: &TranscriptTail) -> String {
    tail.ledger().users().keys().next().unwrap().clone()
}

#[test]
fn the_project_cap_folds_the_rest_into_other_and_counts_them_and_the_switch_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    recent_corpus(&home);
    let homes = vec![home.to_string_lossy().into_owned()];
    let full = {
        let mut t = TranscriptTail::new(TailSettings::for_homes(homes.clone(), dir.path()));
        t.reconcile();
        t.totals(unix_now())
    };
    let u = full.users.values().next().unwrap();
    let n = u.projects.len();
    assert!(n >= 3);
    let mut s = TailSettings::for_homes(homes.clone(), &dir.path().join("s2"));
    s.max_projects = Some(2);
    let mut capped = TranscriptTail::new(s);
    capped.reconcile();
    let c = capped.totals(unix_now());
    let cu = c.users.values().next().unwrap();
    assert_eq!(cu.projects.len(), 3, "two projects and other");
    assert!(cu.projects.contains_key("other"));
    let sum = |ps: &BTreeMap<String, vibe_agent::transcripts::ProjectTotals>| -> (u64, u64) {
        ps.values()
            .fold((0, 0), |(m, o), p| (m + p.messages, o + p.tokens.output))
    };
    assert_eq!(
        sum(&cu.projects),
        sum(&u.projects),
        "nothing lost in the fold"
    );
    assert_eq!(cu.project_overflow, cu.projects["other"].messages);
    assert!(cu.project_overflow > 0);

    let mut s = TailSettings::for_homes(homes, &dir.path().join("s3"));
    s.max_projects = None;
    let mut off = TranscriptTail::new(s);
    off.reconcile();
    let o = off.totals(unix_now());
    assert!(o.users.values().next().unwrap().projects.is_empty());
    let mut out = Vec::new();
    vibe_agent::transcripts::expose::families(&o, &mut out);
    assert!(
        !out.iter()
            .any(|f| f.name().starts_with("vibe_claude_project_")),
        "no project families with the label off"
    );
}

// ---------------------------------------------------------------------------------------
// The statusline
// ---------------------------------------------------------------------------------------

/// Two uids with no passwd entry: their homes' `user` label is the number.
const UID_A: u32 = 64_011;
const UID_B: u32 = 64_012;

/// The JSON the real Claude Code CLI passes to its statusLine command, captured from the
/// CLI itself (interactive, in a pseudo-terminal, against the fake API).
fn captured_statusline_input(dir: &Path) -> Vec<u8> {
    let out = dir.join("statusline-input.json");
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/claude-code/capture-statusline-input.py"))
        .arg(crate::support::claude_cli::claude_bin())
        .arg(dir.join("cli-home"))
        .arg(&out)
        .status()
        .expect("run capture-statusline-input.py");
    assert!(
        status.success(),
        "no statusLine input captured from the CLI"
    );
    std::fs::read(&out).unwrap()
}

/// `vibe-agent statusline --socket SOCKET` as `uid`, with `input` on stdin: (exit code,
/// stdout).
fn statusline_as(uid: u32, socket: &Path, input: &[u8]) -> (i32, String) {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vibe-agent"))
        .args(["statusline", "--socket"])
        .arg(socket)
        .uid(uid)
        .gid(uid)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run vibe-agent statusline");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// `$X today` and `$Y block` figures of a statusline (the agent's and ccusage's read alike).
fn figure(line: &str, what: &str) -> Option<String> {
    let i = line.find(&format!(" {what}"))?;
    let start = line[..i].rfind('$')?;
    Some(line[start..i].to_string())
}

fn chown_tree(path: &Path, uid: u32) {
    for e in walkdir::WalkDir::new(path) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(uid)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statusline_answers_each_user_with_their_own_figures_and_says_when_the_agent_is_stopped() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Other uids must reach the socket.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let input = captured_statusline_input(dir.path());
    let doc: serde_json::Value = serde_json::from_slice(&input).unwrap();
    let display_name = doc["model"]["display_name"].as_str().unwrap().to_string();
    assert!(
        doc["cost"]["total_cost_usd"].as_f64().unwrap() > 0.0,
        "{doc}"
    );

    // User A has a recent history (an active block); user B has none.
    let users = dir.path().join("users");
    let home_a = users.join("a/.claude");
    recent_corpus(&home_a);
    chown_tree(&users.join("a"), UID_A);
    let home_b = users.join("b/.claude");
    std::fs::create_dir_all(home_b.join("projects")).unwrap();
    chown_tree(&users.join("b"), UID_B);

    let socket = dir.path().join("run/statusline.sock");
    let state = dir.path().join("state");
    let settings = crate::support::Config::new()
        .statusline_socket(&socket)
        .claude_homes(&[users.join("*/.claude").to_string_lossy()])
        .settings(&state);
    let listeners = vibe_agent::daemon::Listeners::bind(&settings)
        .await
        .unwrap();
    assert!(
        listeners.statusline.is_some(),
        "the statusline socket is bound"
    );
    let agent = vibe_agent::daemon::start(settings, listeners).unwrap();
    let (a, b) = (UID_A.to_string(), UID_B.to_string());
    let snap = agent
        .wait_for(crate::support::WAIT, |s| {
            s.claude_transcripts.as_ref().is_some_and(|t| {
                t.users.get(&a).is_some_and(|u| u.block.is_some()) && t.tail.homes == 2
            })
        })
        .await
        .expect("the agent counted both homes");
    let ta = snap.claude_transcripts.as_ref().unwrap().users[&a].clone();
    let block = ta.block.unwrap();

    let (code, line_a) = tokio::task::spawn_blocking({
        let (socket, input) = (socket.clone(), input.clone());
        move || statusline_as(UID_A, &socket, &input)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let line_a = line_a.trim_end().to_string();
    assert!(
        line_a.starts_with(&format!("{display_name} | $")),
        "{line_a}"
    );
    let session = format!(
        "${:.2} session",
        doc["cost"]["total_cost_usd"].as_f64().unwrap()
    );
    assert!(line_a.contains(&session), "{line_a}");
    assert_eq!(
        figure(&line_a, "today"),
        Some(format!("${:.2}", ta.today.cost_usd)),
        "{line_a}"
    );
    assert_eq!(
        figure(&line_a, "block"),
        Some(format!("${:.2}", block.cost_usd)),
        "{line_a}"
    );
    assert!(line_a.contains("/hr"), "a burn rate: {line_a}");
    assert!(
        line_a.contains("ctx "),
        "context use from Claude Code's input: {line_a}"
    );

    // The same figures as ccusage's own statusline on A's home and the same input.
    let peer = Command::new(ccusage())
        .args(["statusline", "--no-cache", "--offline"])
        .env("CLAUDE_CONFIG_DIR", &home_a)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&input)?;
            c.wait_with_output()
        })
        .expect("run ccusage statusline");
    let peer = String::from_utf8_lossy(&peer.stdout).to_string();
    assert_eq!(
        figure(&line_a, "block"),
        figure(&peer, "block"),
        "{line_a}\n{peer}"
    );
    assert_eq!(
        figure(&line_a, "today"),
        figure(&peer, "today"),
        "{line_a}\n{peer}"
    );

    // B sees B's figures: none. Not A's.
    let (code, line_b) = tokio::task::spawn_blocking({
        let (socket, input) = (socket.clone(), input.clone());
        move || statusline_as(UID_B, &socket, &input)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert!(line_b.contains("$0.00 today"), "{line_b}");
    assert!(line_b.contains("no active block"), "{line_b}");
    assert!(
        !line_b.contains(&format!("${:.2} block", block.cost_usd)),
        "B reads A's block: {line_b}"
    );
    // Whatever B sends, the agent answers with B's uid (the kernel's, not the caller's).
    let raw = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || {
            use std::os::unix::process::CommandExt;
            Command::new("python3")
                .args([
                    "-c",
                    "import socket,sys\n\
                     s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n\
                     try: s.sendall(b'{\"user\":\"64011\"}\\n')\n\
                     except OSError: pass\n\
                     print(s.makefile('rb').read().decode())",
                ])
                .arg(&socket)
                .uid(UID_B)
                .gid(UID_B)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let reply: serde_json::Value =
        serde_json::from_slice(&raw.stdout).unwrap_or_else(|e| panic!("{e}: {raw:?}"));
    assert_eq!(reply["user"], b.as_str(), "{reply}");
    assert_eq!(reply["block"], serde_json::Value::Null, "{reply}");

    // Stopped: a short line, exit 0.
    agent.shutdown().await;
    let (code, line) = statusline_as(UID_A, &socket, &input);
    assert_eq!(code, 0);
    assert_eq!(
        line.trim_end(),
        format!("{display_name} | {session} | vibe-agent not running")
    );
}

// ---------------------------------------------------------------------------------------
// Prices you can update
// ---------------------------------------------------------------------------------------

/// Claude Sonnet 4 at twice its list price, in LiteLLM's format (USD per token, the
/// long-context tier included), beside entries of other kinds as LiteLLM's file has them.
const LITELLM_DOUBLE_SONNET_4: &str = r#"{
  "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers", "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it. IF not set to max_input_tokens, if provider specifies it.", "mode": "one of: chat, embedding, completion, image_generation, audio_transcription, audio_speech, image_generation, moderation, rerank, search"},
  "claude-sonnet-4-20250514": {"cache_creation_input_token_cost": 7.5e-06, "cache_creation_input_token_cost_above_200k_tokens": 1.5e-05, "cache_read_input_token_cost": 6e-07, "cache_read_input_token_cost_above_200k_tokens": 1.2e-06, "input_cost_per_token": 6e-06, "input_cost_per_token_above_200k_tokens": 1.2e-05, "litellm_provider": "anthropic", "max_input_tokens": 1000000, "max_output_tokens": 64000, "max_tokens": 64000, "mode": "chat", "output_cost_per_token": 3e-05, "output_cost_per_token_above_200k_tokens": 4.5e-05, "search_context_cost_per_query": {"search_context_size_high": 0.01, "search_context_size_low": 0.01, "search_context_size_medium": 0.01}, "supports_function_calling": true, "supports_prompt_caching": true, "tool_use_system_prompt_tokens": 159},
  "dall-e-3": {"input_cost_per_pixel": 2.4414e-07, "litellm_provider": "openai", "mode": "image_generation", "output_cost_per_pixel": 0.0}
}"#;

#[test]
fn a_litellm_price_file_changes_costs_as_it_says_and_a_malformed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // No costUSD lines: every cost comes from the prices.
    generate(
        &home,
        21,
        2.0,
        &[
            "--projects",
            "3",
            "--sessions",
            "3",
            "--days",
            "2",
            "--cost-usd-ratio",
            "0",
        ],
        "now-1h",
    );
    let peer = ccusage_json(&home, &["daily", "--breakdown", "-z", "UTC"]);
    let mut peer_cost: BTreeMap<String, f64> = BTreeMap::new();
    for d in peer["daily"].as_array().unwrap() {
        for m in d["modelBreakdowns"].as_array().unwrap() {
            *peer_cost
                .entry(m["modelName"].as_str().unwrap().to_string())
                .or_default() += m["cost"].as_f64().unwrap();
        }
    }
    assert!(
        peer_cost.contains_key("claude-sonnet-4-20250514"),
        "{peer_cost:?}"
    );

    let prices = dir.path().join("model_prices_and_context_window.json");
    std::fs::write(&prices, LITELLM_DOUBLE_SONNET_4).unwrap();
    let text = format!(
        "[agent]\nstate_dir = {}\n[claude]\nhomes = [{}]\nprices_file = {}\n",
        crate::support::toml_str(&dir.path().join("state").to_string_lossy()),
        crate::support::toml_str(&home.to_string_lossy()),
        crate::support::toml_str(&prices.to_string_lossy()),
    );
    let settings = vibe_agent::config::Settings::from_toml(&text, Path::new("agent.toml")).unwrap();
    let mut tail = TranscriptTail::new(TailSettings::from_settings(&settings));
    tail.reconcile();
    let u = tail.ledger().users().values().next().unwrap();
    for (model, want) in &peer_cost {
        let factor = if model == "claude-sonnet-4-20250514" {
            2.0
        } else {
            1.0
        };
        let got = u.models[model].cost_usd;
        assert!(
            close(got, want * factor, 1e-6),
            "{model}: ${got} with the file, ccusage ${want} at list price (x{factor})"
        );
    }

    // Malformed: refused by `config check` (and so at start and on reload), naming the
    // key, the file and what is wrong.
    let bad = dir.path().join("bad-prices.json");
    std::fs::write(
        &bad,
        r#"{"claude-sonnet-4-20250514": {"input_cost_per_token": "cheap", "output_cost_per_token": 3e-05}}"#,
    )
    .unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[claude]\nprices_file = {}\n",
            crate::support::toml_str(&bad.to_string_lossy())
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vibe-agent"))
        .arg("--config")
        .arg(&cfg)
        .args(["config", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "claude.prices_file",
        bad.to_str().unwrap(),
        "model \"claude-sonnet-4-20250514\": input_cost_per_token is \"cheap\", not a price",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// The first read on every core
// ---------------------------------------------------------------------------------------

#[test]
fn the_parallel_first_read_counts_exactly_what_one_reader_counts_and_ccusage_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // Above the 8 MiB from which reads go parallel, with subagent files (replayed
    // responses across files) and malformed lines.
    generate(
        &home,
        31,
        12.0,
        &[
            "--projects",
            "4",
            "--sessions",
            "8",
            "--days",
            "3",
            "--subagent-ratio",
            "0.4",
            "--malformed-rate",
            "0.01",
        ],
        "now-30m",
    );
    let read = |readers: usize, state: &str| {
        let mut s = TailSettings::for_homes(
            vec![home.to_string_lossy().into_owned()],
            &dir.path().join(state),
        );
        s.readers = readers;
        let mut t = TranscriptTail::new(s);
        t.reconcile();
        t
    };
    let one = read(1, "one");
    let many = read(4, "many");
    let now = unix_now();
    let (a, b) = (one.totals(now), many.totals(now));
    assert_eq!(a.users, b.users, "totals: one reader vs four");
    assert_eq!(a.tail.lines_read, b.tail.lines_read);
    assert_eq!(a.tail.lines_skipped, b.tail.lines_skipped);
    assert_eq!(a.tail.bytes_read, b.tail.bytes_read);
    assert_eq!(a.tail.dedupe_keys, b.tail.dedupe_keys);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        b.tail.bytes_read,
        manifest["counts"]["bytes"].as_u64().unwrap()
    );
    assert_eq!(
        b.tail.lines_read,
        manifest["counts"]["lines"].as_u64().unwrap()
    );
    // And what ccusage counts.
    let peer = ccusage_json(&home, &["daily", "-z", "UTC"]);
    let u = b.users.values().next().unwrap();
    let mut ours = [0u64; 4];
    for m in u.models.values() {
        for (i, v) in [
            m.tokens.input,
            m.tokens.output,
            m.tokens.cache_creation,
            m.tokens.cache_read,
        ]
        .iter()
        .enumerate()
        {
            ours[i] += v;
        }
    }
    assert_eq!(ours, row_tokens(&peer["totals"]));
    // A second reconcile with nothing new reads nothing more.
    let mut many = many;
    let before = many.stats().bytes_read;
    many.reconcile();
    assert_eq!(many.stats().bytes_read, before);
}
