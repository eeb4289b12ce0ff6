//! [`ConfigError`], and the small checks every section's validation shares. A leaf: the
//! config module and each source's `settings` import it, and it imports nothing of theirs.

use std::path::{Path, PathBuf};

/// Errors from reading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type. `message` is the toml crate's report, which
    /// names the line, the column and the expected keys or type.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but makes no sense (a bad address, a duplicate service...).
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A value that parsed but makes no sense: names the key and says what to write.
pub fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

/// An `http://` or `https://` URL, or an error naming the key and what to write.
pub fn check_http_url(path: &Path, key: &str, url: &str) -> Result<(), ConfigError> {
    match url.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(invalid(
            path,
            key,
            format!("\"{url}\" is not a URL; write e.g. \"http://127.0.0.1:8888/jupyter/api\""),
        )),
    }
}
