//! The agent's configuration: the TOML file's serde mirror, the embedded defaults from
//! DESIGN.md, and the validated [`Settings`] every other module reads.
//!
//! Loading happens in stages, as zincati does it: the file is parsed into [`FileConfig`]
//! (every key optional, unknown keys rejected), merged over the defaults, then validated
//! into typed values. Errors name the file, line and column and say what to write instead.
//! This module does no I/O besides reading the one file it is given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the agent looks for its file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vibe-agent/agent.toml";

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

// ---------------------------------------------------------------------------------------
// The file, as written. Every field optional; `deny_unknown_fields` everywhere so a typo is
// an error naming the key, never a silently ignored setting.
// ---------------------------------------------------------------------------------------

/// Serde mirror of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listening addresses.
    pub listen: Option<FileListen>,
    /// The agent's own behaviour.
    pub agent: Option<FileAgent>,
    /// Services probed; a list given here replaces the default list.
    pub service: Option<Vec<FileService>>,
    /// systemd units watched besides each service's unit.
    pub systemd: Option<FileSystemd>,
    /// Host sampling.
    pub host: Option<FileHost>,
    /// Claude Code homes and telemetry.
    pub claude: Option<FileClaude>,
    /// JuiceFS mounts.
    pub juicefs: Option<crate::juicefs::settings::FileJuicefs>,
    /// OTLP receiver: label allow-list, limits, token, persistence.
    pub otlp: Option<crate::otlp::settings::FileOtlp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    /// `/metrics` and the landing page, e.g. "0.0.0.0:9820".
    pub metrics: Option<String>,
    /// OTLP/HTTP receiver, e.g. "127.0.0.1:4318"; "" turns it off.
    pub otlp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAgent {
    /// Directory for persisted counters.
    pub state_dir: Option<PathBuf>,
    /// tracing filter: error, warn, info, debug, trace (or a full directive).
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    /// Label value `service`.
    pub name: String,
    /// systemd unit, e.g. "jupyter.service".
    pub unit: Option<String>,
    /// TCP port checked for LISTEN state and a connect.
    pub port: Option<u16>,
    /// Host used for the TCP connect (default 127.0.0.1).
    pub host: Option<String>,
    /// Health endpoint.
    pub health_url: Option<String>,
    /// code-server | jupyter | http.
    pub kind: Option<String>,
    /// Expected HTTP status of the health endpoint (generic services).
    pub expect_status: Option<u16>,
    /// Dot-separated path of a JSON field the health body must have (generic services).
    pub expect_json_field: Option<String>,
    /// The value that field must equal, compared as text (generic services).
    pub expect_json_value: Option<String>,
    /// JupyterLab token, inline.
    pub token: Option<String>,
    /// JupyterLab token, read from this file at each probe.
    pub token_file: Option<PathBuf>,
    /// JupyterLab token, read from this environment variable.
    pub token_env: Option<String>,
    /// Probe interval, e.g. "10s".
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Probe timeout, e.g. "2s".
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClaude {
    /// Claude homes (globs allowed).
    pub homes: Option<Vec<String>>,
    /// Upstreams for raw OTLP bodies.
    pub forward: Option<FileForward>,
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
    /// Prices per model id or family, USD per million tokens; replace the embedded ones.
    pub prices:
        Option<std::collections::BTreeMap<String, crate::transcripts::prices::PriceOverride>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForward {
    pub metrics_url: Option<String>,
    pub logs_url: Option<String>,
    pub traces_url: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validated settings.
// ---------------------------------------------------------------------------------------

/// What the health endpoint of a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// `/healthz` → `{"status":"alive"|"expired","lastHeartbeat":ms}`.
    CodeServer,
    /// `/jupyter/api` liveness plus `/jupyter/api/status` with a token.
    Jupyter,
    /// Any HTTP endpoint: expected status and optional JSON field.
    Http,
}

impl ServiceKind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "code-server" => Some(Self::CodeServer),
            "jupyter" => Some(Self::Jupyter),
            "http" => Some(Self::Http),
            _ => None,
        }
    }
}

/// Where a JupyterLab token comes from. Read at each probe, so rotating the file works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    Inline(#[serde(skip)] String),
    File(PathBuf),
    Env(String),
}

