//! Request bodies to OTLP messages: content type and encoding, gzip with a limit that
//! applies after decompression (so a gzip bomb stops at the limit), and protobuf or
//! OTLP/JSON decoding. Pure: bytes in, messages or an [`OtlpError`] out.

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::{OtlpError, Signal, json};

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` header (parameters such as `charset` are ignored).
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, OtlpError> {
        let raw = ct.unwrap_or("");
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(OtlpError::UnsupportedContentType(
                raw.chars().take(100).collect(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Protobuf => "protobuf",
            Format::Json => "json",
        }
    }

    /// The `Content-Type` of responses in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Decompresses `body` per `Content-Encoding`, refusing more than `limit` bytes of output.
pub fn decompress(body: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, OtlpError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(OtlpError::TooLarge { limit });
            }
            Ok(body.to_vec())
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            // Read one byte past the limit: more than `limit` bytes means too large.
            let mut dec = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| OtlpError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(OtlpError::TooLarge { limit });
            }
            Ok(out)
        }
        Some(other) => Err(OtlpError::UnsupportedEncoding(
            other.chars().take(50).collect(),
        )),
    }
}

fn malformed(signal: Signal, format: Format, detail: impl ToString) -> OtlpError {
    let mut detail = detail.to_string();
    detail.truncate(300);
    OtlpError::Malformed {
        signal: signal.as_str(),
        format: format.as_str(),
        detail,
    }
}

/// A decoded metrics export request.
pub fn metrics(body: &[u8], format: Format) -> Result<ExportMetricsServiceRequest, OtlpError> {
    match format {
        Format::Protobuf => ExportMetricsServiceRequest::decode(body)
            .map_err(|e| malformed(Signal::Metrics, format, e)),
        Format::Json => {
            json::metrics_request(body).map_err(|e| malformed(Signal::Metrics, format, e))
        }
    }
}

/// A decoded logs export request.
pub fn logs(body: &[u8], format: Format) -> Result<ExportLogsServiceRequest, OtlpError> {
    match format {
        Format::Protobuf => {
            ExportLogsServiceRequest::decode(body).map_err(|e| malformed(Signal::Logs, format, e))
        }
        Format::Json => json::logs_request(body).map_err(|e| malformed(Signal::Logs, format, e)),
    }
}

/// The number of spans in a traces export request (traces are checked, not converted).
pub fn trace_spans(body: &[u8], format: Format) -> Result<usize, OtlpError> {
    match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(body)
            .map(|r| {
                r.resource_spans
                    .iter()
                    .flat_map(|rs| rs.scope_spans.iter())
                    .map(|ss| ss.spans.len())
                    .sum()
            })
            .map_err(|e| malformed(Signal::Traces, format, e)),
        Format::Json => {
            json::traces_span_count(body).map_err(|e| malformed(Signal::Traces, format, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        let err = decompress(&bomb, Some("gzip"), 1024 * 1024).unwrap_err();
        assert!(
            matches!(err, OtlpError::TooLarge { limit: 1048576 }),
            "{err}"
        );
        assert_eq!(decompress(&gzip(b"abc"), Some("gzip"), 3).unwrap(), b"abc");
        assert!(matches!(
            decompress(b"abcd", None, 3),
            Err(OtlpError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(b"not gzip", Some("gzip"), 100),
            Err(OtlpError::Gzip(_))
        ));
        assert!(matches!(
            decompress(b"x", Some("br"), 100),
            Err(OtlpError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert!(Format::from_content_type(Some("text/plain")).is_err());
        assert!(Format::from_content_type(None).is_err());
    }
}
