//! Pure conversion of decoded OTLP requests into label-filtered batches for the model.
//!
//! This is where the label policy is enforced: a point keeps only allow-listed attributes
//! as labels; everything else (session and user ids, e-mails, prompt ids, resource
//! attributes) is folded into a 64-bit stream hash, so cumulative series can still be
//! tracked per session without the values ever leaving this function. Events (log records
//! named `claude_code.*`) keep only the fields their metrics need.
//!
//! What cannot be converted is counted by reason, never silently dropped; the receiver
//! reports those counts as OTLP partial success.

use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::names::{NameKind, label_name, metric_name};

/// Longest label value kept; longer values are cut (a label is not a place for text).
pub const MAX_LABEL_VALUE_CHARS: usize = 256;

/// Which attributes become labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelPolicy {
    /// Attribute keys, sorted.
    allow: Vec<String>,
}

impl LabelPolicy {
    pub fn new(allow: &[String]) -> Self {
        let mut allow = allow.to_vec();
        allow.sort();
        allow.dedup();
        Self { allow }
    }

    fn allows(&self, key: &str) -> bool {
        self.allow.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
    }
}

impl Default for LabelPolicy {
    fn default() -> Self {
        let keys: Vec<String> = super::settings::DEFAULT_ALLOW_LABELS
            .iter()
            .map(|s| s.to_string())
            .collect();
        Self::new(&keys)
    }
}

/// Label pairs (name, value), sorted by name.
pub type Labels = Vec<(String, String)>;

/// Delta or cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Temporality {
    Delta,
    Cumulative,
}

/// A point's value, by the kind of metric it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// A sum; monotonic sums become counters, the others gauges.
    Sum {
        temporality: Temporality,
        monotonic: bool,
        value: f64,
    },
    Gauge(f64),
    /// Explicit-bucket histogram; `buckets` has one more entry than `bounds`.
    Histogram {
        temporality: Temporality,
        count: u64,
        sum: f64,
        bounds: Vec<f64>,
        buckets: Vec<u64>,
    },
}

/// One converted data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Prometheus family name.
    pub family: Arc<str>,
    pub labels: Labels,
    /// Hash of everything that identifies the OTLP stream (all attributes, resource,
    /// scope, metric name): cumulative values are tracked per stream.
    pub stream: u64,
    pub start_unix_nano: u64,
    pub time_unix_nano: u64,
    pub value: PointValue,
}

/// Why a point or record was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Exponential histogram or summary.
    UnsupportedType,
    /// A number point without a value, or a metric without data.
    NoValue,
    /// Sum or histogram whose aggregation temporality is unspecified or unknown.
    UnspecifiedTemporality,
    /// A metric name that is empty or would shadow the agent's own families.
    BadName,
    /// A negative delta on a monotonic sum.
    NegativeDelta,
    /// Histogram whose bucket counts do not match its bounds.
    BadBuckets,
    /// Delivered before: same stream and interval (or same event).
    Duplicate,
    /// Older than what the stream already reported.
    OutOfOrder,
    /// The family already has as many series as allowed.
    SeriesCap,
    /// The same family name arrived with another metric type.
    TypeConflict,
    /// The receiver could not queue the batch for the model.
    QueueFull,
    /// A log record that is not a Claude Code event this agent counts.
    NotAnEvent,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnsupportedType => "unsupported_type",
            DropReason::NoValue => "no_value",
            DropReason::UnspecifiedTemporality => "unspecified_temporality",
            DropReason::BadName => "bad_name",
            DropReason::NegativeDelta => "negative_delta",
            DropReason::BadBuckets => "bad_buckets",
            DropReason::Duplicate => "duplicate",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::SeriesCap => "series_cap",
            DropReason::TypeConflict => "type_conflict",
            DropReason::QueueFull => "queue_full",
            DropReason::NotAnEvent => "not_an_event",
        }
    }

    /// Rejections the client should hear about in partial success (its data was wrong);
    /// the others are the agent's own decisions made later.
    pub fn is_rejection(self) -> bool {
        matches!(
            self,
            DropReason::UnsupportedType
                | DropReason::NoValue
                | DropReason::UnspecifiedTemporality
                | DropReason::BadName
                | DropReason::NegativeDelta
                | DropReason::BadBuckets
        )
    }
}

