//! The `[juicefs]` section of the agent's file: its serde mirror, defaults and validation.
//!
//! The config module embeds [`FileJuicefs`] and calls [`validate`]; everything JuiceFS-specific
//! about configuration lives here so the shared config module only gains a field.
//!
//! ```toml
//! [juicefs]
//! discover = true                                  # fuse.juicefs mounts in the mount table
//! metrics_url = "http://127.0.0.1:9567/metrics"    # client endpoint of discovered mounts
//! interval = "15s"
//! timeout = "2s"                                   # per mount; then it is reported stuck
//!
//! [[juicefs.mount]]                                # expected mounts: missing is an error
//! path = "/fs"
//! metrics_url = "http://127.0.0.1:9567/metrics"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The JuiceFS client's default metrics address (`juicefs mount --metrics`).
pub const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:9567/metrics";
/// Where the kernel's mount table of the agent's mount namespace is.
pub const DEFAULT_MOUNTINFO: &str = "/proc/self/mountinfo";
/// Default sampling interval of every mount.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default time one mount may take to answer before it is reported stuck.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serde mirror of `[juicefs]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJuicefs {
    /// Sample every `fuse.juicefs` mount of the mount table (default true).
    pub discover: Option<bool>,
    /// The mount table to read, e.g. "/proc/1/mountinfo" to see the host's mounts from a
    /// container (default "/proc/self/mountinfo").
    pub mountinfo: Option<PathBuf>,
    /// The client metrics endpoint of discovered mounts.
    pub metrics_url: Option<String>,
    /// How often every mount is sampled, e.g. "15s".
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// How long a mount may take to answer before it is reported stuck, e.g. "2s".
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Mounts that must be there; a missing one is reported.
    pub mount: Option<Vec<FileJuicefsMount>>,
}

/// Serde mirror of one `[[juicefs.mount]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJuicefsMount {
    /// The mount point, e.g. "/fs".
    pub path: PathBuf,
    /// This mount's client endpoint (each client has its own port: 9567, 9568, ...).
    pub metrics_url: Option<String>,
}

/// One expected mount, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfiguredMount {
    pub path: PathBuf,
    pub metrics_url: String,
}

/// The validated `[juicefs]` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JuicefsSettings {
    pub discover: bool,
    pub mountinfo: PathBuf,
    /// Endpoint of discovered mounts that are not configured.
    pub metrics_url: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub mounts: Vec<ConfiguredMount>,
}

impl Default for JuicefsSettings {
    fn default() -> Self {
        validate(None, Path::new("<defaults>")).expect("defaults are valid")
    }
}

fn invalid(path: &Path, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_string(),
        message,
    }
}

