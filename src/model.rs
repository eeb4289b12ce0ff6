//! The model: the single owner of everything the agent knows, and the [`Snapshot`] it
//! publishes.
//!
//! Sources send [`Update`]s; [`Model::apply`] folds them in; the model task publishes an
//! `Arc<Snapshot>` that exposition, the landing page and `vibe-agent check` read. This module
//! is pure: no I/O, no clock reads (every sample carries the time it was taken), no
//! prometheus types. Sections of the snapshot sit behind `Arc`s and are changed with
//! `Arc::make_mut`, so publishing is a handful of reference-count bumps and a section is only
//! copied when a reader still holds the previous snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{ServiceKind, Settings};

/// Seconds since the Unix epoch, as a float (what Prometheus timestamps want).
pub type UnixTime = f64;

/// A named source of data, for `vibe_agent_source_up{source}`.
pub type SourceName = &'static str;

/// One fact from a source.
#[derive(Debug)]
pub enum Update {
    /// The configured services (at start and after each successful reload). Services that
    /// are no longer configured are dropped with their samples.
    Configure(ConfigureServices),
    /// Port probe result.
    Port { service: String, sample: PortSample },
    /// HTTP health probe result.
    Http { service: String, sample: HttpSample },
    /// Memory and CPU of a service's processes.
    ServiceProcesses { service: String, sample: ProcSample },
    /// Host-wide CPU, load, memory.
    Host(HostSample),
    /// statvfs of one path.
    Filesystem(FsSample),
    /// The agent's own process.
    Process(ProcessSample),
    /// A source's health after a round of work: `Err` counts an error and sets it down.
    Source {
        source: SourceName,
        result: Result<(), String>,
    },
    /// The outcome of a configuration (re)load.
    ConfigReload { ok: bool, at: UnixTime },
    /// A fact from the systemd source (unit state, restarts, resources, connection).
    Systemd(crate::systemd::UnitEvent),
    /// Claude Code telemetry: a receipt from the OTLP receiver, restored totals, or a tick.
    ClaudeTelemetry(crate::otlp::TelemetryUpdate),
    /// One sampling round of the JuiceFS mounts.
    Juicefs(crate::juicefs::JuicefsRound),
    /// The watchdog asks whether the model loop is alive; answered as soon as it is read.
    Ping(tokio::sync::oneshot::Sender<()>),
    /// Totals from the Claude transcript tailer (a whole snapshot; replaces the last).
    ClaudeTranscripts(Arc<crate::transcripts::TranscriptTotals>),
}

/// The service list as the model needs it: names, kinds, and which checks are enabled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigureServices(pub Vec<ServiceInfo>);

impl ConfigureServices {
    pub fn from_settings(settings: &Settings) -> Self {
        Self(
            settings
                .services
                .iter()
                .map(|s| ServiceInfo {
                    name: s.name.clone(),
                    kind: s.kind,
                    unit: s.unit.clone(),
                    port: s.port,
                    health_url: s.health_url.clone(),
                    status_enabled: s.kind == ServiceKind::Jupyter && s.token.is_some(),
                })
                .collect(),
        )
    }
}

/// What the model knows of a service's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub kind: ServiceKind,
    pub unit: Option<String>,
    pub port: Option<u16>,
    pub health_url: Option<String>,
    /// JupyterLab with a token: `/api/status` is probed too.
    pub status_enabled: bool,
}

/// One port probe: the kernel's socket table and a TCP connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortSample {
    pub at: UnixTime,
    pub port: u16,
    /// In LISTEN state in the socket table (IPv4 or IPv6).
    pub listening: bool,
    /// `Ok(seconds)` when a TCP connect succeeded within the timeout.
    pub connect: Result<f64, String>,
}

/// One HTTP health probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSample {
    pub at: UnixTime,
    /// Seconds from request to the end of the body (or to the failure).
    pub duration: f64,
    /// Status code, when a response arrived.
    pub status: Option<u16>,
    /// `Ok(())` when the probe passed; otherwise why not, in words for a person.
    pub outcome: Result<(), String>,
    /// What the body said, for kinds that have one.
    pub detail: HealthDetail,
}

/// Parsed health bodies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum HealthDetail {
    None,
    /// code-server `/healthz`. `expired` (idle for 60 s) is still up.
    CodeServer {
        alive: bool,
        last_heartbeat: Option<UnixTime>,
    },
    /// JupyterLab `/api/status`, when probed.
    Jupyter(JupyterStatusProbe),
}