/// One probed service, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSettings {
    pub name: String,
    pub kind: ServiceKind,
    pub unit: Option<String>,
    pub port: Option<u16>,
    pub host: String,
    pub health_url: Option<String>,
    pub expect_status: u16,
    pub expect_json: Option<(String, String)>,
    pub token: Option<TokenSource>,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// The agent's validated settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub metrics_addr: SocketAddr,
    pub otlp_addr: Option<SocketAddr>,
    pub state_dir: PathBuf,
    pub log_level: String,
    pub services: Vec<ServiceSettings>,
    pub systemd_units: Vec<String>,
    /// "system" or a D-Bus address.
    pub systemd_bus: String,
    #[serde(with = "humantime_serde")]
    pub systemd_resync_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub systemd_poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub systemd_call_timeout: Duration,
    pub host_paths: Vec<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub host_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub fs_timeout: Duration,
    pub claude_homes: Vec<String>,
    pub claude_max_line_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub claude_reconcile_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub claude_save_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub claude_active_window: Duration,
    pub claude_prices:
        std::collections::BTreeMap<String, crate::transcripts::prices::PriceOverride>,
    pub forward_metrics_url: Option<String>,
    pub forward_logs_url: Option<String>,
    pub forward_traces_url: Option<String>,
    pub juicefs: crate::juicefs::settings::JuicefsSettings,
    pub otlp: crate::otlp::OtlpSettings,
}

/// Default probe interval of a service.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Default probe timeout of a service.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default host sampling interval.
pub const DEFAULT_HOST_INTERVAL: Duration = Duration::from_secs(15);
/// Default interval of the systemd source's full re-read of every watched unit.
pub const DEFAULT_SYSTEMD_RESYNC: Duration = Duration::from_secs(30);
/// Default interval of the systemd source's memory/CPU/tasks poll.
pub const DEFAULT_SYSTEMD_POLL: Duration = Duration::from_secs(10);
/// Default timeout of one D-Bus call.
pub const DEFAULT_SYSTEMD_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time one statvfs may take.
pub const DEFAULT_FS_TIMEOUT: Duration = Duration::from_secs(2);

fn default_services() -> Vec<FileService> {
    vec![
        FileService {
            name: "code-server".into(),
            unit: Some("code-server.service".into()),
            port: Some(8443),
            health_url: Some("http://127.0.0.1:8443/healthz".into()),
            kind: Some("code-server".into()),
            ..FileService::default()
        },
        FileService {
            name: "jupyter".into(),
            unit: Some("jupyter.service".into()),
            port: Some(8888),
            health_url: Some("http://127.0.0.1:8888/jupyter/api".into()),
            kind: Some("jupyter".into()),
            token_file: Some("/etc/vibe-agent/jupyter.token".into()),
            ..FileService::default()
        },
    ]
}

impl Default for Settings {
    fn default() -> Self {
        validate(FileConfig::default(), Path::new("<defaults>")).expect("defaults are valid")
    }
}

impl Settings {
    /// Loads `path`. When `required` is false and the file does not exist, the embedded
    /// defaults are used (the agent runs with no file at all).
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_message(&e, text),
        })?;
        validate(file, path).map_err(|e| match e {
            ConfigError::Invalid { path, key, message } => {
                let key = match locate_key(text, &key) {
                    Some((line, col)) => format!("line {line}, column {col}: {key}"),
                    None => key,
                };
                ConfigError::Invalid { path, key, message }
            }
            other => other,
        })
    }

    /// The service with this name, if configured.
    pub fn service(&self, name: &str) -> Option<&ServiceSettings> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Turns the toml crate's error into one message with line and column first, and a
/// "did you mean" when the key is a near miss of a known one.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    let mut location = String::new();
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
        location = format!("line {line}, column {col} (`{source_line}`): ");
    }
    let msg = e.message().trim().to_string();
    let mut hint = String::new();
    if let Some(unknown) = msg
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        // The toml crate lists the keys valid at that spot ("expected one of `a`, `b`"):
        // suggest the nearest of those, so hints follow each section's keys.
        let valid: Vec<&str> = msg
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        if let Some(best) = valid
            .into_iter()
            .filter(|k| strsim::levenshtein(k, unknown) <= 2)
            .min_by_key(|k| strsim::levenshtein(k, unknown))
        {
            hint = format!("; did you mean \"{best}\"?");
        }
    }
    if msg.contains("expected a duration") {
        hint = "; write a duration such as \"10s\", \"500ms\" or \"1m\"".into();
    }
    format!("{location}{msg}{hint}")
}

