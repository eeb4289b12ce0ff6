//! The real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed by scripts/test under
//! target/test-deps/claude), driven offline by scripts/claude-code/claude-real-run.sh against
//! its fake Anthropic API. Shared by the OTLP and transcript tests.

use std::path::{Path, PathBuf};

use super::repo_root;

/// The CLI's path; fails with the install command when it is missing.
pub fn claude_bin() -> PathBuf {
    let bin = std::env::var_os("VIBE_TEST_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-deps/claude/node_modules/.bin/claude"));
    assert!(
        bin.exists(),
        "the real Claude Code CLI is missing at {}: install it with \
         `npm install --prefix target/test-deps/claude @anthropic-ai/claude-code@2.1.197` \
         (scripts/test does this), or set VIBE_TEST_CLAUDE_BIN",
        bin.display()
    );
    bin
}

/// One offline CLI turn with HOME = `home`, telemetry to `endpoint` ("none" for off), and
/// the driver's knobs in `env` (see the header of claude-real-run.sh).
pub fn run_turn(endpoint: &str, home: &Path, env: &[(&str, &str)]) {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo_root().join("scripts/claude-code/claude-real-run.sh"))
        .arg(endpoint)
        .arg(home)
        .env("CLAUDE_BIN", claude_bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run claude-real-run.sh");
    assert!(
        out.status.success(),
        "the CLI run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
