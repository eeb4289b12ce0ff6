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

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, NumberDataPoint, Sum, metric::Data, number_data_point,
};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::names::{NameKind, label_name, metric_name};

/// Longest label value kept; longer values are cut (a label is not a place for text).
pub const MAX_LABEL_VALUE_CHARS: usize = 256;

/// Which attributes become labels, and the label name each becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelPolicy {
    /// (attribute key, label name), sorted by key.
    allow: Vec<(String, String)>,
    /// Bit n set when an allowed key is n bytes long (keys of 64 bytes or more set bit 63):
    /// most attributes are refused on their length alone.
    lengths: u64,
}

impl LabelPolicy {
    pub fn new(allow: &[String]) -> Self {
        let mut allow: Vec<(String, String)> =
            allow.iter().map(|k| (k.clone(), label_name(k))).collect();
        allow.sort();
        allow.dedup();
        let lengths = allow
            .iter()
            .fold(0u64, |m, (k, _)| m | 1 << k.len().min(63));
        Self { allow, lengths }
    }

    /// The label name of an allowed attribute key.
    fn label(&self, key: &[u8]) -> Option<&str> {
        if self.lengths & 1 << key.len().min(63) == 0 {
            return None;
        }
        self.allow
            .iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, l)| l.as_str())
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
    /// Shared with every other point of the same label set (see [`intern_labels`]).
    pub labels: Arc<Labels>,
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

/// An attribute value, borrowed from a decoded message ([`AttrValue::from_prost`]) or
/// straight from protobuf bytes ([`super::wire`]). Both paths hash and label through it, so
/// a stream has the same hash whichever way its request was decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue<'a> {
    /// No value.
    Empty,
    /// A string as sent; checked for UTF-8 only when it becomes a label or session id.
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<AttrValue<'a>>),
    Kvlist(Vec<Attr<'a>>),
    /// A kind this agent does not read (a string-table index).
    Other,
}

/// One attribute, borrowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr<'a> {
    /// The key as sent (only compared and hashed, never shown).
    pub key: &'a [u8],
    pub value: AttrValue<'a>,
}

impl<'a> Attr<'a> {
    pub fn from_prost(kv: &'a KeyValue) -> Self {
        Attr {
            key: kv.key.as_bytes(),
            value: AttrValue::from_prost(kv.value.as_ref()),
        }
    }
}

/// `text` cut to at most [`MAX_LABEL_VALUE_CHARS`] bytes, on a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_LABEL_VALUE_CHARS {
        return text;
    }
    let end = (0..=MAX_LABEL_VALUE_CHARS)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[..end]
}

impl<'a> AttrValue<'a> {
    pub fn from_prost(v: Option<&'a AnyValue>) -> Self {
        match v.and_then(|v| v.value.as_ref()) {
            None => AttrValue::Empty,
            Some(Value::StringValue(s)) => AttrValue::Str(s.as_bytes()),
            Some(Value::BoolValue(b)) => AttrValue::Bool(*b),
            Some(Value::IntValue(i)) => AttrValue::Int(*i),
            Some(Value::DoubleValue(d)) => AttrValue::Double(*d),
            Some(Value::BytesValue(b)) => AttrValue::Bytes(b),
            Some(Value::ArrayValue(a)) => {
                AttrValue::Array(a.values.iter().map(|v| Self::from_prost(Some(v))).collect())
            }
            Some(Value::KvlistValue(kv)) => {
                AttrValue::Kvlist(kv.values.iter().map(Attr::from_prost).collect())
            }
            Some(_) => AttrValue::Other,
        }
    }

