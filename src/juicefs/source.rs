//! The JuiceFS sampler: reads the mount table, visits every mount on its own blocking worker
//! (statvfs, then `.stats`), asks the client's metrics endpoint when `.stats` gives nothing,
//! and sends one [`JuicefsRound`] per interval. See the module doc of [`super`] for why
//! nothing here touches a mount from an async task.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinSet;

use super::figures::{self, ClientFigures};
use super::mountinfo::{self, DiscoveredMount};
use super::settings::JuicefsSettings;
use super::state::{FigureSource, JuicefsRound, MountHealth, MountSample};
use crate::common::{Source, unix_now};
use crate::config::Settings;
use crate::host::state::{FsUsage, usage_of};
use crate::model::Update;
use crate::sink::{Sample, UpdateSink, spawn_periodic};
use crate::worker::BlockingWorker;

/// The internal file of a JuiceFS mount with the client's figures.
pub const STATS_FILE: &str = ".stats";

/// Name of the worker threads (seen in `top -H`).
const WORKER_NAME: &str = "vibe-juicefs";

/// What one visit to a mount found (runs on the mount's worker thread).
#[derive(Debug)]
struct Visit {
    statfs: Result<FsUsage, String>,
    /// `None` when statfs failed (the mount is not answering; `.stats` was not tried).
    stats: Option<Result<ClientFigures, String>>,
}

/// statvfs of the mount, then its `.stats`. Blocking: call on a worker only.
fn visit(mount: &Path) -> Visit {
    let statfs = match rustix::fs::statvfs(mount) {
        Ok(st) => usage_of(&st),
        Err(e) => {
            let hint = match e {
                rustix::io::Errno::NOTCONN => {
                    ": the JuiceFS client of this mount is gone; restart its \
                     juicefs-*.service (or `umount -l` the mount point)"
                }
                // FUSE lets only the mounting user in unless the mount allows others.
                rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
                    ": mount the volume with `-o allow_other` so the agent's user can reach it"
                }
                _ => "",
            };
            return Visit {
                statfs: Err(format!("statvfs {}: {e}{hint}", mount.display())),
                stats: None,
            };
        }
    };
    let path = mount.join(STATS_FILE);
    let stats = match std::fs::read_to_string(&path) {
        Ok(text) => figures::from_stats(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) => Err(format!("read {}: {e}", path.display())),
    };
    Visit {
        statfs: Ok(statfs),
        stats: Some(stats),
    }
}

/// The innermost cause of an error, after the outer message (reqwest nests the useful part).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg = format!("{msg}: {s}");
        }
        cause = c.source();
    }
    msg
}

/// The client's figures for `mount` from its metrics endpoint.
async fn fetch_endpoint(
    http: &reqwest::Client,
    url: &str,
    mount: &Path,
    timeout: Duration,
) -> Result<ClientFigures, String> {
    let get = async {
        let resp = http.get(url).send().await?.error_for_status()?;
        resp.text().await
    };
    let text = match tokio::time::timeout(timeout, get).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(format!("GET {url}: {}", one_line(&e))),
        Err(_) => return Err(format!("GET {url}: no answer within {timeout:?}")),
    };
    figures::from_prometheus_text(&text, &mount.to_string_lossy())
        .map_err(|e| format!("GET {url}: {e}"))
}

/// One mount being sampled.
struct MountProbe {
    /// The only thread that ever touches this mount.
    worker: BlockingWorker,
}

/// What the sampler aims at this round.
struct Target {
    mount: PathBuf,
    volume: String,
    metrics_url: String,
    configured: bool,
    bind_mounts: Vec<PathBuf>,
    mounted: bool,
}

/// The JuiceFS sampler's state: the last mount table and one worker per mounted mount.
pub struct JuicefsSampler {
    settings: JuicefsSettings,
    probes: BTreeMap<PathBuf, MountProbe>,
    /// The mounts of the last readable mount table (kept when it cannot be read).
    discovered: Vec<DiscoveredMount>,
    /// Volume names seen, so a mount that left the table keeps its label.
    volumes: BTreeMap<PathBuf, String>,
    http: reqwest::Client,
}

impl JuicefsSampler {
    pub fn new(settings: &JuicefsSettings) -> Self {
        crate::tlsclient::install_default_provider();
        Self {
            settings: settings.clone(),
            probes: BTreeMap::new(),
            discovered: Vec::new(),
            volumes: BTreeMap::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("vibe-agent/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a reqwest client without TLS or proxies builds"),
        }
    }

    /// Worker threads alive for mounts (one per mounted JuiceFS connection).
    pub fn workers(&self) -> usize {
        self.probes.len()
    }