fn check_url(path: &Path, key: &str, url: &str) -> Result<(), ConfigError> {
    match url.split_once("://") {
        Some(("http", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(invalid(
            path,
            key,
            format!("\"{url}\": write an http URL such as \"{DEFAULT_METRICS_URL}\""),
        )),
    }
}

/// Validates `[juicefs]` (absent: the defaults). `path` is only used in messages.
pub fn validate(file: Option<FileJuicefs>, path: &Path) -> Result<JuicefsSettings, ConfigError> {
    let file = file.unwrap_or_default();
    let metrics_url = file
        .metrics_url
        .unwrap_or_else(|| DEFAULT_METRICS_URL.to_string());
    check_url(path, "juicefs.metrics_url", &metrics_url)?;
    let interval = file.interval.unwrap_or(DEFAULT_INTERVAL);
    if interval < Duration::from_millis(10) {
        return Err(invalid(
            path,
            "juicefs.interval",
            "write at least \"10ms\"".into(),
        ));
    }
    let timeout = file.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() || timeout > interval {
        return Err(invalid(
            path,
            "juicefs.timeout",
            "write a timeout above zero and not longer than juicefs.interval".into(),
        ));
    }
    let mut mounts: Vec<ConfiguredMount> = Vec::new();
    for (i, m) in file.mount.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str| format!("juicefs.mount[{i}].{k}");
        if !m.path.is_absolute() {
            return Err(invalid(
                path,
                &key("path"),
                format!(
                    "\"{}\": write an absolute path such as \"/fs\"",
                    m.path.display()
                ),
            ));
        }
        if mounts.iter().any(|o| o.path == m.path) {
            return Err(invalid(
                path,
                &key("path"),
                format!("\"{}\" is listed twice", m.path.display()),
            ));
        }
        let url = m.metrics_url.unwrap_or_else(|| metrics_url.clone());
        check_url(path, &key("metrics_url"), &url)?;
        mounts.push(ConfiguredMount {
            path: m.path,
            metrics_url: url,
        });
    }
    Ok(JuicefsSettings {
        discover: file.discover.unwrap_or(true),
        mountinfo: file
            .mountinfo
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MOUNTINFO)),
        metrics_url,
        interval,
        timeout,
        mounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JuicefsSettings, ConfigError> {
        #[derive(Deserialize)]
        struct Wrap {
            juicefs: Option<FileJuicefs>,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "agent.toml".into(),
            message: e.to_string(),
        })?;
        validate(w.juicefs, Path::new("agent.toml"))
    }

    #[test]
    fn defaults_discover_with_the_client_default_port() {
        let s = parse("").unwrap();
        assert!(s.discover);
        assert_eq!(s.metrics_url, DEFAULT_METRICS_URL);
        assert_eq!(s.mountinfo, Path::new("/proc/self/mountinfo"));
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert!(s.mounts.is_empty());
        assert_eq!(s, JuicefsSettings::default());
    }

    #[test]
    fn mounts_inherit_the_section_url_unless_they_give_one() {
        let s = parse(
            "[juicefs]\nmetrics_url = \"http://127.0.0.1:9600/metrics\"\ntimeout = \"500ms\"\n\
             [[juicefs.mount]]\npath = \"/fs\"\n\
             [[juicefs.mount]]\npath = \"/data/models\"\nmetrics_url = \"http://127.0.0.1:9568/metrics\"\n",
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(
            s.mounts,
            vec![
                ConfiguredMount {
                    path: "/fs".into(),
                    metrics_url: "http://127.0.0.1:9600/metrics".into()
                },
                ConfiguredMount {
                    path: "/data/models".into(),
                    metrics_url: "http://127.0.0.1:9568/metrics".into()
                },
            ]
        );
    }

    #[test]
    fn the_agent_file_carries_the_section() {
        let path = Path::new("agent.toml");
        let s = crate::config::Settings::from_toml(
            "[juicefs]\ndiscover = false\nmountinfo = \"/proc/1/mountinfo\"\n\
             [[juicefs.mount]]\npath = \"/fs\"\n",
            path,
        )
        .unwrap();
        assert!(!s.juicefs.discover);
        assert_eq!(s.juicefs.mountinfo, Path::new("/proc/1/mountinfo"));
        assert_eq!(s.juicefs.mounts[0].metrics_url, DEFAULT_METRICS_URL);
        assert_eq!(
            crate::config::Settings::from_toml("", path)
                .unwrap()
                .juicefs,
            JuicefsSettings::default()
        );
        let err = crate::config::Settings::from_toml("[juicefs]\nmountinf = \"/x\"\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean \"mountinfo\""), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[[juicefs.mount]]\npath = \"fs\"\n",
                &["juicefs.mount[0].path", "absolute"],
            ),
            (
                "[[juicefs.mount]]\npath = \"/fs\"\n[[juicefs.mount]]\npath = \"/fs\"\n",
                &["juicefs.mount[1].path", "twice"],
            ),
            (
                "[juicefs]\nmetrics_url = \"127.0.0.1:9567\"\n",
                &["juicefs.metrics_url", "http"],
            ),
            (
                "[juicefs]\ntimeout = \"20s\"\n",
                &["juicefs.timeout", "juicefs.interval"],
            ),
            ("[juicefs]\ndiscovr = true\n", &["discovr"]),
        ];
        for (text, wanted) in cases {
            let err = parse(text).expect_err(text).to_string();
            for w in *wanted {
                assert!(err.contains(w), "error for {text:?} lacks {w:?}: {err}");
            }
        }
    }
}
