//! The `[host]` section of the agent's file: its serde mirror, defaults and validation into
//! [`HostSettings`].
//!
//! ```toml
//! [host]
//! paths = ["/data", "/fs"]      # statvfs of each, every interval
//! interval = "15s"
//! fs_timeout = "2s"             # then the path is reported stuck
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::{ConfigError, invalid};

/// Default host sampling interval.
pub const DEFAULT_HOST_INTERVAL: Duration = Duration::from_secs(15);
/// Default time one statvfs may take.
pub const DEFAULT_FS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHost {
    /// Paths whose filesystem is sampled with statvfs.
    pub paths: Option<Vec<PathBuf>>,
    /// How often host and filesystems are sampled.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// How long one statvfs may take before the path is reported stuck.
    #[serde(default, with = "humantime_serde")]
    pub fs_timeout: Option<Duration>,
}

/// The validated `[host]` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSettings {
    /// Paths whose filesystem is sampled.
    pub paths: Vec<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub fs_timeout: Duration,
}

impl Default for HostSettings {
    fn default() -> Self {
        validate(None, Path::new("<defaults>")).expect("defaults are valid")
    }
}

/// Validates `[host]` (absent: the defaults). `path` is only used in messages.
pub fn validate(file: Option<FileHost>, path: &Path) -> Result<HostSettings, ConfigError> {
    let host = file.unwrap_or_default();
    let host_paths = host
        .paths
        .unwrap_or_else(|| vec!["/data".into(), "/fs".into()]);
    if let Some(p) = host_paths.iter().find(|p| !p.is_absolute()) {
        return Err(invalid(
            path,
            "host.paths",
            format!("\"{}\": write an absolute path", p.display()),
        ));
    }
    let host_interval = host.interval.unwrap_or(DEFAULT_HOST_INTERVAL);
    if host_interval < Duration::from_millis(100) {
        return Err(invalid(path, "host.interval", "write at least \"100ms\""));
    }
    let fs_timeout = host.fs_timeout.unwrap_or(DEFAULT_FS_TIMEOUT);
    if fs_timeout.is_zero() {
        return Err(invalid(
            path,
            "host.fs_timeout",
            "write a timeout above zero",
        ));
    }
    Ok(HostSettings {
        paths: host_paths,
        interval: host_interval,
        fs_timeout,
    })
}
