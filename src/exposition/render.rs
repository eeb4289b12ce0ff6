//! Turns a [`Snapshot`] into Prometheus metric families and text: the agent's own families,
//! then each source's `expose` over its own section, sorted and merged by name.
//!
//! [`SnapshotCollector`] builds fresh families from the latest snapshot at each gather;
//! there are no global metric statics, so a series that leaves the model leaves `/metrics`.
//! Nothing here measures anything: every value comes from the snapshot.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};
use tokio::sync::watch;

use super::family::Family;
use crate::model::Snapshot;

/// Every metric family the snapshot holds, in a stable order.
pub fn families(s: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::with_capacity(64);
    agent_families(s, &mut out);
    crate::probe::expose::families(&s.services, &s.units, &mut out);
    crate::host::expose::families(
        s.host.as_deref(),
        &s.filesystems,
        s.process.as_deref(),
        &mut out,
    );
    crate::juicefs::expose::families(&s.juicefs, &mut out);
    crate::otlp::expose::families(&s.claude_telemetry, &mut out);
    if let Some(t) = &s.claude_transcripts {
        crate::transcripts::expose::families(t, &mut out);
    }
    crate::systemd::expose::families(&s.units, &mut out);
    crate::webconfig::expose::families(&s.web, &mut out);
    out.sort_by(|a, b| a.name().cmp(b.name()));
    merge_same_names(out)
}

/// Two sources may contribute series to one family (e.g. `vibe_claude_active_sessions`
/// from telemetry and from transcripts): a family name may appear once in the exposition,
/// so the series of same-named neighbours (input sorted by name) are joined under the
/// first one's help and type.
fn merge_same_names(sorted: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::with_capacity(sorted.len());
    for mut f in sorted {
        match out.last_mut() {
            Some(prev) if prev.name() == f.name() => {
                let metrics = std::mem::take(f.mut_metric());
                prev.mut_metric().extend(metrics);
            }
            _ => out.push(f),
        }
    }
    out
}

fn agent_families(s: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut f = Family::gauge(
        "vibe_agent_build_info",
        "A metric with a constant '1' value labeled by version and revision of vibe-agent.",
    );
    f.sample(
        &[("version", s.build.version), ("revision", s.build.revision)],
        1.0,
    );
    f.finish(out);

    let mut up = Family::gauge(
        "vibe_agent_source_up",
        "1 when the source's last round of work succeeded.",
    );
    let mut errors = Family::counter(
        "vibe_agent_source_errors_total",
        "Errors a source met while collecting (not failures of what it watches).",
    );
    for (source, h) in s.sources.iter() {
        let name = source.as_str();
        up.flag(&[("source", name)], h.up);
        errors.sample(&[("source", name)], h.errors_total as f64);
    }
    up.finish(out);
    errors.finish(out);

    let mut f = Family::gauge(
        "vibe_agent_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful.",
    );
    f.flag(&[], s.config_reload.successful);
    f.finish(out);
    let mut f = Family::gauge(
        "vibe_agent_config_last_reload_success_timestamp_seconds",
        "Timestamp of the last successful configuration load.",
    );
    f.sample(&[], s.config_reload.last_success_at);
    f.finish(out);

    let mut f = Family::counter(
        "vibe_agent_updates_dropped_total",
        "Updates from sources dropped because the model's queue was full.",
    );
    f.sample(&[], s.updates_dropped_total as f64);
    f.finish(out);
}

/// Prometheus text format 0.0.4 of the snapshot.
pub fn render(s: &Snapshot) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&families(s), &mut buf)
        .expect("text encoding into a Vec cannot fail for well-formed families");
    buf
}

/// A prometheus [`Collector`] over the model's published snapshots, for embedding the
/// agent's metrics in a [`prometheus::Registry`].
pub struct SnapshotCollector {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self {
            snapshots,
            descs: Vec::new(),
        }
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        // Unchecked collector: the set of families follows the model.
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.snapshots.borrow().clone();
        families(&snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::model::{Model, Update};
    use crate::probe::state::{ConfigureServices, PortSample};

    #[test]
    fn renders_contract_names_and_labels() {
        let mut m = Model::new(
            ConfigureServices::from_services(&Settings::default().services),
            1.0,
        );
        m.apply(Update::Port {
            service: "jupyter".into(),
            sample: PortSample {
                at: 1.0,
                port: 8888,
                listening: true,
                connect: Ok(0.0005),
            },
        });
        let text = String::from_utf8(render(&m.publish())).unwrap();
        assert!(text.contains("vibe_port_listening{service=\"jupyter\",port=\"8888\"} 1"));
        assert!(text.contains("vibe_service_up{service=\"jupyter\"} 0"));
        assert!(text.contains("vibe_service_up{service=\"code-server\"} 0"));
        assert!(text.contains("# TYPE vibe_agent_build_info gauge"));
        assert!(text.contains("vibe_agent_config_last_reload_successful 1"));
        assert!(!text.contains("vibe_http_up"), "no sample, no series");
    }

    #[test]
    fn same_named_families_from_two_sources_are_merged() {
        let mut out = Vec::new();
        let mut a = Family::gauge("x_sessions", "from a");
        a.sample(&[("source", "a")], 1.0);
        a.finish(&mut out);
        let mut b = Family::gauge("x_sessions", "from b");
        b.sample(&[("user", "u")], 2.0);
        b.finish(&mut out);
        let merged = merge_same_names(out);
        assert_eq!(merged.len(), 1);
        let mut buf = Vec::new();
        TextEncoder::new().encode(&merged, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches("# TYPE x_sessions").count(), 1, "{text}");
        assert!(
            text.contains("x_sessions{source=\"a\"} 1")
                && text.contains("x_sessions{user=\"u\"} 2")
        );
    }

    #[test]
    fn collector_registers_in_a_private_registry() {
        let mut m = Model::new(
            ConfigureServices::from_services(&Settings::default().services),
            1.0,
        );
        let (_tx, rx) = watch::channel(m.publish());
        let r = prometheus::Registry::new();
        r.register(Box::new(SnapshotCollector::new(rx))).unwrap();
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        assert!(names.contains(&"vibe_service_up".to_string()), "{names:?}");
    }
}
