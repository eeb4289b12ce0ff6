//! Issue 18, "absent is not down", on the machine's own systemd (the sandbox of
//! [`super::sandbox`]): a box installed without code-server and JupyterLab (Pigsty's
//! `code_enabled` / `jupyter_enabled` off) reads `vibe_service_present 0` for both, passes
//! `vibe-agent check` and raises no alert; once JupyterLab's unit is installed but stopped,
//! JupyterLab is present and down (`JupyterLabDown` fires) while code-server stays absent.
//!
//! The alerts are decided by promtool over the rules file, fed with the series this agent
//! exported (so the rules and the agent are tested together, not two hand-written sides).

use std::path::Path;
use std::process::Command;

use vibe_agent::daemon::{self, Listeners};

use crate::support::agent_process::{Printed, run_with_config};
use crate::support::sandbox::Sandbox;
use crate::support::{Config, Exposition, MetricsClient, Service, free_port, repo_root, toml_str};

const PRESENT_CS: &str = r#"vibe_service_present{service="code-server"}"#;
const PRESENT_JL: &str = r#"vibe_service_present{service="jupyter"}"#;
const UP_CS: &str = r#"vibe_service_up{service="code-server"}"#;
const UP_JL: &str = r#"vibe_service_up{service="jupyter"}"#;

/// The default services' shape (unit, port, health endpoint, no token), on ports nothing
/// listens on, watched on the sandbox's bus.
fn config(sb: &Sandbox) -> Config {
    let unit = |name: &str| format!("unit = {}", toml_str(name));
    Config::new()
        .set_str("systemd", "bus", &sb.bus_address())
        .set_str("systemd", "call_timeout", "5s")
        .service(
            Service::code_server("code-server", free_port())
                .every("500ms", "500ms")
                .with(&unit("code-server.service")),
        )
        .service(
            Service::jupyter("jupyter", free_port(), "")
                .without_token()
                .every("500ms", "500ms")
                .with(&unit("jupyter.service")),
        )
}

/// `vibe-agent check` (the binary) with this config.
fn check(config: &Config, dir: &Path) -> Printed {
    let file = dir.join("agent.toml");
    std::fs::write(&file, config.toml(&dir.join("state"))).unwrap();
    run_with_config(&file, &["check"]).into()
}

/// The alerts CodeServerDown and JupyterLabDown that fire after 10 minutes of the agent's
/// current `vibe_service_up` and `vibe_service_present` series, as promtool evaluates
/// `rules/vibe-agent.yml`: the test passes only when exactly `firing` fire.
fn assert_rules_fire(e: &Exposition, firing: &[&str], dir: &Path) {
    let mut series = String::new();
    for s in e.samples() {
        if s.name != "vibe_service_up" && s.name != "vibe_service_present" {
            continue;
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .chain(["ins=\"box-1\"".into(), "instance=\"box-1:9820\"".into()])
            .collect();
        series.push_str(&format!(
            "      - series: '{}{{{}}}'\n        values: '{}x20'\n",
            s.name,
            labels.join(", "),
            s.value
        ));
    }
    let expected: String = firing
        .iter()
        .map(|a| format!("          - labels: '{{alertname=\"{a}\"}}'\n            value: 1\n"))
        .collect();
    let test = format!(
        "rule_files: [{rules:?}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    \
         input_series:\n{series}    promql_expr_test:\n      - expr: count by (alertname) \
         (ALERTS{{alertstate=\"firing\", alertname=~\"CodeServerDown|JupyterLabDown\"}})\n        \
         eval_time: 10m\n        exp_samples:\n{expected}",
        rules = repo_root()
            .join("rules/vibe-agent.yml")
            .display()
            .to_string(),
        expected = if expected.is_empty() {
            "          []\n".to_string()
        } else {
            expected
        },
    );
    let file = dir.join("absent.test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool (Debian's `prometheus`; scripts/test installs it)");
    assert!(
        out.status.success(),
        "promtool: alerts other than {firing:?}:\n{}{}\n--- test ---\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_service_not_installed_is_absent_and_one_installed_but_stopped_is_down() {
    let sb = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sb);
    let settings = config.settings(&dir.path().join("state-run"));
    let listeners = Listeners::bind(&settings).await.unwrap();
    let agent = daemon::start(settings, listeners).unwrap();
    let m = MetricsClient::new(agent.metrics_addr);

    // Neither installed: both absent, both not up, nothing down.
    let e = m
        .wait_for("both services absent", |e| {
            e.is(PRESENT_CS, 0.0) && e.is(PRESENT_JL, 0.0)
        })
        .await;
    assert!(e.is(UP_CS, 0.0) && e.is(UP_JL, 0.0), "{}", e.vibe_lines());
    let lines: Vec<String> = agent
        .snapshots
        .borrow()
        .checks()
        .iter()
        .map(ToString::to_string)
        .collect();
    for svc in ["code-server", "jupyter"] {
        let line = format!("[OK] {svc}: absent (unit {svc}.service is not installed");
        assert!(
            lines.iter().any(|l| l.starts_with(&line)),
            "{line}… in {lines:#?}"
        );
    }
    let page = m.get("/").await.text().await.unwrap();
    assert!(
        page.contains("absent (unit jupyter.service is not installed"),
        "the landing page shows the absent service:\n{page}"
    );
    assert_rules_fire(&e, &[], dir.path());
    let out = check(&config, dir.path());
    assert_eq!(
        out.code,
        Some(0),
        "absent services do not fail check: {out}"
    );
    assert!(
        out.stdout
            .contains("[OK] code-server: absent (unit code-server.service is not installed"),
        "{out}"
    );

    // JupyterLab installed (its unit file), but not started.
    sb.install(
        "jupyter.service",
        "[Unit]\nDescription=JupyterLab (test, never started)\n\n[Service]\n\
         ExecStart=/bin/false\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    sb.systemctl(&["daemon-reload"]);
    let e = m
        .wait_for("jupyter present and down, code-server still absent", |e| {
            e.is(PRESENT_JL, 1.0) && e.is(UP_JL, 0.0) && e.is(PRESENT_CS, 0.0)
        })
        .await;
    let lines: Vec<String> = agent
        .snapshots
        .borrow()
        .checks()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        lines.contains(&"[ERROR] jupyter unit jupyter.service: inactive (dead)".to_string()),
        "{lines:#?}"
    );
    assert_rules_fire(&e, &["JupyterLabDown"], dir.path());
    let out = check(&config, dir.path());
    assert_eq!(
        out.code,
        Some(1),
        "an installed, stopped JupyterLab fails check: {out}"
    );
    assert!(
        out.stdout
            .contains("[ERROR] jupyter unit jupyter.service: inactive (dead)")
            && out.stdout.contains("[OK] code-server: absent"),
        "{out}"
    );
    agent.shutdown().await;
}
