//! The running agent: wires sources → model task → snapshot → listeners, and handles
//! reload, shutdown and systemd's notify protocol.
//!
//! [`start`] takes already-bound listeners (tests pass port 0) and returns an [`Agent`]
//! handle to reload or stop it. The model task is the single owner of state; sources are
//! restarted on reload; the metrics listener stays up throughout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::common::unix_now;
use crate::config::Settings;
use crate::model::{Model, Request, Snapshot, Update};
use crate::probe::state::ConfigureServices;
use crate::sink::{Inbox, UpdateSink};
use crate::{host, probe, server};

/// Shortest time between two published snapshots while updates keep coming.
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(20);

/// How long shutdown may take before the agent stops waiting for its tasks.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Listeners the agent serves on, bound by the caller.
pub struct Listeners {
    pub metrics: tokio::net::TcpListener,
    /// The OTLP/HTTP receiver's listener (`listen.otlp`), when enabled.
    pub otlp: Option<tokio::net::TcpListener>,
    /// The OTLP/gRPC receiver's listener (`listen.otlp_grpc`), when enabled.
    pub otlp_grpc: Option<tokio::net::TcpListener>,
    /// The statusline socket (`listen.statusline`), when enabled and bindable.
    pub statusline: Option<tokio::net::UnixListener>,
}

impl Listeners {
    /// Binds the addresses in `settings`.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let metrics = tokio::net::TcpListener::bind(settings.metrics_addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} (listen.metrics): {e}; is another agent running, \
                     or set listen.metrics to a free address",
                    settings.metrics_addr
                )
            })?;
        let otlp = match settings.otlp_addr {
            None => None,
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} (listen.otlp): {e}; is another OTLP receiver \
                     running, or set listen.otlp to a free address (\"\" turns it off)"
                )
            })?),
        };
        let otlp_grpc = match settings.otlp_grpc_addr {
            None => None,
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} (listen.otlp_grpc): {e}; is another OTLP \
                     receiver (an OpenTelemetry Collector?) running, or set listen.otlp_grpc \
                     to a free address (\"\" turns it off)"
                )
            })?),
        };
        // The statusline is a convenience: an agent that cannot bind it (not root, no
        // /run/vibe-agent) still runs, and says why.
        let statusline = settings.statusline_socket.as_deref().and_then(|path| {
            crate::statusline::bind(path)
                .map_err(|e| {
                    tracing::warn!(
                        socket = %path.display(), error = %e,
                        "statusline socket not served; set listen.statusline to a writable path (\"\" turns it off)"
                    )
                })
                .ok()
        });
        Ok(Self {
            metrics,
            otlp,
            otlp_grpc,
            statusline,
        })
    }
}

enum Control {
    /// A new configuration, or why loading it failed.
    Reload(Result<Box<Settings>, String>),
}

/// A running agent.
pub struct Agent {
    /// The latest published snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Where the metrics listener is bound.
    pub metrics_addr: std::net::SocketAddr,
    /// Where the OTLP receiver is bound, when enabled.
    pub otlp_addr: Option<std::net::SocketAddr>,
    /// Where the OTLP/gRPC receiver is bound, when enabled.
    pub otlp_grpc_addr: Option<std::net::SocketAddr>,
    control: mpsc::Sender<Control>,
    shutdown: Option<oneshot::Sender<()>>,
    main: tokio::task::JoinHandle<()>,
    sink: UpdateSink,
}

impl Agent {
    /// Applies a new configuration (services, paths, intervals, the log level). Listener
    /// addresses are only read at start.
    pub async fn reload(&self, settings: Settings) {
        let _ = self
            .control
            .send(Control::Reload(Ok(Box::new(settings))))
            .await;
    }

    /// Reports a configuration that failed to load: the running one stays.
    pub async fn reload_failed(&self, why: String) {
        let _ = self.control.send(Control::Reload(Err(why))).await;
    }

    /// Sends an update as a source would (for tests and embedding).
    pub fn sink(&self) -> UpdateSink {
        self.sink.clone()
    }