/// Counts by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drops(pub BTreeMap<DropReason, u64>);

impl Drops {
    pub fn add(&mut self, reason: DropReason, n: u64) {
        if n > 0 {
            *self.0.entry(reason).or_default() += n;
        }
    }

    /// Points the client should be told were rejected, and why.
    pub fn rejections(&self) -> (u64, String) {
        let mut n = 0;
        let mut why = Vec::new();
        for (r, c) in &self.0 {
            if r.is_rejection() {
                n += c;
                why.push(format!("{c} {}", r.as_str()));
            }
        }
        (n, why.join(", "))
    }
}

/// A converted metrics request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsBatch {
    pub points: Vec<Point>,
    /// First description seen per family, for HELP.
    pub help: Vec<(Arc<str>, String)>,
    /// Hashes of the session ids seen (for `vibe_claude_active_sessions`).
    pub sessions: Vec<u64>,
    pub drops: Drops,
    /// Points in the request, converted or not.
    pub total_points: u64,
}

/// A Claude Code event, reduced to what its metrics need.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    UserPrompt,
    ApiRequest {
        model: String,
        duration_seconds: Option<f64>,
        cost_usd: Option<f64>,
    },
    ApiError {
        model: String,
        status_code: String,
    },
    ToolResult {
        tool_name: String,
        success: String,
        duration_seconds: Option<f64>,
    },
    ToolDecision {
        tool_name: String,
        decision: String,
        source: String,
    },
    /// A `claude_code.*` event with no metric of its own (assistant_response, ...).
    Other,
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Hash of the whole record: a re-delivered record has the same one.
    pub dedupe: u64,
    pub time_unix_nano: u64,
}

/// A converted logs request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsBatch {
    pub events: Vec<Event>,
    pub sessions: Vec<u64>,
    pub drops: Drops,
    pub total_records: u64,
}

/// Reserved prefixes: an OTLP client must not be able to overwrite the agent's families.
const RESERVED_PREFIXES: &[&str] = &["vibe_", "process_"];

/// A Prometheus label value for an attribute, if it has a scalar value.
pub fn value_text(v: &AnyValue) -> Option<String> {
    let mut s = match v.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    };
    if s.len() > MAX_LABEL_VALUE_CHARS {
        let cut = (0..=MAX_LABEL_VALUE_CHARS)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(cut);
    }
    Some(s)
}

