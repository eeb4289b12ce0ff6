//! What the agent binary logs at a given level: config text with another `agent.log_level`,
//! starting an [`AgentProcess`] whose level hides the "vibe-agent started" line (so the
//! metrics address is a port picked here), reloading and waiting until the reload is
//! applied, and the captured stderr split into lines by level.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::agent_process::AgentProcess;
use super::{MetricsClient, WAIT, free_port, http_client};

/// When the last reload succeeded; it moves on every applied reload.
pub const RELOAD_AT: &str = "vibe_agent_config_last_reload_success_timestamp_seconds";

/// `text` (from [`super::Config::toml`]) with `agent.log_level = level`.
pub fn with_log_level(text: &str, level: &str) -> String {
    let line = "log_level = \"info\"\n";
    assert_eq!(text.matches(line).count(), 1, "one {line:?} in:\n{text}");
    text.replace(line, &format!("log_level = {}\n", super::toml_str(level)))
}

/// Writes `text` with `listen.metrics` on a free port of 127.0.0.1 and starts the agent
/// on it; waits until `/metrics` answers. Another process can take the port between the
/// pick and the bind: then the agent exits saying so, and another port is tried.
pub async fn start_on_free_port(file: &Path, text: &str) -> (AgentProcess, MetricsClient) {
    let line = "metrics = \"127.0.0.1:0\"\n";
    assert_eq!(text.matches(line).count(), 1, "one {line:?} in:\n{text}");
    let client = http_client();
    for _ in 0..3 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(file, text.replace(line, &format!("metrics = \"{addr}\"\n")))
            .expect("write the config");
        let mut agent = AgentProcess::start(file);
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = client.get(format!("http://{addr}/metrics")).send().await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return (agent, MetricsClient::new(addr));
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