/// The outcome of JupyterLab's authenticated status request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum JupyterStatusProbe {
    Ok(JupyterStatus),
    /// 401 or 403: the configured token is wrong. Distinct from down.
    AuthFailed {
        status: u16,
    },
    /// The token could not be read, the request failed, or the body made no sense.
    Failed(String),
}

/// JupyterLab `/api/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JupyterStatus {
    pub kernels: f64,
    pub connections: f64,
    pub started: Option<UnixTime>,
    pub last_activity: Option<UnixTime>,
}

/// Memory and CPU of one service's processes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcSample {
    pub at: UnixTime,
    pub processes: u64,
    pub memory_rss_bytes: f64,
    /// CPU use over the last interval, in cores (1.0 = one core busy).
    pub cpu_usage_cores: f64,
}

/// Host-wide figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSample {
    pub at: UnixTime,
    pub cpu_usage_ratio: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_total_bytes: f64,
    pub memory_available_bytes: f64,
    pub swap_total_bytes: f64,
    pub swap_used_bytes: f64,
}

/// statvfs of one configured path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsSample {
    pub at: UnixTime,
    pub path: PathBuf,
    pub result: FsResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FsResult {
    Ok(FsUsage),
    /// The path does not exist (reported, not fatal).
    Missing,
    /// statvfs failed for another reason.
    Error(String),
    /// statvfs did not return within the timeout (a hung mount).
    Stuck,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FsUsage {
    pub size_bytes: f64,
    pub avail_bytes: f64,
    pub free_bytes: f64,
    pub files: f64,
    pub files_free: f64,
}

/// The agent's own process (node_exporter's `process_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ProcessSample {
    pub cpu_seconds_total: f64,
    pub resident_memory_bytes: f64,
    pub virtual_memory_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub threads: f64,
}

/// A source's health.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SourceHealth {
    pub up: bool,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

/// One service and its latest samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceState {
    pub info: ServiceInfo,
    pub port: Option<PortSample>,
    pub http: Option<HttpSample>,
    pub procs: Option<ProcSample>,
}

impl ServiceState {
    /// 1 when every enabled check passes: port listening and accepting, health probe up,
    /// and the unit running once systemd has reported it (see
    /// [`UnitsState::allows_up`](crate::systemd::UnitsState::allows_up)). A check that has
    /// not reported yet does not pass. JupyterLab's authenticated `/api/status` is not part
    /// of it: a wrong token in the agent's config says nothing about whether users can work,
    /// and is reported on its own (`vibe_jupyter_auth_failed`, alert VibeJupyterAuthFailing).
    pub fn up(&self, units: &crate::systemd::UnitsState) -> bool {
        let port_ok = self.info.port.is_none()
            || self
                .port
                .as_ref()
                .is_some_and(|p| p.listening && p.connect.is_ok());
        let http_ok =
            self.info.health_url.is_none() || self.http.as_ref().is_some_and(|h| h.outcome.is_ok());
        port_ok && http_ok && units.allows_up(self.info.unit.as_deref())
    }

    /// Every enabled check has reported at least once.
    fn sampled(&self) -> bool {
        (self.info.port.is_none() || self.port.is_some())
            && (self.info.health_url.is_none() || self.http.is_some())
    }
}

/// Outcome of the last configuration (re)load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigReloadState {
    pub successful: bool,
    pub last_success_at: UnixTime,
}

/// Version and git revision of this build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

impl BuildInfo {
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("VIBE_AGENT_REVISION"),
        }
    }
}

/// Everything the agent knows at one moment. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Increases with each published snapshot; exposition caches by it.
    pub generation: u64,
    pub build: BuildInfo,
    pub services: Arc<Vec<ServiceState>>,
    pub host: Option<Arc<HostSample>>,
    pub filesystems: Arc<BTreeMap<PathBuf, FsSample>>,
    pub process: Option<Arc<ProcessSample>>,
    pub sources: Arc<BTreeMap<SourceName, SourceHealth>>,
    /// JuiceFS mounts, from the latest round.
    pub juicefs: Arc<crate::juicefs::JuicefsState>,
    /// Claude Code telemetry received over OTLP.
    pub claude_telemetry: Arc<crate::otlp::state::TelemetryTotals>,
    /// Watched systemd units.
    pub units: Arc<crate::systemd::UnitsState>,
    pub config_reload: ConfigReloadState,
    /// Updates sources could not deliver because the model's queue was full.
    pub updates_dropped_total: u64,
    /// Claude transcript totals, once the tailer has published.
    pub claude_transcripts: Option<Arc<crate::transcripts::TranscriptTotals>>,
}

