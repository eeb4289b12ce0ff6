//! The telemetry section of `/metrics`: the translated `claude_code_*` families, the event
//! metrics, `vibe_claude_*` summaries and the receiver's own `vibe_otlp_*` counters, built
//! from the [`TelemetryTotals`] of a snapshot with [`crate::exposition::Family`]. Reads only.

use prometheus::proto::MetricFamily;

use super::state::{Kind, SeriesValue, TelemetryTotals};
use crate::exposition::family::Family;

/// Appends every telemetry family that has samples.
pub fn families(t: &TelemetryTotals, out: &mut Vec<MetricFamily>) {
    for (name, fam) in &t.families {
        let help = if fam.help.is_empty() {
            "Claude Code telemetry (OTLP), summed over dropped attributes."
        } else {
            fam.help.as_str()
        };
        let mut f = match fam.kind {
            Kind::Counter => Family::counter(name, help),
            Kind::Gauge => Family::gauge(name, help),
            Kind::Histogram => Family::histogram(name, help),
        };
        for (labels, v) in &fam.series {
            let l: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match v {
                SeriesValue::Counter(x) | SeriesValue::Gauge(x) => {
                    f.sample(&l, *x);
                }
                SeriesValue::Histogram(h) => {
                    f.histogram_sample(&l, &h.cumulative(), h.count, h.sum);
                }
            }
        }
        f.finish(out);
    }

    let mut f = Family::counter(
        "vibe_claude_telemetry_series_overflow_total",
        "Points refused because their family reached otlp.max_series_per_family.",
    );
    for (family, n) in &t.overflow {
        f.sample(&[("family", family)], *n as f64);
    }
    f.finish(out);

    let mut f = Family::gauge(
        "vibe_claude_telemetry_last_received_timestamp_seconds",
        "When the receiver last accepted data of this OTLP signal.",
    );
    for (signal, at) in &t.last_received {
        f.sample(&[("signal", signal.as_str())], *at);
    }
    f.finish(out);

    let mut f = Family::gauge(
        "vibe_claude_active_sessions",
        "Distinct Claude Code sessions that sent telemetry within otlp.active_window.",
    );
    f.sample(&[], t.active_sessions as f64);
    f.finish(out);

    if !t.cost_today.day.is_empty() {
        let mut f = Family::gauge(
            "vibe_claude_cost_today_usd",
            "Claude Code cost (claude_code.cost.usage) since local midnight in otlp.time_zone.",
        );
        f.sample(&[], t.cost_today.usd);
        f.finish(out);
    }

    let r = &t.receiver;
    let mut f = Family::counter(
        "vibe_otlp_requests_total",
        "OTLP requests answered, by transport (http, grpc), signal route and status (HTTP's, \
         or the one OTLP pairs with the gRPC code).",
    );
    for ((protocol, path, status), n) in &r.requests {
        f.sample(
            &[
                ("protocol", protocol.as_str()),
                ("path", path),
                ("status", &status.to_string()),
            ],
            *n as f64,
        );
    }
    f.finish(out);
    let mut f = Family::counter(
        "vibe_otlp_points_accepted_total",
        "Data points (metrics), events (logs) and spans (traces) accepted.",
    );
    for (sig, n) in &r.points_accepted {
        f.sample(&[("signal", sig.as_str())], *n as f64);
    }
    f.finish(out);
    let mut f = Family::counter(
        "vibe_otlp_points_dropped_total",
        "Data points and events not counted, by reason.",
    );
    for (reason, n) in &r.points_dropped {
        f.sample(&[("reason", reason)], *n as f64);
    }
    f.finish(out);
    let mut f = Family::counter(
        "vibe_otlp_decode_errors_total",
        "Requests refused because their body could not be read, by reason.",
    );
    for (reason, n) in &r.decode_errors {
        f.sample(&[("reason", reason)], *n as f64);
    }
    f.finish(out);
    let mut f = Family::counter(
        "vibe_otlp_received_bytes_total",
        "Request body bytes received (as sent, before decompression), by signal.",
    );
    for (sig, n) in &r.bytes {
        f.sample(&[("signal", sig.as_str())], *n as f64);
    }
    f.finish(out);
    let mut f = Family::gauge(
        "vibe_otlp_streams",
        "OTLP streams remembered for cumulative tracking and re-delivery detection.",
    );
    f.sample(&[], t.streams_tracked as f64);
    f.finish(out);
    let mut f = Family::counter(
        "vibe_otlp_streams_evicted_total",
        "Streams forgotten because they were idle too long or the table was full.",
    );
    f.sample(&[], r.streams_evicted as f64);
    f.finish(out);

    if !t.forward.upstreams.is_empty() {
        let mut sent = Family::counter(
            "vibe_otlp_forwarded_total",
            "Request bodies delivered to the configured upstream, by signal.",
        );
        let mut retries = Family::counter(
            "vibe_otlp_forward_retries_total",
            "Upstream deliveries retried after 429, 5xx or a connection error.",
        );
        let mut dropped = Family::counter(
            "vibe_otlp_forward_dropped_total",
            "Request bodies not delivered upstream: overflow (queue full, oldest dropped) \
             or rejected (4xx).",
        );
        let mut queued = Family::gauge(
            "vibe_otlp_forward_queue_bytes",
            "Bytes waiting for the upstream.",
        );
        for (sig, s, r, over, rej, q) in &t.forward.upstreams {
            let l = [("signal", sig.as_str())];
            sent.sample(&l, *s as f64);
            retries.sample(&l, *r as f64);
            dropped.sample(
                &[("signal", sig.as_str()), ("reason", "overflow")],
                *over as f64,
            );
            dropped.sample(
                &[("signal", sig.as_str()), ("reason", "rejected")],
                *rej as f64,
            );
            queued.sample(&l, *q as f64);
        }
        for f in [sent, retries, dropped, queued] {
            f.finish(out);
        }
    }
}
