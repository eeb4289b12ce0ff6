//! The systemd source (issue 3), seen from `/metrics` and the check lines.
//!
//! Fast tests run the agent in-process against a private `dbus-daemon` with a fake
//! `org.freedesktop.systemd1` served by zbus in the test ([`fake`]). The real test
//! ([`sandbox`]) boots the machine's own systemd with `scripts/systemd-sandbox` and drives
//! real units with `systemctl`.

mod absent;
pub(crate) mod fake;
mod sandbox;

use std::path::Path;
use std::time::Duration;

use fake::{DbusDaemon, FakeSystemd, FakeUnit};
use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Agent, Listeners};

use crate::support::{Config, Exposition, MetricsClient, Service};

const UP: &str = r#"vibe_agent_source_up{source="systemd"}"#;
const ERRORS: &str = r#"vibe_agent_source_errors_total{source="systemd"}"#;

fn state(unit: &str, state: &str) -> String {
    format!(r#"vibe_unit_state{{unit="{unit}",state="{state}"}}"#)
}

fn of(family: &str, unit: &str) -> String {
    format!(r#"{family}{{unit="{unit}"}}"#)
}

/// The agent's config for these tests: one service whose only check is its unit, the
/// `juicefs-*.service` pattern and a unit that does not exist.
fn config(bus: &str, resync: &str, call_timeout: &str) -> Config {
    Config::new()
        .set_str("systemd", "bus", bus)
        .set(
            "systemd",
            "units",
            r#"["juicefs-*.service", "missing.service"]"#,
        )
        .set_str("systemd", "resync_interval", resync)
        .set_str("systemd", "poll_interval", "200ms")
        .set_str("systemd", "call_timeout", call_timeout)
        .service(Service::unit_only("jupyter", "jupyter.service"))
}

fn settings(bus: &str, resync: &str, call_timeout: &str, state_dir: &Path) -> Settings {
    config(bus, resync, call_timeout).settings(state_dir)
}

/// The agent in this test's runtime, watching units on `bus`.
struct UnitAgent {
    agent: Option<Agent>,
    metrics: MetricsClient,
    _state_dir: tempfile::TempDir,
}

impl UnitAgent {
    async fn start(bus: &str, resync: &str, call_timeout: &str) -> Self {
        let state_dir = tempfile::tempdir().expect("state dir");
        let settings = settings(bus, resync, call_timeout, state_dir.path());
        let listeners = Listeners::bind(&settings).await.expect("bind 127.0.0.1:0");
        let agent = daemon::start(settings, listeners).expect("agent starts");
        Self {
            metrics: MetricsClient::new(agent.metrics_addr),
            agent: Some(agent),
            _state_dir: state_dir,
        }
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&Exposition) -> bool) -> Exposition {
        self.metrics.wait_for(what, pred).await
    }

    fn check_lines(&self) -> Vec<String> {
        let snapshot = self.agent.as_ref().unwrap().snapshots.borrow().clone();
        snapshot.checks().iter().map(ToString::to_string).collect()
    }

    async fn shutdown(mut self) {
        self.agent.take().unwrap().shutdown().await;
    }
}

fn units() -> Vec<(&'static str, FakeUnit)> {
    vec![
        ("jupyter.service", FakeUnit::running()),
        ("juicefs-a.service", FakeUnit::running()),
    ]
}

#[tokio::test]
async fn signals_drive_state_restarts_resources_and_service_up() {
    let bus = DbusDaemon::start();
    let fake = FakeSystemd::start(&bus.address, &units()).await;
    // A resync of an hour: only signals can make the changes below visible.
    let a = UnitAgent::start(&bus.address, "1h", "2s").await;

    let m = a
        .wait_for("jupyter's unit active, resources polled", |m| {
            m.is(&state("jupyter.service", "active"), 1.0)
                && m.is(r#"vibe_service_up{service="jupyter"}"#, 1.0)
                && m.is(&of("vibe_unit_memory_bytes", "jupyter.service"), 52428800.0)
                && m.is(UP, 1.0)
        })
        .await;
    assert!(m.is(&state("jupyter.service", "failed"), 0.0));
    assert!(m.is(&of("vibe_unit_cpu_seconds_total", "jupyter.service"), 1.5));
    assert!(m.is(&of("vibe_unit_tasks", "jupyter.service"), 3.0));
    assert!(m.is(
        &of(
            "vibe_unit_active_since_timestamp_seconds",
            "jupyter.service"
        ),
        1.7e9
    ));
    assert!(m.is(&of("vibe_unit_stale", "jupyter.service"), 0.0));
    assert!(
        m.is(&state("juicefs-a.service", "active"), 1.0),
        "pattern match watched"
    );
    // A configured unit systemd has no file for is reported, not an agent error.
    assert!(m.is(
        r#"vibe_unit_info{unit="missing.service",load_state="not-found"}"#,
        1.0
    ));
    assert!(m.is(&state("missing.service", "inactive"), 1.0));
    assert!(m.is(ERRORS, 0.0), "{}", m.vibe_lines());

    fake.set(
        "jupyter.service",
        FakeUnit {
            result: "exit-code",
            restarts: 2,
            ..FakeUnit::running().state("failed", "failed")
        },
        true,
    )
    .await;
    let m = a
        .wait_for("jupyter's unit failed, announced by signal", |m| {
            m.is(&state("jupyter.service", "failed"), 1.0)
                && m.is(&of("vibe_unit_restarts_total", "jupyter.service"), 2.0)
        })
        .await;
    assert!(m.is(&state("jupyter.service", "active"), 0.0));
    assert!(m.is(
        r#"vibe_unit_info{unit="jupyter.service",load_state="loaded",sub_state="failed",result="exit-code"}"#,
        1.0
    ));
    assert!(m.is(r#"vibe_service_up{service="jupyter"}"#, 0.0));
    assert_eq!(
        m.value(&of("vibe_unit_memory_bytes", "jupyter.service")),
        None,
        "a stopped unit has no cgroup figures"
    );
    let lines = a.check_lines();
    assert!(
        lines.contains(&"[ERROR] jupyter unit jupyter.service: failed (exit-code)".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"[OK] unit juicefs-a.service: active (running)".to_string()),
        "{lines:#?}"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn a_missed_signal_is_recovered_by_the_resync() {
    let bus = DbusDaemon::start();
    let fake = FakeSystemd::start(&bus.address, &units()).await;
    let a = UnitAgent::start(&bus.address, "300ms", "2s").await;
    a.wait_for("juicefs-a active", |m| {
        m.is(&state("juicefs-a.service", "active"), 1.0)
    })
    .await;
    // Changed without PropertiesChanged: only a resync can see it.
    fake.set(
        "juicefs-a.service",
        FakeUnit::running().state("inactive", "dead"),
        false,
    )
    .await;
    a.wait_for("juicefs-a inactive after a resync", |m| {
        m.is(&state("juicefs-a.service", "inactive"), 1.0)
            && m.is(&state("juicefs-a.service", "active"), 0.0)
    })
    .await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_call_that_never_answers_times_out_and_the_agent_keeps_serving() {
    let bus = DbusDaemon::start();
    let mut all = units();
    all.push(("juicefs-hung.service", FakeUnit::running()));
    let fake = FakeSystemd::start(&bus.address, &all).await;
    fake.go_silent_about("juicefs-hung.service");
    let a = UnitAgent::start(&bus.address, "300ms", "300ms").await;

    let m = a
        .wait_for("timeouts counted as source errors", |m| {
            m.value(ERRORS).is_some_and(|n| n >= 2.0)
                && m.is(&state("juicefs-a.service", "active"), 1.0)
        })
        .await;
    assert_eq!(
        m.value(&state("juicefs-hung.service", "active")),
        None,
        "a unit never read has no state"
    );
    // Signals of other units still flow while reads hang.
    fake.set(
        "juicefs-a.service",
        FakeUnit::running().state("failed", "failed"),
        true,
    )
    .await;
    a.wait_for("juicefs-a failed while juicefs-hung hangs", |m| {
        m.is(&state("juicefs-a.service", "failed"), 1.0)
    })
    .await;
    let snapshot = a.agent.as_ref().unwrap().snapshots.borrow().clone();
    let error = snapshot.sources[&vibe_agent::common::Source::Systemd]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("juicefs_2dhung_2eservice") && error.contains("call timeout"),
        "{error}"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn a_bus_restart_marks_units_stale_then_reconnects_and_resubscribes() {
    let mut bus = DbusDaemon::start();
    let fake = FakeSystemd::start(&bus.address, &units()).await;
    let a = UnitAgent::start(&bus.address, "1h", "1s").await;
    a.wait_for("connected", |m| {
        m.is(&state("jupyter.service", "active"), 1.0) && m.is(UP, 1.0)
    })
    .await;

    bus.kill();
    drop(fake);
    let m = a
        .wait_for("source down, values kept and marked stale", |m| {
            m.is(UP, 0.0) && m.is(&of("vibe_unit_stale", "jupyter.service"), 1.0)
        })
        .await;
    assert!(
        m.is(&state("jupyter.service", "active"), 1.0),
        "last value kept"
    );
    assert!(m.value(ERRORS).is_some_and(|n| n >= 1.0));

    bus.restart();
    let fake = FakeSystemd::start(
        &bus.address,
        &[(
            "jupyter.service",
            FakeUnit::running().state("inactive", "dead"),
        )],
    )
    .await;
    a.wait_for("reconnected and read again", |m| {
        m.is(UP, 1.0)
            && m.is(&of("vibe_unit_stale", "jupyter.service"), 0.0)
            && m.is(&state("jupyter.service", "inactive"), 1.0)
    })
    .await;
    assert!(fake.subscribes() >= 1, "subscribed again on the new bus");
    // Signal-driven again (the resync is an hour away).
    fake.set("jupyter.service", FakeUnit::running(), true).await;
    a.wait_for("a signal after the reconnect", |m| {
        m.is(&state("jupyter.service", "active"), 1.0)
    })
    .await;
    a.shutdown().await;
}

#[tokio::test]
async fn units_that_appear_later_are_watched_and_removed_ones_leave() {
    let bus = DbusDaemon::start();
    let fake = FakeSystemd::start(&bus.address, &units()).await;
    let a = UnitAgent::start(&bus.address, "1h", "2s").await;
    a.wait_for("juicefs-a watched", |m| {
        m.is(&state("juicefs-a.service", "active"), 1.0)
    })
    .await;

    fake.add("other.service", FakeUnit::running()).await;
    fake.add("juicefs-b.service", FakeUnit::running()).await;
    let m = a
        .wait_for("juicefs-b appears", |m| {
            m.is(&state("juicefs-b.service", "active"), 1.0)
        })
        .await;
    assert_eq!(
        m.value(&state("other.service", "active")),
        None,
        "no pattern match"
    );

    fake.remove("juicefs-a.service").await;
    a.wait_for("juicefs-a leaves /metrics", |m| {
        m.value(&state("juicefs-a.service", "active")).is_none()
            && m.value(&of("vibe_unit_stale", "juicefs-a.service"))
                .is_none()
    })
    .await;
    // A configured unit stays watched even when systemd unloads it.
    fake.remove("jupyter.service").await;
    fake.add("juicefs-c.service", FakeUnit::running()).await;
    let m = a
        .wait_for("juicefs-c appears", |m| {
            m.is(&state("juicefs-c.service", "active"), 1.0)
        })
        .await;
    assert!(m.value(&state("jupyter.service", "active")).is_some());
    a.shutdown().await;
}

#[tokio::test]
async fn check_reports_units_and_never_hangs_on_a_dead_or_silent_bus() {
    let bus = DbusDaemon::start();
    let _fake = FakeSystemd::start(&bus.address, &units()).await;
    let dir = tempfile::tempdir().unwrap();
    let check = async |bus: &str| -> Vec<String> {
        let s = settings(bus, "30s", "500ms", dir.path());
        let snap = tokio::time::timeout(Duration::from_secs(30), vibe_agent::check::run_once(&s))
            .await
            .expect("vibe-agent check returns");
        snap.checks().iter().map(ToString::to_string).collect()
    };

    let lines = check(&bus.address).await;
    for want in [
        "[OK] jupyter unit jupyter.service: active (running)",
        "[OK] systemd: connected, 3 units watched",
        "[OK] unit juicefs-a.service: active (running)",
    ] {
        assert!(
            lines.contains(&want.to_string()),
            "{want} not in {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[ERROR] unit missing.service: not found")),
        "{lines:#?}"
    );

    let gone = format!("unix:path={}", dir.path().join("no-bus").display());
    let lines = check(&gone).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[ERROR] systemd: cannot connect to bus unix:path=")),
        "{lines:#?}"
    );

    // A socket that accepts connections but never speaks: the handshake times out.
    let silent_path = dir.path().join("silent");
    let _silent = std::os::unix::net::UnixListener::bind(&silent_path).unwrap();
    let lines = check(&format!("unix:path={}", silent_path.display())).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[ERROR] systemd: connecting to bus") && l.contains("timed out")),
        "{lines:#?}"
    );
}
