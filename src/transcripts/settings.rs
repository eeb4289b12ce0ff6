//! The `[claude]` section of the agent's file as the transcript tailer reads it: its serde
//! mirror, defaults and validation into [`ClaudeSettings`]. Its `[claude.forward]` table
//! belongs to the OTLP forwarder and is validated there
//! ([`crate::otlp::settings::validate_forward`]).
//!
//! ```toml
//! [claude]
//! homes = ["/root/.claude", "/home/*/.claude"]
//! max_line_bytes = 8388608
//! reconcile_interval = "30s"
//! save_interval = "10s"
//! active_window = "5m"
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::prices::PriceOverride;
use crate::config::error::{ConfigError, invalid};

/// Serde mirror of `[claude]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClaude {
    /// Claude homes (globs allowed).
    pub homes: Option<Vec<String>>,
    /// Upstreams for raw OTLP bodies.
    pub forward: Option<crate::otlp::settings::FileForward>,
    /// Transcript lines longer than this are skipped (and counted), e.g. 8388608.
    pub max_line_bytes: Option<usize>,
    /// How often every transcript is re-scanned besides inotify, e.g. "30s".
    #[serde(default, with = "humantime_serde")]
    pub reconcile_interval: Option<Duration>,
    /// How often transcript offsets and totals are saved, e.g. "10s".
    #[serde(default, with = "humantime_serde")]
    pub save_interval: Option<Duration>,
    /// A session is active when it wrote a line this recently, e.g. "5m".
    #[serde(default, with = "humantime_serde")]
    pub active_window: Option<Duration>,
    /// Prices per model id or family, USD per million tokens; replace the embedded ones.
    pub prices: Option<BTreeMap<String, PriceOverride>>,
}

/// The validated `[claude]` settings of the transcript tailer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaudeSettings {
    /// Claude homes (globs allowed).
    pub homes: Vec<String>,
    pub max_line_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub active_window: Duration,
    pub prices: BTreeMap<String, PriceOverride>,
}

impl Default for ClaudeSettings {
    fn default() -> Self {
        validate(FileClaude::default(), Path::new("<defaults>")).expect("defaults are valid")
    }
}

/// Validates `[claude]` (the forward table aside). `path` is only used in messages.
pub fn validate(claude: FileClaude, path: &Path) -> Result<ClaudeSettings, ConfigError> {
    let claude_homes = claude.homes.unwrap_or_else(|| {
        [
            "/root/.claude",
            "/home/*/.claude",
            "/root/.config/claude",
            "/home/*/.config/claude",
        ]
        .map(String::from)
        .to_vec()
    });
    let claude_max_line_bytes = claude.max_line_bytes.unwrap_or(8 << 20);
    let claude_reconcile_interval = claude.reconcile_interval.unwrap_or(Duration::from_secs(30));
    let claude_save_interval = claude.save_interval.unwrap_or(Duration::from_secs(10));
    let claude_active_window = claude.active_window.unwrap_or(Duration::from_secs(300));
    if claude_max_line_bytes < 4096 || claude_reconcile_interval < Duration::from_millis(50) {
        return Err(invalid(
            path,
            "claude",
            "write max_line_bytes of at least 4096 and a reconcile_interval of at least \"50ms\"",
        ));
    }
    Ok(ClaudeSettings {
        homes: claude_homes,
        max_line_bytes: claude_max_line_bytes,
        reconcile_interval: claude_reconcile_interval,
        save_interval: claude_save_interval,
        active_window: claude_active_window,
        prices: claude.prices.unwrap_or_default(),
    })
}
