//! The config file's side of web config files: `listen.web_config_file` and
//! `otlp.web_config_file` are loaded once at validation, as the listener would load them, so
//! a bad file is refused at start and by `vibe-agent config check`, naming the key inside it.

use std::path::Path;

use super::guard::Active;
use crate::config::error::{ConfigError, invalid};

/// Loads the web config file `file` named by `key` of the agent's file `path`.
pub fn check_file(path: &Path, key: &str, file: &Path) -> Result<(), ConfigError> {
    Active::load(file)
        .map(|_| ())
        .map_err(|e| invalid(path, key, e.to_string()))
}
