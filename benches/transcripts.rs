//! Transcript benchmark (a program, not a test): the agent against ccusage on the same
//! generated corpus, in the same run.
//!
//! 1. Cold scan (backfill): the agent's tailer reads every transcript once and saves its
//!    state, in a child process; `ccusage claude daily --json --offline` reads the same corpus.
//!    Each is run once to warm the page cache, then `RUNS` times; the median wall time, CPU
//!    seconds (user + system) and peak RSS (from wait4) are printed with lines/s, MB/s and
//!    the agent/ccusage ratios. The token totals of both must agree, or the run fails.
//! 2. Live append: the agent runs in-process over the same history; lines are appended to a
//!    new session file one at a time; the time until the published snapshot shows each one,
//!    and the agent's CPU time per append, are printed. The same is done with an empty
//!    history, to show the work per append does not grow with the history.
//!
//! Run: `cargo bench --bench transcripts` (env: `VIBE_BENCH_CORPUS_MB`, default 200;
//! `VIBE_TEST_CCUSAGE`, default `target/test-deps/ccusage/node_modules/.bin/ccusage`).
//! The corpus is generated once into `target/bench-corpus/` by scripts/gen_claude_corpus.py.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Listeners};
use vibe_agent::transcripts::tail::{TailSettings, TranscriptTail};

const RUNS: usize = 3;
const APPENDS: usize = 40;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tail_settings(home: &Path, state: &Path) -> TailSettings {
    TailSettings::for_homes(vec![home.to_string_lossy().into_owned()], state)
}

/// Child mode: one cold scan; prints `lines bytes input output cache_creation cache_read`.
fn scan_child(corpus: &Path) {
    let state = std::env::temp_dir().join(format!("vibe-bench-state-{}", std::process::id()));
    let mut tail = TranscriptTail::new(tail_settings(corpus, &state));
    let t0 = Instant::now();
    tail.reconcile();
    let t1 = Instant::now();
    tail.save().expect("save state");
    eprintln!(
        "scan {:.3} s, save {:.3} s ({} bytes)",
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64(),
        std::fs::metadata(state.join("claude-transcripts.json")).map_or(0, |m| m.len())
    );
    let mut t = [0u64; 4];
    for u in tail.ledger().users().values() {
        for m in u.models.values() {
            t[0] += m.tokens.input;
            t[1] += m.tokens.output;
            t[2] += m.tokens.cache_creation;
            t[3] += m.tokens.cache_read;
        }
    }
    let s = tail.stats();
    println!(
        "{} {} {} {} {} {}",
        s.lines_read, s.bytes_read, t[0], t[1], t[2], t[3]
    );
    let _ = std::fs::remove_dir_all(&state);
}

struct Run {
    wall: f64,
    cpu: f64,
    max_rss_mib: f64,
    stdout: String,
}

/// Runs `cmd` to completion; wall time, CPU seconds and peak RSS from wait4.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn measure(mut cmd: Command) -> Run {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4");
    assert_eq!(status, 0, "{cmd:?} failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_mib: ru.ru_maxrss as f64 / 1024.0,
        stdout,
    }
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs.swap_remove(runs.len() / 2)
}

fn ensure_corpus(mb: u32) -> PathBuf {
    let dir = repo().join(format!("target/bench-corpus/claude-{mb}mb"));
    if !dir.join("manifest.json").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("generating a {mb} MB corpus in {}", dir.display());
        let ok = Command::new("python3")
            .arg(repo().join("scripts/gen_claude_corpus.py"))
            .args(["--out", dir.to_str().unwrap(), "--size-mb", &mb.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("python3")
            .success();
        assert!(ok, "corpus generator failed");
    }
    dir
}

fn ccusage() -> PathBuf {
    let p = std::env::var_os("VIBE_TEST_CCUSAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-deps/ccusage/node_modules/.bin/ccusage"));
    assert!(
        p.exists(),
        "ccusage missing at {}: npm install --prefix target/test-deps/ccusage ccusage@20.0.24",
        p.display()
    );
    p
}

fn ccusage_cmd(corpus: &Path) -> Command {
    let mut c = Command::new(ccusage());
    c.args(["claude", "daily", "--json", "--offline", "-z", "UTC"])
        .env("CLAUDE_CONFIG_DIR", corpus)
        .env("NO_COLOR", "1");
    c
}

fn agent_cmd(corpus: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.arg("--scan").arg(corpus);
    c
}

fn ccusage_tokens(json: &str) -> [u64; 4] {
    let v: serde_json::Value = serde_json::from_str(json).expect("ccusage JSON");
    let t = &v["totals"];
    [
        "inputTokens",
        "outputTokens",
        "cacheCreationTokens",
        "cacheReadTokens",
    ]
    .map(|k| t[k].as_u64().unwrap())
}

fn response(n: usize) -> String {
    format!(
        r#"{{"type":"assistant","sessionId":"bench","version":"2.1.3","requestId":"req_bench_{n}","timestamp":"2026-08-01T10:00:00.000Z","message":{{"id":"msg_bench_{n}","type":"message","role":"assistant","model":"claude-bench-1","content":[{{"type":"text","text":"ok"}}],"usage":{{"input_tokens":1,"output_tokens":1}}}}}}"#
    ) + "\n"
}