/// One line of `vibe-agent check` and of the landing page's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// e.g. "jupyter port 8888".
    pub name: String,
    pub ok: bool,
    /// e.g. "listening", "not listening", "authentication failed (403): ...".
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = if self.ok { "[OK]" } else { "[ERROR]" };
        write!(f, "{tag} {}: {}", self.name, self.detail)
    }
}

impl Snapshot {
    /// True once every service's enabled checks and the host have reported once: the
    /// agent's `/metrics` then says something about every configured thing.
    pub fn ready(&self) -> bool {
        self.services.iter().all(ServiceState::sampled) && self.host.is_some()
    }

    /// Every check's state, in configuration order.
    pub fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        for s in self.services.iter() {
            let name = &s.info.name;
            if let Some(unit) = s.info.unit.as_deref().filter(|_| self.units_watched()) {
                out.push(self.units.service_check(name, unit));
            }
            if let Some(port) = s.info.port {
                let check = |ok, detail: String| Check {
                    name: format!("{name} port {port}"),
                    ok,
                    detail,
                };
                out.push(match &s.port {
                    None => check(false, "not probed yet".into()),
                    Some(p) => match (p.listening, &p.connect) {
                        (true, Ok(secs)) => {
                            check(true, format!("listening, connect in {}", ms(*secs)))
                        }
                        (true, Err(e)) => check(false, format!("listening, but connect: {e}")),
                        (false, _) => check(false, "not listening".into()),
                    },
                });
            }
            if let Some(url) = &s.info.health_url {
                let check = |ok, detail: String| Check {
                    name: format!("{name} http"),
                    ok,
                    detail,
                };
                out.push(match &s.http {
                    None => check(false, format!("{url}: not probed yet")),
                    Some(h) => match &h.outcome {
                        Ok(()) => {
                            let what = match &h.detail {
                                HealthDetail::CodeServer { alive: true, .. } => " (alive)",
                                HealthDetail::CodeServer { alive: false, .. } => {
                                    " (expired: idle, not down)"
                                }
                                _ => "",
                            };
                            check(
                                true,
                                format!(
                                    "{url}: {} in {}{what}",
                                    h.status.unwrap_or(0),
                                    ms(h.duration)
                                ),
                            )
                        }
                        Err(e) => check(false, format!("{url}: {e}")),
                    },
                });
            }
            if s.info.status_enabled {
                let check = |ok, detail: String| Check {
                    name: format!("{name} status"),
                    ok,
                    detail,
                };
                out.push(match s.http.as_ref().map(|h| &h.detail) {
                    Some(HealthDetail::Jupyter(JupyterStatusProbe::Ok(st))) => check(
                        true,
                        format!("{} kernels, {} connections", st.kernels, st.connections),
                    ),
                    Some(HealthDetail::Jupyter(JupyterStatusProbe::AuthFailed { status })) => {
                        check(
                            false,
                            format!(
                                "authentication failed ({status}): the token in the agent's \
                                 config is not accepted by JupyterLab"
                            ),
                        )
                    }
                    Some(HealthDetail::Jupyter(JupyterStatusProbe::Failed(e))) => {
                        check(false, e.clone())
                    }
                    _ => check(false, "not probed (liveness failed)".into()),
                });
            }
        }
        let service_units: Vec<&str> = self
            .services
            .iter()
            .filter_map(|s| s.info.unit.as_deref())
            .collect();
        let systemd = self.sources.get(crate::systemd::SYSTEMD_SOURCE);
        out.extend(self.units.other_checks(&service_units, systemd));
        out.extend(self.juicefs.checks());
        for fs in self.filesystems.values() {
            let name = format!("filesystem {}", fs.path.display());
            let (ok, detail) = match &fs.result {
                FsResult::Ok(u) => {
                    let used = if u.size_bytes > 0.0 {
                        100.0 * (1.0 - u.avail_bytes / u.size_bytes)
                    } else {
                        0.0
                    };
                    (true, format!("{used:.0}% used"))
                }
                FsResult::Missing => (false, "does not exist".to_string()),
                FsResult::Error(e) => (false, e.clone()),
                FsResult::Stuck => (
                    false,
                    "stuck: statvfs did not return within the timeout (hung mount?)".to_string(),
                ),
            };
            out.push(Check { name, ok, detail });
        }
        out
    }
}

