//! OTLP/JSON: a serde mirror of the metrics and logs export requests, converted into the
//! same protobuf message types ([`opentelemetry_proto`]) the binary decoder yields, so one
//! conversion path serves both encodings.
//!
//! The mirror follows the OTLP/JSON rules the collector accepts: camelCase keys, 64-bit
//! integers as strings or numbers, enums as names or numbers, doubles also as "NaN",
//! "Infinity" and "-Infinity". Unknown keys are ignored (the spec asks receivers to). An
//! enum name that is not known becomes the "unspecified" value, which conversion counts
//! as a dropped point with a reason (never silently). The crate's own `with-serde`
//! derives are not used: they accept neither enum names nor the string/number mix
//! everywhere.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::metrics::v1 as metrics;
use opentelemetry_proto::tonic::resource::v1 as resource;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};

/// Parses an OTLP/JSON metrics export request.
pub fn metrics_request(body: &[u8]) -> Result<ExportMetricsServiceRequest, serde_json::Error> {
    let r: MetricsRequest = serde_json::from_slice(body)?;
    Ok(r.into())
}

/// Parses an OTLP/JSON logs export request.
pub fn logs_request(body: &[u8]) -> Result<ExportLogsServiceRequest, serde_json::Error> {
    let r: LogsRequest = serde_json::from_slice(body)?;
    Ok(r.into())
}

/// Counts the spans of an OTLP/JSON traces export request (traces are checked and
/// forwarded, not converted).
pub fn traces_span_count(body: &[u8]) -> Result<usize, serde_json::Error> {
    let r: TracesRequest = serde_json::from_slice(body)?;
    Ok(r.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum())
}

// ----------------------------------------------------------------------------------------
// Scalars: numbers or strings.
// ----------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr<'a> {
    U(u64),
    I(i64),
    F(f64),
    #[serde(borrow)]
    S(std::borrow::Cow<'a, str>),
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(0),
        Some(NumOrStr::U(v)) => Ok(v),
        Some(NumOrStr::I(v)) => u64::try_from(v).map_err(de::Error::custom),
        Some(NumOrStr::F(v)) if v >= 0.0 && v.fract() == 0.0 && v < 1.9e19 => Ok(v as u64),
        Some(NumOrStr::F(v)) => Err(de::Error::custom(format!(
            "{v} is not an unsigned 64-bit integer"
        ))),
        Some(NumOrStr::S(s)) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("\"{s}\" is not an unsigned 64-bit integer"))),
    }
}

fn parse_i64<E: de::Error>(v: NumOrStr) -> Result<i64, E> {
    match v {
        NumOrStr::U(v) => i64::try_from(v).map_err(E::custom),
        NumOrStr::I(v) => Ok(v),
        NumOrStr::F(v) if v.fract() == 0.0 && v.abs() < 9.2e18 => Ok(v as i64),
        NumOrStr::F(v) => Err(E::custom(format!("{v} is not a 64-bit integer"))),
        NumOrStr::S(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("\"{s}\" is not a 64-bit integer"))),
    }
}

fn parse_f64<E: de::Error>(v: NumOrStr) -> Result<f64, E> {
    match v {
        NumOrStr::U(v) => Ok(v as f64),
        NumOrStr::I(v) => Ok(v as f64),
        NumOrStr::F(v) => Ok(v),
        NumOrStr::S(s) => match s.as_ref() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .trim()
                .parse()
                .map_err(|_| E::custom(format!("\"{other}\" is not a number"))),
        },
    }
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(0.0),
        Some(v) => parse_f64(v),
    }
}

fn de_opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(v) => parse_f64(v).map(Some),
    }
}

fn de_vec_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    struct U(#[serde(deserialize_with = "de_u64")] u64);
    Ok(Option::<Vec<U>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.0)
        .collect())
}

fn de_vec_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    struct F(#[serde(deserialize_with = "de_f64")] f64);
    Ok(Option::<Vec<F>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.0)
        .collect())
}

/// An enum given as its number or its proto name; unknown names map to 0 (unspecified).
fn de_enum<'de, D: Deserializer<'de>>(
    d: D,
    from_name: fn(&str) -> Option<i32>,
) -> Result<i32, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(0),
        Some(NumOrStr::U(v)) => i32::try_from(v).map_err(de::Error::custom),
        Some(NumOrStr::I(v)) => i32::try_from(v).map_err(de::Error::custom),
        Some(NumOrStr::F(v)) => Err(de::Error::custom(format!("{v} is not an enum value"))),
        Some(NumOrStr::S(s)) => Ok(s
            .trim()
            .parse::<i32>()
            .ok()
            .or_else(|| from_name(&s))
            .unwrap_or(0)),
    }
}

