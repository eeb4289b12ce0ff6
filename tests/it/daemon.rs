//! The binary as systemd runs it: `vibe-agent --config F`, reloaded with SIGHUP (a good
//! file applies, a broken one is reported and the running config stays) and stopped with
//! SIGTERM.

use std::time::Duration;

use rustix::process::Signal;

use crate::support::agent_process::AgentProcess;
use crate::support::fake_http::FakeHttp;
use crate::support::{Config, MetricsClient, Service, WAIT, wait_until};

const RELOAD_OK: &str = "vibe_agent_config_last_reload_successful";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_broken_file_keeps_the_running_config_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, Config::new().host_path("/").toml(&state)).unwrap();

    let mut agent = AgentProcess::start(&file);
    let metrics = MetricsClient::new(agent.metrics_addr().await);
    metrics
        .wait_for("the first host round", |m| {
            m.is(RELOAD_OK, 1.0) && m.value(r#"vibe_filesystem_size_bytes{path="/"}"#).is_some()
        })
        .await;

    // A service added to the file appears after SIGHUP.
    let cs = FakeHttp::code_server("healthz-alive.http");
    let added = Config::new()
        .service(Service::code_server("added", cs.port()))
        .host_path("/");
    std::fs::write(&file, added.toml(&state)).unwrap();
    agent.signal(Signal::HUP);
    metrics
        .wait_for("the added service, up", |m| {
            m.is(r#"vibe_service_up{service="added"}"#, 1.0) && m.is(RELOAD_OK, 1.0)
        })
        .await;

    // A broken file: reported, and the running config stays.
    std::fs::write(&file, "[listen]\nmetrics = \n").unwrap();
    agent.signal(Signal::HUP);
    let m = metrics
        .wait_for("the failed reload to be reported", |m| m.is(RELOAD_OK, 0.0))
        .await;
    assert_eq!(
        m.value(r#"vibe_service_up{service="added"}"#),
        Some(1.0),
        "the running config stays"
    );
    let probed = cs.requests();
    wait_until(WAIT, "the running config's probes to go on", async || {
        if cs.requests() >= probed + 2 {
            Ok(())
        } else {
            Err(format!("{} health requests so far", cs.requests()))
        }
    })
    .await;
    assert!(
        agent.stderr().contains("reload failed"),
        "the log says why: {}",
        agent.stderr()
    );

    agent.signal(Signal::TERM);
    let status = agent
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{}", agent.stderr()));
    assert!(
        status.success(),
        "SIGTERM exits 0, got {status}:\n{}",
        agent.stderr()
    );
}
