//! The model: the hub. It holds the [`Snapshot`] (one section per source, each defined by
//! that source's `state` module), folds [`Update`]s into it, and publishes it.
//!
//! Sources send [`Update`]s; [`Model::apply`] hands each to its section's `state`; the model
//! task publishes an `Arc<Snapshot>` that exposition, the landing page and `vibe-agent check`
//! read. This module is pure: no I/O, no clock reads (every sample carries the time it was
//! taken), no prometheus types. It imports each source's `state` and never a source's other
//! modules; a `state` never imports this module. Sections of the snapshot sit behind `Arc`s
//! and are changed with `Arc::make_mut`, so publishing is a handful of reference-count
//! bumps and a section is only copied when a reader still holds the previous snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use crate::common::{Check, Source, SourceHealth, UnixTime};
use crate::host::state::{FsSample, HostSample, ProcSample, ProcessSample};
use crate::juicefs::state::{JuicefsRound, JuicefsState};
use crate::otlp::state::{PersistAnswer, TelemetryState, TelemetryTotals, TelemetryUpdate};
use crate::probe::state::{ConfigureServices, HttpSample, PortSample, ServiceState};
use crate::systemd::state::{UnitEvent, UnitsState};
use crate::transcripts::state::TranscriptTotals;
use crate::webconfig::state::{ListenerStats, WebState};

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
        source: Source,
        result: Result<(), String>,
    },
    /// The outcome of a configuration (re)load.
    ConfigReload { ok: bool, at: UnixTime },
    /// A fact from the systemd source (unit state, restarts, resources, connection).
    Systemd(UnitEvent),
    /// Claude Code telemetry: a receipt from the OTLP receiver, restored totals, or a tick.
    ClaudeTelemetry(TelemetryUpdate),
    /// One sampling round of the JuiceFS mounts.
    Juicefs(JuicefsRound),
    /// Totals from the Claude transcript tailer (a whole snapshot; replaces the last).
    ClaudeTranscripts(Arc<TranscriptTotals>),
    /// A listener's web config counters (a whole copy; replaces the last).
    WebListener(ListenerStats),
}

/// A question or a command for the model. Requests travel on their own channel beside the
/// bounded data queue (see [`crate::sink`]): they are never dropped, never wait behind a
/// flood of data, and are answered after every update queued before them.
#[derive(Debug)]
pub enum Request {
    /// The watchdog asks whether the model loop is alive.
    Ping(tokio::sync::oneshot::Sender<()>),
    /// After a reload: drop the filesystems that are no longer configured.
    RetainFilesystems(Vec<PathBuf>),
    /// The telemetry persister asks for the state file's content, unless it is still what
    /// revision `saved` held.
    SaveTelemetry {
        saved: Option<u64>,
        reply: tokio::sync::oneshot::Sender<PersistAnswer>,
    },
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
    /// The probed services ([`crate::probe::state`]).
    pub services: Arc<Vec<ServiceState>>,
    /// Host-wide figures ([`crate::host::state`]).
    pub host: Option<Arc<HostSample>>,
    /// The sampled paths, and the JuiceFS mount points ([`crate::host::state`]).
    pub filesystems: Arc<BTreeMap<PathBuf, FsSample>>,
    /// The agent's own process ([`crate::host::state`]).
    pub process: Option<Arc<ProcessSample>>,
    pub sources: Arc<BTreeMap<Source, SourceHealth>>,
    /// JuiceFS mounts, from the latest round.
    pub juicefs: Arc<JuicefsState>,
    /// Claude Code telemetry received over OTLP.
    pub claude_telemetry: Arc<TelemetryTotals>,
    /// Watched systemd units.
    pub units: Arc<UnitsState>,
    pub config_reload: ConfigReloadState,
    /// Updates sources could not deliver because the model's queue was full.
    pub updates_dropped_total: u64,
    /// Claude transcript totals, once the tailer has published.
    pub claude_transcripts: Option<Arc<TranscriptTotals>>,
    /// Listeners served under a web config file (TLS, basic auth).
    pub web: Arc<WebState>,
}

impl Snapshot {
    /// True once every service's enabled checks and the host have reported once: the
    /// agent's `/metrics` then says something about every configured thing.
    pub fn ready(&self) -> bool {
        self.services.iter().all(ServiceState::sampled) && self.host.is_some()
    }