    /// Waits until a snapshot satisfies `pred`, or `timeout` passes; returns the last one.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Arc<Snapshot>, Arc<Snapshot>> {
        let mut rx = self.snapshots.clone();
        let fut = async {
            loop {
                let s = rx.borrow_and_update().clone();
                if pred(&s) {
                    return s;
                }
                if rx.changed().await.is_err() {
                    return s;
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(s) if pred(&s) => Ok(s),
            _ => Err(self.snapshots.borrow().clone()),
        }
    }

    /// Stops sources and listeners; returns within [`SHUTDOWN_GRACE`].
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.main)
            .await
            .is_err()
        {
            self.main.abort();
        }
    }
}

/// Starts every source, the model task and the listeners.
pub fn start(settings: Settings, listeners: Listeners) -> anyhow::Result<Agent> {
    let (sink, inbox) = UpdateSink::channel();
    let mut model = Model::new(
        ConfigureServices::from_services(&settings.services),
        unix_now(),
    );
    let (snap_tx, snap_rx) = watch::channel(model.publish());
    let metrics_addr = listeners.metrics.local_addr()?;

    let model_task = tokio::spawn(run_model(model, inbox, snap_tx));

    // Web config files are loaded before anything is served: a bad one stops the start.
    let metrics_guard = match &settings.web_config_file {
        Some(f) => Some(crate::webconfig::guard::WebGuard::load("metrics", f)?),
        None => None,
    };
    let otlp_guard = match (&settings.otlp.web_config_file, &listeners.otlp) {
        (Some(f), Some(_)) => Some(crate::webconfig::guard::WebGuard::load("otlp", f)?),
        _ => None,
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (server_stop_tx, server_stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(server::serve_guarded(
        listeners.metrics,
        snap_rx.clone(),
        metrics_guard,
        Some(sink.clone()),
        async move {
            let _ = server_stop_rx.await;
        },
    ));

    let (statusline_stop_tx, statusline_stop_rx) = oneshot::channel::<()>();
    let statusline = listeners.statusline.map(|l| {
        tokio::spawn(crate::statusline::serve(l, snap_rx.clone(), async move {
            let _ = statusline_stop_rx.await;
        }))
    });

    let mut sources = JoinSet::new();
    spawn_sources(&settings, &sink, &mut sources)?;
    let telemetry = crate::otlp::start(
        &settings,
        listeners.otlp,
        listeners.otlp_grpc,
        otlp_guard,
        &sink,
    );
    let otlp_addr = telemetry.addr;
    let otlp_grpc_addr = telemetry.grpc_addr;

    let (control_tx, mut control_rx) = mpsc::channel::<Control>(4);
    let watchdog = spawn_watchdog(sink.clone());
    let main_sink = sink.clone();
    let main = tokio::spawn(async move {
        let mut shutdown_rx = shutdown_rx;
        let mut current = settings;
        loop {
            tokio::select! {
                _ = &mut shutdown_rx => break,
                Some(Control::Reload(result)) = control_rx.recv() => {
                    match result {
                        Ok(new) => {
                            let new = *new;
                            if new.web_config_file != current.web_config_file
                                || new.otlp.web_config_file != current.otlp.web_config_file
                            {
                                tracing::warn!(
                                    "a web_config_file path changed; the new file takes effect at restart \
                                     (changes inside the file apply by themselves)"
                                );
                            }
                            if new.metrics_addr != current.metrics_addr {
                                tracing::warn!(
                                    old = %current.metrics_addr, new = %new.metrics_addr,
                                    "listen.metrics changed; the new address takes effect at restart"
                                );
                            }
                            sources.abort_all();
                            main_sink
                                .request(Request::RetainFilesystems(new.host.paths.clone()))
                                .await;
                            main_sink.send(Update::Configure(ConfigureServices::from_services(&new.services)));
                            match spawn_sources(&new, &main_sink, &mut sources) {
                                Ok(()) => {
                                    // Before the "reloaded" line, so that line is logged at
                                    // the new level.
                                    crate::logging::apply_config_level(&new.log_level);
                                    tracing::info!(services = new.services.len(), "configuration reloaded");
                                    main_sink.send(Update::ConfigReload { ok: true, at: unix_now() });
                                    current = new;
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "reload: cannot start sources; keeping the running configuration");
                                    main_sink.send(Update::ConfigReload { ok: false, at: unix_now() });
                                    let _ = spawn_sources(&current, &main_sink, &mut sources);
                                }
                            }
                        }
                        Err(why) => {
                            tracing::error!(error = %why, "reload failed; keeping the running configuration");
                            main_sink.send(Update::ConfigReload { ok: false, at: unix_now() });
                        }
                    }
                }
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        sources.abort_all();
        if let Some(w) = watchdog {
            w.abort();
        }
        let _ = server_stop_tx.send(());
        let _ = server.await;
        let _ = statusline_stop_tx.send(());
        if let Some(s) = statusline {
            let _ = s.await;
        }
        telemetry.stop().await;
        model_task.abort();
    });

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    Ok(Agent {
        snapshots: snap_rx,
        metrics_addr,
        otlp_addr,
        otlp_grpc_addr,
        control: control_tx,
        shutdown: Some(shutdown_tx),
        main,
        sink,
    })
}

/// The model task: the only owner of state. It folds every queued update, then publishes
/// one snapshot, so a burst of updates costs one publish. Under a steady flood (OTLP
/// batches) publishes are spaced by [`MIN_PUBLISH_INTERVAL`]: each publish makes the next
/// change copy the sections it touches, and that copy is paid ~50 times a second, not per
/// request. After a quiet spell the first change is published at once. A request is
/// answered after every update queued before it, so a save holds everything accepted so
/// far. Runs until the sinks are gone (or the task is aborted).
pub async fn run_model(
    mut model: Model,
    mut inbox: Inbox,
    snapshots: watch::Sender<Arc<Snapshot>>,
) {
    let mut last_publish = tokio::time::Instant::now() - MIN_PUBLISH_INTERVAL;
    let mut dirty = false;
    loop {
        tokio::select! {
            update = inbox.updates.recv() => {
                let Some(update) = update else { break };
                model.apply(update);
                while let Ok(more) = inbox.updates.try_recv() {
                    model.apply(more);
                }
                dirty = true;
            }
            request = inbox.requests.recv() => {
                let Some(request) = request else { break };
                while let Ok(update) = inbox.updates.try_recv() {
                    model.apply(update);
                    dirty = true;
                }
                dirty |= model.answer(request);
            }
            _ = tokio::time::sleep_until(last_publish + MIN_PUBLISH_INTERVAL), if dirty => {}
        }
        if dirty && last_publish.elapsed() >= MIN_PUBLISH_INTERVAL {
            model.set_updates_dropped(inbox.dropped());
            snapshots.send_replace(model.publish());
            last_publish = tokio::time::Instant::now();
            dirty = false;
        }
    }
}

fn spawn_sources(
    settings: &Settings,
    sink: &UpdateSink,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    probe::spawn(settings, sink, tasks);
    host::spawn(settings, sink, tasks)?;
    crate::juicefs::spawn(settings, sink, tasks);
    crate::systemd::spawn(settings, sink, tasks);
    crate::transcripts::spawn(settings, sink, tasks);
    Ok(())
}

/// Under systemd with `WatchdogSec`, pings the watchdog at half the period, but only after
/// the model task has answered a ping on its request channel (after folding in the updates
/// queued before it): a wedged model stops the pings and systemd restarts the agent.
fn spawn_watchdog(sink: UpdateSink) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled().filter(|d| !d.is_zero())? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let (tx, rx) = oneshot::channel();
            // Asking is bounded too: a wedged model leaves its request channel full.
            let answered = async {
                sink.request(Request::Ping(tx)).await;
                rx.await.is_ok()
            };
            if tokio::time::timeout(period, answered)
                .await
                .unwrap_or(false)
            {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::warn!("model task did not answer the watchdog ping");
            }
        }
    }))
}
