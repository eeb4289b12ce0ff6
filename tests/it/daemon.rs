//! The binary as systemd runs it: `vibe-agent --config F`, reloaded with SIGHUP (a good
//! file applies, its log level included; a broken one is reported and the running config
//! stays) and stopped with SIGTERM.

use std::time::Duration;

use rustix::process::Signal;

use crate::support::agent_process::AgentProcess;
use crate::support::fake_http::FakeHttp;
use crate::support::logs::{lines_at, reload, start_on_free_port};
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

/// `agent.log_level` applies on SIGHUP: warn hides a reload's info lines, debug shows
/// them (with "log level changed"), error hides them again, and a misspelt level is
/// refused naming the key. Every absence is checked after a later line that
/// does appear (stderr is one ordered stream), so a line still in the pipe cannot pass
/// for a missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("agent.toml");
    let (mut agent, metrics, written) =
        start_on_free_port(&file, &Config::new().log_level("warn"), &state).await;
    // At warn: a reload logs nothing at info. Lines still in the pipe are checked at the
    // end, after a later line; these were all logged at warn.
    reload(&agent, &metrics).await;
    let at_warn = agent.stderr();
    let at_warn: Vec<&str> = at_warn.lines().collect();
    assert!(
        lines_at(&at_warn, "INFO").is_empty() && lines_at(&at_warn, "DEBUG").is_empty(),
        "at warn, no info or debug lines:\n{}",
        at_warn.join("\n")
    );

    let rewrite = |level: &str| {
        std::fs::write(&file, written.clone().log_level(level).toml(&state)).unwrap();
    };

    // warn → debug: the change and the reload are logged.
    rewrite("debug");
    reload(&agent, &metrics).await;
    let changed = agent.wait_for_log("log level changed").await;
    assert!(
        changed.contains(r#"old="warn""#) && changed.contains(r#"new="debug""#),
        "the line names the old and the new level: {changed}"
    );
    agent.wait_for_log("configuration reloaded").await;

    // debug → error, then a reload at error: neither is logged at info.
    rewrite("error");
    reload(&agent, &metrics).await;
    reload(&agent, &metrics).await;

    // A misspelt level (tracing would take it for a target): refused, at error level,
    // naming the key and what to write. It is logged after both reloads above, so their lines are in by now.
    rewrite("debgu");
    agent.signal(Signal::HUP);
    metrics
        .wait_for("the bad level to be refused", |m| m.is(RELOAD_OK, 0.0))
        .await;
    let refused = agent.wait_for_log("reload failed").await;
    assert!(
        refused.contains("agent.log_level")
            && refused.contains(r#"did you mean "debug""#)
            && refused.contains("error, warn, info, debug, trace"),
        "the error names the key and the accepted values: {refused}"
    );

    let stderr = agent.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    let changed_at = lines
        .iter()
        .position(|l| l.contains("log level changed"))
        .unwrap();
    assert!(
        !stderr.contains("vibe-agent started"),
        "the start is logged at info, hidden at warn:\n{stderr}"
    );
    let reloaded = lines
        .iter()
        .filter(|l| l.contains("configuration reloaded"))
        .count();
    let reloaded_at = lines
        .iter()
        .position(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        reloaded == 1 && reloaded_at > changed_at,
        "only the reload to debug logs \"configuration reloaded\", not the ones at warn or \
         error:\n{stderr}"
    );
    let changes = lines
        .iter()
        .filter(|l| l.contains("log level changed"))
        .count();
    assert_eq!(
        changes, 1,
        "debug → error is not logged at error level:\n{stderr}"
    );
}

/// With `RUST_LOG` set, a reload leaves the level alone and says that `RUST_LOG` wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_rust_log_keeps_its_level_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, Config::new().log_level("warn").toml(&state)).unwrap();

    let mut agent = AgentProcess::start_with(&file, |cmd| {
        cmd.env("RUST_LOG", "info");
    });
    agent.wait_for_log("vibe-agent started").await;
    std::fs::write(&file, Config::new().log_level("error").toml(&state)).unwrap();
    agent.signal(Signal::HUP);
    let wins = agent.wait_for_log("RUST_LOG is set and wins").await;
    assert!(
        wins.contains("WARN")
            && wins.contains(r#"config="error""#)
            && wins.contains("rust_log=info"),
        "the line names both levels: {wins}"
    );
    // RUST_LOG=info still applies: the reload's info line is logged, and no level change.
    agent.wait_for_log("configuration reloaded").await;
    assert!(
        !agent.stderr().contains("log level changed"),
        "{}",
        agent.stderr()
    );
}
