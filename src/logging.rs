//! Logging: to journald when stderr is connected to the journal (`JOURNAL_STREAM`, as
//! under systemd), else to stderr. The level comes from `RUST_LOG` when set, else from the
//! config's `agent.log_level`.

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(config_level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(config_level));
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
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}
