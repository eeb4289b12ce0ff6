//! JuiceFS mounts as the agent reports them (issue 6): a real FUSE mount that looks like a
//! JuiceFS client and is hung and resumed under the running agent, and mount tables in which
//! mounts appear and vanish.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vibe_agent::daemon::{self, Listeners};
use vibe_agent::juicefs::settings::ConfiguredMount;

use crate::juicefs_fuse::{HangableMount, Statfs};
use crate::support::agent_process::{self, vibe_agent};
use crate::support::fake_http::{FakeHttp, Reply};
use crate::support::{
    Config, Exposition, MetricsClient, WAIT, assert_promtool_accepts, end_child, fixture,
    free_port, toml_str, wait_until,
};

const GIB: u64 = 1 << 30;

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("UTF-8 fixture")
}

/// `name{mount="M"}` for one of the mount's series.
fn sel(name: &str, mount: &Path) -> String {
    format!("{name}{{mount={}}}", toml_str(&mount.to_string_lossy()))
}

/// Threads of process `pid`: (all, those named `name`).
fn threads(pid: u32, name: &str) -> (usize, usize) {
    let mut all = 0;
    let mut named = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let t = t.expect("task entry");
        all += 1;
        if std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name) {
            named += 1;
        }
    }
    (all, named)
}

/// `vibe-agent run` as a child (killed by PID on drop), with its metrics address.
struct AgentChild {
    child: std::process::Child,
    pid: u32,
    metrics: MetricsClient,
    _stderr: std::thread::JoinHandle<()>,
}

impl AgentChild {
    async fn start(config: &Path) -> Self {
        use std::io::BufRead;
        let mut child = vibe_agent()
            .args(["--config", config.to_str().expect("UTF-8 path"), "run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start vibe-agent");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("stderr pipe");
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(agent_process::strip_ansi(&line));
            }
        });
        let mut seen = String::new();
        let addr = wait_until(WAIT, "the agent's start line", async || {
            while let Ok(line) = rx.try_recv() {
                seen.push_str(&line);
                seen.push('\n');
                if let Some(addr) = line
                    .contains("vibe-agent started")
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix("metrics="))
                    })
                    .flatten()
                {
                    return Ok(addr.parse::<std::net::SocketAddr>().expect("metrics=ADDR"));
                }
            }
            Err(seen.clone())
        })
        .await;
        Self {
            child,
            pid,
            metrics: MetricsClient::new(addr),
            _stderr: reader,
        }
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        end_child(&mut self.child, Duration::from_secs(5), false);
    }
}

