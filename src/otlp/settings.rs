//! The `[otlp]` section of the agent's file and its `[claude.forward]` table (the upstreams
//! raw OTLP bodies are forwarded to): their serde mirrors, defaults and validation.
//!
//! The config module embeds [`FileOtlp`] and [`FileForward`] and calls [`validate`] and
//! [`validate_forward`]; everything OTLP-specific about configuration lives here so the
//! shared config module only gains a field.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::{ConfigError, check_http_url};

/// Attributes kept as labels when the file does not say otherwise (docs/design.md).
pub const DEFAULT_ALLOW_LABELS: &[&str] = &[
    "model",
    "type",
    "query_source",
    "decision",
    "source",
    "tool_name",
    "language",
    "start_type",
    "speed",
    "effort",
];
/// Default cap on series per exported family.
pub const DEFAULT_MAX_SERIES_PER_FAMILY: usize = 2000;
/// Default cap on decompressed request bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default interval between two saves of the state file.
pub const DEFAULT_PERSIST_INTERVAL: Duration = Duration::from_secs(5);
/// Default window for `vibe_claude_active_sessions`.
pub const DEFAULT_ACTIVE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Default cap on tracked OTLP streams (per-session cumulative series and delta dedupe).
pub const DEFAULT_MAX_STREAMS: usize = 200_000;
/// Default time a cumulative stream is remembered without new points.
pub const DEFAULT_STREAM_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default time a client has to send a whole request once it has started.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on request bodies queued for one forwarding upstream.
pub const DEFAULT_FORWARD_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Serde mirror of `[otlp]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOtlp {
    /// Attribute keys kept as labels; the rest are dropped and summed over.
    pub allow_labels: Option<Vec<String>>,
    /// Series per family before new label sets are dropped and counted.
    pub max_series_per_family: Option<usize>,
    /// Largest accepted body after decompression, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Bearer token clients must send (`Authorization: Bearer T`), inline.
    pub bearer_token: Option<String>,
    /// Bearer token read from this file at start.
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// How often totals are saved to the state directory, e.g. "5s".
    #[serde(default, with = "humantime_serde")]
    pub persist_interval: Option<Duration>,
    /// IANA time zone for `vibe_claude_cost_today_usd`, e.g. "Europe/Paris" (default: the
    /// system's).
    pub time_zone: Option<String>,
    /// Window for `vibe_claude_active_sessions`, e.g. "5m".
    #[serde(default, with = "humantime_serde")]
    pub active_window: Option<Duration>,
    /// Tracked streams before the least recently seen are forgotten.
    pub max_streams: Option<usize>,
    /// Bytes of request bodies queued per forwarding upstream before the oldest are
    /// dropped.
    pub forward_queue_bytes: Option<usize>,
    /// Time a client has to send a whole request (HTTP body, gRPC message) once it has
    /// started, e.g. "10s".
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    /// TLS and basic auth of the OTLP/HTTP receiver: a Prometheus web config file, for a
    /// receiver bound beyond loopback.
    pub web_config_file: Option<std::path::PathBuf>,
}

/// Validated `[otlp]` settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtlpSettings {
    pub allow_labels: Vec<String>,
    pub max_series_per_family: usize,
    pub max_body_bytes: usize,
    #[serde(skip)]
    pub bearer_token: Option<String>,
    #[serde(with = "humantime_serde")]
    pub persist_interval: Duration,
    /// `None`: the system's time zone.
    pub time_zone: Option<String>,
    #[serde(with = "humantime_serde")]
    pub active_window: Duration,
    pub max_streams: usize,
    pub forward_queue_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Web config file (TLS, basic auth) of the OTLP/HTTP listener.
    pub web_config_file: Option<std::path::PathBuf>,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        validate(None, Path::new("<defaults>")).expect("defaults are valid")
    }
}

fn invalid(path: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: format!("otlp.{key}"),
        message: message.into(),
    }
}

/// Validates the section (absent = defaults).
pub fn validate(file: Option<FileOtlp>, path: &Path) -> Result<OtlpSettings, ConfigError> {
    let f = file.unwrap_or_default();
    let allow_labels = f
        .allow_labels
        .unwrap_or_else(|| DEFAULT_ALLOW_LABELS.iter().map(|s| s.to_string()).collect());
    if let Some(bad) = allow_labels.iter().find(|k| k.is_empty()) {
        return Err(invalid(
            path,
            "allow_labels",
            format!("\"{bad}\": write attribute keys such as \"model\""),
        ));
    }
    let max_series_per_family = f
        .max_series_per_family
        .unwrap_or(DEFAULT_MAX_SERIES_PER_FAMILY);
    if max_series_per_family == 0 {
        return Err(invalid(
            path,
            "max_series_per_family",
            "0: write at least 1",
        ));
    }
    let max_body_bytes = f.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes < 1024 {
        return Err(invalid(
            path,
            "max_body_bytes",
            format!("{max_body_bytes}: write at least 1024"),
        ));
    }
    let bearer_token = match (f.bearer_token, f.bearer_token_file) {
        (None, None) => None,
        (Some(t), None) => Some(t),
        (None, Some(file)) => Some(
            std::fs::read_to_string(&file)
                .map_err(|e| {
                    invalid(
                        path,
                        "bearer_token_file",
                        format!("{}: {e}", file.display()),
                    )
                })?
                .trim()
                .to_string(),
        ),
        (Some(_), Some(_)) => {
            return Err(invalid(
                path,
                "bearer_token",
                "give bearer_token or bearer_token_file, not both",
            ));
        }
    };
    if bearer_token.as_deref() == Some("") {
        return Err(invalid(path, "bearer_token", "the token is empty"));
    }
    let persist_interval = f.persist_interval.unwrap_or(DEFAULT_PERSIST_INTERVAL);
    if persist_interval < Duration::from_millis(100) {
        return Err(invalid(
            path,
            "persist_interval",
            "write at least \"100ms\"",
        ));
    }
    if let Some(tz) = &f.time_zone {
        if let Err(e) = jiff::tz::TimeZone::get(tz) {
            return Err(invalid(
                path,
                "time_zone",
                format!("\"{tz}\": {e}; write an IANA name such as \"Europe/Paris\""),
            ));
        }
    }
    let active_window = f.active_window.unwrap_or(DEFAULT_ACTIVE_WINDOW);
    if active_window.is_zero() {
        return Err(invalid(
            path,
            "active_window",
            "write a window above zero, e.g. \"5m\"",
        ));
    }
    let max_streams = f.max_streams.unwrap_or(DEFAULT_MAX_STREAMS);
    if max_streams < 100 {
        return Err(invalid(
            path,
            "max_streams",
            format!("{max_streams}: write at least 100"),
        ));
    }
    let forward_queue_bytes = f.forward_queue_bytes.unwrap_or(DEFAULT_FORWARD_QUEUE_BYTES);
    if forward_queue_bytes == 0 {
        return Err(invalid(
            path,
            "forward_queue_bytes",
            format!(
                "0: write the bytes queued per upstream, at least 1 \
                 (default {DEFAULT_FORWARD_QUEUE_BYTES}); a body larger than this is dropped"
            ),
        ));
    }
    let read_timeout = f.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
    if read_timeout < Duration::from_millis(100) {
        return Err(invalid(
            path,
            "read_timeout",
            "write at least \"100ms\" (default \"10s\")",
        ));
    }
    if let Some(web) = &f.web_config_file {
        crate::webconfig::settings::check_file(path, "otlp.web_config_file", web)?;
    }
    Ok(OtlpSettings {
        allow_labels,
        max_series_per_family,
        max_body_bytes,
        bearer_token,
        persist_interval,
        time_zone: f.time_zone,
        active_window,
        max_streams,
        forward_queue_bytes,
        read_timeout,
        web_config_file: f.web_config_file,
    })
}

/// Serde mirror of `[claude.forward]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForward {
    pub metrics_url: Option<String>,
    pub logs_url: Option<String>,
    pub traces_url: Option<String>,
    /// PEM CA certificates an https upstream's certificate must chain to.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any certificate from an https upstream.
    pub insecure_skip_verify: Option<bool>,
    /// Headers sent with every forwarded body, e.g. `{ AccountID = "12" }`.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Sent as `Authorization: Bearer T`, inline.
    pub bearer_token: Option<String>,
    /// Bearer token read from this file (at start and reload).
    pub bearer_token_file: Option<std::path::PathBuf>,
}

