//! `vibe-agent statusline`: one line for Claude Code's `statusLine` command — model,
//! session cost, today's cost, the 5-hour block's cost, time left and burn rate, and what the
//! box says about itself (a filesystem filling up, a stuck mount) — and the local Unix
//! socket the agent answers it on.
//!
//! The server ([`serve`]) reads nothing from the caller: it takes the caller's uid from the
//! socket (`SO_PEERCRED`, set by the kernel, not by the caller), maps it to the `user` label
//! the transcripts use (the home owner's name), and writes that user's figures from the
//! latest snapshot as one JSON line. So a user sees only their own figures, whatever they
//! send, and nothing is measured on the request path. Connections are bounded in number and
//! time.
//!
//! The client ([`run_client`]) reads the JSON Claude Code passes on stdin (bounded; only
//! `model.display_name`/`model.id` and `cost.total_cost_usd` are used), asks the socket with
//! a short timeout and prints one line; when the agent does not answer it prints a short
//! line saying so. It always exits 0, so Claude Code never shows an error instead of a line.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

use crate::host::state::FsResult;
use crate::model::Snapshot;

/// Connections served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 32;
/// How long writing one reply may take before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the client waits for the agent.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(800);
/// Largest stdin document and reply the client reads.
const MAX_INPUT_BYTES: u64 = 1 << 20;
/// Share of a filesystem in use from which the line mentions it.
const FULL_RATIO: f64 = 0.9;

/// What the agent tells one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The `user` label the figures belong to (the caller's).
    pub user: String,
    /// When the figures were computed (Unix seconds).
    pub at: f64,
    /// Since local midnight, from transcripts.
    pub today_cost_usd: f64,
    pub block: Option<BlockStatus>,
    /// Short notes about the box (e.g. "/fs 93% full").
    pub notes: Vec<String>,
}

/// The current 5-hour block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStatus {
    pub cost_usd: f64,
    pub end: f64,
    pub remaining_minutes: f64,
    pub burn_usd_per_hour: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub projected_cost_usd: Option<f64>,
}

/// The `user` label of a uid: its name in the passwd database, else the number (as the
/// transcripts label a home's owner).
pub fn user_label(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(u) => u.name().to_string_lossy().into_owned(),
        None => uid.to_string(),
    }
}

/// The reply for `user` from a snapshot (pure).
pub fn reply_for(s: &Snapshot, user: &str) -> StatusReply {
    let mut r = StatusReply {
        user: user.to_string(),
        ..StatusReply::default()
    };
    if let Some(t) = &s.claude_transcripts {
        r.at = t.at;
        if let Some(u) = t.users.get(user) {
            r.today_cost_usd = u.today.cost_usd;
            r.block = u.block.map(|b| {
                let rate = b.burn_rate();
                BlockStatus {
                    cost_usd: b.cost_usd,
                    end: b.end,
                    remaining_minutes: ((b.end - t.at) / 60.0).max(0.0),
                    burn_usd_per_hour: rate.map(|r| r.cost_usd_per_hour),
                    tokens_per_minute: rate.map(|r| r.tokens_per_minute),
                    projected_cost_usd: b.projection(t.at).map(|p| p.cost_usd),
                }
            });
        }
    }
    for fs in s.filesystems.values() {
        match &fs.result {
            FsResult::Ok(u) if u.size_bytes > 0.0 => {
                let used = 1.0 - u.avail_bytes / u.size_bytes;
                if used >= FULL_RATIO {
                    r.notes
                        .push(format!("{} {:.0}% full", fs.path.display(), used * 100.0));
                }
            }
            FsResult::Stuck => r.notes.push(format!("{} stuck", fs.path.display())),
            _ => {}
        }
    }
    r
}

/// Binds the statusline socket: any local user may connect (mode 0666); the reply is chosen
/// by the caller's uid. A stale socket left by an earlier run is replaced; one another live
/// agent answers on is not.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another agent answers on it",
        ));
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Answers every connection with the caller's figures until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "statusline socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let snap = snapshots.borrow().clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let Ok(cred) = stream.peer_cred() else {
                return;
            };
            let reply = reply_for(&snap, &user_label(cred.uid()));
            let mut body = serde_json::to_vec(&reply).unwrap_or_default();
            body.push(b'\n');
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&body)).await;
            // Closing a Unix socket with unread bytes in its queue resets the peer (Linux
            // sets ECONNRESET on it), which can destroy the reply before the caller reads
            // it. So the write side is shut and whatever the caller sent is read and
            // discarded, bounded in bytes and time, until the caller closes.
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut left = MAX_INPUT_BYTES;
            let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n as u64),
                    }
                }
            })
            .await;
        });
    }
    // A stopped agent leaves no socket behind: the client then says "not running" at once.
    if let Ok(addr) = listener.local_addr()
        && let Some(path) = addr.as_pathname()
    {
        let _ = std::fs::remove_file(path);
    }
}