impl Snapshot {
    /// The systemd source runs (it has reported at least once).
    fn units_watched(&self) -> bool {
        self.sources.contains_key(crate::systemd::SYSTEMD_SOURCE)
    }
}

fn ms(secs: f64) -> String {
    format!("{:.1} ms", secs * 1e3)
}

/// The model's state. [`Model::apply`] is the only way it changes.
#[derive(Debug)]
pub struct Model {
    state: Snapshot,
    /// Claude Code telemetry with its working sets (streams, sessions, event hashes); only
    /// its totals go into a snapshot, copied at publish when they changed.
    telemetry: crate::otlp::TelemetryState,
    telemetry_changed: bool,
}

impl Model {
    pub fn new(services: ConfigureServices, now: UnixTime) -> Self {
        let mut model = Self {
            state: Snapshot {
                generation: 0,
                build: BuildInfo::current(),
                services: Arc::new(Vec::new()),
                host: None,
                filesystems: Arc::new(BTreeMap::new()),
                process: None,
                sources: Arc::new(BTreeMap::new()),
                juicefs: Arc::default(),
                claude_telemetry: Arc::default(),
                units: Arc::default(),
                config_reload: ConfigReloadState {
                    successful: true,
                    last_success_at: now,
                },
                updates_dropped_total: 0,
                claude_transcripts: None,
            },
            telemetry: Default::default(),
            telemetry_changed: false,
        };
        model.apply(Update::Configure(services));
        model
    }

