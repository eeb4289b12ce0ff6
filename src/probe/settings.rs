//! The `[[service]]` tables of the agent's file: their serde mirror, the embedded default
//! services (code-server and JupyterLab, as docs/design.md lists them) and their validation into
//! [`ServiceSettings`].
//!
//! The config module embeds [`FileService`] and calls [`validate`]; everything about how a
//! service is probed lives here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::{ConfigError, check_http_url, invalid};

/// Default probe interval of a service.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Default probe timeout of a service.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// PEM CA certificates an https health URL's certificate must chain to (instead of
    /// the system's).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate on an https health URL (still encrypted, not authenticated).
    pub insecure_skip_verify: Option<bool>,
    /// Probe interval, e.g. "10s".
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Probe timeout, e.g. "2s".
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

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
    pub fn parse(s: &str) -> Option<Self> {
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
    /// How an https health URL's certificate is checked.
    pub tls: crate::tlsclient::ClientTls,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

pub fn default_services() -> Vec<FileService> {
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

/// Validates the `[[service]]` list (absent: the default services). `path` is only used in
/// messages.
pub fn validate(
    file: Option<Vec<FileService>>,
    path: &Path,
) -> Result<Vec<ServiceSettings>, ConfigError> {
    let mut services = Vec::new();
    for (i, s) in file
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
        let tls = crate::tlsclient::ClientTls {
            ca_file: s.ca_file.clone(),
            insecure_skip_verify: s.insecure_skip_verify.unwrap_or(false),
        };
        tls.check().map_err(|e| invalid(path, key("ca_file"), e))?;
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
            tls,
            interval,
            timeout,
        });
    }

    Ok(services)
}
