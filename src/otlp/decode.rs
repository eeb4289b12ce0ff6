//! Request bodies to OTLP messages: content type and encoding, gzip with a limit that
//! applies after decompression (so a gzip bomb stops at the limit), and protobuf or
//! OTLP/JSON decoding. Pure: bytes in, messages (or converted metrics) or an [`OtlpError`]
//! out.

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::convert::{self, LabelPolicy, MetricsBatch};
use super::error::OtlpError;
use super::signal::Signal;
use super::{json, wire};

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

/// A metrics request converted under `policy`. Protobuf bodies are converted as they are
/// read ([`wire`]), without decoding them into messages first; OTLP/JSON is decoded, then
/// converted ([`convert::metrics`]). Both give the same batch for the same request.
pub fn metrics_batch(
    body: &[u8],
    format: Format,
    policy: &LabelPolicy,
) -> Result<MetricsBatch, OtlpError> {
    match format {
        Format::Protobuf => {
            wire::metrics(body, policy).map_err(|e| malformed(Signal::Metrics, format, e))
        }
        Format::Json => Ok(convert::metrics(&metrics(body, format)?, policy)),
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

    mod fuzz {
        use super::super::*;
        use crate::otlp::convert::{self, LabelPolicy};
        use proptest::prelude::*;

        /// JSON values shaped like OTLP requests, with the odd kinds a client may send:
        /// numbers as strings, enum names, wrong types, unknown keys.
        fn scalar() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<u64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                "[a-zA-Z0-9_. -]{0,12}".prop_map(serde_json::Value::from),
                prop_oneof![
                    Just("NaN"),
                    Just("-Infinity"),
                    Just("AGGREGATION_TEMPORALITY_DELTA"),
                    Just("AGGREGATION_TEMPORALITY_CUMULATIVE"),
                    Just("18446744073709551615"),
                    Just("-9223372036854775808"),
                    Just("claude_code.api_request"),
                ]
                .prop_map(serde_json::Value::from),
            ]
        }

        fn otlp_json() -> impl Strategy<Value = serde_json::Value> {
            let keys = prop_oneof![
                Just("resourceMetrics"),
                Just("resourceLogs"),
                Just("resourceSpans"),
                Just("scopeMetrics"),
                Just("scopeLogs"),
                Just("metrics"),
                Just("logRecords"),
                Just("sum"),
                Just("gauge"),
                Just("histogram"),
                Just("summary"),
                Just("exponentialHistogram"),
                Just("dataPoints"),
                Just("attributes"),
                Just("key"),
                Just("value"),
                Just("stringValue"),
                Just("intValue"),
                Just("doubleValue"),
                Just("boolValue"),
                Just("arrayValue"),
                Just("kvlistValue"),
                Just("values"),
                Just("asInt"),
                Just("asDouble"),
                Just("timeUnixNano"),
                Just("startTimeUnixNano"),
                Just("aggregationTemporality"),
                Just("isMonotonic"),
                Just("bucketCounts"),
                Just("explicitBounds"),
                Just("count"),
                Just("name"),
                Just("unit"),
                Just("body"),
                Just("severityNumber"),
                Just("resource"),
                Just("x"),
            ];
            scalar().prop_recursive(6, 64, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| {
                        serde_json::Value::Object(
                            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                        )
                    }),
                ]
            })
        }

        fn all_decoders(body: &[u8]) {
            let policy = LabelPolicy::default();
            for format in [Format::Json, Format::Protobuf] {
                if let Ok(r) = metrics(body, format) {
                    let _ = convert::metrics(&r, &policy);
                }
                if let Ok(r) = logs(body, format) {
                    let _ = convert::logs(&r);
                }
                let _ = trace_spans(body, format);
            }
            let _ = decompress(body, Some("gzip"), 1 << 16);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                all_decoders(&body);
            }

            #[test]
            fn otlp_shaped_json_never_panics(v in otlp_json()) {
                all_decoders(&serde_json::to_vec(&v).unwrap());
            }

            #[test]
            fn mutated_real_protobuf_never_panics(
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                cut in any::<prop::sample::Index>(),
            ) {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/otlp/proto-delta/run1");
                let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir).unwrap()
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "body"))
                    .map(|p| std::fs::read(p).unwrap())
                    .collect();
                bodies.sort();
                for mut body in bodies {
                    for (i, b) in &flips {
                        let i = i.index(body.len());
                        body[i] = *b;
                    }
                    body.truncate(cut.index(body.len() + 1));
                    all_decoders(&body);
                }
            }
        }
    }
}
