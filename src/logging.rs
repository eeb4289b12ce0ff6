//! Logging: to journald when stderr is connected to the journal (`JOURNAL_STREAM`, as
//! under systemd), else to stderr. The level comes from `RUST_LOG` when set, else from the
//! config's `agent.log_level`; a reload applies a changed `agent.log_level` through
//! tracing_subscriber's `reload` layer, unless `RUST_LOG` set the level at start.
//!
//! This module owns the global subscriber, the handle that swaps its filter, and what a
//! valid `agent.log_level` is ([`parse_level`]); it does not read the config file.

use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The level used when `agent.log_level` is refused at start.
const FALLBACK_LEVEL: &str = "info";

/// Why an `agent.log_level` value is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "agent.log_level = \"{value}\": {why}; write one of error, warn, info, debug, trace, off, \
     or directives such as \"info,vibe_agent::probe=debug\""
)]
pub struct LevelError {
    value: String,
    why: String,
}

impl LevelError {
    /// The message without the key, for errors that name the key themselves.
    pub fn detail(&self) -> String {
        let full = self.to_string();
        full.strip_prefix("agent.log_level = ")
            .unwrap_or(&full)
            .to_string()
    }
}

/// Parses `agent.log_level`: comma-separated directives, each a level or `target=level`.
/// A bare word that is not a level is refused: tracing would read `"debgu"` as "the
/// target `debgu`, at trace" and log nothing else.
pub fn parse_level(value: &str) -> Result<EnvFilter, LevelError> {
    let refuse = |why: String| LevelError {
        value: value.to_string(),
        why,
    };
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(refuse("no level given".into()));
    }
    for d in directives {
        if d.contains(['=', '[']) || LevelFilter::from_str(d).is_ok() {
            continue;
        }
        let mut why = format!("\"{d}\" is neither a level nor target=level");
        if let Some(best) = ["error", "warn", "info", "debug", "trace", "off"]
            .into_iter()
            .filter(|l| strsim::levenshtein(l, &d.to_lowercase()) <= 2)
            .min_by_key(|l| strsim::levenshtein(l, &d.to_lowercase()))
        {
            why.push_str(&format!(" (did you mean \"{best}\"?)"));
        }
        return Err(refuse(why));
    }
    EnvFilter::try_new(value).map_err(|e| refuse(e.to_string()))
}

/// What [`init`] installed: the handle that swaps the filter, `RUST_LOG` when it set the
/// filter (it then keeps winning over the config), and the config level running.
struct Installed {
    filter: reload::Handle<EnvFilter, Registry>,
    rust_log: Option<String>,
    config_level: Mutex<String>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the global subscriber. Call once, early in `main`. A `config_level` that
/// [`parse_level`] refuses is replaced by "info", and the error is logged.
pub fn init(config_level: &str) {
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok());
    let (filter, applied, refused) = match (&rust_log, parse_level(config_level)) {
        (Some(v), _) => (EnvFilter::new(v), config_level, None),
        (None, Ok(f)) => (f, config_level, None),
        (None, Err(e)) => (EnvFilter::new(FALLBACK_LEVEL), FALLBACK_LEVEL, Some(e)),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    match journald {
        Some(layer) => Registry::default()
            .with(filter)
            .with(layer.with_syslog_identifier("vibe-agent".into()))
            .init(),
        None => Registry::default()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only on a terminal: a file or a pipe gets plain text.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init(),
    }
    if let Some(e) = refused {
        tracing::error!(
            error = %e,
            "logging at \"{FALLBACK_LEVEL}\" until a reload brings a valid agent.log_level"
        );
    }
    let _ = INSTALLED.set(Installed {
        filter: handle,
        rust_log,
        config_level: Mutex::new(applied.to_string()),
    });
}

/// What a reload does with the config's `agent.log_level`.
#[derive(Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// The level is the one running: nothing to do.
    Unchanged,
    /// Swap the filter to the new level.
    Apply,
    /// `RUST_LOG` set the filter and wins; the config's level differs from it.
    Overridden { rust_log: String },
}