/// Writes an agent config (`config`: no services and no host paths unless it adds them).
fn write_config(dir: &Path, config: &Config) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let text = config.toml(&state);
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The whole of issue 6's hang test against a real FUSE mount (or, without /dev/fuse, the
/// loudly announced FIFO fallback): discovery as `fuse.juicefs`, figures from `.stats`, the
/// synthetic capacity not reported as a quota and a real one reported; then a hang: stuck
/// within the timeout, `/metrics` answering throughout, `vibe-agent check` reporting it,
/// exactly one blocked worker and no other threads over 100 sampling rounds; then recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_mount_is_stuck_but_blocks_nothing_and_recovers() {
    let stats = fixture_text("juicefs/stats-1.2.txt");
    let mount = HangableMount::start("testvol", &stats, Statfs::synthetic(GIB, 40_411));
    let m = mount.path().to_path_buf();
    let dir = tempfile::tempdir().expect("temp dir");
    // The endpoint is closed: every figure here must come from `.stats`.
    let mut config = Config::new()
        .set_str("juicefs", "interval", "100ms")
        .set_str("juicefs", "timeout", "100ms")
        .set_str(
            "juicefs",
            "metrics_url",
            &format!("http://127.0.0.1:{}/metrics", free_port()),
        );
    if let Some(table) = mount.mountinfo() {
        config = config.set_str("juicefs", "mountinfo", &table.to_string_lossy());
    }
    let config = write_config(dir.path(), &config);
    let agent = AgentChild::start(&config).await;
    let scrape = &agent.metrics;

    // Discovered as fuse.juicefs with its volume name; figures from .stats.
    let up = scrape
        .wait_for("the mount up with figures from .stats", |e| {
            e.value(&format!(
                "vibe_juicefs_up{{mount={},volume=\"testvol\"}}",
                toml_str(&m.to_string_lossy())
            )) == Some(1.0)
        })
        .await;
    let mount_label = toml_str(&m.to_string_lossy());
    assert_eq!(
        up.value(&format!(
            "vibe_juicefs_source_info{{mount={mount_label},source=\"stats\"}}"
        )),
        Some(1.0),
        "{}",
        up.vibe_lines()
    );
    assert_eq!(
        up.value(&sel("vibe_juicefs_used_bytes", &m)),
        Some(1_099_511_627_776.0)
    );
    assert_eq!(
        up.value(&sel("vibe_juicefs_used_inodes", &m)),
        Some(40_411.0)
    );
    assert_eq!(
        up.value(&sel("vibe_juicefs_client_uptime_seconds", &m)),
        Some(7_222.004117)
    );
    assert_eq!(
        up.value(&sel("vibe_juicefs_blockcache_hits_total", &m)),
        Some(3_840.0)
    );
    assert_eq!(
        up.value(&sel("vibe_juicefs_fuse_operations_total", &m)),
        Some(412_876.0)
    );
    assert_eq!(up.value(&sel("vibe_juicefs_stuck", &m)), Some(0.0));
    if mount.is_fuse() {
        // (The fallback's directory is on a real disk, whose size is real.)
        assert_eq!(
            up.value(&sel("vibe_juicefs_quota_bytes", &m)),
            None,
            "the synthetic 1 PiB is no quota"
        );
    }
    if mount.is_fuse() {
        assert_eq!(
            up.value(&format!("vibe_filesystem_stuck{{path={mount_label}}}")),
            Some(0.0)
        );
    }

    // A capacity set on the volume is a quota.
    if mount.is_fuse() {
        mount.set_statfs(Statfs::with_quota(GIB, 100 * GIB, 40_411, 1_000_000));
        let q = scrape
            .wait_for("the quota", |e| {
                e.value(&sel("vibe_juicefs_quota_bytes", &m)) == Some((100 * GIB) as f64)
            })
            .await;
        assert_eq!(
            q.value(&sel("vibe_juicefs_quota_inodes", &m)),
            Some(1_000_000.0)
        );
    }

    // `vibe-agent check` reports the mount.
    let printed: agent_process::Printed =
        agent_process::run_with_config(&config, &["check"]).into();
    let line = format!("[OK] juicefs {} (testvol): ", m.display());
    assert!(printed.stdout.contains(&line), "no {line:?} in\n{printed}");

    // Hang the mount.
    let rounds = |e: &Exposition| e.value("vibe_juicefs_sampling_rounds_total").unwrap_or(0.0);
    mount.hang();
    let hung_at = Instant::now();
    let stuck = scrape
        .wait_for("the mount stuck", |e| {
            e.value(&sel("vibe_juicefs_stuck", &m)) == Some(1.0)
                && e.value(&sel("vibe_juicefs_up", &m)) == Some(0.0)
                && (!mount.is_fuse()
                    || e.value(&format!("vibe_filesystem_stuck{{path={mount_label}}}"))
                        == Some(1.0))
        })
        .await;
    eprintln!(
        "juicefs: stuck reported {:?} after the hang (interval 100 ms, timeout 100 ms)",
        hung_at.elapsed()
    );

    // 100 sampling rounds while hung: /metrics answers every time, exactly one thread is
    // blocked on the mount and the agent's thread count stays flat.
    let (threads_before, workers_before) = threads(agent.pid, "vibe-juicefs");
    assert_eq!(workers_before, 1, "one worker thread for the one mount");
    let start_round = rounds(&stuck);
    let mut max_threads = threads_before;
    let mut scrapes = 0u32;
    let mut slowest = Duration::ZERO;
    wait_until(WAIT, "100 sampling rounds while hung", async || {
        let t = Instant::now();
        let e = scrape.scrape().await; // asserts 200
        slowest = slowest.max(t.elapsed());
        scrapes += 1;
        let (all, workers) = threads(agent.pid, "vibe-juicefs");
        max_threads = max_threads.max(all);
        assert_eq!(workers, 1, "worker threads piled up on the hung mount");
        assert_eq!(
            e.value(&sel("vibe_juicefs_stuck", &m)),
            Some(1.0),
            "{}",
            e.vibe_lines()
        );
        if rounds(&e) >= start_round + 100.0 {
            Ok(())
        } else {
            Err(format!("round {}", rounds(&e)))
        }
    })
    .await;
    let (threads_after, _) = threads(agent.pid, "vibe-juicefs");
    eprintln!(
        "juicefs: 100 rounds hung: threads {threads_before} -> {threads_after} (max \
         {max_threads}), {scrapes} scrapes, slowest {slowest:?}"
    );
    assert_eq!(
        max_threads, threads_before,
        "the agent's thread count grew while the mount was hung"
    );

    // `vibe-agent check` says the mount is stuck, and returns.
    let printed: agent_process::Printed =
        agent_process::run_with_config(&config, &["check"]).into();
    let line = format!("[ERROR] juicefs {} (testvol): stuck", m.display());
    assert!(printed.stdout.contains(&line), "no {line:?} in\n{printed}");
    assert_ne!(printed.code, Some(0), "{printed}");

    // Resume: it recovers by itself, on the same worker.
    mount.resume();
    let back = scrape
        .wait_for("the mount back up", |e| {
            e.value(&sel("vibe_juicefs_up", &m)) == Some(1.0)
                && e.value(&sel("vibe_juicefs_stuck", &m)) == Some(0.0)
        })
        .await;
    if mount.is_fuse() {
        assert_eq!(
            back.value(&format!("vibe_filesystem_stuck{{path={mount_label}}}")),
            Some(0.0)
        );
    }
    assert_eq!(threads(agent.pid, "vibe-juicefs").1, 1);

    // A mount whose client is gone answers ENOTCONN: down, but not stuck.
    if mount.is_fuse() {
        mount.fail_statfs(Some(fuser::Errno::ENOTCONN));
        let dead = scrape
            .wait_for("the mount down, not stuck", |e| {
                e.value(&sel("vibe_juicefs_up", &m)) == Some(0.0)
                    && e.value(&sel("vibe_juicefs_stuck", &m)) == Some(0.0)
            })
            .await;
        assert_eq!(dead.value(&sel("vibe_juicefs_mounted", &m)), Some(1.0));
        assert_eq!(
            dead.value(&format!("vibe_filesystem_stuck{{path={mount_label}}}")),
            Some(0.0)
        );
        let printed: agent_process::Printed =
            agent_process::run_with_config(&config, &["check"]).into();
        let line = format!("[ERROR] juicefs {} (testvol): statvfs ", m.display());
        assert!(printed.stdout.contains(&line), "no {line:?} in\n{printed}");
        assert!(
            printed
                .stdout
                .contains("Transport endpoint is not connected")
                && printed.stdout.contains("restart its juicefs-*.service"),
            "{printed}"
        );
        mount.fail_statfs(None);
        scrape
            .wait_for("the mount up again", |e| {
                e.value(&sel("vibe_juicefs_up", &m)) == Some(1.0)
            })
            .await;
    }
}