    /// Every check's state: the services in configuration order, then the units, the
    /// JuiceFS mounts and the sampled paths.
    pub fn checks(&self) -> Vec<Check> {
        let systemd = self.sources.get(&Source::Systemd);
        let mut out = crate::probe::state::checks(&self.services, &self.units, systemd.is_some());
        let service_units: Vec<&str> = self
            .services
            .iter()
            .filter_map(|s| s.info.unit.as_deref())
            .collect();
        out.extend(self.units.other_checks(&service_units, systemd));
        out.extend(self.juicefs.checks());
        out.extend(crate::host::state::filesystem_checks(&self.filesystems));
        out
    }
}

/// The model's state. [`Model::apply`] is the only way it changes.
#[derive(Debug)]
pub struct Model {
    state: Snapshot,
    /// Claude Code telemetry with its working sets (streams, sessions, event hashes); only
    /// its totals go into a snapshot, copied at publish when they changed.
    telemetry: TelemetryState,
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
                web: Arc::default(),
            },
            telemetry: Default::default(),
            telemetry_changed: false,
        };
        model.apply(Update::Configure(services));
        model
    }

    /// Folds one update into the state.
    pub fn apply(&mut self, update: Update) {
        use crate::probe::state::{configure, service_mut};
        let st = &mut self.state;
        match update {
            Update::Configure(services) => configure(Arc::make_mut(&mut st.services), services),
            Update::Port { service, sample } => {
                if let Some(s) =
                    service_mut(Arc::make_mut(&mut st.services).as_mut_slice(), &service)
                {
                    s.port = Some(sample);
                }
            }
            Update::Http { service, sample } => {
                if let Some(s) =
                    service_mut(Arc::make_mut(&mut st.services).as_mut_slice(), &service)
                {
                    s.http = Some(sample);
                }
            }
            Update::ServiceProcesses { service, sample } => {
                if let Some(s) =
                    service_mut(Arc::make_mut(&mut st.services).as_mut_slice(), &service)
                {
                    s.procs = Some(sample);
                }
            }
            Update::Host(h) => st.host = Some(Arc::new(h)),
            Update::Filesystem(fs) => {
                Arc::make_mut(&mut st.filesystems).insert(fs.path.clone(), fs);
            }
            Update::Process(p) => st.process = Some(Arc::new(p)),
            Update::Source { source, result } => {
                Arc::make_mut(&mut st.sources)
                    .entry(source)
                    .or_default()
                    .record(result);
            }
            Update::ConfigReload { ok, at } => {
                st.config_reload.successful = ok;
                if ok {
                    st.config_reload.last_success_at = at;
                }
            }
            Update::Systemd(e) => Arc::make_mut(&mut st.units).apply(e),
            Update::ClaudeTranscripts(t) => st.claude_transcripts = Some(t),
            Update::WebListener(w) => {
                Arc::make_mut(&mut st.web).insert(w.listener, w);
            }
            Update::ClaudeTelemetry(u) => {
                self.telemetry_changed |= self.telemetry.apply(u);
            }
            Update::Juicefs(round) => {
                crate::juicefs::state::apply(&mut st.juicefs, &mut st.filesystems, round)
            }
        }
    }

    /// Answers or carries out one request; true when the state changed (a snapshot is due).
    pub fn answer(&mut self, request: Request) -> bool {
        match request {
            Request::Ping(reply) => {
                let _ = reply.send(());
                false
            }
            Request::RetainFilesystems(paths) => {
                self.retain_filesystems(&paths);
                true
            }
            Request::SaveTelemetry { saved, reply } => {
                let _ = reply.send(self.telemetry.answer_save(saved));
                false
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::host::state::FsResult;
    use crate::probe::state::HealthDetail;

    fn model() -> Model {
        Model::new(
            ConfigureServices::from_services(&Settings::default().services),
            1.0,
        )
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
        let mut infos = ConfigureServices::from_services(&Settings::default().services);
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
            source: Source::Host,
            result: Err("boom".into()),
        });
        m.apply(Update::Source {
            source: Source::Host,
            result: Err("boom".into()),
        });
        let s = m.publish();
        assert_eq!(s.sources[&Source::Host].errors_total, 2);
        assert!(!s.sources[&Source::Host].up);
        m.apply(Update::Source {
            source: Source::Host,
            result: Ok(()),
        });
        let s2 = m.publish();
        assert!(s2.sources[&Source::Host].up);
        assert_eq!(s2.sources[&Source::Host].errors_total, 2);
        assert!(!s.sources[&Source::Host].up, "old snapshot is untouched");
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