/// The validated `[claude.forward]` upstreams; `None` forwards nothing of that signal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ForwardSettings {
    pub metrics_url: Option<String>,
    pub logs_url: Option<String>,
    pub traces_url: Option<String>,
    /// How the upstreams' certificates are checked.
    pub tls: crate::tlsclient::ClientTls,
    /// Headers sent to the upstreams (values may be secrets: never serialized).
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
    /// `Authorization: Bearer` token for the upstreams (never serialized).
    #[serde(skip)]
    pub bearer_token: Option<String>,
}

impl ForwardSettings {
    /// Nothing is forwarded.
    pub fn is_empty(&self) -> bool {
        self.metrics_url.is_none() && self.logs_url.is_none() && self.traces_url.is_none()
    }
}

/// Validates `[claude.forward]` (absent: nothing forwarded). `path` is only used in
/// messages.
pub fn validate_forward(
    file: Option<FileForward>,
    path: &Path,
) -> Result<ForwardSettings, ConfigError> {
    let forward = file.unwrap_or_default();
    for (k, u) in [
        ("claude.forward.metrics_url", &forward.metrics_url),
        ("claude.forward.logs_url", &forward.logs_url),
        ("claude.forward.traces_url", &forward.traces_url),
    ] {
        if let Some(u) = u {
            check_http_url(path, k, u)?;
        }
    }
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: format!("claude.forward.{key}"),
        message,
    };
    let tls = crate::tlsclient::ClientTls {
        ca_file: forward.ca_file.clone(),
        insecure_skip_verify: forward.insecure_skip_verify.unwrap_or(false),
    };
    tls.check().map_err(|e| invalid("ca_file", e))?;
    let mut headers = Vec::new();
    for (name, value) in forward.headers.clone().unwrap_or_default() {
        let key = format!("headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(&key, "not a valid HTTP header name".into()));
        }
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            return Err(invalid(
                &key,
                "the value has characters a header cannot carry".into(),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if ["content-type", "content-encoding", "content-length", "host"].contains(&lower.as_str())
        {
            return Err(invalid(
                &key,
                "the forwarder sets this header itself; remove it".into(),
            ));
        }
        if lower == "authorization"
            && (forward.bearer_token.is_some() || forward.bearer_token_file.is_some())
        {
            return Err(invalid(
                &key,
                "give Authorization in headers or a bearer token, not both".into(),
            ));
        }
        headers.push((name, value));
    }
    let bearer_token = match (&forward.bearer_token, &forward.bearer_token_file) {
        (None, None) => None,
        (Some(t), None) => Some(t.trim().to_string()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    invalid(
                        "bearer_token_file",
                        format!("cannot read {}: {e}", f.display()),
                    )
                })?
                .trim()
                .to_string(),
        ),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "bearer_token",
                "give bearer_token or bearer_token_file, not both".into(),
            ));
        }
    };
    match bearer_token.as_deref() {
        Some("") => return Err(invalid("bearer_token", "the token is empty".into())),
        Some(t) if reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).is_err() => {
            return Err(invalid(
                "bearer_token",
                "the token has characters a header cannot carry".into(),
            ));
        }
        _ => {}
    }
    Ok(ForwardSettings {
        metrics_url: forward.metrics_url,
        logs_url: forward.logs_url,
        traces_url: forward.traces_url,
        tls,
        headers,
        bearer_token,
    })
}