/// What the client reads of Claude Code's statusLine JSON.
#[derive(Debug, Default, Deserialize)]
struct ClaudeInput {
    #[serde(default)]
    model: Option<ClaudeModel>,
    #[serde(default)]
    cost: Option<ClaudeCost>,
    #[serde(default)]
    context_window: Option<ClaudeContext>,
}

#[derive(Debug, Default, Deserialize)]
struct ClaudeContext {
    #[serde(default)]
    used_percentage: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct ClaudeModel {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ClaudeCost {
    #[serde(default)]
    total_cost_usd: Option<f64>,
}

/// Asks the agent on `socket`; `None` when it does not answer.
pub fn ask(socket: &Path) -> Option<StatusReply> {
    let s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
    let mut body = Vec::new();
    s.take(MAX_INPUT_BYTES).read_to_end(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn usd(v: f64) -> String {
    format!("${v:.2}")
}

fn duration(minutes: f64) -> String {
    let m = minutes.floor() as u64;
    if m >= 60 {
        format!("{}h {}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    }
}

/// The line for Claude Code's stdin document `input` and the agent's reply (pure). Its
/// figures read as ccusage's statusline does: `$S session / $T today / $B block (Xh Ym
/// left) | $R/hr`.
pub fn format_line(input: &[u8], reply: Option<&StatusReply>) -> String {
    let input: ClaudeInput = serde_json::from_slice(input).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(m) = input.model
        && let Some(name) = m.display_name.or(m.id).filter(|n| !n.is_empty())
    {
        parts.push(name.chars().filter(|c| !c.is_control()).take(40).collect());
    }
    let session = input
        .cost
        .and_then(|c| c.total_cost_usd)
        .map(|c| format!("{} session", usd(c)));
    let Some(r) = reply else {
        parts.extend(session);
        parts.push("vibe-agent not running".to_string());
        return parts.join(" | ");
    };
    let mut costs: Vec<String> = session.into_iter().collect();
    costs.push(format!("{} today", usd(r.today_cost_usd)));
    match &r.block {
        Some(b) => costs.push(format!(
            "{} block ({} left)",
            usd(b.cost_usd),
            duration(b.remaining_minutes)
        )),
        None => costs.push("no active block".to_string()),
    }
    parts.push(costs.join(" / "));
    if let Some(rate) = r.block.as_ref().and_then(|b| b.burn_usd_per_hour) {
        parts.push(format!("{}/hr", usd(rate)));
    }
    if let Some(p) = input.context_window.and_then(|c| c.used_percentage) {
        parts.push(format!("ctx {p:.0}%"));
    }
    parts.extend(r.notes.iter().cloned());
    parts.join(" | ")
}

/// `vibe-agent statusline`: reads stdin, asks the agent, prints one line. Never fails.
pub fn run_client(socket: &Path) -> String {
    let mut input = Vec::new();
    let _ = std::io::stdin()
        .take(MAX_INPUT_BYTES)
        .read_to_end(&mut input);
    format_line(&input, ask(socket).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_model_session_today_block_and_notes() {
        let input = br#"{"model":{"id":"claude-opus-4-8","display_name":"Opus 4.8"},"cost":{"total_cost_usd":0.4249},"context_window":{"used_percentage":16,"current_usage":null}}"#;
        let reply = StatusReply {
            user: "alice".into(),
            at: 0.0,
            today_cost_usd: 12.3,
            block: Some(BlockStatus {
                cost_usd: 4.2,
                end: 0.0,
                remaining_minutes: 133.4,
                burn_usd_per_hour: Some(1.444),
                tokens_per_minute: Some(100.0),
                projected_cost_usd: Some(8.0),
            }),
            notes: vec!["/fs 93% full".into()],
        };
        assert_eq!(
            format_line(input, Some(&reply)),
            "Opus 4.8 | $0.42 session / $12.30 today / $4.20 block (2h 13m left) | $1.44/hr | ctx 16% | /fs 93% full"
        );
        assert_eq!(
            format_line(input, None),
            "Opus 4.8 | $0.42 session | vibe-agent not running"
        );
        assert_eq!(format_line(b"not json", None), "vibe-agent not running");
    }
}
