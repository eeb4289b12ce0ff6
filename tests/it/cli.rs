//! The binary's one-shot commands: `vibe-agent check` (lines, exit status, `--json`) and
//! `vibe-agent config check` (effective settings, or an error naming line and key); and
//! the plain-text log a `run` writes to a pipe.

use std::path::{Path, PathBuf};

use crate::support::agent_process::{AgentProcess, Printed, run_with_config};
use crate::support::fake_http::FakeHttp;
use crate::support::{Config, Service, free_port};

/// Writes `text` as `<dir>/agent.toml`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A config file for `config`, in `dir`.
fn config_file(dir: &Path, config: &Config) -> PathBuf {
    write_config(dir, &config.toml(&dir.join("state")))
}

fn check(config: &Path, args: &[&str]) -> Printed {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    run_with_config(config, &all).into()
}

#[test]
fn check_passes_and_prints_only_ok_lines_when_everything_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let (cs, jl) = (
        FakeHttp::code_server("healthz-alive.http"),
        FakeHttp::jupyterlab(),
    );
    // Timeouts are generous: this is one probe, not a poll, on a busy test machine.
    let config = Config::new()
        .service(Service::code_server("code-server", cs.port()).every("10s", "10s"))
        .service(Service::jupyter("jupyter", jl.port(), "sekrit").every("10s", "10s"))
        .host_path("/");
    let out = check(&config_file(dir.path(), &config), &[]);

    assert_eq!(out.code, Some(0), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("[OK] ")),
        "only [OK] lines: {out}"
    );
    for name in [
        format!("code-server port {}", cs.port()),
        "code-server http".into(),
        format!("jupyter port {}", jl.port()),
        "jupyter http".into(),
        "jupyter status".into(),
        "filesystem /".into(),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("[OK] {name}: "))),
            "a line for {name}: {out}"
        );
    }
}

#[test]
fn check_fails_with_exit_1_naming_a_port_nobody_listens_on() {
    let dir = tempfile::tempdir().unwrap();
    let cs = FakeHttp::code_server("healthz-alive.http");
    let dead = free_port();
    let config = Config::new()
        .service(Service::code_server("code-server", cs.port()).every("10s", "10s"))
        .service(Service::port_only("notebook", dead).every("10s", "10s"))
        .host_path("/");
    let file = config_file(dir.path(), &config);

    let out = check(&file, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("[ERROR] notebook port {dead}: not listening")),
        "{out}"
    );
    assert!(
        out.stdout.contains("[OK] code-server http: "),
        "healthy ones still OK: {out}"
    );

    let json = check(&file, &["--json"]);
    assert_eq!(json.code, Some(1), "{json}");
    let checks: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("--json: {e}\n{json}"));
    let checks = checks.as_array().expect("a JSON array of checks");
    let dead_check = checks
        .iter()
        .find(|c| c["name"] == format!("notebook port {dead}"))
        .unwrap_or_else(|| panic!("the dead port in {json}"));
    assert_eq!(dead_check["ok"], false);
    assert_eq!(dead_check["detail"], "not listening");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "code-server http" && c["ok"] == true),
        "{json}"
    );
}

#[test]
fn check_with_a_bad_config_exits_2_naming_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[listen]\nmetrcs = \"127.0.0.1:9820\"\n");
    let out = check(&file, &[]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.is_empty(), "no check ran: {out}");
    assert!(
        out.stderr.contains("line 2") && out.stderr.contains("metrcs"),
        "{out}"
    );
}

#[test]
fn config_check_prints_the_effective_settings_of_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new()
        .service(Service::jupyter("notebooks", 18888, "do-not-print-me"))
        .host_path("/srv/data");
    let file = config_file(dir.path(), &config);
    let out: Printed = run_with_config(&file, &["config", "check"]).into();

    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!("{} is valid", file.display())),
        "{out}"
    );
    for shown in ["notebooks", "18888", "/srv/data", "127.0.0.1:0"] {
        assert!(
            out.stdout.contains(shown),
            "effective settings show {shown}: {out}"
        );
    }
    assert!(
        !out.stdout.contains("do-not-print-me") && !out.stderr.contains("do-not-print-me"),
        "an inline token is a secret: {out}"
    );
}

#[test]
fn config_check_rejects_bad_files_naming_where_and_what() {
    // (file, words stderr must contain)
    let table: &[(&str, &[&str])] = &[
        // Unknown key, a near miss of a known one.
        (
            "[listen]\nmetrcs = \"127.0.0.1:9820\"\n",
            &["line 2", "metrcs", "did you mean \"metrics\""],
        ),
        // Wrong type.
        (
            "[[service]]\nname = \"a\"\nport = \"eighty\"\n",
            &["line 3", "port"],
        ),
        (
            "[host]\npaths = [\"/data\"]\ninterval = 15\n",
            &["line 3", "interval"],
        ),
        // Invalid values.
        (
            "[listen]\nmetrics = \"localhost\"\n",
            &["listen.metrics", "localhost"],
        ),
        (
            "[[service]]\nname = \"a\"\nkind = \"nginx\"\n",
            &["kind", "nginx", "code-server"],
        ),
        // Not TOML at all.
        ("[listen\n", &["line 1"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, words) in table {
        let file = write_config(dir.path(), text);
        let out: Printed = run_with_config(&file, &["config", "check"]).into();
        assert_eq!(out.code, Some(2), "{text:?}: {out}");
        assert!(out.stdout.is_empty(), "{text:?}: nothing on stdout: {out}");
        assert!(
            out.stderr.contains(&file.display().to_string()),
            "{text:?}: names the file: {out}"
        );
        for w in *words {
            assert!(
                out.stderr.contains(w),
                "{text:?}: stderr lacks {w:?}: {out}"
            );
        }
    }

    let missing = dir.path().join("missing.toml");
    let out: Printed = run_with_config(&missing, &["config", "check"]).into();
    assert_eq!(
        out.code,
        Some(2),
        "a --config file that does not exist: {out}"
    );
    assert!(out.stderr.contains("missing.toml"), "{out}");
}

/// Logs written to a pipe or a file (as under a supervisor other than systemd, or
/// `2>agent.log`) are plain text: colours only on a terminal. The test harness elsewhere
/// sets NO_COLOR; this one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_carry_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &Config::new());
    let mut agent = AgentProcess::start_with(&config, |cmd| {
        cmd.env_remove("NO_COLOR");
    });
    agent.wait_for_log("vibe-agent started").await;
    let text = agent.stderr();
    assert!(
        !text.contains('\x1b'),
        "colour escapes in piped logs:\n{text:?}"
    );
    assert!(
        text.contains(" INFO "),
        "plain level names expected:\n{text}"
    );
}