/// Line and column (1-based) of the value of `key` in the file, for keys as validation
/// names them: `listen.metrics`, `host.paths`, `service[1] (jupyter).kind`. `None` when the
/// key is not in the file (a default was wrong, or the text does not parse as TOML).
fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut span = None;
    // Drop parentheticals such as " (jupyter)", then walk `name` and `name[i]` segments.
    let mut plain = String::new();
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 && c != ' ' => plain.push(c),
            _ => {}
        }
    }
    for segment in plain.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        item = item.get(name)?;
        if let Some(i) = index {
            item = item.get(i)?;
        }
        span = item.span().or(span);
    }
    let start = span?.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, col))
}

fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

fn parse_addr(path: &Path, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            path,
            key,
            format!("\"{value}\" is not an address; write IP:PORT, e.g. \"127.0.0.1:9820\""),
        )
    })
}

fn check_http_url(path: &Path, key: &str, url: &str) -> Result<(), ConfigError> {
    match url.split_once("://") {
        Some(("http", rest)) if !rest.is_empty() => Ok(()),
        Some(("https", _)) => Err(invalid(
            path,
            key,
            format!("\"{url}\": https is not supported; probe the service's loopback http port"),
        )),
        _ => Err(invalid(
            path,
            key,
            format!("\"{url}\" is not a URL; write e.g. \"http://127.0.0.1:8888/jupyter/api\""),
        )),
    }
}