    /// The label value: scalars only, cut to [`MAX_LABEL_VALUE_CHARS`].
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            AttrValue::Str(s) => Some(match std::str::from_utf8(s) {
                Ok(s) => Cow::Borrowed(cut(s)),
                Err(_) => Cow::Owned(cut(&String::from_utf8_lossy(s)).to_string()),
            }),
            AttrValue::Bool(b) => Some(Cow::Owned(b.to_string())),
            AttrValue::Int(i) => Some(Cow::Owned(i.to_string())),
            AttrValue::Double(d) => Some(Cow::Owned(cut(&d.to_string()).to_string())),
            _ => None,
        }
    }

    /// A number from a value of any kind: ints, doubles, and strings such as "81".
    pub fn number(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Double(d) => Some(*d),
            AttrValue::Str(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            _ => None,
        }
        .filter(|x: &f64| x.is_finite())
    }

    /// Feeds the value's identity into a hash buffer.
    fn feed(&self, buf: &mut Vec<u8>) {
        match self {
            AttrValue::Empty => buf.push(0),
            AttrValue::Str(s) => {
                buf.push(1);
                buf.extend_from_slice(s);
            }
            AttrValue::Bool(b) => buf.extend_from_slice(&[2, *b as u8]),
            AttrValue::Int(i) => {
                buf.push(3);
                buf.extend_from_slice(&i.to_le_bytes());
            }
            AttrValue::Double(d) => {
                buf.push(4);
                buf.extend_from_slice(&d.to_bits().to_le_bytes());
            }
            AttrValue::Bytes(b) => {
                buf.push(5);
                buf.extend_from_slice(b);
            }
            AttrValue::Array(a) => {
                buf.push(6);
                for v in a {
                    v.feed(buf);
                    buf.push(0xfe);
                }
            }
            AttrValue::Kvlist(kv) => {
                buf.push(7);
                for a in kv {
                    buf.extend_from_slice(a.key);
                    buf.push(0xff);
                    a.value.feed(buf);
                    buf.push(0xfe);
                }
            }
            AttrValue::Other => buf.push(8),
        }
    }
}

/// A Prometheus label value for an attribute, if it has a scalar value.
pub fn value_text(v: &AnyValue) -> Option<String> {
    AttrValue::from_prost(Some(v)).text().map(Cow::into_owned)
}

/// A number from an attribute of any kind: ints, doubles, and strings such as "81".
pub fn value_number(v: &AnyValue) -> Option<f64> {
    AttrValue::from_prost(Some(v)).number()
}

/// An order-insensitive hash of a set of attributes: attribute order may differ between
/// exporters, the set is what identifies a stream.
fn hash_attrs(attrs: &[Attr], seed: u64, buf: &mut Vec<u8>) -> u64 {
    let mut h = 0u64;
    for a in attrs {
        buf.clear();
        buf.extend_from_slice(a.key);
        buf.push(0xff);
        a.value.feed(buf);
        h = h.wrapping_add(xxh3_64_with_seed(buf, seed));
    }
    h
}

/// The attribute that identifies a Claude Code session.
const SESSION_ID: &[u8] = b"session.id";

fn session_hash(attrs: &[Attr]) -> Option<u64> {
    attrs
        .iter()
        .find(|a| a.key == SESSION_ID)
        .and_then(|a| a.value.text())
        .map(|s| xxh3_64_with_seed(s.as_bytes(), 7))
}

/// Allowed attributes as labels, first of each label name wins, appended to `out`.
fn push_labels(policy: &LabelPolicy, attrs: &[Attr], out: &mut Labels) {
    for a in attrs {
        if let Some(name) = policy.label(a.key) {
            if out.iter().any(|(n, _)| n == name) {
                continue;
            }
            if let Some(v) = a.value.text() {
                out.push((name.to_string(), v.into_owned()));
            }
        }
    }
}

fn temporality(t: i32) -> Option<Temporality> {
    match t {
        1 => Some(Temporality::Delta),
        2 => Some(Temporality::Cumulative),
        _ => None,
    }
}

/// Names remembered per thread by [`family_name`].
const FAMILY_NAME_CACHE: usize = 1024;

