//! JuiceFS sampling cost (issue 6): CPU per round of every mount, against a peer measured in
//! the same run (the bare system calls of a round: statvfs and a read of `.stats`, plus the
//! parse, on one thread with no worker handoff), and what a hung mount adds: CPU per round
//! and threads.
//!
//! Run: `cargo bench --bench juicefs` (root, /dev/fuse and Debian fuse3 needed; run it alone,
//! since every fuse.juicefs mount of the machine is sampled).
//!
//! Every mount is the fake JuiceFS FUSE filesystem of the integration tests
//! (`tests/it/juicefs_fuse.rs`), served by a child process of this program (`--serve`), so the
//! CPU counted here, the run time of every thread of this process from
//! `/proc/self/task/*/schedstat`, is the sampler's alone.

#[path = "../tests/it/juicefs_fuse.rs"]
mod juicefs_fuse;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use juicefs_fuse::{HangableMount, Statfs};
use vibe_agent::juicefs::settings::JuicefsSettings;
use vibe_agent::juicefs::{JuicefsSampler, MountHealth, figures};
use vibe_agent::model::Update;

/// Rounds per measured phase.
const ROUNDS: u32 = 1000;
/// Time a mount has to answer (short, so the hang phase starts quickly).
const TIMEOUT: Duration = Duration::from_millis(50);

fn stats_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/juicefs/stats-1.0.txt"),
    )
    .expect("fixture")
}

/// Child mode: serve one fake JuiceFS mount; "hang" / "resume" lines on stdin; EOF ends it.
fn serve(volume: &str) {
    let mount = HangableMount::start(volume, &stats_text(), Statfs::synthetic(1 << 30, 1000));
    println!("ready {}", mount.path().display());
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("hang") => mount.hang(),
            Ok("resume") => mount.resume(),
            _ => break,
        }
    }
}

/// A fake mount served by a child process.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    path: PathBuf,
}

impl Server {
    fn start(volume: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--serve", volume])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake JuiceFS server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("server's ready line");
        let path = PathBuf::from(line.trim().strip_prefix("ready ").expect("ready PATH"));
        Self {
            stdin: child.stdin.take(),
            child,
            path,
        }
    }

    fn say(&mut self, what: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{what}").expect("talk to the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.say("resume");
        drop(self.stdin.take()); // EOF: it unmounts and exits
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nanoseconds on CPU of every thread of this process.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Nanoseconds on CPU by thread name.
fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_insert(0) += ns;
    }
    out
}