fn mountinfo_line(id: u32, dev: u32, mount: &Path, volume: &str) -> String {
    format!(
        "{id} 1 0:{dev} / {} rw,relatime shared:{id} - fuse.juicefs JuiceFS:{volume} rw,user_id=0,group_id=0\n",
        mount.to_string_lossy().replace(' ', "\\040")
    )
}

/// A directory standing in for a mount that answers (statvfs works, `.stats` is a file).
fn answering_dir(parent: &Path, name: &str, stats: Option<&str>) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).expect("mount dir");
    if let Some(s) = stats {
        std::fs::write(d.join(".stats"), s).expect(".stats");
    }
    d
}

/// Mounts that enter and leave the mount table are picked up and dropped; a configured
/// mount that is absent is reported missing; a mount without `.stats` is read from its
/// client's endpoint, which must be the endpoint of that mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_come_and_go_with_the_mount_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = answering_dir(
        dir.path(),
        "work space",
        Some(&fixture_text("juicefs/stats-1.0.txt")),
    );
    let b = answering_dir(dir.path(), "models", None);
    let missing = dir.path().join("expected");
    let table = dir.path().join("mountinfo");
    std::fs::write(&table, mountinfo_line(800, 801, &a, "vibe")).expect("mountinfo");

    // b's client endpoint, in the documented text format, labelled with b's mount point.
    let body = fixture_text("juicefs/metrics-1.1.txt")
        .replace(
            "mp=\"/fs\"",
            &format!("mp={}", toml_str(&b.to_string_lossy())),
        )
        .replace("vol_name=\"vibe\"", "vol_name=\"models\"");
    let endpoint = FakeHttp::always(Reply::Raw(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    ));
    let b_url = format!("http://127.0.0.1:{}/metrics", endpoint.port());

    let state = dir.path().join("state");
    let mut settings = Config::new().settings(&state);
    settings.juicefs.mountinfo = table.clone();
    settings.juicefs.interval = Duration::from_millis(100);
    settings.juicefs.timeout = Duration::from_millis(100);
    settings.juicefs.metrics_url = format!("http://127.0.0.1:{}/metrics", free_port());
    settings.juicefs.mounts = vec![
        ConfiguredMount {
            path: missing.clone(),
            metrics_url: settings.juicefs.metrics_url.clone(),
        },
        ConfiguredMount {
            path: b.clone(),
            metrics_url: b_url.clone(),
        },
    ];
    let listeners = Listeners::bind(&settings).await.expect("bind");
    let agent = daemon::start(settings, listeners).expect("agent starts");
    let scrape = MetricsClient::new(agent.metrics_addr);

    let first = scrape
        .wait_for("a up, the configured mount missing", |e| {
            e.value(&sel("vibe_juicefs_up", &a)) == Some(1.0)
                && e.value(&sel("vibe_juicefs_mounted", &missing)) == Some(0.0)
        })
        .await;
    assert_eq!(
        first.value(&sel("vibe_juicefs_used_bytes", &a)),
        Some(52_613_349_376.0)
    );
    assert_eq!(first.value(&sel("vibe_juicefs_up", &missing)), Some(0.0));
    assert_eq!(
        first.value(&sel("vibe_juicefs_mounted", &b)),
        Some(0.0),
        "b is configured but not mounted yet"
    );
    let snap = agent.snapshots.borrow().clone();
    let checks = snap.checks();
    let missing_check = checks
        .iter()
        .find(|c| {
            c.name
                .starts_with(&format!("juicefs {}", missing.display()))
        })
        .unwrap_or_else(|| panic!("no check for the missing mount in {checks:#?}"));
    assert!(
        !missing_check.ok && missing_check.detail.contains("not mounted"),
        "{missing_check}"
    );

    // b is mounted, a goes away.
    std::fs::write(&table, mountinfo_line(801, 802, &b, "models")).expect("mountinfo");
    let second = scrape
        .wait_for("b up from its endpoint, a gone", |e| {
            e.value(&sel("vibe_juicefs_up", &b)) == Some(1.0)
                && e.value(&sel("vibe_juicefs_up", &a)).is_none()
        })
        .await;
    let b_label = toml_str(&b.to_string_lossy());
    assert_eq!(
        second.value(&format!(
            "vibe_juicefs_source_info{{mount={b_label},volume=\"models\",source=\"metrics\"}}"
        )),
        Some(1.0),
        "{}",
        second.vibe_lines()
    );
    assert_eq!(
        second.value(&sel("vibe_juicefs_object_request_errors_total", &b)),
        Some(3.0)
    );
    assert_eq!(
        second.value(&sel("vibe_juicefs_fuse_operations_total", &b)),
        Some(9_734_110.0)
    );
    assert_eq!(
        second.value(&format!(
            "vibe_filesystem_stuck{{path={}}}",
            toml_str(&a.to_string_lossy())
        )),
        None,
        "a's filesystem series left with it"
    );
    // Every vibe_juicefs_* family passes Prometheus's own lint.
    let juicefs_only: String = second
        .text
        .lines()
        .filter(|l| l.contains("vibe_juicefs_"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_promtool_accepts(&juicefs_only);
    agent.shutdown().await;
}
