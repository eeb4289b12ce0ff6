//! [`WebConfigError`]: a web config file that cannot be read, is not the format, or names
//! something that does not work. A leaf: every module of the folder imports it.

use std::path::PathBuf;

/// Errors of a web config file: unreadable, not YAML of the format, or a value that does
/// not work (a missing certificate, a key that does not match it...).
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// YAML syntax or an unknown key; serde_yaml_ng's message names the key and the line.
    #[error("web config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("web config file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}