/// Decides what a reload does: `rust_log` is `RUST_LOG` when it set the filter at start,
/// `old` and `new` the config's levels before and after the reload. Levels are compared
/// as parsed filters, so `"INFO"` and `"info"` are the same level.
pub fn level_change(rust_log: Option<&str>, old: &str, new: &str) -> LevelChange {
    let same = |a: &str, b: &str| match (EnvFilter::try_new(a), EnvFilter::try_new(b)) {
        (Ok(a), Ok(b)) => a.to_string() == b.to_string(),
        _ => a == b,
    };
    match rust_log {
        Some(env) if same(env, new) => LevelChange::Unchanged,
        Some(env) => LevelChange::Overridden {
            rust_log: env.to_string(),
        },
        None if same(old, new) => LevelChange::Unchanged,
        None => LevelChange::Apply,
    }
}

/// Applies a reloaded `agent.log_level`, which the caller checked with [`parse_level`].
/// Does nothing when [`init`] has not run (the agent embedded, or in-process tests). Logs
/// "log level changed" at info once the new level runs, so a change to warn or error is
/// not logged.
pub fn apply_config_level(new: &str) {
    let Some(installed) = INSTALLED.get() else {
        return;
    };
    let mut running = installed
        .config_level
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let old = running.clone();
    match level_change(installed.rust_log.as_deref(), &old, new) {
        LevelChange::Unchanged => {}
        LevelChange::Overridden { rust_log } => tracing::warn!(
            config = new,
            rust_log = %rust_log,
            "agent.log_level is not applied: RUST_LOG is set and wins; unset it in the \
             agent's environment for agent.log_level to apply"
        ),
        LevelChange::Apply => {
            let swapped = parse_level(new)
                .map_err(|e| e.to_string())
                .and_then(|f| installed.filter.reload(f).map_err(|e| e.to_string()));
            match swapped {
                Ok(()) => {
                    *running = new.to_string();
                    drop(running);
                    tracing::info!(old, new, "log level changed");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot change the log level to agent.log_level = \"{new}\"; keeping \"{old}\""
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_directives_parse() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,vibe_agent::probe=debug",
            "vibe_agent=trace",
        ] {
            assert!(parse_level(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_bare_word_that_is_not_a_level_is_refused_with_the_key_and_a_hint() {
        let e = parse_level("debgu").unwrap_err().to_string();
        assert!(e.starts_with("agent.log_level = \"debgu\""), "{e}");
        assert!(e.contains("did you mean \"debug\""), "{e}");
        assert!(e.contains("error, warn, info, debug, trace"), "{e}");
        let e = parse_level("info,loud").unwrap_err().to_string();
        assert!(e.contains("\"loud\" is neither a level"), "{e}");
        assert!(!e.contains("did you mean"), "{e}");
        assert!(parse_level("vibe_agent=loud").is_err());
        assert!(parse_level("info,[{bad").is_err());
        assert!(parse_level(" , ").is_err());
    }

    #[test]
    fn a_changed_level_is_applied_and_the_same_level_is_not() {
        assert_eq!(level_change(None, "warn", "debug"), LevelChange::Apply);
        assert_eq!(level_change(None, "info", "info"), LevelChange::Unchanged);
        assert_eq!(level_change(None, "info", "INFO"), LevelChange::Unchanged);
        assert_eq!(
            level_change(None, "info", "info,vibe_agent::probe=debug"),
            LevelChange::Apply
        );
    }

    #[test]
    fn rust_log_wins_and_a_differing_config_level_is_reported() {
        assert_eq!(
            level_change(Some("debug"), "info", "warn"),
            LevelChange::Overridden {
                rust_log: "debug".into()
            }
        );
        // Also when only the config stays put: it still differs from what runs.
        assert_eq!(
            level_change(Some("debug"), "warn", "warn"),
            LevelChange::Overridden {
                rust_log: "debug".into()
            }
        );
        assert_eq!(
            level_change(Some("debug"), "info", "debug"),
            LevelChange::Unchanged
        );
    }
}