fn de_temporality<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_enum(d, |s| {
        metrics::AggregationTemporality::from_str_name(s).map(|t| t as i32)
    })
}

fn de_severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_enum(d, |s| {
        logs::SeverityNumber::from_str_name(s).map(|t| t as i32)
    })
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn de_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

// ----------------------------------------------------------------------------------------
// Common.
// ----------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AnyValue {
    #[serde(deserialize_with = "de_opt_string")]
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(deserialize_with = "de_opt_i64")]
    int_value: Option<i64>,
    #[serde(deserialize_with = "de_opt_f64")]
    double_value: Option<f64>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<KvList>,
    bytes_value: Option<String>,
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(v) => parse_i64(v).map(Some),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ArrayValue {
    #[serde(deserialize_with = "de_vec")]
    values: Vec<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KvList {
    #[serde(deserialize_with = "de_vec")]
    values: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyValue {
    #[serde(deserialize_with = "de_string")]
    key: String,
    value: Option<AnyValue>,
}

impl From<AnyValue> for common::AnyValue {
    fn from(v: AnyValue) -> Self {
        use common::any_value::Value;
        let value = if let Some(s) = v.string_value {
            Some(Value::StringValue(s))
        } else if let Some(b) = v.bool_value {
            Some(Value::BoolValue(b))
        } else if let Some(i) = v.int_value {
            Some(Value::IntValue(i))
        } else if let Some(f) = v.double_value {
            Some(Value::DoubleValue(f))
        } else if let Some(a) = v.array_value {
            Some(Value::ArrayValue(common::ArrayValue {
                values: a.values.into_iter().map(Into::into).collect(),
            }))
        } else if let Some(kv) = v.kvlist_value {
            Some(Value::KvlistValue(common::KeyValueList {
                values: attrs(kv.values),
            }))
        } else {
            v.bytes_value.map(|b| Value::BytesValue(b.into_bytes()))
        };
        common::AnyValue { value }
    }
}

fn attrs(v: Vec<KeyValue>) -> Vec<common::KeyValue> {
    v.into_iter()
        .map(|kv| common::KeyValue {
            key: kv.key,
            value: kv.value.map(Into::into),
            ..Default::default()
        })
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Resource {
    #[serde(deserialize_with = "de_vec")]
    attributes: Vec<KeyValue>,
}

impl From<Resource> for resource::Resource {
    fn from(r: Resource) -> Self {
        resource::Resource {
            attributes: attrs(r.attributes),
            ..Default::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Scope {
    #[serde(deserialize_with = "de_string")]
    name: String,
    #[serde(deserialize_with = "de_string")]
    version: String,
    #[serde(deserialize_with = "de_vec")]
    attributes: Vec<KeyValue>,
}

impl From<Scope> for common::InstrumentationScope {
    fn from(s: Scope) -> Self {
        common::InstrumentationScope {
            name: s.name,
            version: s.version,
            attributes: attrs(s.attributes),
            dropped_attributes_count: 0,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Metrics.
// ----------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MetricsRequest {
    #[serde(deserialize_with = "de_vec")]
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceMetrics {
    resource: Option<Resource>,
    #[serde(deserialize_with = "de_vec")]
    scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeMetrics {
    scope: Option<Scope>,
    #[serde(deserialize_with = "de_vec")]
    metrics: Vec<Metric>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Metric {
    #[serde(deserialize_with = "de_string")]
    name: String,
    #[serde(deserialize_with = "de_string")]
    description: String,
    #[serde(deserialize_with = "de_string")]
    unit: String,
    sum: Option<Sum>,
    gauge: Option<Gauge>,
    histogram: Option<Histogram>,
    exponential_histogram: Option<OpaquePoints>,
    summary: Option<OpaquePoints>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Sum {
    #[serde(deserialize_with = "de_vec")]
    data_points: Vec<NumberPoint>,
    #[serde(deserialize_with = "de_temporality")]
    aggregation_temporality: i32,
    #[serde(deserialize_with = "de_bool")]
    is_monotonic: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Gauge {
    #[serde(deserialize_with = "de_vec")]
    data_points: Vec<NumberPoint>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Histogram {
    #[serde(deserialize_with = "de_vec")]
    data_points: Vec<HistogramPoint>,
    #[serde(deserialize_with = "de_temporality")]
    aggregation_temporality: i32,
}

/// Exponential histograms and summaries: only their point count matters (they are
/// counted as unsupported, not converted).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct OpaquePoints {
    #[serde(deserialize_with = "de_vec")]
    data_points: Vec<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NumberPoint {
    #[serde(deserialize_with = "de_vec")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "de_u64")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "de_u64")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "de_opt_f64")]
    as_double: Option<f64>,
    #[serde(deserialize_with = "de_opt_i64")]
    as_int: Option<i64>,
    #[serde(deserialize_with = "de_u64")]
    flags: u64,
}

impl From<NumberPoint> for metrics::NumberDataPoint {
    fn from(p: NumberPoint) -> Self {
        use metrics::number_data_point::Value;
        metrics::NumberDataPoint {
            attributes: attrs(p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            value: p
                .as_double
                .map(Value::AsDouble)
                .or(p.as_int.map(Value::AsInt)),
            exemplars: Vec::new(),
            flags: p.flags as u32,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HistogramPoint {
    #[serde(deserialize_with = "de_vec")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "de_u64")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "de_u64")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "de_u64")]
    count: u64,
    #[serde(deserialize_with = "de_opt_f64")]
    sum: Option<f64>,
    #[serde(deserialize_with = "de_vec_u64")]
    bucket_counts: Vec<u64>,
    #[serde(deserialize_with = "de_vec_f64")]
    explicit_bounds: Vec<f64>,
    #[serde(deserialize_with = "de_opt_f64")]
    min: Option<f64>,
    #[serde(deserialize_with = "de_opt_f64")]
    max: Option<f64>,
    #[serde(deserialize_with = "de_u64")]
    flags: u64,
}

impl From<HistogramPoint> for metrics::HistogramDataPoint {
    fn from(p: HistogramPoint) -> Self {
        metrics::HistogramDataPoint {
            attributes: attrs(p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            count: p.count,
            sum: p.sum,
            bucket_counts: p.bucket_counts,
            explicit_bounds: p.explicit_bounds,
            exemplars: Vec::new(),
            flags: p.flags as u32,
            min: p.min,
            max: p.max,
        }
    }
}

impl From<Metric> for metrics::Metric {
    fn from(m: Metric) -> Self {
        use metrics::metric::Data;
        let data = if let Some(s) = m.sum {
            Some(Data::Sum(metrics::Sum {
                data_points: s.data_points.into_iter().map(Into::into).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }))
        } else if let Some(g) = m.gauge {
            Some(Data::Gauge(metrics::Gauge {
                data_points: g.data_points.into_iter().map(Into::into).collect(),
            }))
        } else if let Some(h) = m.histogram {
            Some(Data::Histogram(metrics::Histogram {
                data_points: h.data_points.into_iter().map(Into::into).collect(),
                aggregation_temporality: h.aggregation_temporality,
            }))
        } else if let Some(e) = m.exponential_histogram {
            Some(Data::ExponentialHistogram(metrics::ExponentialHistogram {
                data_points: vec![Default::default(); e.data_points.len()],
                aggregation_temporality: 0,
            }))
        } else {
            m.summary.map(|s| {
                Data::Summary(metrics::Summary {
                    data_points: vec![Default::default(); s.data_points.len()],
                })
            })
        };
        metrics::Metric {
            name: m.name,
            description: m.description,
            unit: m.unit,
            metadata: Vec::new(),
            data,
        }
    }
}

impl From<MetricsRequest> for ExportMetricsServiceRequest {
    fn from(r: MetricsRequest) -> Self {
        ExportMetricsServiceRequest {
            resource_metrics: r
                .resource_metrics
                .into_iter()
                .map(|rm| metrics::ResourceMetrics {
                    resource: rm.resource.map(Into::into),
                    scope_metrics: rm
                        .scope_metrics
                        .into_iter()
                        .map(|sm| metrics::ScopeMetrics {
                            scope: sm.scope.map(Into::into),
                            metrics: sm.metrics.into_iter().map(Into::into).collect(),
                            schema_url: String::new(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Logs.
// ----------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LogsRequest {
    #[serde(deserialize_with = "de_vec")]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceLogs {
    resource: Option<Resource>,
    #[serde(deserialize_with = "de_vec")]
    scope_logs: Vec<ScopeLogs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeLogs {
    scope: Option<Scope>,
    #[serde(deserialize_with = "de_vec")]
    log_records: Vec<LogRecord>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LogRecord {
    #[serde(deserialize_with = "de_u64")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "de_u64")]
    observed_time_unix_nano: u64,
    #[serde(deserialize_with = "de_severity")]
    severity_number: i32,
    #[serde(deserialize_with = "de_string")]
    severity_text: String,
    body: Option<AnyValue>,
    #[serde(deserialize_with = "de_vec")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "de_string")]
    event_name: String,
    #[serde(deserialize_with = "de_u64")]
    flags: u64,
}

impl From<LogsRequest> for ExportLogsServiceRequest {
    fn from(r: LogsRequest) -> Self {
        ExportLogsServiceRequest {
            resource_logs: r
                .resource_logs
                .into_iter()
                .map(|rl| logs::ResourceLogs {
                    resource: rl.resource.map(Into::into),
                    scope_logs: rl
                        .scope_logs
                        .into_iter()
                        .map(|sl| logs::ScopeLogs {
                            scope: sl.scope.map(Into::into),
                            log_records: sl
                                .log_records
                                .into_iter()
                                .map(|l| logs::LogRecord {
                                    time_unix_nano: l.time_unix_nano,
                                    observed_time_unix_nano: l.observed_time_unix_nano,
                                    severity_number: l.severity_number,
                                    severity_text: l.severity_text,
                                    body: l.body.map(Into::into),
                                    attributes: attrs(l.attributes),
                                    dropped_attributes_count: 0,
                                    flags: l.flags as u32,
                                    trace_id: Vec::new(),
                                    span_id: Vec::new(),
                                    event_name: l.event_name,
                                })
                                .collect(),
                            schema_url: String::new(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Traces: checked for shape only.
// ----------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TracesRequest {
    #[serde(deserialize_with = "de_vec")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceSpans {
    #[serde(deserialize_with = "de_vec")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeSpans {
    #[serde(deserialize_with = "de_vec")]
    spans: Vec<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::metric::Data;
    use metrics::number_data_point::Value;

    #[test]
    fn int64_as_string_or_number_and_enum_as_name_or_number() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"a","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
             "dataPoints":[{"startTimeUnixNano":"5","timeUnixNano":7,"asInt":"42"}]}},
            {"name":"b","sum":{"aggregationTemporality":1,"dataPoints":[{"asDouble":"NaN","unknownKey":1}]}},
            {"name":"c","sum":{"aggregationTemporality":"WHAT","dataPoints":[{"asDouble":1.5}]}}
        ]}]}]}"#;
        let r = metrics_request(body).unwrap();
        let ms = &r.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Sum(a)) = &ms[0].data else {
            panic!()
        };
        assert_eq!(a.aggregation_temporality, 2);
        assert!(a.is_monotonic);
        assert_eq!(a.data_points[0].start_time_unix_nano, 5);
        assert_eq!(a.data_points[0].time_unix_nano, 7);
        assert_eq!(a.data_points[0].value, Some(Value::AsInt(42)));
        let Some(Data::Sum(b)) = &ms[1].data else {
            panic!()
        };
        assert_eq!(b.aggregation_temporality, 1);
        assert!(matches!(b.data_points[0].value, Some(Value::AsDouble(v)) if v.is_nan()));
        let Some(Data::Sum(c)) = &ms[2].data else {
            panic!()
        };
        assert_eq!(
            c.aggregation_temporality, 0,
            "unknown name is unspecified, counted later"
        );
    }

    #[test]
    fn log_attributes_keep_their_kinds() {
        let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1",
            "severityNumber":"SEVERITY_NUMBER_INFO",
            "body":{"stringValue":"claude_code.tool_result"},
            "attributes":[{"key":"success","value":{"stringValue":"true"}},
                          {"key":"n","value":{"intValue":"81"}},
                          {"key":"d","value":{"doubleValue":0.5}},
                          {"key":"e","value":{}}]}]}]}]}"#;
        let r = logs_request(body).unwrap();
        let rec = &r.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.severity_number, 9);
        use common::any_value::Value as V;
        let v: Vec<_> = rec
            .attributes
            .iter()
            .map(|kv| kv.value.clone().and_then(|v| v.value))
            .collect();
        assert_eq!(v[0], Some(V::StringValue("true".into())));
        assert_eq!(v[1], Some(V::IntValue(81)));
        assert_eq!(v[2], Some(V::DoubleValue(0.5)));
        assert_eq!(v[3], None);
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        assert!(metrics_request(b"{").is_err());
        assert!(metrics_request(br#"{"resourceMetrics":5}"#).is_err());
        assert!(metrics_request(br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a","sum":{"dataPoints":[{"asInt":"x"}]}}]}]}]}"#).is_err());
        assert!(metrics_request(br#"{}"#).is_ok());
        assert!(logs_request(br#"{"resourceLogs":null}"#).is_ok());
    }
}
