//! The `vibe-agent` binary as a user runs it: one-shot commands (`check`, `config check`)
//! and the daemon as a child process, with its stderr collected line by line so tests can
//! wait for what it logs. The daemon child is ended by its PID when the fixture drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{WAIT, end_child, wait_until};

/// The binary under test, with an environment that does not leak the test runner's: no
/// `RUST_LOG`, no journald or systemd notify sockets, no config from the environment, no
/// colours in logs.
pub fn vibe_agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vibe-agent"));
    for var in [
        "RUST_LOG",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "VIBE_AGENT_CONFIG",
        "STATE_DIRECTORY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// Runs `vibe-agent <args>` to completion.
pub fn run(args: &[&str]) -> Output {
    vibe_agent()
        .args(args)
        .output()
        .expect("run the vibe-agent binary")
}

/// Runs `vibe-agent --config <config> <args>`.
pub fn run_with_config(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--config", config.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    run(&all)
}

/// What a one-shot command printed, for assertions and failure messages.
pub struct Printed {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Printed {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Printed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Removes ANSI escape sequences (colours), in case a log line has them.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `vibe-agent --config <file> run` as a child process.
pub struct AgentProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    pub config: PathBuf,
}

impl AgentProcess {
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, |_| {})
    }

    /// Starts it after `adjust` changed the command (its environment, say: `RUST_LOG`,
    /// or `NO_COLOR` removed).
    pub fn start_with(config: &Path, adjust: impl FnOnce(&mut Command)) -> Self {
        let mut cmd = vibe_agent();
        adjust(&mut cmd);
        let mut child = cmd
            .args(["--config", config.to_str().expect("UTF-8 path"), "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vibe-agent");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                // As written: the agent colours only a terminal, and tests check that.
                lines.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            stderr,
            config: config.to_path_buf(),
        }
    }

    /// Everything logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        wait_until(WAIT, &format!("a log line with {needle:?}"), async || {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return Ok(line.clone());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vibe-agent exited with {status}:\n{}", self.stderr());
            }
            Err(self.stderr())
        })
        .await
    }

    /// The metrics address from the "vibe-agent started" line (`metrics=127.0.0.1:PORT`).
    pub async fn metrics_addr(&mut self) -> std::net::SocketAddr {
        let line = self.wait_for_log("vibe-agent started").await;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("metrics="))
            .unwrap_or_else(|| panic!("no metrics=ADDR in {line:?}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("metrics={addr} in {line:?}: {e}"))
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), sig)
            .expect("signal the agent");
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        end_child(&mut self.child, Duration::from_secs(5), false);
    }
}
