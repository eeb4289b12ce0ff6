//! The telemetry state the model owns: exported Claude Code families (counters that only
//! grow, gauges, histograms), the per-stream memory that turns cumulative points and
//! re-deliveries into exact increases, event metrics, and the receiver's self-metrics.
//!
//! Pure: [`TelemetryState::apply`] takes the time with each update. Memory is bounded: a
//! family holds at most `max_series_per_family` label sets (the rest are counted as
//! overflow), the stream table at most `max_streams` entries, the event dedupe window a
//! fixed number of hashes. Series are never removed: a counter must not vanish.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::convert::{
    DropReason, Event, EventKind, Labels, LogsBatch, MetricsBatch, Point, PointValue, Temporality,
};
use super::settings::{DEFAULT_STREAM_TTL, OtlpSettings};
use super::signal::Signal;

/// Bucket bounds (seconds) of the event duration histograms.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// How many event hashes are remembered to drop re-delivered events.
pub const EVENT_DEDUPE_WINDOW: usize = 65_536;
/// Delta streams are remembered this long (seconds) to drop re-sent batches; the CLI
/// re-sends within seconds.
pub const DELTA_STREAM_TTL_SECS: f64 = 600.0;
/// The Prometheus family of `claude_code.cost.usage`.
pub const COST_FAMILY: &str = "claude_code_cost_usage_USD_total";

/// What the model is told.
#[derive(Debug)]
pub enum TelemetryUpdate {
    /// Limits and the time zone, at start and after reloads.
    Configure(Box<Limits>),
    /// Totals read from the state file at start.
    Restore(Box<Persisted>),
    /// One request the receiver answered.
    Receipt(Box<Receipt>),
    /// Time passes: prunes idle sessions and streams, rolls "today" over at midnight.
    Tick {
        now: f64,
        forward: Option<super::forward::ForwardStats>,
    },
}

/// The model's answer to a save request ([`TelemetryState::answer_save`]).
#[derive(Debug)]
pub enum PersistAnswer {
    /// Nothing the state file holds changed since the revision last saved.
    Unchanged,
    /// The content as of this revision.
    Changed {
        revision: u64,
        state: Box<Persisted>,
    },
}

/// Limits and settings the state needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_series_per_family: usize,
    pub max_streams: usize,
    pub stream_ttl_secs: f64,
    pub active_window_secs: f64,
    pub zone: jiff::tz::TimeZone,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_settings(&OtlpSettings::default())
    }
}

impl Limits {
    pub fn from_settings(s: &OtlpSettings) -> Self {
        Self {
            max_series_per_family: s.max_series_per_family,
            max_streams: s.max_streams,
            stream_ttl_secs: DEFAULT_STREAM_TTL.as_secs_f64(),
            active_window_secs: s.active_window.as_secs_f64(),
            zone: s.zone(),
        }
    }
}

/// What one request brought.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Metrics(MetricsBatch),
    Logs(LogsBatch),
    Traces {
        spans: u64,
    },
    /// The request was refused (status says why).
    None,
}

/// One answered request.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub at: f64,
    /// The transport it came over.
    pub protocol: super::signal::Protocol,
    /// The signal's route (`/v1/metrics`, `/v1/logs`, `/v1/traces`, whatever prefix the
    /// request had), or "other".
    pub path: &'static str,
    pub status: u16,
    pub signal: Option<Signal>,
    /// Bytes on the wire (before decompression).
    pub wire_bytes: u64,
    pub decode_error: Option<&'static str>,
    pub payload: Payload,
    /// The receiver's running count of points it could not queue (carried here because a
    /// dropped update cannot report itself).
    pub queue_dropped_points_total: u64,
}

/// Exported kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A histogram series: per-bucket (not cumulative) counts, `buckets.len() == bounds.len() + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Hist {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            buckets: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum += v;
    }

    /// Upper bound and cumulative count per bucket, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c;
                (self.bounds.get(i).copied().unwrap_or(f64::INFINITY), acc)
            })
            .collect()
    }
}

/// The value of one exported series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesValue {
    Counter(f64),
    Gauge(f64),
    Histogram(Hist),
}

/// One exported family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyState {
    pub kind: Kind,
    pub help: String,
    #[serde(with = "pairs")]
    pub series: BTreeMap<Labels, SeriesValue>,
}

