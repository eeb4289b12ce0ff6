//! Claude Code telemetry: an OTLP/HTTP receiver whose metrics and events become
//! Prometheus counters that survive Claude sessions and agent restarts.
//!
//! The module owns everything OTLP: decoding request bodies ([`decode`], [`json`], and [`wire`], which converts protobuf
//! metrics without decoding them first), the
//! pure conversion into label-filtered batches ([`convert`]), the telemetry state the model
//! folds those batches into ([`state`]), its metric families ([`expose`]), the HTTP
//! receiver on the OTLP listener ([`receiver`]), the state file ([`persist`]) and its
//! configuration ([`settings`]). It must not touch the other sources' state; it reaches the
//! model only through [`crate::model::Update::ClaudeTelemetry`].
//!
//! Privacy rule, enforced in [`convert`]: only allow-listed attribute values leave the
//! receiver. Session ids and other identifying attributes are reduced to 64-bit hashes
//! before anything is queued, so no prompt, command, e-mail or id reaches the model,
//! `/metrics` or a log line.

pub mod convert;
pub mod decode;
pub mod expose;
pub mod forward;
pub mod json;
pub mod names;
pub mod persist;
pub mod receiver;
pub mod service;
pub mod settings;
pub mod state;
pub mod wire;

pub use service::{TelemetryService, start};
pub use settings::OtlpSettings;
pub use state::{TelemetryState, TelemetryUpdate};

/// The three OTLP signals.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Metrics,
    Logs,
    Traces,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }
}

/// Errors of the OTLP module: what a client sent wrong, or what the state file holds.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The body is not valid protobuf or OTLP/JSON for the signal.
    #[error("cannot decode OTLP {signal} body as {format}: {detail}")]
    Malformed {
        signal: &'static str,
        format: &'static str,
        detail: String,
    },
    /// The body is larger than the configured limit once decompressed.
    #[error(
        "OTLP body exceeds {limit} bytes after decompression; raise otlp.max_body_bytes or send smaller batches"
    )]
    TooLarge { limit: usize },
    /// `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding \"{0}\"; send gzip or no compression")]
    UnsupportedEncoding(String),
    /// `Content-Type` other than protobuf or JSON.
    #[error("unsupported Content-Type \"{0}\"; send application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// The gzip stream is corrupt.
    #[error("cannot gunzip OTLP body: {0}")]
    Gzip(String),
    /// The state file could not be read, parsed or written.
    #[error("telemetry state file {path}: {detail}")]
    StateFile { path: String, detail: String },
}

impl OtlpError {
    /// A short reason for `vibe_otlp_decode_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            OtlpError::Malformed { .. } => "malformed",
            OtlpError::TooLarge { .. } => "too_large",
            OtlpError::UnsupportedEncoding(_) => "unsupported_encoding",
            OtlpError::UnsupportedContentType(_) => "unsupported_content_type",
            OtlpError::Gzip(_) => "bad_gzip",
            OtlpError::StateFile { .. } => "state_file",
        }
    }
}