    /// Folds one update into the state.
    pub fn apply(&mut self, update: Update) {
        let st = &mut self.state;
        match update {
            Update::Configure(ConfigureServices(infos)) => {
                let old = std::mem::take(Arc::make_mut(&mut st.services));
                let services = Arc::make_mut(&mut st.services);
                for info in infos {
                    // Keep samples of a service whose checks did not change.
                    let kept = old
                        .iter()
                        .find(|o| o.info == info)
                        .map(|o| (o.port.clone(), o.http.clone(), o.procs.clone()));
                    let (port, http, procs) = kept.unwrap_or((None, None, None));
                    services.push(ServiceState {
                        info,
                        port,
                        http,
                        procs,
                    });
                }
            }
            Update::Port { service, sample } => {
                if let Some(s) = service_mut(st, &service) {
                    s.port = Some(sample);
                }
            }
            Update::Http { service, sample } => {
                if let Some(s) = service_mut(st, &service) {
                    s.http = Some(sample);
                }
            }
            Update::ServiceProcesses { service, sample } => {
                if let Some(s) = service_mut(st, &service) {
                    s.procs = Some(sample);
                }
            }
            Update::Host(h) => st.host = Some(Arc::new(h)),
            Update::Filesystem(fs) => {
                Arc::make_mut(&mut st.filesystems).insert(fs.path.clone(), fs);
            }
            Update::Process(p) => st.process = Some(Arc::new(p)),
            Update::Source { source, result } => {
                let h = Arc::make_mut(&mut st.sources).entry(source).or_default();
                match result {
                    Ok(()) => h.up = true,
                    Err(e) => {
                        h.up = false;
                        h.errors_total += 1;
                        h.last_error = Some(e);
                    }
                }
            }
            Update::ConfigReload { ok, at } => {
                st.config_reload.successful = ok;
                if ok {
                    st.config_reload.last_success_at = at;
                }
            }
            Update::Systemd(e) => Arc::make_mut(&mut st.units).apply(e),
            Update::ClaudeTranscripts(t) => st.claude_transcripts = Some(t),
            Update::ClaudeTelemetry(u) => {
                self.telemetry_changed |= self.telemetry.apply(u);
            }
            Update::Juicefs(round) => crate::juicefs::state::apply(st, round),
            Update::Ping(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// Drops filesystems that are no longer configured.
    pub fn retain_filesystems(&mut self, paths: &[PathBuf]) {
        Arc::make_mut(&mut self.state.filesystems).retain(|p, _| paths.contains(p));
    }

    pub fn set_updates_dropped(&mut self, n: u64) {
        self.state.updates_dropped_total = n;
    }

    /// The state as a new snapshot with the next generation number.
    pub fn publish(&mut self) -> Arc<Snapshot> {
        if std::mem::take(&mut self.telemetry_changed) {
            self.state.claude_telemetry = Arc::new(self.telemetry.totals.clone());
        }
        self.state.generation += 1;
        Arc::new(self.state.clone())
    }
}

fn service_mut<'a>(st: &'a mut Snapshot, name: &str) -> Option<&'a mut ServiceState> {
    Arc::make_mut(&mut st.services)
        .iter_mut()
        .find(|s| s.info.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::new(ConfigureServices::from_settings(&Settings::default()), 1.0)
    }

    fn port(listening: bool, connect: bool) -> PortSample {
        PortSample {
            at: 2.0,
            port: 8888,
            listening,
            connect: if connect {
                Ok(0.001)
            } else {
                Err("connection refused".into())
            },
        }
    }

    fn http(ok: bool) -> HttpSample {
        HttpSample {
            at: 2.0,
            duration: 0.002,
            status: Some(if ok { 200 } else { 500 }),
            outcome: if ok { Ok(()) } else { Err("status 500".into()) },
            detail: HealthDetail::None,
        }
    }

    fn jupyter(m: &Model) -> &ServiceState {
        m.state
            .services
            .iter()
            .find(|s| s.info.name == "jupyter")
            .unwrap()
    }

    #[test]
    fn service_up_needs_every_enabled_check() {
        let mut m = model();
        assert!(!jupyter(&m).up(&m.state.units), "unsampled is not up");
        for (listening, connect, http_ok, want) in [
            (true, true, true, true),
            (false, true, true, false),
            (true, false, true, false),
            (true, true, false, false),
        ] {
            m.apply(Update::Port {
                service: "jupyter".into(),
                sample: port(listening, connect),
            });
            m.apply(Update::Http {
                service: "jupyter".into(),
                sample: http(http_ok),
            });
            assert_eq!(
                jupyter(&m).up(&m.state.units),
                want,
                "{listening} {connect} {http_ok}"
            );
        }
    }

    #[test]
    fn samples_for_unknown_services_are_ignored_and_reconfigure_drops_removed() {
        let mut m = model();
        m.apply(Update::Port {
            service: "nope".into(),
            sample: port(true, true),
        });
        assert_eq!(m.state.services.len(), 2);
        m.apply(Update::Port {
            service: "jupyter".into(),
            sample: port(true, true),
        });
        let mut infos = ConfigureServices::from_settings(&Settings::default());
        infos.0.retain(|s| s.name == "jupyter");
        m.apply(Update::Configure(infos));
        assert_eq!(m.state.services.len(), 1);
        assert!(
            jupyter(&m).port.is_some(),
            "unchanged service keeps samples"
        );
    }

    #[test]
    fn source_errors_count_and_recover() {
        let mut m = model();
        m.apply(Update::Source {
            source: "host",
            result: Err("boom".into()),
        });
        m.apply(Update::Source {
            source: "host",
            result: Err("boom".into()),
        });
        let s = m.publish();
        assert_eq!(s.sources["host"].errors_total, 2);
        assert!(!s.sources["host"].up);
        m.apply(Update::Source {
            source: "host",
            result: Ok(()),
        });
        let s2 = m.publish();
        assert!(s2.sources["host"].up);
        assert_eq!(s2.sources["host"].errors_total, 2);
        assert!(!s.sources["host"].up, "old snapshot is untouched");
        assert!(s2.generation > s.generation);
    }

    #[test]
    fn checks_read_like_a_health_script() {
        let mut m = model();
        m.apply(Update::Port {
            service: "jupyter".into(),
            sample: port(false, false),
        });
        m.apply(Update::Filesystem(FsSample {
            at: 1.0,
            path: "/fs".into(),
            result: FsResult::Stuck,
        }));
        let lines: Vec<String> = m.publish().checks().iter().map(|c| c.to_string()).collect();
        assert!(lines.contains(&"[ERROR] jupyter port 8888: not listening".to_string()));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[ERROR] filesystem /fs: stuck"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[ERROR] code-server port 8443: not probed yet"))
        );
    }

    #[test]
    fn config_reload_failure_keeps_last_success_time() {
        let mut m = model();
        m.apply(Update::ConfigReload { ok: true, at: 5.0 });
        m.apply(Update::ConfigReload { ok: false, at: 9.0 });
        let s = m.publish();
        assert!(!s.config_reload.successful);
        assert_eq!(s.config_reload.last_success_at, 5.0);
    }
}
