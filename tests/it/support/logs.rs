//! What the agent binary logs at a given level: starting an [`AgentProcess`] whose level
//! hides the "vibe-agent started" line (so the metrics address is a port picked here),
//! reloading and waiting until the reload is applied, and the captured stderr split into
//! lines by level.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::agent_process::AgentProcess;
use super::{Config, MetricsClient, WAIT, free_port, http_client};

/// When the last reload succeeded; it moves on every applied reload.
pub const RELOAD_AT: &str = "vibe_agent_config_last_reload_success_timestamp_seconds";

/// Writes `config` (state in `state_dir`) with `listen.metrics` on a free port of
/// 127.0.0.1 to `file` and starts the agent on it; waits until `/metrics` answers, and
/// returns the config as written. Another process can take the port between the pick and
/// the bind: then the agent exits saying so, and another port is tried.
pub async fn start_on_free_port(
    file: &Path,
    config: &Config,
    state_dir: &Path,
) -> (AgentProcess, MetricsClient, Config) {
    let client = http_client();
    for _ in 0..3 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let written = config.clone().metrics_listen(&addr.to_string());
        std::fs::write(file, written.toml(state_dir)).expect("write the config");
        let mut agent = AgentProcess::start(file);
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = client.get(format!("http://{addr}/metrics")).send().await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return (agent, MetricsClient::new(addr), written);
            }
            if let Some(status) = agent.wait_exit(Duration::ZERO) {
                let said = agent.stderr();
                assert!(
                    said.contains("cannot listen"),
                    "vibe-agent exited with {status}:\n{said}"
                );
                break; // the port was taken: another one
            }
            assert!(
                Instant::now() < deadline,
                "/metrics on {addr} did not answer within {WAIT:?}:\n{}",
                agent.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("three free ports were taken before the agent could bind one");
}

/// Sends SIGHUP and waits until a successful reload is published (its timestamp moves).
pub async fn reload(agent: &AgentProcess, metrics: &MetricsClient) {
    let before = metrics
        .scrape()
        .await
        .value(RELOAD_AT)
        .unwrap_or_else(|| panic!("no {RELOAD_AT} in /metrics"));
    agent.signal(Signal::HUP);
    metrics
        .wait_for("the reload to be applied", |m| {
            m.value(RELOAD_AT).is_some_and(|at| at > before)
        })
        .await;
}

/// The captured stderr lines whose level (the fmt layer's second word) is `level`, e.g.
/// `"INFO"`.
pub fn lines_at<'a>(lines: &'a [&'a str], level: &str) -> Vec<&'a str> {
    lines
        .iter()
        .copied()
        .filter(|l| l.split_whitespace().nth(1) == Some(level))
        .collect()
}