    /// The mounts to visit: discovered ones (when discovery is on) and configured ones.
    fn targets(&mut self) -> Vec<Target> {
        let s = &self.settings;
        let mut out: Vec<Target> = Vec::new();
        for d in self.discovered.iter().filter(|_| s.discover) {
            out.push(Target {
                mount: d.mount_point.clone(),
                volume: d.volume.clone(),
                metrics_url: s.metrics_url.clone(),
                configured: false,
                bind_mounts: d.bind_mounts.clone(),
                mounted: true,
            });
        }
        for c in &s.mounts {
            let found = self
                .discovered
                .iter()
                .find(|d| d.mount_point == c.path || d.bind_mounts.contains(&c.path));
            match found {
                Some(d) => match out.iter_mut().find(|t| t.mount == d.mount_point) {
                    Some(t) => {
                        t.configured = true;
                        t.metrics_url = c.metrics_url.clone();
                    }
                    None => out.push(Target {
                        mount: d.mount_point.clone(),
                        volume: d.volume.clone(),
                        metrics_url: c.metrics_url.clone(),
                        configured: true,
                        bind_mounts: d.bind_mounts.clone(),
                        mounted: true,
                    }),
                },
                None => out.push(Target {
                    volume: self.volumes.get(&c.path).cloned().unwrap_or_default(),
                    mount: c.path.clone(),
                    metrics_url: c.metrics_url.clone(),
                    configured: true,
                    bind_mounts: Vec::new(),
                    mounted: false,
                }),
            }
        }
        for t in &out {
            if !t.volume.is_empty() {
                self.volumes.insert(t.mount.clone(), t.volume.clone());
            }
        }
        out
    }

    /// One round: read the mount table, visit every mount (concurrently, each bounded by the
    /// timeout) and return the round and the source's health.
    pub async fn sample_round(&mut self) -> Vec<Update> {
        let mut errors = Vec::new();
        match std::fs::read_to_string(&self.settings.mountinfo) {
            Ok(text) => {
                self.discovered = mountinfo::juicefs_mounts(&mountinfo::parse_mountinfo(&text));
            }
            Err(e) => errors.push(format!(
                "cannot read the mount table {}: {e}; set juicefs.mountinfo",
                self.settings.mountinfo.display()
            )),
        }
        let targets = self.targets();

        // One worker per mounted target: new mounts get one, gone mounts lose theirs (a
        // worker stuck in a call ends when that call returns).
        self.probes
            .retain(|p, _| targets.iter().any(|t| t.mounted && &t.mount == p));
        for t in targets.iter().filter(|t| t.mounted) {
            if !self.probes.contains_key(&t.mount) {
                match BlockingWorker::new(WORKER_NAME) {
                    Ok(worker) => {
                        self.probes.insert(t.mount.clone(), MountProbe { worker });
                    }
                    Err(e) => errors.push(format!("cannot start a worker thread: {e}")),
                }
            }
        }

        let at = unix_now();
        let timeout = self.settings.timeout;
        let http = &self.http;
        let probes = &self.probes;
        let visits = targets.into_iter().map(|t| async move {
            let mut sample = MountSample {
                mount: t.mount.clone(),
                volume: t.volume,
                configured: t.configured,
                bind_mounts: t.bind_mounts,
                health: MountHealth::NotMounted,
                statfs: None,
                client: None,
                source: None,
                client_error: None,
            };
            let Some(probe) = probes.get(&t.mount).filter(|_| t.mounted) else {
                return sample;
            };
            let path = t.mount.clone();
            let mut stats_error = None;
            match probe.worker.run(timeout, move || visit(&path)).await {
                Err(_) => sample.health = MountHealth::Stuck,
                Ok(Visit { statfs: Err(e), .. }) => sample.health = MountHealth::Failed(e),
                Ok(Visit {
                    statfs: Ok(u),
                    stats,
                }) => {
                    sample.health = MountHealth::Answered;
                    sample.statfs = Some(u);
                    match stats {
                        Some(Ok(f)) => {
                            sample.client = Some(f);
                            sample.source = Some(FigureSource::Stats);
                        }
                        Some(Err(e)) => stats_error = Some(e),
                        None => {}
                    }
                }
            }
            if let Some(stats_error) = stats_error {
                // The mount answers but `.stats` gave nothing (an old or unusual client):
                // ask the client over HTTP. Not for a stuck or failed mount: it is down
                // either way, and a stuck mount must cost nothing per round.
                match fetch_endpoint(http, &t.metrics_url, &t.mount, timeout).await {
                    Ok(f) => {
                        if sample.volume.is_empty() {
                            sample.volume = f.volume.clone().unwrap_or_default();
                        }
                        sample.client = Some(f);
                        sample.source = Some(FigureSource::Metrics);
                    }
                    Err(e) => {
                        sample.client_error = Some(format!("{stats_error}; {e}"));
                        sample.source = Some(FigureSource::Statfs);
                    }
                }
            }
            sample
        });
        let mounts = futures_util::future::join_all(visits).await;

        vec![
            Update::Juicefs(JuicefsRound {
                at,
                mounts,
                timeout_seconds: timeout.as_secs_f64(),
            }),
            Update::Source {
                source: Source::Juicefs,
                result: if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors.join("; "))
                },
            },
        ]
    }
}

/// One round for `vibe-agent check`.
pub async fn check_once(settings: &Settings) -> Vec<Update> {
    JuicefsSampler::new(&settings.juicefs).sample_round().await
}

impl Sample for JuicefsSampler {
    fn sample(&mut self) -> impl Future<Output = Vec<Update>> + Send {
        self.sample_round()
    }
}

/// Starts the JuiceFS sampling loop into `tasks`.
pub fn spawn(settings: &Settings, sink: &UpdateSink, tasks: &mut JoinSet<()>) {
    let sampler = JuicefsSampler::new(&settings.juicefs);
    spawn_periodic(tasks, settings.juicefs.interval, sink, sampler);
}