/// The Prometheus family of an OTLP metric, remembered per thread: a client sends the same
/// few metrics in every request, and naming one takes a dozen small allocations.
fn family_name(name: &str, unit: &str, kind: NameKind) -> Arc<str> {
    type Cache = HashMap<u64, (String, String, NameKind, Arc<str>)>;
    thread_local! {
        static CACHE: RefCell<Cache> = RefCell::new(HashMap::new());
    }
    let key = xxh3_64(name.as_bytes()) ^ xxh3_64_with_seed(unit.as_bytes(), 11) ^ kind as u64;
    CACHE.with_borrow_mut(|cache| {
        if let Some((n, u, k, family)) = cache.get(&key) {
            if n == name && u == unit && *k == kind {
                return family.clone();
            }
        }
        if cache.len() >= FAMILY_NAME_CACHE {
            cache.clear();
        }
        let family: Arc<str> = Arc::from(metric_name(name, unit, kind));
        cache.insert(
            key,
            (name.to_string(), unit.to_string(), kind, family.clone()),
        );
        family
    })
}

/// Label sets remembered per thread by [`intern_labels`].
const LABEL_SET_CACHE: usize = 4096;

/// The label set of `pairs` (sorted by name), shared with earlier points of the same set
/// converted on this thread: a client repeats a handful of label sets in every request, and
/// building one takes two allocations per label.
fn intern_labels(pairs: &[(&str, Cow<str>)], buf: &mut Vec<u8>) -> Arc<Labels> {
    thread_local! {
        static CACHE: RefCell<HashMap<u64, Arc<Labels>>> = RefCell::new(HashMap::new());
    }
    buf.clear();
    for (n, v) in pairs {
        buf.extend_from_slice(n.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xfe);
    }
    let key = xxh3_64(buf);
    CACHE.with_borrow_mut(|cache| {
        if let Some(l) = cache.get(&key) {
            let same = l.len() == pairs.len()
                && l.iter().zip(pairs).all(|((a, b), (n, v))| a == n && b == v);
            if same {
                return l.clone();
            }
        }
        if cache.len() >= LABEL_SET_CACHE {
            cache.clear();
        }
        let labels: Arc<Labels> = Arc::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        cache.insert(key, labels.clone());
        labels
    })
}

/// The kind of a metric's data, and what conversion needs of it besides its points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataKind {
    /// The metric has no data.
    None,
    Sum {
        temporality: i32,
        monotonic: bool,
    },
    Gauge,
    Histogram {
        temporality: i32,
    },
    ExponentialHistogram,
    Summary,
}

/// What every point of one metric shares.
pub struct MetricCtx {
    family: Arc<str>,
    hash: u64,
    kind: DataKind,
    temporality: Temporality,
}

/// A [`MetricsBatch`] under construction: the one place the conversion rules live. The
/// decoded-message walk ([`metrics`]) and the protobuf-bytes walk ([`super::wire`]) both
/// feed it resources, scopes, metrics and points in request order.
pub struct BatchBuilder<'p> {
    policy: &'p LabelPolicy,
    out: MetricsBatch,
    buf: Vec<u8>,
    resource_hash: u64,
    resource_labels: Labels,
    scope_hash: u64,
}

impl<'p> BatchBuilder<'p> {
    pub fn new(policy: &'p LabelPolicy) -> Self {
        Self {
            policy,
            out: MetricsBatch::default(),
            buf: Vec::with_capacity(256),
            resource_hash: 0,
            resource_labels: Vec::new(),
            scope_hash: 0,
        }
    }

    /// Starts a resource: its attributes are part of every stream's identity, and the
    /// allowed ones label its points unless a point has the label itself.
    pub fn resource(&mut self, attrs: &[Attr]) {
        self.resource_hash = hash_attrs(attrs, 1, &mut self.buf);
        self.resource_labels.clear();
        push_labels(self.policy, attrs, &mut self.resource_labels);
    }

    /// Starts a scope (`None` when the request names none).
    pub fn scope(&mut self, name: Option<&str>) {
        self.scope_hash = name.map_or(0, |n| xxh3_64_with_seed(n.as_bytes(), 3));
    }

