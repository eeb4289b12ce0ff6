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
//! prices_file = "/etc/vibe-agent/model_prices_and_context_window.json"
//! project_label = true
//! max_projects = 100
//! ```
//!
//! Validation reads the price file (`prices_file`), so a malformed one is refused at start,
//! by `config check` and on reload, with the model and field that are wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::prices::{ModelPrice, PriceOverride, PriceTable};
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
    /// Prices per model id or family, USD per million tokens; replace the embedded ones
    /// and the price file's.
    pub prices: Option<BTreeMap<String, PriceOverride>>,
    /// A price file: LiteLLM's model_prices_and_context_window.json or the agent's own table
    /// (JSON); read at start and on reload, replacing the embedded prices it names.
    pub prices_file: Option<PathBuf>,
    /// Count tokens and cost per project (the `project` label); default true.
    pub project_label: Option<bool>,
    /// Distinct projects per user before the rest are counted as `other`, e.g. 100.
    pub max_projects: Option<usize>,
}

/// Default of `claude.max_projects`.
pub const DEFAULT_MAX_PROJECTS: usize = 100;

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
    pub prices_file: Option<PathBuf>,
    /// The price file's prices, read when the settings were validated.
    #[serde(skip)]
    pub file_prices: BTreeMap<String, ModelPrice>,
    pub project_label: bool,
    pub max_projects: usize,
}

impl ClaudeSettings {
    /// The prices: embedded, then the price file's, then `[claude.prices]`.
    pub fn price_table(&self) -> PriceTable {
        PriceTable::with_file(&self.file_prices, &self.prices)
    }
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
    let max_projects = claude.max_projects.unwrap_or(DEFAULT_MAX_PROJECTS);
    if max_projects == 0 {
        return Err(invalid(
            path,
            "claude.max_projects",
            "write at least 1 (set claude.project_label = false to turn the label off)",
        ));
    }
    for (model, o) in claude.prices.iter().flatten() {
        if let Err((field, v)) = o.validate() {
            return Err(invalid(
                path,
                format!("claude.prices.\"{model}\".{field}"),
                format!("{v} is not a price; write USD per million tokens, 0 or more"),
            ));
        }
    }
    let file_prices = match &claude.prices_file {
        None => BTreeMap::new(),
        Some(file) => {
            let bytes = std::fs::read(file).map_err(|e| {
                invalid(
                    path,
                    "claude.prices_file",
                    format!(
                        "cannot read {}: {e}; download LiteLLM's model_prices_and_context_window.json there or remove the key",
                        file.display()
                    ),
                )
            })?;
            super::prices::parse_price_file(&bytes).map_err(|e| {
                invalid(
                    path,
                    "claude.prices_file",
                    format!("{}: {e}", file.display()),
                )
            })?
        }
    };
    Ok(ClaudeSettings {
        homes: claude_homes,
        max_line_bytes: claude_max_line_bytes,
        reconcile_interval: claude_reconcile_interval,
        save_interval: claude_save_interval,
        active_window: claude_active_window,
        prices: claude.prices.unwrap_or_default(),
        prices_file: claude.prices_file,
        file_prices,
        project_label: claude.project_label.unwrap_or(true),
        max_projects,
    })
}