fn cpu_self() -> f64 {
    // SAFETY: plain data filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Appends lines one at a time to a new file in `home`; returns (median latency ms,
/// max latency ms, agent CPU ms per append).
fn append_latency(home: &Path) -> (f64, f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let state = tempfile::tempdir().unwrap();
        let text = format!(
            "service = []\n[listen]\nmetrics = \"127.0.0.1:0\"\notlp = \"\"\notlp_grpc = \"\"\nstatusline = \"\"\n[agent]\nstate_dir = {:?}\n\
             [systemd]\nunits = []\n[host]\npaths = []\ninterval = \"1h\"\n\
             [claude]\nhomes = [{:?}]\nreconcile_interval = \"1h\"\nsave_interval = \"10s\"\n",
            state.path(),
            home
        );
        let settings = Settings::from_toml(&text, Path::new("bench.toml")).unwrap();
        let listeners = Listeners::bind(&settings).await.unwrap();
        let agent = daemon::start(settings, listeners).unwrap();
        let messages = |s: &vibe_agent::model::Snapshot| -> u64 {
            s.claude_transcripts.as_ref().map_or(0, |t| {
                t.users
                    .values()
                    .filter_map(|u| u.models.get("claude-bench-1"))
                    .map(|m| m.messages)
                    .sum()
            })
        };
        // Backfill done: the tailer has published once and read the whole history, and its
        // first save is on disk.
        agent
            .wait_for(Duration::from_secs(600), |s| s.claude_transcripts.is_some())
            .await
            .expect("backfill");
        let saved = state.path().join("claude-transcripts.json");
        let t = Instant::now();
        while !saved.exists() {
            assert!(t.elapsed() < Duration::from_secs(600), "no first save");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let file = home.join("projects/bench-append/session.jsonl");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut f = std::fs::File::create(&file).unwrap();
        let mut lat = Vec::new();
        let cpu0 = cpu_self();
        for n in 1..=APPENDS {
            let t = Instant::now();
            f.write_all(response(n).as_bytes()).unwrap();
            agent
                .wait_for(Duration::from_secs(10), |s| messages(s) == n as u64)
                .await
                .expect("append seen");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let cpu = (cpu_self() - cpu0) * 1e3 / APPENDS as f64;
        agent.shutdown().await;
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
        lat.sort_by(f64::total_cmp);
        (lat[lat.len() / 2], lat[lat.len() - 1], cpu)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scan") {
        scan_child(Path::new(&args[i + 1]));
        return;
    }
    let mb: u32 = std::env::var("VIBE_BENCH_CORPUS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let corpus = ensure_corpus(mb);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus.join("manifest.json")).unwrap()).unwrap();
    let bytes = manifest["counts"]["bytes"].as_u64().unwrap() as f64;
    let lines = manifest["counts"]["lines"].as_u64().unwrap() as f64;

    // Warm the page cache for both.
    measure(agent_cmd(&corpus));
    measure(ccusage_cmd(&corpus));
    let mut agent_runs = Vec::new();
    let mut peer_runs = Vec::new();
    for _ in 0..RUNS {
        agent_runs.push(measure(agent_cmd(&corpus)));
        peer_runs.push(measure(ccusage_cmd(&corpus)));
    }
    let a = median(agent_runs);
    let p = median(peer_runs);
    let ours: Vec<u64> = a
        .stdout
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(
        ours[2..],
        ccusage_tokens(&p.stdout),
        "token totals differ from ccusage"
    );

    println!(
        "transcripts cold scan: {:.0} MiB, {} lines, {} files (median of {RUNS}, page cache warm)",
        bytes / 1048576.0,
        lines,
        manifest["counts"]["files"]
    );
    println!(
        "{:<10} {:>8} {:>8} {:>10} {:>10} {:>12}",
        "", "wall s", "cpu s", "MiB/s", "lines/s", "peak RSS MiB"
    );
    for (name, r) in [("agent", &a), ("ccusage", &p)] {
        println!(
            "{name:<10} {:>8.3} {:>8.3} {:>10.0} {:>10.0} {:>12.1}",
            r.wall,
            r.cpu,
            bytes / 1048576.0 / r.wall,
            lines / r.wall,
            r.max_rss_mib
        );
    }
    println!(
        "ratio agent/ccusage: wall {:.2}, cpu {:.2}, peak RSS {:.2}",
        a.wall / p.wall,
        a.cpu / p.cpu,
        a.max_rss_mib / p.max_rss_mib
    );

    let (med, max, cpu) = append_latency(&corpus);
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("projects")).unwrap();
    let (emed, emax, ecpu) = append_latency(empty.path());
    println!("append → snapshot latency ({APPENDS} single-line appends):");
    println!(
        "  with {:.0} MiB history: median {med:.1} ms, max {max:.1} ms, agent CPU {cpu:.2} ms/append",
        bytes / 1048576.0
    );
    println!(
        "  with empty history:   median {emed:.1} ms, max {emax:.1} ms, agent CPU {ecpu:.2} ms/append"
    );
}