    /// Starts a metric with `n_points` points; `None` (with the points counted as dropped)
    /// when none of them can be converted.
    pub fn metric(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        kind: DataKind,
        n_points: usize,
    ) -> Option<MetricCtx> {
        let n = n_points as u64;
        let name_kind = match kind {
            DataKind::None => {
                self.out.drops.add(DropReason::NoValue, 1);
                self.out.total_points += 1;
                return None;
            }
            DataKind::ExponentialHistogram | DataKind::Summary => {
                self.out.total_points += n;
                self.out.drops.add(DropReason::UnsupportedType, n);
                return None;
            }
            DataKind::Sum {
                monotonic: true, ..
            } => NameKind::Counter,
            DataKind::Sum { .. } | DataKind::Gauge => NameKind::Gauge,
            DataKind::Histogram { .. } => NameKind::Histogram,
        };
        self.out.total_points += n;
        let family = family_name(name, unit, name_kind);
        if family.is_empty() || RESERVED_PREFIXES.iter().any(|p| family.starts_with(p)) {
            self.out.drops.add(DropReason::BadName, n);
            return None;
        }
        self.out.points.reserve(n_points);
        if !description.is_empty() && !self.out.help.iter().any(|(f, _)| *f == family) {
            self.out
                .help
                .push((family.clone(), description.to_string()));
        }
        let temporality = match kind {
            DataKind::Sum { temporality, .. } | DataKind::Histogram { temporality } => {
                let Some(t) = self::temporality(temporality) else {
                    self.out.drops.add(DropReason::UnspecifiedTemporality, n);
                    return None;
                };
                t
            }
            _ => Temporality::Cumulative,
        };
        let hash = xxh3_64(family.as_bytes())
            .wrapping_add(self.resource_hash)
            .wrapping_add(self.scope_hash);
        Some(MetricCtx {
            family,
            hash,
            kind,
            temporality,
        })
    }

    fn push(&mut self, m: &MetricCtx, attrs: &[Attr], start: u64, time: u64, value: PointValue) {
        // One pass over the attributes: stream hash, session, labels.
        let policy = self.policy;
        let mut pairs: Vec<(&str, Cow<str>)> =
            Vec::with_capacity(attrs.len().min(4) + self.resource_labels.len());
        let mut stream = m.hash;
        let mut session = false;
        for a in attrs {
            self.buf.clear();
            self.buf.extend_from_slice(a.key);
            self.buf.push(0xff);
            a.value.feed(&mut self.buf);
            stream = stream.wrapping_add(xxh3_64_with_seed(&self.buf, 2));
            if a.key == SESSION_ID && !session {
                session = true;
                if let Some(s) = a.value.text() {
                    self.out.sessions.push(xxh3_64_with_seed(s.as_bytes(), 7));
                }
            }
            if let Some(name) = policy.label(a.key) {
                if !pairs.iter().any(|(n, _)| *n == name) {
                    if let Some(v) = a.value.text() {
                        pairs.push((name, v));
                    }
                }
            }
        }
        for (n, v) in &self.resource_labels {
            if !pairs.iter().any(|(have, _)| have == n) {
                pairs.push((n, Cow::Borrowed(v)));
            }
        }
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let labels = intern_labels(&pairs, &mut self.buf);
        drop(pairs);
        self.out.points.push(Point {
            family: m.family.clone(),
            labels,
            stream,
            start_unix_nano: start,
            time_unix_nano: time,
            value,
        });
    }

    /// A point of a sum or gauge; `value` is `None` when the point carries none.
    pub fn number_point(
        &mut self,
        m: &MetricCtx,
        attrs: &[Attr],
        start: u64,
        time: u64,
        value: Option<f64>,
    ) {
        let value = match m.kind {
            DataKind::Sum { monotonic, .. } => {
                let value = value.unwrap_or(f64::NAN);
                if !value.is_finite() {
                    self.out.drops.add(DropReason::NoValue, 1);
                    return;
                }
                if monotonic && m.temporality == Temporality::Delta && value < 0.0 {
                    self.out.drops.add(DropReason::NegativeDelta, 1);
                    return;
                }
                PointValue::Sum {
                    temporality: m.temporality,
                    monotonic,
                    value,
                }
            }
            DataKind::Gauge => match value {
                Some(v) => PointValue::Gauge(v),
                None => {
                    self.out.drops.add(DropReason::NoValue, 1);
                    return;
                }
            },
            _ => return,
        };
        self.push(m, attrs, start, time, value);
    }

