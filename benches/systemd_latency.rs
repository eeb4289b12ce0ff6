//! systemd source benchmark, on the machine's own systemd booted by
//! `scripts/systemd-sandbox` (needs root). Run with `cargo bench --bench systemd_latency`.
//!
//! It prints figures and asserts nothing (machines are noisy; tests never assert speed):
//!
//! 1. change-to-metric latency over `BENCH_CHANGES` (default 100) state changes of a real
//!    unit: the benchmark stops and starts `bench-00.service` through systemd's D-Bus API,
//!    an observer connection timestamps systemd's `PropertiesChanged` announcing the new
//!    `ActiveState`, and the in-process agent is timed until its snapshot holds the new
//!    state and until a `/metrics` scrape shows it. p50/p99/max of signal → snapshot,
//!    signal → `/metrics`, and command → `/metrics`. The model task spaces snapshot
//!    publishes by `daemon::MIN_PUBLISH_INTERVAL` (20 ms) when updates follow each other,
//!    which bounds what signal → snapshot adds when systemd announces `deactivating` and
//!    `inactive` in quick succession.
//! 2. idle CPU over `BENCH_IDLE_SECS` (default 60) of two release agents run side by side
//!    with no scrapes: one watching the 50 `bench-*.service` units (default resync and poll
//!    intervals), and its peer with the systemd source off (same config otherwise), plus
//!    the CPU that the sandbox's systemd and dbus-daemon spent in the same window (what the
//!    agent's steady-state D-Bus traffic costs the other side).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Listeners};
use vibe_agent::systemd::bus::unit_path;

const UNITS: usize = 50;
const WATCHED: &str = "bench-00.service";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sandbox, powered off on drop (also on a panic): the tests' own.
#[path = "../tests/it/support/sandbox.rs"]
mod sandbox;
use sandbox::Sandbox;

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = procfs::ticks_per_second() as f64;
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the comm: state is field 0, utime 11, stime 12.
    (field(11) + field(12)) / ticks
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "  {name:<28} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        percentile(&v, 0.50).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
}

fn agent_config(bus: &str, units: &str, state_dir: &Path, metrics: &str) -> String {
    format!(
        "service = []\n[listen]\nmetrics = \"{metrics}\"\notlp = \"\"\notlp_grpc = \"\"\n\n\
         [agent]\nstate_dir = \"{}\"\nlog_level = \"warn\"\n\n\
         [systemd]\nbus = \"{bus}\"\nunits = {units}\n\n\
         [host]\npaths = []\n\n[claude]\nhomes = []\n",
        state_dir.display()
    )
}

