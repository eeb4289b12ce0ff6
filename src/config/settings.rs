//! The agent's configuration: the TOML file's serde mirror, the embedded defaults from
//! docs/design.md, and the validated [`Settings`] every other module reads.
//!
//! Loading happens in stages, as zincati does it: the file is parsed into [`FileConfig`]
//! (every key optional, unknown keys rejected), merged over the defaults, then validated
//! into typed values. Errors name the file, line and column and say what to write instead.
//! This module owns `[listen]` and `[agent]`; every other section is its source's
//! `settings` module (its serde mirror, defaults and validation), which this one only
//! embeds and calls. It does no I/O besides reading the one file it is given (and, through
//! the transcripts' settings, the price file it names).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, invalid};
use crate::host::settings::{FileHost, HostSettings};
use crate::juicefs::settings::{FileJuicefs, JuicefsSettings};
use crate::otlp::settings::{FileOtlp, ForwardSettings, OtlpSettings};
use crate::probe::settings::{FileService, ServiceSettings};
use crate::systemd::settings::{FileSystemd, SystemdSettings};
use crate::transcripts::settings::{ClaudeSettings, FileClaude};

/// Where the agent looks for its file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vibe-agent/agent.toml";

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
    pub juicefs: Option<FileJuicefs>,
    /// OTLP receiver: label allow-list, limits, token, persistence.
    pub otlp: Option<FileOtlp>,
}

/// Serde mirror of `[listen]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    /// `/metrics` and the landing page, e.g. "0.0.0.0:9820".
    pub metrics: Option<String>,
    /// OTLP/HTTP receiver, e.g. "127.0.0.1:4318"; "" turns it off.
    pub otlp: Option<String>,
    /// OTLP/gRPC receiver, e.g. "127.0.0.1:4317"; "" turns it off.
    pub otlp_grpc: Option<String>,
    /// Unix socket `vibe-agent statusline` asks, e.g. "/run/vibe-agent/statusline.sock";
    /// "" turns it off.
    pub statusline: Option<PathBuf>,
    /// TLS and basic auth of `/metrics`: a Prometheus web config file (the
    /// exporter-toolkit format node_exporter reads), e.g. "/etc/vibe-agent/web.yml".
    pub web_config_file: Option<PathBuf>,
}

/// Default of `listen.statusline` (systemd's `RuntimeDirectory=vibe-agent`).
pub const DEFAULT_STATUSLINE_SOCKET: &str = "/run/vibe-agent/statusline.sock";

/// Serde mirror of `[agent]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAgent {
    /// Directory for persisted counters.
    pub state_dir: Option<PathBuf>,
    /// tracing filter: error, warn, info, debug, trace (or a full directive).
    pub log_level: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validated settings.
// ---------------------------------------------------------------------------------------

/// The agent's validated settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub metrics_addr: SocketAddr,
    pub otlp_addr: Option<SocketAddr>,
    /// `listen.otlp_grpc`; `None` when turned off.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// `listen.statusline`; `None` when turned off.
    pub statusline_socket: Option<PathBuf>,
    /// Web config file (TLS, basic auth) of the metrics listener.
    pub web_config_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub log_level: String,
    pub services: Vec<ServiceSettings>,
    pub systemd: SystemdSettings,
    pub host: HostSettings,
    pub claude: ClaudeSettings,
    /// `[claude.forward]`, validated by the OTLP module that forwards.
    #[serde(skip_serializing_if = "ForwardSettings::is_empty")]
    pub forward: ForwardSettings,
    pub juicefs: JuicefsSettings,
    pub otlp: OtlpSettings,
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

fn parse_addr(path: &Path, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            path,
            key,
            format!("\"{value}\" is not an address; write IP:PORT, e.g. \"127.0.0.1:9820\""),
        )
    })
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
    let otlp_grpc_addr = match listen.otlp_grpc.as_deref().unwrap_or("127.0.0.1:4317") {
        "" => None,
        s => Some(parse_addr(path, "listen.otlp_grpc", s)?),
    };
    let statusline_socket = match listen.statusline {
        None => Some(PathBuf::from(DEFAULT_STATUSLINE_SOCKET)),
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) if p.is_relative() => {
            return Err(invalid(
                path,
                "listen.statusline",
                format!(
                    "\"{}\" is relative; write an absolute path such as \"{DEFAULT_STATUSLINE_SOCKET}\" (\"\" turns it off)",
                    p.display()
                ),
            ));
        }
        Some(p) => Some(p),
    };
    let web_config_file = listen.web_config_file;
    if let Some(f) = &web_config_file {
        crate::webconfig::settings::check_file(path, "listen.web_config_file", f)?;
    }

    let agent = file.agent.unwrap_or_default();
    let state_dir = agent
        .state_dir
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/vibe-agent"));
    let log_level = agent.log_level.unwrap_or_else(|| "info".into());
    if let Err(e) = crate::logging::parse_level(&log_level) {
        return Err(invalid(path, "agent.log_level", e.detail()));
    }

    let services = crate::probe::settings::validate(file.service, path)?;
    let systemd = crate::systemd::settings::validate(file.systemd, path)?;
    let host = crate::host::settings::validate(file.host, path)?;
    let mut claude = file.claude.unwrap_or_default();
    let forward = claude.forward.take();
    let claude = crate::transcripts::settings::validate(claude, path)?;
    let forward = crate::otlp::settings::validate_forward(forward, path)?;

    Ok(Settings {
        metrics_addr,
        otlp_addr,
        otlp_grpc_addr,
        statusline_socket,
        web_config_file,
        state_dir,
        log_level,
        services,
        systemd,
        host,
        claude,
        forward,
        juicefs: crate::juicefs::settings::validate(file.juicefs, path)?,
        otlp: crate::otlp::settings::validate(file.otlp, path)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::settings::ServiceKind;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("agent.toml"))
    }

    #[test]
    fn empty_file_gives_design_defaults() {
        let s = parse("").unwrap();
        assert_eq!(s.metrics_addr.to_string(), "0.0.0.0:9820");
        assert_eq!(s.otlp_addr.unwrap().to_string(), "127.0.0.1:4318");
        assert_eq!(s.otlp_grpc_addr.unwrap().to_string(), "127.0.0.1:4317");
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
        assert_eq!(s.systemd.units, vec!["juicefs-*.service"]);
        assert_eq!(
            s.host.paths,
            vec![PathBuf::from("/data"), PathBuf::from("/fs")]
        );
        assert_eq!(
            s.claude.homes,
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
        assert!(
            s.otlp_grpc_addr.is_some(),
            "the gRPC receiver is its own key"
        );
        let s = parse("[listen]\notlp_grpc = \"\"\n").unwrap();
        assert_eq!(s.otlp_grpc_addr, None);
        assert!(s.otlp_addr.is_some());
        let e = parse("[listen]\notlp_grpc = \"4317\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen.otlp_grpc"), "{e}");
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
