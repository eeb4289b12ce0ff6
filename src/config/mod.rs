//! The agent's configuration file: [`settings`] loads and validates it (the `[listen]` and
//! `[agent]` sections itself, every other section through its source's `settings`);
//! [`error`] is the leaf every section's validation shares.

pub mod error;
pub mod settings;

pub use error::ConfigError;
pub use settings::{DEFAULT_CONFIG_PATH, FileConfig, Settings};