/// What each kind of thread spent between two [`cpu_by_thread`] readings, per round.
fn breakdown(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> String {
    after
        .iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(*before.get(k).unwrap_or(&0));
            format!("{k} {:.1}", d as f64 / 1e3 / f64::from(ROUNDS))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// The healths of one round's mounts, by mount point.
fn healths(updates: &[Update]) -> Vec<(PathBuf, MountHealth)> {
    updates
        .iter()
        .find_map(|u| match u {
            Update::Juicefs(r) => Some(
                r.mounts
                    .iter()
                    .map(|m| (m.mount.clone(), m.health.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .expect("a juicefs round")
}

/// Blocks a phase is cut into; the median block is reported, so a burst of load from other
/// processes on the machine does not decide the figure.
const BLOCKS: u32 = 10;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (CPU µs per round, wall µs per round): medians over `BLOCKS` blocks of `ROUNDS / BLOCKS`.
async fn measure(sampler: &mut JuicefsSampler, check: impl Fn(&[Update])) -> (f64, f64) {
    let per_block = ROUNDS / BLOCKS;
    let (mut cpus, mut walls) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        let (cpu0, t0) = (cpu_ns(), Instant::now());
        for _ in 0..per_block {
            let updates = sampler.sample_round().await;
            check(&updates);
        }
        cpus.push((cpu_ns() - cpu0) as f64 / 1e3 / f64::from(per_block));
        walls.push(t0.elapsed().as_secs_f64() * 1e6 / f64::from(per_block));
    }
    (median(cpus), median(walls))
}

async fn run() {
    let mut servers: Vec<Server> = ["bench-a", "bench-b", "bench-c"]
        .into_iter()
        .map(Server::start)
        .collect();
    let settings = JuicefsSettings {
        timeout: TIMEOUT,
        // No client endpoint: every figure comes from `.stats`.
        metrics_url: "http://127.0.0.1:9/metrics".into(),
        ..Default::default()
    };
    let mut sampler = JuicefsSampler::new(&settings);
    for _ in 0..50 {
        sampler.sample_round().await;
    }
    let mounts_now = |u: &[Update]| healths(u).len();
    let first = sampler.sample_round().await;
    let n = mounts_now(&first);
    assert!(
        n >= 3,
        "the three fake mounts are not discovered: {:?}",
        healths(&first)
    );
    let all_answer = |u: &[Update]| {
        for (p, h) in healths(u) {
            assert_eq!(h, MountHealth::Answered, "{}", p.display());
        }
    };

    // A: the healthy mounts.
    let by_thread = cpu_by_thread();
    let (cpu_a, wall_a) = measure(&mut sampler, all_answer).await;
    let split_a = breakdown(&by_thread, &cpu_by_thread());

    // Peer: the same system calls and parse, bare, on this thread.
    let paths: Vec<PathBuf> = servers.iter().map(|s| s.path.clone()).collect();
    let (mut cpus, mut walls) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        let (cpu0, t0) = (cpu_ns(), Instant::now());
        for _ in 0..ROUNDS / BLOCKS {
            for p in &paths {
                rustix::fs::statvfs(p).expect("statvfs");
                let text = std::fs::read_to_string(p.join(".stats")).expect(".stats");
                figures::from_stats(&text).expect("figures");
            }
        }
        // Scaled to the n mounts the sampler visits (the three servers' paths here).
        let scale = n as f64 / 3.0 / f64::from(ROUNDS / BLOCKS);
        cpus.push((cpu_ns() - cpu0) as f64 / 1e3 * scale);
        walls.push(t0.elapsed().as_secs_f64() * 1e6 * scale);
    }
    let (cpu_peer, wall_peer) = (median(cpus), median(walls));

    // B: one more mount, healthy.
    servers.push(Server::start("bench-hung"));
    let hung_path = servers[3].path.clone();
    for _ in 0..20 {
        sampler.sample_round().await;
    }
    let (cpu_b, _) = measure(&mut sampler, all_answer).await;

    // C: that mount hangs.
    servers[3].say("hang");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = sampler.sample_round().await;
        if healths(&u)
            .iter()
            .any(|(p, h)| p == &hung_path && *h == MountHealth::Stuck)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hung mount never showed as stuck"
        );
    }
    let threads_before = threads();
    let by_thread = cpu_by_thread();
    let (cpu_c, wall_c) = measure(&mut sampler, |u| {
        for (p, h) in healths(u) {
            let want = if p == hung_path {
                MountHealth::Stuck
            } else {
                MountHealth::Answered
            };
            assert_eq!(h, want, "{}", p.display());
        }
    })
    .await;
    let threads_after = threads();
    let split_c = breakdown(&by_thread, &cpu_by_thread());

    // Recovery.
    servers[3].say("resume");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = sampler.sample_round().await;
        if healths(&u).iter().all(|(_, h)| *h == MountHealth::Answered) {
            break;
        }
        assert!(Instant::now() < deadline, "the mount never recovered");
    }

    println!(
        "juicefs sampling, {ROUNDS} rounds per phase (median of {BLOCKS} blocks), timeout {TIMEOUT:?}"
    );
    println!(
        "  A  {n} healthy mounts:          {cpu_a:8.1} µs CPU/round ({:.1} µs/mount), wall {wall_a:.1} µs/round",
        cpu_a / n as f64
    );
    println!(
        "     peer (bare syscalls+parse): {cpu_peer:8.1} µs CPU/round, wall {wall_peer:.1} µs/round; \
         sampler/peer = {:.2}",
        cpu_a / cpu_peer
    );
    println!(
        "  B  {} healthy mounts:          {cpu_b:8.1} µs CPU/round ({:.1} µs/mount)",
        n + 1,
        cpu_b / (n + 1) as f64
    );
    println!(
        "  C  {n} healthy + 1 hung mount:  {cpu_c:8.1} µs CPU/round, wall {wall_c:.1} µs/round"
    );
    println!("     µs/round by thread, A: {split_a}");
    println!("     µs/round by thread, C: {split_c}");
    println!(
        "     the hung mount adds {:+.1} µs CPU/round (C - A), vs {:+.1} µs when it answered (B - A)",
        cpu_c - cpu_a,
        cpu_b - cpu_a
    );
    println!(
        "     threads over {ROUNDS} hung rounds: {threads_before} -> {threads_after} \
         (workers: {} for {} mounts)",
        sampler.workers(),
        n + 1
    );
    println!(
        "  target: < 1000 µs CPU per round of all mounts: {}",
        if cpu_b < 1000.0 { "met" } else { "MISSED" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]);
        return;
    }
    if let Err(why) = juicefs_fuse::fuse_available() {
        eprintln!("cannot run the JuiceFS benchmark: {why}");
        std::process::exit(1);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