struct Child2(Child);
impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let changes = env_num("BENCH_CHANGES", 100) as usize;
    let idle = Duration::from_secs(env_num("BENCH_IDLE_SECS", 60));
    let sb = Sandbox::start();
    let etc = sb.dir().join("etc-systemd-system");
    let mut names = Vec::new();
    for i in 0..UNITS {
        let name = format!("bench-{i:02}.service");
        std::fs::write(
            etc.join(&name),
            "[Service]\nExecStart=/bin/sleep infinity\nMemoryAccounting=yes\nTasksAccounting=yes\n",
        )
        .unwrap();
        names.push(name);
    }
    sb.exec(&["systemctl", "daemon-reload"]);
    let mut start = vec!["systemctl", "start"];
    start.extend(names.iter().map(String::as_str));
    let out = sb.exec(&start);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "systemd sandbox up (pid {}), {UNITS} bench-*.service units running",
        sb.pid
    );

    // 1. Latency, with the agent in-process.
    let state_dir = tempfile::tempdir().unwrap();
    let text = agent_config(
        &sb.bus_address(),
        "[\"bench-*.service\"]",
        state_dir.path(),
        "127.0.0.1:0",
    );
    let settings = Settings::from_toml(&text, Path::new("bench.toml")).unwrap();
    let listeners = Listeners::bind(&settings).await.unwrap();
    let agent = daemon::start(settings, listeners).unwrap();
    let metrics_url = format!("http://{}/metrics", agent.metrics_addr);
    // reqwest is built without a rustls provider of its own.
    vibe_agent::tlsclient::install_default_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let watched_state = |s: &vibe_agent::model::Snapshot, want: &str| {
        s.units
            .units
            .get(WATCHED)
            .is_some_and(|u| u.active_state.as_str() == want)
    };
    agent
        .wait_for(Duration::from_secs(30), |s| {
            s.units.units.len() == UNITS && watched_state(s, "active")
        })
        .await
        .expect("the agent reads the 50 units");

    let observer = zbus::connection::Builder::address(sb.bus_address().as_str())
        .build()
        .await
        .expect("observer connects");
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .path(unit_path(WATCHED))
        .build()
        .unwrap();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &observer, None)
        .await
        .unwrap();
    let manager = |method: &'static str| {
        let observer = observer.clone();
        async move {
            observer
                .call_method(
                    Some("org.freedesktop.systemd1"),
                    "/org/freedesktop/systemd1",
                    Some("org.freedesktop.systemd1.Manager"),
                    method,
                    &(WATCHED, "replace"),
                )
                .await
                .unwrap_or_else(|e| panic!("{method}: {e}"));
        }
    };

    let (mut to_snapshot, mut to_metrics, mut command_to_metrics) = (vec![], vec![], vec![]);
    for i in 0..changes {
        let (method, want) = if i % 2 == 0 {
            ("StopUnit", "inactive")
        } else {
            ("StartUnit", "active")
        };
        let t0 = Instant::now();
        manager(method).await;
        let announced = async {
            loop {
                let msg = signals.next().await.unwrap().unwrap();
                let body: Result<
                    (
                        String,
                        std::collections::HashMap<String, zbus::OwnedVariant>,
                        Vec<String>,
                    ),
                    _,
                > = msg.body().deserialize();
                if let Ok((_, props, _)) = body
                    && props
                        .get("ActiveState")
                        .and_then(|v| String::try_from(v.clone()).ok())
                        .is_some_and(|s| s == want)
                {
                    return Instant::now();
                }
            }
        };
        let seen = async {
            agent
                .wait_for(Duration::from_secs(10), |s| watched_state(s, want))
                .await
                .expect("the agent sees the change");
            let in_snapshot = Instant::now();
            let needle = format!("vibe_unit_state{{unit=\"{WATCHED}\",state=\"{want}\"}} 1");
            let text = http
                .get(&metrics_url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                text.contains(&needle),
                "{needle} not in /metrics:\n{}",
                text.lines()
                    .filter(|l| l.contains(WATCHED))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            (in_snapshot, Instant::now())
        };
        let (t_signal, (t_snapshot, t_metrics)) = tokio::join!(announced, seen);
        to_snapshot.push(t_snapshot.saturating_duration_since(t_signal));
        to_metrics.push(t_metrics.saturating_duration_since(t_signal));
        command_to_metrics.push(t_metrics - t0);
    }
    println!("change-to-metric latency over {changes} state changes of {WATCHED}:");
    summary("signal -> snapshot", to_snapshot);
    summary("signal -> /metrics scrape", to_metrics);
    summary("D-Bus command -> /metrics", command_to_metrics);
    agent.shutdown().await;
    drop(signals);

    // 2. Idle CPU of two release agents side by side.
    let bin = env!("CARGO_BIN_EXE_vibe-agent");
    let run = |units: &str, dir: &Path| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            agent_config(&sb.bus_address(), units, dir, &format!("127.0.0.1:{port}")),
        )
        .unwrap();
        let child = Child2(
            Command::new(bin)
                .arg("--config")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        (child, port)
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (watching, watching_port) = run("[\"bench-*.service\"]", d1.path());
    let (peer, peer_port) = run("[]", d2.path());
    // Idle starts once both agents answer /metrics and the watching one is connected to the
    // bus with every unit read (the peer watches nothing, so its systemd source stays idle).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (port, units) in [(watching_port, UNITS), (peer_port, 0)] {
        loop {
            let text = match http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            // One-hot: each unit read has exactly one state at 1.
            let read = text
                .lines()
                .filter(|l| l.starts_with("vibe_unit_state{") && l.ends_with("} 1"))
                .count();
            let ready = if units == 0 {
                text.contains("vibe_agent_build_info")
            } else {
                text.contains("vibe_agent_source_up{source=\"systemd\"} 1") && read >= units
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent on :{port} not ready in 30 s ({read} of {units} units read)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let others: Vec<(String, u32)> = sb
        .host_pids("systemd")
        .into_iter()
        .filter(|p| *p == sb.pid)
        .map(|p| ("sandbox systemd (PID 1)".to_string(), p))
        .chain(
            sb.host_pids("dbus-daemon")
                .into_iter()
                .map(|p| ("sandbox dbus-daemon".to_string(), p)),
        )
        .collect();
    let pids: Vec<(String, u32)> = [
        (format!("agent watching {UNITS} units"), watching.0.id()),
        ("agent, systemd source off".to_string(), peer.0.id()),
    ]
    .into_iter()
    .chain(others)
    .collect();
    let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let t = Instant::now();
    tokio::time::sleep(idle).await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "idle CPU over {secs:.0} s, no scrapes (resync 30 s, resource poll 10 s, % of one core):"
    );
    let mut figures = Vec::new();
    for ((name, pid), b) in pids.iter().zip(before) {
        let used = cpu_seconds(*pid) - b;
        figures.push(used);
        println!(
            "  {name:<32} {:>7.3} %   ({:.3} s CPU)",
            100.0 * used / secs,
            used
        );
    }
    println!(
        "  systemd source alone (difference of the two agents): {:.3} % of one core",
        100.0 * (figures[0] - figures[1]) / secs
    );
}
