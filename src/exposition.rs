//! Exposition: turns a [`Snapshot`] into Prometheus metric families and text.
//!
//! The only module that knows the prometheus crate. [`SnapshotCollector`] builds fresh
//! families from the latest snapshot at each gather; there are no global metric statics, so
//! a series that leaves the model leaves `/metrics`. Nothing here measures anything: every
//! value comes from the snapshot.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use tokio::sync::watch;

use crate::model::{FsResult, HealthDetail, JupyterStatusProbe, Snapshot};

/// A metric family under construction.
pub struct Family {
    inner: MetricFamily,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut inner = MetricFamily::default();
        inner.set_name(name.to_string());
        inner.set_help(help.to_string());
        inner.set_field_type(kind);
        Self { inner }
    }

    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::GAUGE)
    }

    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::COUNTER)
    }

    pub fn histogram(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::HISTOGRAM)
    }

    /// Adds one histogram sample: `buckets` are (finite upper bound, cumulative count); the
    /// `+Inf` bucket is `count`.
    pub fn histogram_sample(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        count: u64,
        sum: f64,
    ) -> &mut Self {
        let mut h = prometheus::proto::Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        h.set_bucket(
            buckets
                .iter()
                .filter(|(le, _)| le.is_finite())
                .map(|(le, c)| {
                    let mut b = prometheus::proto::Bucket::default();
                    b.set_upper_bound(*le);
                    b.set_cumulative_count(*c);
                    b
                })
                .collect(),
        );
        let mut m = Metric::from_label(Self::labels(labels));
        m.set_histogram(h);
        self.inner.mut_metric().push(m);
        self
    }

    fn labels(labels: &[(&str, &str)]) -> Vec<LabelPair> {
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect()
    }

    /// Adds one sample with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut m = Metric::from_label(Self::labels(labels));
        if self.inner.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.inner.mut_metric().push(m);
        self
    }

    /// Adds a 0/1 sample.
    pub fn flag(&mut self, labels: &[(&str, &str)], value: bool) -> &mut Self {
        self.sample(labels, if value { 1.0 } else { 0.0 })
    }

    /// The family, or nothing when it has no samples (an empty family is not exposed).
    pub fn finish(self, out: &mut Vec<MetricFamily>) {
        if !self.inner.get_metric().is_empty() {
            out.push(self.inner);
        }
    }
}