mod pairs {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<Labels, SeriesValue>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Labels, SeriesValue>, D::Error> {
        Ok(Vec::<(Labels, SeriesValue)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// What the agent remembers of one OTLP stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub temporality: Temporality,
    pub start: u64,
    pub time: u64,
    /// Last cumulative value (sums) or count (histograms).
    pub value: f64,
    /// Last cumulative histogram buckets and sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hist: Option<(Vec<u64>, f64)>,
    /// Recent delta intervals (start, time), newest last, to drop re-sent points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<(u64, u64)>,
    /// When the agent last saw the stream (Unix seconds).
    pub seen: f64,
}

/// Cost since local midnight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostToday {
    /// Local date, e.g. "2026-11-22"; empty before the first cost.
    pub day: String,
    pub usd: f64,
}

/// The receiver's own counters (not persisted: they describe this process).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverStats {
    /// Requests by transport, route and (HTTP or HTTP-equivalent) status.
    pub requests: BTreeMap<(super::signal::Protocol, &'static str, u16), u64>,
    pub points_accepted: BTreeMap<Signal, u64>,
    pub points_dropped: BTreeMap<&'static str, u64>,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub bytes: BTreeMap<Signal, u64>,
    pub queue_dropped_points: u64,
    pub streams_evicted: u64,
}

/// Everything the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub version: u32,
    pub families: BTreeMap<String, FamilyState>,
    pub streams: Vec<(u64, StreamState)>,
    pub cost_today: CostToday,
    pub last_received: BTreeMap<Signal, f64>,
    /// Hashes of the most recent events, so a batch re-sent across a restart is not
    /// counted twice.
    #[serde(default)]
    pub recent_events: Vec<u64>,
}

/// Event hashes kept in the state file.
pub const PERSISTED_EVENT_HASHES: usize = 8192;

/// What `/metrics` shows of the telemetry: the exported families and the receiver's
/// counters. The snapshot holds this, and only this; the working sets below stay in the
/// model, so a publish never copies them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryTotals {
    pub families: BTreeMap<Arc<str>, FamilyState>,
    /// Label sets refused per family because of the series cap.
    pub overflow: BTreeMap<Arc<str>, u64>,
    pub cost_today: CostToday,
    pub last_received: BTreeMap<Signal, f64>,
    pub active_sessions: u64,
    pub receiver: ReceiverStats,
    /// The forwarder's counters, as of the last tick.
    pub forward: super::forward::ForwardStats,
    /// Streams the model remembers.
    pub streams_tracked: u64,
}

impl serde::Serialize for TelemetryTotals {
    /// Snapshots serialize their telemetry as counters only (no per-session data).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let families: BTreeMap<&str, &FamilyState> =
            self.families.iter().map(|(k, v)| (&**k, v)).collect();
        let mut m = serde::Serializer::serialize_struct(s, "TelemetryTotals", 3)?;
        use serde::ser::SerializeStruct;
        m.serialize_field("families", &families)?;
        m.serialize_field("cost_today", &self.cost_today)?;
        m.serialize_field("active_sessions", &self.active_sessions)?;
        m.end()
    }
}

/// The model's telemetry section: the totals it publishes, and the working sets that turn
/// points into exact increases (streams, sessions, recent event hashes).
#[derive(Debug, Default)]
pub struct TelemetryState {
    pub totals: TelemetryTotals,
    streams: HashMap<u64, StreamState>,
    sessions: HashMap<u64, f64>,
    event_seen: HashSet<u64>,
    event_order: VecDeque<u64>,
    limits: Limits,
    /// Moves whenever something the state file holds may have changed, so the persister
    /// neither copies nor writes an unchanged state.
    revision: u64,
}

fn add_drop(stats: &mut ReceiverStats, reason: DropReason, n: u64) {
    if n > 0 {
        *stats.points_dropped.entry(reason.as_str()).or_default() += n;
    }
}

impl TelemetryState {
    /// Folds one update in. Returns whether the totals (what a snapshot shows) may have
    /// changed.
    pub fn apply(&mut self, update: TelemetryUpdate) -> bool {
        match update {
            TelemetryUpdate::Configure(l) => self.limits = *l,
            TelemetryUpdate::Restore(p) => {
                self.restore(*p);
                self.revision += 1;
            }
            TelemetryUpdate::Receipt(r) => {
                if !matches!(r.payload, Payload::None) {
                    self.revision += 1;
                }
                self.receipt(*r)
            }
            TelemetryUpdate::Tick { now, forward } => {
                if let Some(f) = forward {
                    self.totals.forward = f;
                }
                if self.tick(now) {
                    self.revision += 1;
                }
            }
        }
        self.totals.streams_tracked = self.streams.len() as u64;
        true
    }