fn validate(file: FileConfig, path: &Path) -> Result<Settings, ConfigError> {
    let listen = file.listen.unwrap_or_default();
    let metrics_addr = parse_addr(
        path,
        "listen.metrics",
        listen.metrics.as_deref().unwrap_or("0.0.0.0:9820"),
    )?;
    let otlp_addr = match listen.otlp.as_deref().unwrap_or("127.0.0.1:4318") {
        "" => None,
        s => Some(parse_addr(path, "listen.otlp", s)?),
    };

    let agent = file.agent.unwrap_or_default();
    let state_dir = agent
        .state_dir
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/vibe-agent"));
    let log_level = agent.log_level.unwrap_or_else(|| "info".into());
    if let Err(e) = crate::logging::parse_level(&log_level) {
        return Err(invalid(path, "agent.log_level", e.detail()));
    }

    let mut services = Vec::new();
    for (i, s) in file
        .service
        .unwrap_or_else(default_services)
        .into_iter()
        .enumerate()
    {
        let key = |k: &str| format!("service[{i}] ({}).{k}", s.name);
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                path,
                format!("service[{i}].name"),
                format!(
                    "\"{}\": write a non-empty name of letters, digits, '-', '_' or '.'",
                    s.name
                ),
            ));
        }
        if services.iter().any(|o: &ServiceSettings| o.name == s.name) {
            return Err(invalid(
                path,
                key("name"),
                "a service of this name is already defined; names must be unique",
            ));
        }
        let kind = match s.kind.as_deref() {
            None => ServiceKind::Http,
            Some(k) => ServiceKind::parse(k).ok_or_else(|| {
                invalid(
                    path,
                    key("kind"),
                    format!("\"{k}\": write \"code-server\", \"jupyter\" or \"http\""),
                )
            })?,
        };
        if let Some(url) = &s.health_url {
            check_http_url(path, &key("health_url"), url)?;
        }
        if s.port == Some(0) {
            return Err(invalid(
                path,
                key("port"),
                "0: write a port from 1 to 65535",
            ));
        }
        let token = match (&s.token, &s.token_file, &s.token_env) {
            (None, None, None) => None,
            (Some(t), None, None) => Some(TokenSource::Inline(t.clone())),
            (None, Some(f), None) => Some(TokenSource::File(f.clone())),
            (None, None, Some(v)) => Some(TokenSource::Env(v.clone())),
            _ => {
                return Err(invalid(
                    path,
                    key("token"),
                    "give only one of token, token_file and token_env",
                ));
            }
        };
        let expect_json = match (&s.expect_json_field, &s.expect_json_value) {
            (None, None) => None,
            (Some(f), Some(v)) => Some((f.clone(), v.clone())),
            _ => {
                return Err(invalid(
                    path,
                    key("expect_json_field"),
                    "give both expect_json_field and expect_json_value, or neither",
                ));
            }
        };
        let interval = s.interval.unwrap_or(DEFAULT_PROBE_INTERVAL);
        let timeout = s.timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT);
        if interval < Duration::from_millis(100) {
            return Err(invalid(path, key("interval"), "write at least \"100ms\""));
        }
        if timeout.is_zero() || timeout > interval {
            return Err(invalid(
                path,
                key("timeout"),
                "write a timeout above zero and not longer than the interval",
            ));
        }
        let expect_status = s.expect_status.unwrap_or(200);
        if !(100..=599).contains(&expect_status) {
            return Err(invalid(
                path,
                key("expect_status"),
                format!("{expect_status}: write an HTTP status from 100 to 599"),
            ));
        }
        services.push(ServiceSettings {
            name: s.name.clone(),
            kind,
            unit: s.unit.clone(),
            port: s.port,
            host: s.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            health_url: s.health_url.clone(),
            expect_status,
            expect_json,
            token,
            interval,
            timeout,
        });
    }

    let systemd = file.systemd.unwrap_or_default();
    let systemd_units = systemd
        .units
        .unwrap_or_else(|| vec!["juicefs-*.service".into()]);
    let systemd_bus = systemd.bus.unwrap_or_else(|| "system".into());
    if systemd_bus != "system" && !systemd_bus.contains(':') {
        return Err(invalid(
            path,
            "systemd.bus",
            format!(
                "\"{systemd_bus}\": write \"system\" or a D-Bus address such as \
                 \"unix:path=/run/dbus/system_bus_socket\""
            ),
        ));
    }
    let systemd_resync_interval = systemd.resync_interval.unwrap_or(DEFAULT_SYSTEMD_RESYNC);
    let systemd_poll_interval = systemd.poll_interval.unwrap_or(DEFAULT_SYSTEMD_POLL);
    let systemd_call_timeout = systemd.call_timeout.unwrap_or(DEFAULT_SYSTEMD_CALL_TIMEOUT);
    for (key, d) in [
        ("systemd.resync_interval", systemd_resync_interval),
        ("systemd.poll_interval", systemd_poll_interval),
        ("systemd.call_timeout", systemd_call_timeout),
    ] {
        if d < Duration::from_millis(10) {
            return Err(invalid(path, key, "write at least \"10ms\""));
        }
    }

    let host = file.host.unwrap_or_default();
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

    let claude = file.claude.unwrap_or_default();
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
    let forward = claude.forward.unwrap_or_default();
    for (k, u) in [
        ("claude.forward.metrics_url", &forward.metrics_url),
        ("claude.forward.logs_url", &forward.logs_url),
        ("claude.forward.traces_url", &forward.traces_url),
    ] {
        if let Some(u) = u {
            check_http_url(path, k, u)?;
        }
    }

    Ok(Settings {
        metrics_addr,
        otlp_addr,
        state_dir,
        log_level,
        services,
        systemd_units,
        systemd_bus,
        systemd_resync_interval,
        systemd_poll_interval,
        systemd_call_timeout,
        host_paths,
        host_interval,
        fs_timeout,
        claude_homes,
        claude_max_line_bytes,
        claude_reconcile_interval,
        claude_save_interval,
        claude_active_window,
        claude_prices: claude.prices.unwrap_or_default(),
        forward_metrics_url: forward.metrics_url,
        forward_logs_url: forward.logs_url,
        forward_traces_url: forward.traces_url,
        juicefs: crate::juicefs::settings::validate(file.juicefs, path)?,
        otlp: crate::otlp::settings::validate(file.otlp, path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("agent.toml"))
    }

    #[test]
    fn empty_file_gives_design_defaults() {
        let s = parse("").unwrap();
        assert_eq!(s.metrics_addr.to_string(), "0.0.0.0:9820");
        assert_eq!(s.otlp_addr.unwrap().to_string(), "127.0.0.1:4318");
        assert_eq!(s.services.len(), 2);
        let cs = s.service("code-server").unwrap();
        assert_eq!(cs.kind, ServiceKind::CodeServer);
        assert_eq!(cs.port, Some(8443));
        assert_eq!(cs.unit.as_deref(), Some("code-server.service"));
        let j = s.service("jupyter").unwrap();
        assert_eq!(j.kind, ServiceKind::Jupyter);
        assert_eq!(
            j.health_url.as_deref(),
            Some("http://127.0.0.1:8888/jupyter/api")
        );
        assert_eq!(s.systemd_units, vec!["juicefs-*.service"]);
        assert_eq!(
            s.host_paths,
            vec![PathBuf::from("/data"), PathBuf::from("/fs")]
        );
        assert_eq!(
            s.claude_homes,
            vec![
                "/root/.claude",
                "/home/*/.claude",
                "/root/.config/claude",
                "/home/*/.config/claude"
            ]
        );
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn otlp_empty_string_turns_receiver_off() {
        let s = parse("[listen]\notlp = \"\"\n").unwrap();
        assert_eq!(s.otlp_addr, None);
    }

    #[test]
    fn service_list_replaces_defaults() {
        let s = parse(
            "[[service]]\nname = \"api\"\nport = 9000\nhealth_url = \"http://127.0.0.1:9000/ok\"\n\
             expect_status = 204\ninterval = \"5s\"\ntimeout = \"1s\"\n",
        )
        .unwrap();
        assert_eq!(s.services.len(), 1);
        let api = &s.services[0];
        assert_eq!(api.kind, ServiceKind::Http);
        assert_eq!(api.expect_status, 204);
        assert_eq!(api.interval, Duration::from_secs(5));
        assert_eq!(api.timeout, Duration::from_secs(1));
    }

    /// Table of bad files: each must fail, and the message must name what is given.
    #[test]
    fn bad_files_name_line_key_and_fix() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[listn]\nmetrics = \"x\"\n",
                &["line 1", "listn", "did you mean \"listen\""],
            ),
            (
                "[listen]\nmetrics = 9820\n",
                &["line 2", "column 11", "string"],
            ),
            (
                "[listen]\nmetrics = \"localhost\"\n",
                &["line 2, column 11: listen.metrics", "IP:PORT"],
            ),
            (
                "[agent]\nlog_level = \"info,[{bad\"\n",
                &["agent.log_level"],
            ),
            (
                "[agent]\nlog_level = \"debgu\"\n",
                &["line 2", "agent.log_level", "did you mean \"debug\""],
            ),
            (
                "[[service]]\nname = \"a\"\nkind = \"nginx\"\n",
                &["line 3, column 8: service[0] (a).kind", "\"jupyter\""],
            ),
            (
                "[[service]]\nname = \"a\"\n[[service]]\nname = \"a\"\n",
                &["line 4, column 8: service[1] (a).name", "unique"],
            ),
            (
                "[[service]]\nname = \"a\"\ninterval = \"soon\"\n",
                &["line 3", "interval"],
            ),
            (
                "[[service]]\nname = \"a\"\ntimeout = \"20s\"\n",
                &["timeout", "not longer than the interval"],
            ),
            (
                "[[service]]\nname = \"a\"\nhealth_url = \"ftp://x\"\n",
                &["health_url", "not a URL"],
            ),
            (
                "[[service]]\nname = \"a\"\ntoken = \"x\"\ntoken_env = \"Y\"\n",
                &["only one of token"],
            ),
            (
                "[host]\npaths = [\"data\"]\n",
                &["line 2, column 9: host.paths", "absolute"],
            ),
            (
                "[[service]]\nname = \"a\"\nprot = 1\n",
                &["line 3", "did you mean \"port\""],
            ),
            ("[listen\n", &["line 1"]),
        ];
        for (text, wanted) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.starts_with("agent.toml: "), "{err}");
            for w in *wanted {
                assert!(err.contains(w), "error for {text:?} lacks {w:?}: {err}");
            }
        }
    }

    #[test]
    fn missing_file_is_defaults_only_when_optional() {
        let p = Path::new("/nonexistent/vibe-agent/agent.toml");
        assert_eq!(Settings::load(p, false).unwrap(), Settings::default());
        let err = Settings::load(p, true).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vibe-agent/agent.toml"), "{err}");
    }
}