/// Every metric family the snapshot holds, in a stable order.
pub fn families(s: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::with_capacity(64);
    agent_families(s, &mut out);
    service_families(s, &mut out);
    host_families(s, &mut out);
    crate::juicefs::expose::families(&s.juicefs, &mut out);
    crate::otlp::expose::families(&s.claude_telemetry, &mut out);
    if let Some(t) = &s.claude_transcripts {
        crate::transcripts::expose::families(t, &mut out);
    }
    crate::systemd::expose::families(&s.units, &mut out);
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
    for (name, h) in s.sources.iter() {
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

    if let Some(p) = &s.process {
        let gauges: [(&str, &str, f64); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
            ("process_threads", "Number of OS threads.", p.threads),
        ];
        for (name, help, v) in gauges {
            let mut f = Family::gauge(name, help);
            f.sample(&[], v);
            f.finish(out);
        }
        let mut f = Family::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        f.sample(&[], p.cpu_seconds_total);
        f.finish(out);
    }
}

fn service_families(s: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut service_up = Family::gauge(
        "vibe_service_up",
        "1 when every enabled check of the service passes.",
    );
    let mut listening = Family::gauge(
        "vibe_port_listening",
        "1 when the service's port is in LISTEN state in the kernel's socket table.",
    );
    let mut accepting = Family::gauge(
        "vibe_port_connect_success",
        "1 when a TCP connect to the service's port succeeded within the timeout.",
    );
    let mut connect_secs = Family::gauge(
        "vibe_port_connect_duration_seconds",
        "Duration of the last successful TCP connect to the service's port.",
    );
    let mut http_up = Family::gauge("vibe_http_up", "1 when the last health probe passed.");
    let mut http_status = Family::gauge(
        "vibe_http_status_code",
        "HTTP status of the last health probe (0 when no response arrived).",
    );
    let mut http_secs = Family::gauge(
        "vibe_http_duration_seconds",
        "Duration of the last health probe.",
    );
    let mut cs_alive = Family::gauge(
        "vibe_codeserver_heartbeat_alive",
        "1 when code-server's /healthz says alive; 0 when expired (idle for 60 s, not down).",
    );
    let mut cs_heartbeat = Family::gauge(
        "vibe_codeserver_last_heartbeat_timestamp_seconds",
        "code-server's last heartbeat, from /healthz.",
    );
    let mut j_kernels = Family::gauge("vibe_jupyter_kernels", "JupyterLab's running kernels.");
    let mut j_conns = Family::gauge(
        "vibe_jupyter_connections",
        "JupyterLab's open client connections.",
    );
    let mut j_activity = Family::gauge(
        "vibe_jupyter_last_activity_timestamp_seconds",
        "JupyterLab's last activity, from /api/status.",
    );
    let mut j_started = Family::gauge(
        "vibe_jupyter_started_timestamp_seconds",
        "When the JupyterLab server started, from /api/status.",
    );
    let mut j_auth = Family::gauge(
        "vibe_jupyter_auth_failed",
        "1 when JupyterLab rejected the agent's token (401/403) on /api/status.",
    );
    let mut j_status_up = Family::gauge(
        "vibe_jupyter_status_up",
        "1 when JupyterLab's authenticated /api/status answered and parsed.",
    );
    let mut procs = Family::gauge(
        "vibe_service_processes",
        "Processes in the service's systemd unit cgroup.",
    );
    let mut rss = Family::gauge(
        "vibe_service_memory_rss_bytes",
        "Resident memory of the service's processes.",
    );
    let mut cpu = Family::gauge(
        "vibe_service_cpu_usage_cores",
        "CPU used by the service's processes over the last interval, in cores.",
    );

    for svc in s.services.iter() {
        let name = svc.info.name.as_str();
        let l = [("service", name)];
        service_up.flag(&l, svc.up(&s.units));
        if let Some(p) = &svc.port {
            let port = p.port.to_string();
            let lp = [("service", name), ("port", port.as_str())];
            listening.flag(&lp, p.listening);
            accepting.flag(&lp, p.connect.is_ok());
            if let Ok(secs) = p.connect {
                connect_secs.sample(&lp, secs);
            }
        }
        if let Some(h) = &svc.http {
            http_up.flag(&l, h.outcome.is_ok());
            http_status.sample(&l, h.status.map_or(0.0, f64::from));
            http_secs.sample(&l, h.duration);
            match &h.detail {
                HealthDetail::None => {}
                HealthDetail::CodeServer {
                    alive,
                    last_heartbeat,
                } => {
                    cs_alive.flag(&l, *alive);
                    if let Some(t) = last_heartbeat {
                        cs_heartbeat.sample(&l, *t);
                    }
                }
                HealthDetail::Jupyter(probe) => {
                    j_auth.flag(&l, matches!(probe, JupyterStatusProbe::AuthFailed { .. }));
                    j_status_up.flag(&l, matches!(probe, JupyterStatusProbe::Ok(_)));
                    if let JupyterStatusProbe::Ok(st) = probe {
                        j_kernels.sample(&l, st.kernels);
                        j_conns.sample(&l, st.connections);
                        if let Some(t) = st.last_activity {
                            j_activity.sample(&l, t);
                        }
                        if let Some(t) = st.started {
                            j_started.sample(&l, t);
                        }
                    }
                }
            }
        }
        if let Some(p) = &svc.procs {
            procs.sample(&l, p.processes as f64);
            rss.sample(&l, p.memory_rss_bytes);
            cpu.sample(&l, p.cpu_usage_cores);
        }
    }
    for f in [
        service_up,
        listening,
        accepting,
        connect_secs,
        http_up,
        http_status,
        http_secs,
        cs_alive,
        cs_heartbeat,
        j_kernels,
        j_conns,
        j_activity,
        j_started,
        j_auth,
        j_status_up,
        procs,
        rss,
        cpu,
    ] {
        f.finish(out);
    }
}

fn host_families(s: &Snapshot, out: &mut Vec<MetricFamily>) {
    if let Some(h) = &s.host {
        let gauges: [(&str, &str, f64); 8] = [
            (
                "vibe_host_cpu_usage_ratio",
                "Share of all CPUs busy over the last interval (0 to 1).",
                h.cpu_usage_ratio,
            ),
            ("vibe_host_load1", "1-minute load average.", h.load1),
            ("vibe_host_load5", "5-minute load average.", h.load5),
            ("vibe_host_load15", "15-minute load average.", h.load15),
            (
                "vibe_host_memory_total_bytes",
                "Total memory.",
                h.memory_total_bytes,
            ),
            (
                "vibe_host_memory_available_bytes",
                "Memory available for new work without swapping.",
                h.memory_available_bytes,
            ),
            (
                "vibe_host_swap_total_bytes",
                "Total swap.",
                h.swap_total_bytes,
            ),
            (
                "vibe_host_swap_used_bytes",
                "Swap in use.",
                h.swap_used_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            let mut f = Family::gauge(name, help);
            f.sample(&[], v);
            f.finish(out);
        }
    }

    let mut size = Family::gauge("vibe_filesystem_size_bytes", "Filesystem size (statvfs).");
    let mut avail = Family::gauge(
        "vibe_filesystem_avail_bytes",
        "Space available to unprivileged users (statvfs).",
    );
    let mut free = Family::gauge("vibe_filesystem_free_bytes", "Free space (statvfs).");
    let mut files = Family::gauge("vibe_filesystem_files", "Inodes (statvfs).");
    let mut files_free = Family::gauge("vibe_filesystem_files_free", "Free inodes (statvfs).");
    let mut stuck = Family::gauge(
        "vibe_filesystem_stuck",
        "1 when statvfs of the path did not return within the timeout (a hung mount).",
    );
    let mut exists = Family::gauge(
        "vibe_filesystem_path_exists",
        "1 when the sampled path exists.",
    );
    for fs in s.filesystems.values() {
        let p = fs.path.to_string_lossy();
        let l = [("path", p.as_ref())];
        stuck.flag(&l, fs.result == FsResult::Stuck);
        exists.flag(&l, fs.result != FsResult::Missing);
        if let FsResult::Ok(u) = &fs.result {
            size.sample(&l, u.size_bytes);
            avail.sample(&l, u.avail_bytes);
            free.sample(&l, u.free_bytes);
            files.sample(&l, u.files);
            files_free.sample(&l, u.files_free);
        }
    }
    for f in [size, avail, free, files, files_free, stuck, exists] {
        f.finish(out);
    }
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
    use crate::model::{ConfigureServices, Model, PortSample, Update};

    #[test]
    fn renders_contract_names_and_labels() {
        let mut m = Model::new(ConfigureServices::from_settings(&Settings::default()), 1.0);
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
        let mut m = Model::new(ConfigureServices::from_settings(&Settings::default()), 1.0);
        let (_tx, rx) = watch::channel(m.publish());
        let r = prometheus::Registry::new();
        r.register(Box::new(SnapshotCollector::new(rx))).unwrap();
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        assert!(names.contains(&"vibe_service_up".to_string()), "{names:?}");
    }
}