impl OtlpSettings {
    /// The time zone for "today": the configured one, else the system's, else UTC.
    pub fn zone(&self) -> jiff::tz::TimeZone {
        match &self.time_zone {
            Some(name) => jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC),
            None => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("agent.toml"))
    }

    #[test]
    fn forward_queue_bytes_defaults_to_64_mib_and_takes_an_integer() {
        assert_eq!(
            parse("").unwrap().otlp.forward_queue_bytes,
            64 * 1024 * 1024
        );
        assert_eq!(
            parse("[otlp]\nforward_queue_bytes = 1048576\n")
                .unwrap()
                .otlp
                .forward_queue_bytes,
            1 << 20
        );
    }

    #[test]
    fn read_timeout_defaults_to_10_s_and_refuses_less_than_100_ms() {
        assert_eq!(
            parse("").unwrap().otlp.read_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(
            parse("[otlp]\nread_timeout = \"2s\"\n")
                .unwrap()
                .otlp
                .read_timeout,
            Duration::from_secs(2)
        );
        let e = parse("[otlp]\nread_timeout = \"10ms\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("otlp.read_timeout"), "{e}");
        assert!(e.contains("100ms"), "{e}");
    }

    #[test]
    fn forward_queue_bytes_of_zero_names_the_key_and_the_fix() {
        let e = parse("[otlp]\nforward_queue_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("otlp.forward_queue_bytes"), "{e}");
        assert!(e.contains("at least 1"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[otlp]\nforward_queue_bytes = -5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward_queue_bytes"), "{e}");
    }
}