    /// A point of an explicit-bucket histogram.
    #[allow(clippy::too_many_arguments)]
    pub fn histogram_point(
        &mut self,
        m: &MetricCtx,
        attrs: &[Attr],
        start: u64,
        time: u64,
        count: u64,
        sum: Option<f64>,
        bounds: Vec<f64>,
        mut buckets: Vec<u64>,
    ) {
        if buckets.is_empty() && bounds.is_empty() {
            buckets = vec![count];
        }
        let sorted = bounds.windows(2).all(|w| w[0] < w[1]);
        if buckets.len() != bounds.len() + 1 || !sorted || bounds.iter().any(|b| !b.is_finite()) {
            self.out.drops.add(DropReason::BadBuckets, 1);
            return;
        }
        let value = PointValue::Histogram {
            temporality: m.temporality,
            count,
            sum: sum.filter(|s| s.is_finite()).unwrap_or(0.0),
            bounds,
            buckets,
        };
        self.push(m, attrs, start, time, value);
    }

    pub fn finish(mut self) -> MetricsBatch {
        self.out.sessions.sort_unstable();
        self.out.sessions.dedup();
        self.out
    }
}

/// Converts a decoded metrics request under `policy` (the OTLP/JSON path; protobuf bodies
/// take [`super::wire::metrics`], which gives the same batch without decoding first).
pub fn metrics(req: &ExportMetricsServiceRequest, policy: &LabelPolicy) -> MetricsBatch {
    fn attrs_of<'a>(out: &mut Vec<Attr<'a>>, kvs: &'a [KeyValue]) {
        out.clear();
        out.extend(kvs.iter().map(Attr::from_prost));
    }
    let mut b = BatchBuilder::new(policy);
    let mut attrs = Vec::new();
    for rm in &req.resource_metrics {
        attrs_of(
            &mut attrs,
            rm.resource.as_ref().map_or(&[], |r| &r.attributes),
        );
        b.resource(&attrs);
        for sm in &rm.scope_metrics {
            b.scope(sm.scope.as_ref().map(|s| s.name.as_str()));
            for m in &sm.metrics {
                let (kind, n) = match &m.data {
                    None => (DataKind::None, 0),
                    Some(Data::Sum(s)) => (
                        DataKind::Sum {
                            temporality: s.aggregation_temporality,
                            monotonic: s.is_monotonic,
                        },
                        s.data_points.len(),
                    ),
                    Some(Data::Gauge(g)) => (DataKind::Gauge, g.data_points.len()),
                    Some(Data::Histogram(h)) => (
                        DataKind::Histogram {
                            temporality: h.aggregation_temporality,
                        },
                        h.data_points.len(),
                    ),
                    Some(Data::ExponentialHistogram(h)) => {
                        (DataKind::ExponentialHistogram, h.data_points.len())
                    }
                    Some(Data::Summary(s)) => (DataKind::Summary, s.data_points.len()),
                };
                let Some(ctx) = b.metric(&m.name, &m.unit, &m.description, kind, n) else {
                    continue;
                };
                let number = |p: &NumberDataPoint| match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => Some(v),
                    Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
                    None => None,
                };
                match &m.data {
                    Some(Data::Sum(Sum { data_points, .. }))
                    | Some(Data::Gauge(Gauge { data_points })) => {
                        for p in data_points {
                            attrs_of(&mut attrs, &p.attributes);
                            let (start, time) = (p.start_time_unix_nano, p.time_unix_nano);
                            b.number_point(&ctx, &attrs, start, time, number(p));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            attrs_of(&mut attrs, &p.attributes);
                            b.histogram_point(
                                &ctx,
                                &attrs,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                p.count,
                                p.sum,
                                p.explicit_bounds.clone(),
                                p.bucket_counts.clone(),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    b.finish()
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
                let borrowed: Vec<Attr> = attrs.iter().map(Attr::from_prost).collect();
                if let Some(s) = session_hash(&borrowed) {
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
                AttrValue::from_prost(r.body.as_ref()).feed(&mut buf);
                let dedupe = xxh3_64(&buf).wrapping_add(hash_attrs(&borrowed, 5, &mut buf));
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
            *b.points[0].labels,
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