/// A number from an attribute of any kind: ints, doubles, and strings such as "81".
pub fn value_number(v: &AnyValue) -> Option<f64> {
    match v.value.as_ref()? {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn feed_value(buf: &mut Vec<u8>, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        None => buf.push(0),
        Some(Value::StringValue(s)) => {
            buf.push(1);
            buf.extend_from_slice(s.as_bytes());
        }
        Some(Value::BoolValue(b)) => buf.extend_from_slice(&[2, *b as u8]),
        Some(Value::IntValue(i)) => {
            buf.push(3);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Some(Value::DoubleValue(d)) => {
            buf.push(4);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Some(Value::BytesValue(b)) => {
            buf.push(5);
            buf.extend_from_slice(b);
        }
        Some(Value::ArrayValue(a)) => {
            buf.push(6);
            for v in &a.values {
                feed_value(buf, Some(v));
                buf.push(0xfe);
            }
        }
        Some(Value::KvlistValue(kv)) => {
            buf.push(7);
            for kv in &kv.values {
                buf.extend_from_slice(kv.key.as_bytes());
                buf.push(0xff);
                feed_value(buf, kv.value.as_ref());
                buf.push(0xfe);
            }
        }
        Some(_) => buf.push(8),
    }
}

/// An order-insensitive hash of a set of attributes: attribute order may differ between
/// exporters, the set is what identifies a stream.
fn hash_attrs(attrs: &[KeyValue], seed: u64, buf: &mut Vec<u8>) -> u64 {
    let mut h = 0u64;
    for kv in attrs {
        buf.clear();
        buf.extend_from_slice(kv.key.as_bytes());
        buf.push(0xff);
        feed_value(buf, kv.value.as_ref());
        h = h.wrapping_add(xxh3_64_with_seed(buf, seed));
    }
    h
}

fn session_hash(attrs: &[KeyValue]) -> Option<u64> {
    attrs
        .iter()
        .find(|kv| kv.key == "session.id")
        .and_then(|kv| kv.value.as_ref())
        .and_then(value_text)
        .map(|s| xxh3_64_with_seed(s.as_bytes(), 7))
}

fn labels(policy: &LabelPolicy, resource: &[KeyValue], attrs: &[KeyValue]) -> Labels {
    let mut out: Labels = Vec::new();
    // Point attributes win over resource attributes of the same key.
    for kv in attrs.iter().chain(resource) {
        if policy.allows(&kv.key) {
            let name = label_name(&kv.key);
            if out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if let Some(v) = kv.value.as_ref().and_then(value_text) {
                out.push((name, v));
            }
        }
    }
    out.sort();
    out
}

fn temporality(t: i32) -> Option<Temporality> {
    match t {
        1 => Some(Temporality::Delta),
        2 => Some(Temporality::Cumulative),
        _ => None,
    }
}

/// Converts a metrics request under `policy`.
pub fn metrics(req: &ExportMetricsServiceRequest, policy: &LabelPolicy) -> MetricsBatch {
    let mut out = MetricsBatch::default();
    let mut buf = Vec::with_capacity(256);
    let mut sessions: Vec<u64> = Vec::new();
    for rm in &req.resource_metrics {
        let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource_hash = hash_attrs(resource, 1, &mut buf);
        for sm in &rm.scope_metrics {
            let scope_hash = sm
                .scope
                .as_ref()
                .map_or(0, |s| xxh3_64_with_seed(s.name.as_bytes(), 3));
            for m in &sm.metrics {
                let (kind, n_points) = match &m.data {
                    None => {
                        out.drops.add(DropReason::NoValue, 1);
                        out.total_points += 1;
                        continue;
                    }
                    Some(Data::Sum(s)) => (
                        if s.is_monotonic {
                            NameKind::Counter
                        } else {
                            NameKind::Gauge
                        },
                        s.data_points.len(),
                    ),
                    Some(Data::Gauge(g)) => (NameKind::Gauge, g.data_points.len()),
                    Some(Data::Histogram(h)) => (NameKind::Histogram, h.data_points.len()),
                    Some(Data::ExponentialHistogram(h)) => {
                        out.total_points += h.data_points.len() as u64;
                        out.drops
                            .add(DropReason::UnsupportedType, h.data_points.len() as u64);
                        continue;
                    }
                    Some(Data::Summary(s)) => {
                        out.total_points += s.data_points.len() as u64;
                        out.drops
                            .add(DropReason::UnsupportedType, s.data_points.len() as u64);
                        continue;
                    }
                };
                out.total_points += n_points as u64;
                let name = metric_name(&m.name, &m.unit, kind);
                if name.is_empty() || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    out.drops.add(DropReason::BadName, n_points as u64);
                    continue;
                }
                let family: Arc<str> = Arc::from(name);
                if !m.description.is_empty() && !out.help.iter().any(|(f, _)| *f == family) {
                    out.help.push((family.clone(), m.description.clone()));
                }
                let metric_hash = xxh3_64(family.as_bytes())
                    .wrapping_add(resource_hash)
                    .wrapping_add(scope_hash);
                let mut point = |attrs: &[KeyValue], start, time, value| {
                    if let Some(s) = session_hash(attrs) {
                        if !sessions.contains(&s) {
                            sessions.push(s);
                        }
                    }
                    out.points.push(Point {
                        family: family.clone(),
                        labels: labels(policy, resource, attrs),
                        stream: metric_hash.wrapping_add(hash_attrs(attrs, 2, &mut buf)),
                        start_unix_nano: start,
                        time_unix_nano: time,
                        value,
                    });
                };
                match &m.data {
                    Some(Data::Sum(s)) => {
                        let Some(t) = temporality(s.aggregation_temporality) else {
                            out.drops
                                .add(DropReason::UnspecifiedTemporality, n_points as u64);
                            continue;
                        };
                        for p in &s.data_points {
                            let value = match p.value {
                                Some(number_data_point::Value::AsDouble(v)) => v,
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                None => f64::NAN,
                            };
                            if !value.is_finite() {
                                out.drops.add(DropReason::NoValue, 1);
                                continue;
                            }
                            if s.is_monotonic && t == Temporality::Delta && value < 0.0 {
                                out.drops.add(DropReason::NegativeDelta, 1);
                                continue;
                            }
                            point(
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                PointValue::Sum {
                                    temporality: t,
                                    monotonic: s.is_monotonic,
                                    value,
                                },
                            );
                        }
                    }
                    Some(Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let value = match p.value {
                                Some(number_data_point::Value::AsDouble(v)) => v,
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                None => {
                                    out.drops.add(DropReason::NoValue, 1);
                                    continue;
                                }
                            };
                            point(
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                PointValue::Gauge(value),
                            );
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        let Some(t) = temporality(h.aggregation_temporality) else {
                            out.drops
                                .add(DropReason::UnspecifiedTemporality, n_points as u64);
                            continue;
                        };
                        for p in &h.data_points {
                            let mut buckets = p.bucket_counts.clone();
                            let bounds = p.explicit_bounds.clone();
                            if buckets.is_empty() && bounds.is_empty() {
                                buckets = vec![p.count];
                            }
                            let sorted = bounds.windows(2).all(|w| w[0] < w[1]);
                            if buckets.len() != bounds.len() + 1
                                || !sorted
                                || bounds.iter().any(|b| !b.is_finite())
                            {
                                out.drops.add(DropReason::BadBuckets, 1);
                                continue;
                            }
                            point(
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                PointValue::Histogram {
                                    temporality: t,
                                    count: p.count,
                                    sum: p.sum.filter(|s| s.is_finite()).unwrap_or(0.0),
                                    bounds,
                                    buckets,
                                },
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out.sessions = sessions;
    out
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn text(attrs: &[KeyValue], key: &str) -> String {
    attr(attrs, key).and_then(value_text).unwrap_or_default()
}

/// The event name of a record: `event.name`, else the body `claude_code.<name>`, else the
/// OTLP `event_name` field.
fn event_name<'a>(
    attrs: &'a [KeyValue],
    body: Option<&'a AnyValue>,
    event_name: &'a str,
) -> Option<&'a str> {
    if let Some(Value::StringValue(s)) = attr(attrs, "event.name").and_then(|v| v.value.as_ref()) {
        return Some(s.strip_prefix("claude_code.").unwrap_or(s));
    }
    if let Some(Value::StringValue(s)) = body.and_then(|b| b.value.as_ref()) {
        if let Some(n) = s.strip_prefix("claude_code.") {
            return Some(n);
        }
    }
    event_name.strip_prefix("claude_code.")
}

/// Converts a logs request: Claude Code events into [`Event`]s.
pub fn logs(req: &ExportLogsServiceRequest) -> LogsBatch {
    let mut out = LogsBatch::default();
    let mut buf = Vec::with_capacity(256);
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                out.total_records += 1;
                let attrs = &r.attributes;
                let Some(name) = event_name(attrs, r.body.as_ref(), &r.event_name) else {
                    out.drops.add(DropReason::NotAnEvent, 1);
                    continue;
                };
                if let Some(s) = session_hash(attrs) {
                    if !out.sessions.contains(&s) {
                        out.sessions.push(s);
                    }
                }
                let seconds = |key| {
                    attr(attrs, key)
                        .and_then(value_number)
                        .map(|ms| ms / 1000.0)
                };
                let kind = match name {
                    "user_prompt" => EventKind::UserPrompt,
                    "api_request" => EventKind::ApiRequest {
                        model: text(attrs, "model"),
                        duration_seconds: seconds("duration_ms"),
                        cost_usd: attr(attrs, "cost_usd").and_then(value_number),
                    },
                    "api_error" => EventKind::ApiError {
                        model: text(attrs, "model"),
                        status_code: text(attrs, "status_code"),
                    },
                    "tool_result" => EventKind::ToolResult {
                        tool_name: text(attrs, "tool_name"),
                        success: text(attrs, "success"),
                        duration_seconds: seconds("duration_ms"),
                    },
                    "tool_decision" => EventKind::ToolDecision {
                        tool_name: text(attrs, "tool_name"),
                        decision: text(attrs, "decision"),
                        source: text(attrs, "source"),
                    },
                    _ => EventKind::Other,
                };
                let time = if r.time_unix_nano != 0 {
                    r.time_unix_nano
                } else {
                    r.observed_time_unix_nano
                };
                buf.clear();
                buf.extend_from_slice(&time.to_le_bytes());
                feed_value(&mut buf, r.body.as_ref());
                let dedupe = xxh3_64(&buf).wrapping_add(hash_attrs(attrs, 5, &mut buf));
                out.events.push(Event {
                    kind,
                    dedupe,
                    time_unix_nano: time,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_allow_listed_attributes_become_labels_and_order_does_not_change_the_stream() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"job","value":{"stringValue":"claude"}}]},
          "scopeMetrics":[{"metrics":[{"name":"claude_code.cost.usage","unit":"USD",
          "sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[
            {"attributes":[{"key":"session.id","value":{"stringValue":"s1"}},{"key":"model","value":{"stringValue":"m"}},
                           {"key":"user.email","value":{"stringValue":"a@b.c"}}],"timeUnixNano":"2","asDouble":0.5},
            {"attributes":[{"key":"user.email","value":{"stringValue":"a@b.c"}},{"key":"model","value":{"stringValue":"m"}},
                           {"key":"session.id","value":{"stringValue":"s1"}}],"timeUnixNano":"3","asDouble":0.25},
            {"attributes":[{"key":"session.id","value":{"stringValue":"s2"}},{"key":"model","value":{"stringValue":"m"}}],"asDouble":1}
          ]}}]}]}]}"#;
        let req = super::super::json::metrics_request(body).unwrap();
        let b = metrics(&req, &LabelPolicy::default());
        assert_eq!(b.points.len(), 3);
        assert_eq!(&*b.points[0].family, "claude_code_cost_usage_USD_total");
        assert_eq!(
            b.points[0].labels,
            vec![("model".to_string(), "m".to_string())]
        );
        assert_eq!(b.points[0].stream, b.points[1].stream);
        assert_ne!(b.points[0].stream, b.points[2].stream);
        assert_eq!(b.sessions.len(), 2);
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("a@b.c") && !dbg.contains("s1"), "{dbg}");
    }

    #[test]
    fn unconvertible_points_are_counted_by_reason() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"a","sum":{"aggregationTemporality":0,"isMonotonic":true,"dataPoints":[{"asDouble":1}]}},
            {"name":"b","summary":{"dataPoints":[{},{}]}},
            {"name":"vibe_service_up","gauge":{"dataPoints":[{"asDouble":1}]}},
            {"name":"c","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"asDouble":-1},{}]}},
            {"name":"d"}
        ]}]}]}"#;
        let req = super::super::json::metrics_request(body).unwrap();
        let b = metrics(&req, &LabelPolicy::default());
        assert!(b.points.is_empty());
        assert_eq!(b.total_points, 7);
        let (n, why) = b.drops.rejections();
        assert_eq!(n, 7, "{why}");
        assert!(why.contains("2 unsupported_type"), "{why}");
    }

    #[test]
    fn events_keep_only_metric_fields_and_parse_string_numbers() {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let rec = LogRecord {
            time_unix_nano: 5,
            body: Some(AnyValue {
                value: Some(Value::StringValue("claude_code.tool_result".into())),
            }),
            attributes: vec![
                kv("tool_name", "Bash"),
                kv("success", "true"),
                kv("duration_ms", "81"),
                kv("tool_parameters", "{\"command\":\"echo SECRET\"}"),
            ],
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![rec.clone(), rec],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let b = logs(&req);
        assert_eq!(b.events.len(), 2);
        assert_eq!(
            b.events[0].kind,
            EventKind::ToolResult {
                tool_name: "Bash".into(),
                success: "true".into(),
                duration_seconds: Some(0.081)
            }
        );
        assert_eq!(b.events[0].dedupe, b.events[1].dedupe);
        assert!(!format!("{b:?}").contains("SECRET"));
    }
}
