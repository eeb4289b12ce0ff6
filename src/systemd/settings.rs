//! The `[systemd]` section of the agent's file (its serde mirror, defaults and validation
//! into [`SystemdSettings`]), and [`WatchSettings`], what the source watches once the
//! services' units are added.
//!
//! ```toml
//! [systemd]
//! units = ["juicefs-*.service"]   # watched besides each service's unit
//! bus = "system"                  # or a D-Bus address
//! resync_interval = "30s"
//! poll_interval = "10s"
//! call_timeout = "3s"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bus::BusAddress;
use crate::config::error::{ConfigError, invalid};
use crate::probe::settings::ServiceSettings;

/// Default interval of the systemd source's full re-read of every watched unit.
pub const DEFAULT_SYSTEMD_RESYNC: Duration = Duration::from_secs(30);
/// Default interval of the systemd source's memory/CPU/tasks poll.
pub const DEFAULT_SYSTEMD_POLL: Duration = Duration::from_secs(10);
/// Default timeout of one D-Bus call.
pub const DEFAULT_SYSTEMD_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Serde mirror of `[systemd]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSystemd {
    /// Unit names or patterns watched besides each service's unit.
    pub units: Option<Vec<String>>,
    /// "system" (the default) or a D-Bus address, e.g. "unix:path=/run/dbus/system_bus_socket".
    pub bus: Option<String>,
    /// How often every watched unit is read again, to catch a missed signal.
    #[serde(default, with = "humantime_serde")]
    pub resync_interval: Option<Duration>,
    /// How often memory, CPU and tasks of running units are read.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// How long one D-Bus call (and connecting) may take.
    #[serde(default, with = "humantime_serde")]
    pub call_timeout: Option<Duration>,
}

/// The validated `[systemd]` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemdSettings {
    /// Unit names or patterns watched besides each service's unit.
    pub units: Vec<String>,
    /// "system" or a D-Bus address.
    pub bus: String,
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
}

impl Default for SystemdSettings {
    fn default() -> Self {
        validate(None, Path::new("<defaults>")).expect("defaults are valid")
    }
}

/// Validates `[systemd]` (absent: the defaults). `path` is only used in messages.
pub fn validate(file: Option<FileSystemd>, path: &Path) -> Result<SystemdSettings, ConfigError> {
    let systemd = file.unwrap_or_default();
    let units = systemd
        .units
        .unwrap_or_else(|| vec!["juicefs-*.service".into()]);
    let bus = systemd.bus.unwrap_or_else(|| "system".into());
    if bus != "system" && !bus.contains(':') {
        return Err(invalid(
            path,
            "systemd.bus",
            format!(
                "\"{bus}\": write \"system\" or a D-Bus address such as \
                 \"unix:path=/run/dbus/system_bus_socket\""
            ),
        ));
    }
    let resync_interval = systemd.resync_interval.unwrap_or(DEFAULT_SYSTEMD_RESYNC);
    let poll_interval = systemd.poll_interval.unwrap_or(DEFAULT_SYSTEMD_POLL);
    let call_timeout = systemd.call_timeout.unwrap_or(DEFAULT_SYSTEMD_CALL_TIMEOUT);
    for (key, d) in [
        ("systemd.resync_interval", resync_interval),
        ("systemd.poll_interval", poll_interval),
        ("systemd.call_timeout", call_timeout),
    ] {
        if d < Duration::from_millis(10) {
            return Err(invalid(path, key, "write at least \"10ms\""));
        }
    }
    Ok(SystemdSettings {
        units,
        bus,
        resync_interval,
        poll_interval,
        call_timeout,
    })
}

/// What the source watches and how: `[systemd]` joined with the services' units.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSettings {
    pub bus: BusAddress,
    /// Unit names watched whether loaded or not (services' units, plain names in `units`).
    pub names: Vec<String>,
    /// Globs for `ListUnitsByPatterns` (entries of `units` with `*`, `?` or `[`).
    pub patterns: Vec<String>,
    pub resync_interval: Duration,
    pub poll_interval: Duration,
    pub call_timeout: Duration,
}

impl WatchSettings {
    /// `None` when there is nothing to watch (no service has a unit, `units` is empty):
    /// the source then does not run and reports nothing.
    pub fn new(systemd: &SystemdSettings, services: &[ServiceSettings]) -> Option<Self> {
        let mut names: Vec<String> = services.iter().filter_map(|s| s.unit.clone()).collect();
        let mut patterns = Vec::new();
        for u in &systemd.units {
            if u.contains(['*', '?', '[']) {
                patterns.push(u.clone());
            } else if !names.contains(u) {
                names.push(u.clone());
            }
        }
        if names.is_empty() && patterns.is_empty() {
            return None;
        }
        Some(Self {
            bus: BusAddress::parse(&systemd.bus),
            names,
            patterns,
            resync_interval: systemd.resync_interval,
            poll_interval: systemd.poll_interval,
            call_timeout: systemd.call_timeout,
        })
    }
}
