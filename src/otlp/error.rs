//! Errors of the OTLP module: what a client sent wrong, or what the state file holds.

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