    /// The state file's content, unless it is still what revision `saved` held (then
    /// nothing is copied).
    pub fn answer_save(&self, saved: Option<u64>) -> PersistAnswer {
        if saved == Some(self.revision) {
            PersistAnswer::Unchanged
        } else {
            PersistAnswer::Changed {
                revision: self.revision,
                state: Box::new(self.persisted()),
            }
        }
    }

    /// The state file's content.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            version: 1,
            families: self
                .totals
                .families
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            streams: self.streams.iter().map(|(k, v)| (*k, v.clone())).collect(),
            cost_today: self.totals.cost_today.clone(),
            last_received: self.totals.last_received.clone(),
            recent_events: self
                .event_order
                .iter()
                .rev()
                .take(PERSISTED_EVENT_HASHES)
                .rev()
                .copied()
                .collect(),
        }
    }

    /// Series in a family (0 when absent).
    pub fn series_count(&self, family: &str) -> usize {
        self.totals
            .families
            .get(family)
            .map_or(0, |f| f.series.len())
    }

    /// Streams remembered.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    fn restore(&mut self, p: Persisted) {
        // Restored totals are added to anything already counted (normally nothing: the
        // state file is read before the receiver starts).
        for (name, fam) in p.families {
            let name: Arc<str> = Arc::from(name);
            let entry = self
                .totals
                .families
                .entry(name)
                .or_insert_with(|| FamilyState {
                    kind: fam.kind,
                    help: fam.help.clone(),
                    series: BTreeMap::new(),
                });
            if entry.kind != fam.kind {
                continue;
            }
            for (labels, v) in fam.series {
                match (entry.series.get_mut(&labels), v) {
                    (None, v) => {
                        entry.series.insert(labels, v);
                    }
                    (Some(SeriesValue::Counter(a)), SeriesValue::Counter(b)) => *a += b,
                    (Some(SeriesValue::Histogram(a)), SeriesValue::Histogram(b))
                        if a.bounds == b.bounds =>
                    {
                        for (x, y) in a.buckets.iter_mut().zip(&b.buckets) {
                            *x += y;
                        }
                        a.count += b.count;
                        a.sum += b.sum;
                    }
                    _ => {}
                }
            }
        }
        for (k, s) in p.streams {
            self.streams.entry(k).or_insert(s);
        }
        if self.totals.cost_today.day.is_empty() || p.cost_today.day > self.totals.cost_today.day {
            self.totals.cost_today = p.cost_today;
        }
        for h in p.recent_events {
            if self.event_seen.insert(h) {
                self.event_order.push_back(h);
            }
        }
        for (sig, t) in p.last_received {
            let e = self.totals.last_received.entry(sig).or_insert(t);
            *e = e.max(t);
        }
    }

    fn receipt(&mut self, r: Receipt) {
        let stats = &mut self.totals.receiver;
        *stats
            .requests
            .entry((r.protocol, r.path, r.status))
            .or_default() += 1;
        if let Some(reason) = r.decode_error {
            *stats.decode_errors.entry(reason).or_default() += 1;
        }
        if let Some(sig) = r.signal {
            *stats.bytes.entry(sig).or_default() += r.wire_bytes;
        }
        if r.queue_dropped_points_total > stats.queue_dropped_points {
            let n = r.queue_dropped_points_total - stats.queue_dropped_points;
            stats.queue_dropped_points = r.queue_dropped_points_total;
            add_drop(stats, DropReason::QueueFull, n);
        }
        match r.payload {
            Payload::Metrics(b) => {
                self.totals.last_received.insert(Signal::Metrics, r.at);
                self.see_sessions(&b.sessions, r.at);
                for (reason, n) in &b.drops.0 {
                    add_drop(&mut self.totals.receiver, *reason, *n);
                }
                for (family, help) in b.help {
                    if let Some(f) = self.totals.families.get_mut(&family) {
                        if f.help.is_empty() {
                            f.help = help;
                        }
                    } else {
                        // Remembered for when the family's first series is created.
                        self.pending_help(family, help);
                    }
                }
                for p in b.points {
                    self.point(p, r.at);
                }
                self.bound_streams();
            }
            Payload::Logs(b) => {
                self.totals.last_received.insert(Signal::Logs, r.at);
                self.see_sessions(&b.sessions, r.at);
                for (reason, n) in &b.drops.0 {
                    add_drop(&mut self.totals.receiver, *reason, *n);
                }
                for e in b.events {
                    self.event(e);
                }
            }
            Payload::Traces { spans } => {
                self.totals.last_received.insert(Signal::Traces, r.at);
                *self
                    .totals
                    .receiver
                    .points_accepted
                    .entry(Signal::Traces)
                    .or_default() += spans;
            }
            Payload::None => {}
        }
    }

    fn pending_help(&mut self, family: Arc<str>, help: String) {
        // A family is created with its first point; creating it empty here is harmless
        // (empty families are not exposed) and keeps the description.
        self.totals
            .families
            .entry(family)
            .or_insert_with(|| FamilyState {
                kind: Kind::Counter,
                help,
                series: BTreeMap::new(),
            });
    }

    fn see_sessions(&mut self, sessions: &[u64], now: f64) {
        for s in sessions {
            if self.sessions.insert(*s, now).is_none() {
                self.totals.active_sessions += 1;
            }
        }
        if self.sessions.len() > self.limits.max_streams {
            self.tick(now);
        }
    }

    /// Returns whether it changed what the state file holds (streams, today's cost).
    fn tick(&mut self, now: f64) -> bool {
        let window = self.limits.active_window_secs;
        self.sessions.retain(|_, seen| now - *seen <= window);
        self.totals.active_sessions = self.sessions.len() as u64;
        let ttl = self.limits.stream_ttl_secs;
        let before = self.streams.len();
        self.streams.retain(|_, s| {
            let idle = now - s.seen;
            match s.temporality {
                Temporality::Delta => idle <= DELTA_STREAM_TTL_SECS,
                Temporality::Cumulative => idle <= ttl,
            }
        });
        let evicted = before - self.streams.len();
        self.totals.receiver.streams_evicted += evicted as u64;
        let today = self.local_day(now);
        let new_day = self.totals.cost_today.day < today;
        if new_day {
            self.totals.cost_today = CostToday {
                day: today,
                usd: 0.0,
            };
        }
        evicted > 0 || new_day
    }

    /// Keeps the stream table under its cap by forgetting the least recently seen tenth.
    fn bound_streams(&mut self) {
        let cap = self.limits.max_streams;
        if self.streams.len() <= cap {
            return;
        }
        let mut seen: Vec<f64> = self.streams.values().map(|s| s.seen).collect();
        let k = self.streams.len() - cap * 9 / 10;
        let (_, cut, _) = seen.select_nth_unstable_by(k - 1, f64::total_cmp);
        let cut = *cut;
        let before = self.streams.len();
        self.streams.retain(|_, s| s.seen > cut);
        self.totals.receiver.streams_evicted += (before - self.streams.len()) as u64;
    }

    fn local_day(&self, unix_secs: f64) -> String {
        jiff::Timestamp::from_second(unix_secs.floor() as i64)
            .map(|t| t.to_zoned(self.limits.zone.clone()).date().to_string())
            .unwrap_or_default()
    }

    /// Folds one converted point in.
    fn point(&mut self, p: Point, now: f64) {
        let Point {
            family,
            labels,
            stream,
            start_unix_nano: start,
            time_unix_nano: time,
            value,
        } = p;
        enum Change {
            Add(f64, Kind),
            Set(f64),
            AddHist {
                bounds: Vec<f64>,
                buckets: Vec<u64>,
                count: u64,
                sum: f64,
            },
        }
        let change = match value {
            PointValue::Gauge(v) => Change::Set(v),
            PointValue::Sum {
                temporality: Temporality::Cumulative,
                monotonic: false,
                value,
            } => Change::Set(value),
            PointValue::Sum {
                temporality: Temporality::Delta,
                monotonic,
                value,
            } => {
                if !self.fresh_delta(stream, start, time, now) {
                    add_drop(&mut self.totals.receiver, DropReason::Duplicate, 1);
                    return;
                }
                Change::Add(
                    value,
                    if monotonic {
                        Kind::Counter
                    } else {
                        Kind::Gauge
                    },
                )
            }
            PointValue::Sum {
                temporality: Temporality::Cumulative,
                monotonic: true,
                value,
            } => match self.cumulative(stream, start, time, value, None, now) {
                Ok((inc, _)) => Change::Add(inc, Kind::Counter),
                Err(reason) => {
                    add_drop(&mut self.totals.receiver, reason, 1);
                    return;
                }
            },
            PointValue::Histogram {
                temporality,
                count,
                sum,
                bounds,
                buckets,
            } => match temporality {
                Temporality::Delta => {
                    if !self.fresh_delta(stream, start, time, now) {
                        add_drop(&mut self.totals.receiver, DropReason::Duplicate, 1);
                        return;
                    }
                    Change::AddHist {
                        bounds,
                        buckets,
                        count,
                        sum,
                    }
                }
                Temporality::Cumulative => {
                    match self.cumulative(
                        stream,
                        start,
                        time,
                        count as f64,
                        Some((&buckets, sum)),
                        now,
                    ) {
                        Ok((inc, Some((b, s)))) => Change::AddHist {
                            bounds,
                            buckets: b,
                            count: inc as u64,
                            sum: s,
                        },
                        Ok((_, None)) => return,
                        Err(reason) => {
                            add_drop(&mut self.totals.receiver, reason, 1);
                            return;
                        }
                    }
                }
            },
        };
        let kind = match &change {
            Change::Add(_, kind) => *kind,
            Change::Set(_) => Kind::Gauge,
            Change::AddHist { .. } => Kind::Histogram,
        };
        let cap = self.limits.max_series_per_family;
        let is_cost = &*family == COST_FAMILY;
        let fam = self
            .totals
            .families
            .entry(family.clone())
            .or_insert_with(|| FamilyState {
                kind,
                help: String::new(),
                series: BTreeMap::new(),
            });
        if fam.series.is_empty() {
            fam.kind = kind;
        }
        if fam.kind != kind {
            add_drop(&mut self.totals.receiver, DropReason::TypeConflict, 1);
            return;
        }
        if !fam.series.contains_key(labels.as_slice()) {
            if fam.series.len() >= cap {
                *self.totals.overflow.entry(family).or_default() += 1;
                add_drop(&mut self.totals.receiver, DropReason::SeriesCap, 1);
                return;
            }
            let fresh = match &change {
                Change::Add(_, Kind::Counter) => SeriesValue::Counter(0.0),
                Change::Add(..) | Change::Set(_) => SeriesValue::Gauge(0.0),
                Change::AddHist { bounds, .. } => SeriesValue::Histogram(Hist::new(bounds)),
            };
            fam.series.insert(Labels::clone(&labels), fresh);
        }
        let series = fam
            .series
            .get_mut(labels.as_slice())
            .expect("the series exists or was just added");
        match change {
            Change::Add(v, _) => {
                if let SeriesValue::Counter(x) | SeriesValue::Gauge(x) = series {
                    *x += v;
                }
                if is_cost && v > 0.0 {
                    let day = self.local_day(time as f64 / 1e9);
                    if day > self.totals.cost_today.day {
                        self.totals.cost_today = CostToday { day, usd: v };
                    } else if day == self.totals.cost_today.day {
                        self.totals.cost_today.usd += v;
                    }
                }
            }
            Change::Set(v) => *series = SeriesValue::Gauge(v),
            Change::AddHist {
                bounds,
                buckets,
                count,
                sum,
            } => match series {
                SeriesValue::Histogram(h) if h.bounds == bounds => {
                    for (x, y) in h.buckets.iter_mut().zip(&buckets) {
                        *x += y;
                    }
                    h.count += count;
                    h.sum += sum;
                }
                _ => {
                    add_drop(&mut self.totals.receiver, DropReason::BadBuckets, 1);
                    return;
                }
            },
        }
        *self
            .totals
            .receiver
            .points_accepted
            .entry(Signal::Metrics)
            .or_default() += 1;
    }

    /// True when a delta point's interval has not been applied before on this stream.
    fn fresh_delta(&mut self, stream: u64, start: u64, time: u64, now: f64) -> bool {
        let s = self.streams.entry(stream).or_insert_with(|| StreamState {
            temporality: Temporality::Delta,
            start,
            time,
            value: 0.0,
            hist: None,
            recent: Vec::new(),
            seen: now,
        });
        s.seen = now;
        if s.recent.contains(&(start, time)) {
            return false;
        }
        if s.recent.len() >= 8 {
            s.recent.remove(0);
        }
        s.recent.push((start, time));
        s.temporality = Temporality::Delta;
        true
    }

    /// The increase a cumulative point brings over what its stream reported before.
    /// A new start time or a lower value is a reset: the whole value is new. A point older
    /// than the last one is already included in it.
    #[allow(clippy::type_complexity)]
    fn cumulative(
        &mut self,
        stream: u64,
        start: u64,
        time: u64,
        value: f64,
        hist: Option<(&Vec<u64>, f64)>,
        now: f64,
    ) -> Result<(f64, Option<(Vec<u64>, f64)>), DropReason> {
        let hist_now = hist.map(|(b, s)| (b.clone(), s));
        match self.streams.get_mut(&stream) {
            Some(prev) if prev.temporality == Temporality::Cumulative => {
                prev.seen = now;
                let reset = if start != prev.start && start != 0 {
                    if start < prev.start {
                        // A point from an earlier run of the same stream, arriving late.
                        return Err(DropReason::OutOfOrder);
                    }
                    true
                } else {
                    if time < prev.time {
                        return Err(DropReason::OutOfOrder);
                    }
                    value < prev.value
                };
                let (inc, hist_inc) = if reset {
                    (value, hist_now.clone())
                } else {
                    let hist_inc = match (&hist_now, &prev.hist) {
                        (Some((b, s)), Some((pb, ps))) if b.len() == pb.len() => Some((
                            b.iter()
                                .zip(pb)
                                .map(|(x, y)| x.saturating_sub(*y))
                                .collect(),
                            (s - ps).max(0.0),
                        )),
                        (Some(h), _) => Some(h.clone()),
                        _ => None,
                    };
                    (value - prev.value, hist_inc)
                };
                prev.start = if start != 0 { start } else { prev.start };
                prev.time = time;
                prev.value = value;
                prev.hist = hist_now;
                Ok((inc, hist_inc))
            }
            _ => {
                // First sight: the stream counted from zero at its start time.
                self.streams.insert(
                    stream,
                    StreamState {
                        temporality: Temporality::Cumulative,
                        start,
                        time,
                        value,
                        hist: hist_now.clone(),
                        recent: Vec::new(),
                        seen: now,
                    },
                );
                Ok((value, hist_now))
            }
        }
    }

    /// The series of an event family, created on first use unless the family is full.
    fn event_series(
        &mut self,
        family: &str,
        help: &str,
        kind: Kind,
        labels: Labels,
    ) -> Option<&mut SeriesValue> {
        let cap = self.limits.max_series_per_family;
        let fam = self
            .totals
            .families
            .entry(Arc::from(family))
            .or_insert_with(|| FamilyState {
                kind,
                help: help.to_string(),
                series: BTreeMap::new(),
            });
        if !fam.series.contains_key(&labels) && fam.series.len() >= cap {
            *self.totals.overflow.entry(Arc::from(family)).or_default() += 1;
            add_drop(&mut self.totals.receiver, DropReason::SeriesCap, 1);
            return None;
        }
        Some(fam.series.entry(labels).or_insert_with(|| match kind {
            Kind::Histogram => SeriesValue::Histogram(Hist::new(DURATION_BUCKETS)),
            Kind::Gauge => SeriesValue::Gauge(0.0),
            Kind::Counter => SeriesValue::Counter(0.0),
        }))
    }

    fn count_event(&mut self, family: &str, help: &str, labels: Labels) {
        if let Some(SeriesValue::Counter(x)) =
            self.event_series(family, help, Kind::Counter, labels)
        {
            *x += 1.0;
        }
    }

    fn observe_event(&mut self, family: &str, help: &str, labels: Labels, v: f64) {
        if let Some(SeriesValue::Histogram(h)) =
            self.event_series(family, help, Kind::Histogram, labels)
        {
            h.observe(v);
        }
    }

    fn event(&mut self, e: Event) {
        if !self.event_seen.insert(e.dedupe) {
            add_drop(&mut self.totals.receiver, DropReason::Duplicate, 1);
            return;
        }
        self.event_order.push_back(e.dedupe);
        if self.event_order.len() > EVENT_DEDUPE_WINDOW {
            if let Some(old) = self.event_order.pop_front() {
                self.event_seen.remove(&old);
            }
        }
        *self
            .totals
            .receiver
            .points_accepted
            .entry(Signal::Logs)
            .or_default() += 1;
        let l = |pairs: &[(&str, &str)]| -> Labels {
            let mut v: Labels = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            v.sort();
            v
        };
        match e.kind {
            EventKind::UserPrompt => {
                self.count_event(
                    "claude_code_user_prompts_total",
                    "Prompts submitted to Claude Code (user_prompt events).",
                    Vec::new(),
                );
            }
            EventKind::ApiRequest {
                model,
                duration_seconds,
                ..
            } => {
                let labels = l(&[("model", &model)]);
                self.count_event(
                    "claude_code_api_requests_total",
                    "Claude API requests made by Claude Code (api_request events).",
                    labels.clone(),
                );
                if let Some(d) = duration_seconds {
                    self.observe_event(
                        "claude_code_api_request_duration_seconds",
                        "Duration of Claude API requests (api_request events).",
                        labels,
                        d,
                    );
                }
            }
            EventKind::ApiError { model, status_code } => {
                self.count_event(
                    "claude_code_api_errors_total",
                    "Claude API requests that failed after retries (api_error events).",
                    l(&[("model", &model), ("status_code", &status_code)]),
                );
            }
            EventKind::ToolResult {
                tool_name,
                success,
                duration_seconds,
            } => {
                self.count_event(
                    "claude_code_tool_results_total",
                    "Tool executions finished (tool_result events).",
                    l(&[("tool_name", &tool_name), ("success", &success)]),
                );
                if let Some(d) = duration_seconds {
                    self.observe_event(
                        "claude_code_tool_result_duration_seconds",
                        "Duration of tool executions (tool_result events).",
                        l(&[("tool_name", &tool_name)]),
                        d,
                    );
                }
            }
            EventKind::ToolDecision {
                tool_name,
                decision,
                source,
            } => {
                self.count_event(
                    "claude_code_tool_decisions_total",
                    "Tool permission decisions (tool_decision events).",
                    l(&[
                        ("tool_name", &tool_name),
                        ("decision", &decision),
                        ("source", &source),
                    ]),
                );
            }
            EventKind::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::convert::{Drops, Point};

    fn sum(stream: u64, t: Temporality, start: u64, time: u64, v: f64) -> Point {
        Point {
            family: Arc::from(COST_FAMILY),
            labels: Arc::new(vec![("model".into(), "m".into())]),
            stream,
            start_unix_nano: start,
            time_unix_nano: time,
            value: PointValue::Sum {
                temporality: t,
                monotonic: true,
                value: v,
            },
        }
    }

    fn receipt(points: Vec<Point>, at: f64) -> TelemetryUpdate {
        TelemetryUpdate::Receipt(Box::new(Receipt {
            at,
            protocol: crate::otlp::Protocol::Http,
            path: "/v1/metrics",
            status: 200,
            signal: Some(Signal::Metrics),
            wire_bytes: 10,
            decode_error: None,
            payload: Payload::Metrics(MetricsBatch {
                points,
                help: Vec::new(),
                sessions: Vec::new(),
                drops: Drops::default(),
                total_points: 0,
            }),
            queue_dropped_points_total: 0,
        }))
    }

    fn total(s: &TelemetryState) -> f64 {
        match s.totals.families[COST_FAMILY]
            .series
            .values()
            .next()
            .unwrap()
        {
            SeriesValue::Counter(v) => *v,
            _ => panic!(),
        }
    }

    const S: u64 = 1_000_000_000;

    /// What the model answers the persister that last saved revision `saved`.
    fn ask(st: &mut TelemetryState, saved: Option<u64>) -> PersistAnswer {
        st.answer_save(saved)
    }

    #[test]
    fn the_state_file_is_copied_out_only_when_its_content_may_have_changed() {
        use Temporality::Delta as D;
        let mut st = TelemetryState::default();
        let PersistAnswer::Changed { revision, state } = ask(&mut st, None) else {
            panic!("the first question always gets the content");
        };
        assert!(state.families.is_empty());
        assert!(matches!(
            ask(&mut st, Some(revision)),
            PersistAnswer::Unchanged
        ));
        // A tick that evicts nothing and stays on the same day changes nothing saved.
        let now = 1_700_000_000.0;
        st.apply(TelemetryUpdate::Tick { now, forward: None });
        let PersistAnswer::Changed { revision, .. } = ask(&mut st, Some(revision)) else {
            panic!("the first tick sets today's date, which is saved");
        };
        st.apply(TelemetryUpdate::Tick {
            now: now + 1.0,
            forward: None,
        });
        assert!(matches!(
            ask(&mut st, Some(revision)),
            PersistAnswer::Unchanged
        ));
        // A point changes it.
        st.apply(receipt(vec![sum(1, D, S, 2 * S, 0.5)], now + 2.0));
        let PersistAnswer::Changed {
            revision: r2,
            state,
        } = ask(&mut st, Some(revision))
        else {
            panic!("a received point must be saved");
        };
        assert!(r2 > revision);
        assert_eq!(state.families.len(), 1);
        assert!(matches!(ask(&mut st, Some(r2)), PersistAnswer::Unchanged));
    }

    #[test]
    fn cumulative_adds_increases_and_detects_resets_and_old_points() {
        use Temporality::Cumulative as C;
        let mut st = TelemetryState::default();
        st.apply(receipt(vec![sum(1, C, S, 2 * S, 1.0)], 2.0));
        st.apply(receipt(vec![sum(1, C, S, 3 * S, 1.5)], 3.0));
        assert_eq!(total(&st), 1.5);
        // Out of order: an older point of the same run is already included.
        st.apply(receipt(vec![sum(1, C, S, 2 * S, 1.0)], 4.0));
        assert_eq!(total(&st), 1.5);
        // --continue: same stream, new start time, restarts from zero.
        st.apply(receipt(vec![sum(1, C, 10 * S, 11 * S, 0.25)], 11.0));
        assert_eq!(total(&st), 1.75);
        // A lower value without a start time is a reset too.
        st.apply(receipt(vec![sum(1, C, 10 * S, 12 * S, 0.1)], 12.0));
        assert_eq!(total(&st), 1.85);
        // A second session adds its own.
        st.apply(receipt(vec![sum(2, C, 10 * S, 12 * S, 2.0)], 12.0));
        assert_eq!(total(&st), 3.85);
        assert_eq!(st.series_count(COST_FAMILY), 1);
    }

    #[test]
    fn delta_re_delivery_is_dropped_but_out_of_order_intervals_count() {
        use Temporality::Delta as D;
        let mut st = TelemetryState::default();
        st.apply(receipt(vec![sum(1, D, S, 2 * S, 1.0)], 2.0));
        st.apply(receipt(vec![sum(1, D, 2 * S, 3 * S, 2.0)], 3.0));
        st.apply(receipt(vec![sum(1, D, S, 2 * S, 1.0)], 4.0));
        assert_eq!(total(&st), 3.0);
        st.apply(receipt(vec![sum(1, D, 4 * S, 5 * S, 4.0)], 5.0));
        st.apply(receipt(vec![sum(1, D, 3 * S, 4 * S, 8.0)], 5.0));
        assert_eq!(total(&st), 15.0);
        assert_eq!(st.totals.receiver.points_dropped["duplicate"], 1);
    }

    #[test]
    fn series_cap_counts_overflow_and_persisted_state_round_trips() {
        let mut st = TelemetryState::default();
        st.apply(TelemetryUpdate::Configure(Box::new(Limits {
            max_series_per_family: 2,
            ..Limits::default()
        })));
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            let mut p = sum(i as u64, Temporality::Delta, S, 2 * S, 1.0);
            p.labels = Arc::new(vec![("model".into(), m.to_string())]);
            st.apply(receipt(vec![p], 2.0));
        }
        assert_eq!(st.series_count(COST_FAMILY), 2);
        assert_eq!(st.totals.overflow[COST_FAMILY], 1);
        let text = serde_json::to_string(&st.persisted()).unwrap();
        let mut back = TelemetryState::default();
        back.apply(TelemetryUpdate::Restore(Box::new(
            serde_json::from_str(&text).unwrap(),
        )));
        assert_eq!(back.totals.families, st.totals.families);
        assert_eq!(back.stream_count(), st.stream_count());
    }

    #[test]
    fn cost_today_rolls_over_at_local_midnight_and_sessions_expire() {
        let mut st = TelemetryState::default();
        st.apply(TelemetryUpdate::Configure(Box::new(Limits {
            zone: jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
            active_window_secs: 300.0,
            ..Limits::default()
        })));
        // 2026-01-01 22:30 UTC is 23:30 in Paris; 23:30 UTC is 00:30 the next day there.
        let t1 = 1_767_306_600u64;
        let t2 = t1 + 3600;
        let p = |stream, t: u64, v| sum(stream, Temporality::Delta, (t - 1) * S, t * S, v);
        fn r(st: &mut TelemetryState, points: Vec<Point>, at: f64, sessions: Vec<u64>) {
            let TelemetryUpdate::Receipt(mut rc) = receipt(points, at) else {
                unreachable!()
            };
            if let Payload::Metrics(b) = &mut rc.payload {
                b.sessions = sessions;
            }
            st.apply(TelemetryUpdate::Receipt(rc));
        }
        r(&mut st, vec![p(1, t1, 2.0)], t1 as f64, vec![11, 12]);
        assert_eq!(st.totals.cost_today.day, "2026-01-01");
        assert_eq!(st.totals.cost_today.usd, 2.0);
        assert_eq!(st.totals.active_sessions, 2);
        r(&mut st, vec![p(1, t2, 0.5)], t2 as f64, vec![12]);
        assert_eq!(st.totals.cost_today.day, "2026-01-02");
        assert_eq!(st.totals.cost_today.usd, 0.5);
        assert_eq!(total(&st), 2.5, "the counter itself never resets");
        st.apply(TelemetryUpdate::Tick {
            now: t2 as f64 + 60.0,
            forward: None,
        });
        assert_eq!(
            st.totals.active_sessions, 1,
            "session 11 was idle for an hour"
        );
        st.apply(TelemetryUpdate::Tick {
            now: t2 as f64 + 86_400.0,
            forward: None,
        });
        assert_eq!(st.totals.active_sessions, 0);
        assert_eq!(
            (st.totals.cost_today.day.as_str(), st.totals.cost_today.usd),
            ("2026-01-03", 0.0)
        );
    }
}
