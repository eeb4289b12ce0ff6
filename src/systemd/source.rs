//! The systemd source's loop ([`run`], started by [`spawn`]) and `vibe-agent check`'s single
//! round ([`read_once`], through [`check_once`]).
//!
//! One session is one connection: match rules for the signals, `Subscribe`, then a loop
//! that never waits on a call. Calls (listing, property reads, resource polls) run as
//! futures polled beside the signal streams, so a slow or silent systemd delays only its
//! own reply (until the call timeout), never the signals of other units, and never lets
//! the bus connection's signal queues fill. A property reply older than an already applied
//! signal about the same unit and interface (by receive position) is dropped, so a resync
//! cannot undo a newer change. When the session ends, the units are marked stale and the
//! source reconnects with backoff.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use zbus::Message;
use zbus::message::Sequence;

use super::bus::{self, ManagerSignal, PropertiesChanged, Systemd, UNIT_IFACE};
use super::error::SystemdError;
use super::settings::WatchSettings;
use super::state::{UnitChange, UnitEvent, UnitResources};
use crate::common::Source;
use crate::config::Settings;
use crate::model::Update;
use crate::sink::UpdateSink;

/// First wait before reconnecting; doubles up to [`BACKOFF_MAX`], and starts over after a
/// session that got as far as subscribing.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// `UnitNew` comes in bursts (a daemon-reload announces every unit): the patterns are
/// listed again once the burst has been quiet this long.
const RELIST_DELAY: Duration = Duration::from_millis(50);

fn source(result: Result<(), String>) -> Update {
    Update::Source {
        source: Source::Systemd,
        result,
    }
}

fn event(e: UnitEvent) -> Update {
    Update::Systemd(e)
}

/// Runs the source until the task is aborted.
pub async fn run(cfg: WatchSettings, sink: UpdateSink) {
    let mut backoff = BACKOFF_MIN;
    // Warn when a session ends and on the first failed attempt; repeated failures while
    // the bus stays away are debug, so a box without systemd does not fill the journal.
    let mut quiet = false;
    loop {
        let mut watch = UnitWatch::new(&cfg, &sink);
        let err = match watch.session().await {
            Err(e) => e,
            Ok(never) => match never {},
        };
        if watch.subscribed {
            backoff = BACKOFF_MIN;
        }
        if watch.subscribed || !quiet {
            tracing::warn!(error = %err, retry_in = ?backoff, "systemd source: disconnected");
        } else {
            tracing::debug!(error = %err, retry_in = ?backoff, "systemd source: still not connected");
        }
        quiet = true;
        sink.send(event(UnitEvent::Disconnected));
        sink.send(source(Err(err.to_string())));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// A call's outcome, back in the loop.
enum Reply {
    Listed {
        /// A resync: read every watched unit again, not only new ones.
        full: bool,
        result: Result<Vec<String>, SystemdError>,
    },
    Properties {
        unit: String,
        iface: &'static str,
        result: Result<(Sequence, UnitChange), SystemdError>,
    },
    Resources {
        unit: String,
        result: Result<UnitResources, SystemdError>,
    },
}

/// One session's view of the watched units.
struct UnitWatch<'a> {
    cfg: &'a WatchSettings,
    sink: &'a UpdateSink,
    subscribed: bool,
    watched: BTreeSet<String>,
    /// Object path → unit name, for signals.
    by_path: HashMap<String, String>,
    /// Receive position of the last applied properties of each (unit, interface).
    applied: HashMap<(String, &'static str), Sequence>,
    /// Units that may have a cgroup (not inactive, failed or missing): the ones polled.
    running: BTreeSet<String>,
    pending: FuturesUnordered<Pending>,
    relist_at: Option<Instant>,
}

impl<'a> UnitWatch<'a> {
    fn new(cfg: &'a WatchSettings, sink: &'a UpdateSink) -> Self {
        Self {
            cfg,
            sink,
            subscribed: false,
            watched: BTreeSet::new(),
            by_path: HashMap::new(),
            applied: HashMap::new(),
            running: BTreeSet::new(),
            pending: FuturesUnordered::new(),
            relist_at: None,
        }
    }

    async fn session(&mut self) -> Result<Infallible, SystemdError> {
        let sd = Systemd::connect(&self.cfg.bus, self.cfg.call_timeout).await?;
        // Match rules before Subscribe, so no signal between the two is lost.
        let mut owner = sd.owner_signals().await?;
        let mut props = sd.unit_property_signals().await?;
        let mut manager = sd.manager_signals().await?;
        sd.subscribe().await?;
        self.subscribed = true;
        self.sink.send(event(UnitEvent::Connected));
        tracing::info!(bus = %sd.bus(), "systemd source: subscribed");

        let mut resync = tokio::time::interval(self.cfg.resync_interval);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval_at(
            Instant::now() + self.cfg.poll_interval,
            self.cfg.poll_interval,
        );
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let relist = async {
                match self.relist_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = props.next() => self.on_properties(&sd, &next(m)?),
                m = manager.next() => self.on_manager(&sd, &next(m)?),
                m = owner.next() => {
                    if bus::systemd_left(&next(m)?) {
                        return Err(SystemdError::SystemdLeft);
                    }
                }
                Some(reply) = self.pending.next(), if !self.pending.is_empty() => {
                    self.on_reply(&sd, reply);
                }
                _ = resync.tick() => self.list(&sd, true),
                _ = poll.tick() => {
                    for unit in self.running.clone() {
                        self.read_resources(&sd, unit);
                    }
                }
                () = relist => {
                    self.relist_at = None;
                    self.list(&sd, false);
                }
            }
        }
    }

    fn list(&mut self, sd: &Systemd, full: bool) {
        let sd = sd.clone();
        let patterns = self.cfg.patterns.clone();
        self.pending.push(Box::pin(async move {
            let result = if patterns.is_empty() {
                Ok(Vec::new())
            } else {
                sd.matching_units(&patterns).await
            };
            Reply::Listed { full, result }
        }));
    }

    fn read_properties(&mut self, sd: &Systemd, unit: &str, iface: &'static str) {
        let sd = sd.clone();
        let unit = unit.to_string();
        self.pending.push(Box::pin(async move {
            let result = sd.properties(&unit, iface).await;
            Reply::Properties {
                unit,
                iface,
                result,
            }
        }));
    }

    fn read_unit(&mut self, sd: &Systemd, unit: &str) {
        self.read_properties(sd, unit, UNIT_IFACE);
        if let Some(iface) = bus::type_interface(unit) {
            self.read_properties(sd, unit, iface);
        }
    }

    fn read_resources(&mut self, sd: &Systemd, unit: String) {
        let Some(iface) = bus::type_interface(&unit) else {
            return;
        };
        let sd = sd.clone();
        self.pending.push(Box::pin(async move {
            let result = sd.resources(&unit, iface).await;
            Reply::Resources { unit, result }
        }));
    }

    fn set_watched(&mut self, watched: BTreeSet<String>) {
        if watched == self.watched {
            return;
        }
        self.by_path = watched
            .iter()
            .map(|u| (bus::unit_path(u), u.clone()))
            .collect();
        self.applied.retain(|(u, _), _| watched.contains(u));
        self.running.retain(|u| watched.contains(u));
        self.watched = watched.clone();
        self.sink.send(event(UnitEvent::Watched(watched)));
    }

    /// Applies properties unless a newer message about the same unit and interface was
    /// applied already.
    fn apply(
        &mut self,
        sd: &Systemd,
        unit: &str,
        iface: &'static str,
        seq: Sequence,
        change: UnitChange,
    ) {
        if !self.watched.contains(unit) {
            return;
        }
        let key = (unit.to_string(), iface);
        if self.applied.get(&key).is_some_and(|last| *last > seq) {
            return;
        }
        self.applied.insert(key, seq);
        let stopped = change.load_state.as_deref() == Some("not-found")
            || matches!(change.active_state.as_deref(), Some("inactive" | "failed"));
        if stopped {
            if self.running.remove(unit) {
                // Its cgroup is gone: no figures until it runs again.
                self.sink.send(event(UnitEvent::Resources {
                    unit: unit.to_string(),
                    resources: UnitResources::default(),
                }));
            }
        } else if change.active_state.is_some() && self.running.insert(unit.to_string()) {
            self.read_resources(sd, unit.to_string());
        }
        if !change.is_empty() {
            self.sink.send(event(UnitEvent::Changed {
                unit: unit.to_string(),
                change,
            }));
        }
    }

    fn on_properties(&mut self, sd: &Systemd, msg: &Message) {
        let signal = match PropertiesChanged::parse(msg) {
            Ok(s) => s,
            Err(e) => {
                self.sink.send(source(Err(e.to_string())));
                return;
            }
        };
        let Some(unit) = self.by_path.get(&signal.path).cloned() else {
            return; // a unit nobody watches
        };
        let iface = if signal.interface == UNIT_IFACE {
            UNIT_IFACE
        } else {
            match bus::type_interface(&unit) {
                Some(i) if i == signal.interface => i,
                _ => return,
            }
        };
        self.apply(sd, &unit, iface, signal.seq, signal.change);
        if signal.needs_read {
            self.read_properties(sd, &unit, iface);
        }
    }

    fn on_manager(&mut self, sd: &Systemd, msg: &Message) {
        match ManagerSignal::parse(msg) {
            ManagerSignal::UnitNew(unit) => {
                if !self.watched.contains(&unit) && !self.cfg.patterns.is_empty() {
                    self.relist_at = Some(Instant::now() + RELIST_DELAY);
                }
            }
            ManagerSignal::UnitRemoved(unit) => {
                // systemd unloads inactive units nobody needs: a configured name stays
                // watched, a pattern match stays while its unit file exists (listed again
                // to find out), so a stopped unit reads inactive instead of vanishing.
                if self.watched.contains(&unit) && !self.cfg.names.contains(&unit) {
                    self.relist_at = Some(Instant::now() + RELIST_DELAY);
                }
            }
            ManagerSignal::Reloaded => self.list(sd, true),
            ManagerSignal::Other => {}
        }
    }

    fn on_reply(&mut self, sd: &Systemd, reply: Reply) {
        match reply {
            Reply::Listed { full, result } => match result {
                Ok(listed) => {
                    let mut watched: BTreeSet<String> = self.cfg.names.iter().cloned().collect();
                    watched.extend(listed);
                    let to_read: Vec<String> = if full {
                        watched.iter().cloned().collect()
                    } else {
                        watched.difference(&self.watched).cloned().collect()
                    };
                    self.set_watched(watched);
                    for unit in &to_read {
                        self.read_unit(sd, unit);
                    }
                    if full {
                        self.sink.send(source(Ok(())));
                    }
                }
                Err(e) => {
                    self.sink.send(source(Err(e.to_string())));
                }
            },
            Reply::Properties {
                unit,
                iface,
                result,
            } => match result {
                Ok((seq, change)) => self.apply(sd, &unit, iface, seq, change),
                Err(e) => {
                    self.sink.send(source(Err(e.to_string())));
                }
            },
            Reply::Resources { unit, result } => match result {
                Ok(resources) if self.running.contains(&unit) => {
                    self.sink
                        .send(event(UnitEvent::Resources { unit, resources }));
                }
                Ok(_) => {}
                Err(e) => {
                    self.sink.send(source(Err(e.to_string())));
                }
            },
        }
    }
}

fn next(m: Option<zbus::Result<Message>>) -> Result<Message, SystemdError> {
    match m {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(SystemdError::Call {
            what: "reading from the bus".into(),
            source: e,
        }),
        None => Err(SystemdError::Closed),
    }
}

/// One round for `vibe-agent check`: connect, list, read every watched unit and its
/// resources once. The whole round is bounded by three call timeouts.
pub async fn read_once(cfg: &WatchSettings) -> Vec<Update> {
    let round = async {
        let sd = Systemd::connect(&cfg.bus, cfg.call_timeout).await?;
        let mut watched: BTreeSet<String> = cfg.names.iter().cloned().collect();
        if !cfg.patterns.is_empty() {
            watched.extend(sd.matching_units(&cfg.patterns).await?);
        }
        let mut out = vec![
            event(UnitEvent::Connected),
            event(UnitEvent::Watched(watched.clone())),
        ];
        let reads = watched.iter().map(|unit| {
            let sd = sd.clone();
            async move {
                let mut updates = Vec::new();
                let mut errors = Vec::new();
                let mut running = false;
                let ifaces = std::iter::once(UNIT_IFACE).chain(bus::type_interface(unit));
                for iface in ifaces {
                    match sd.properties(unit, iface).await {
                        Ok((_, change)) => {
                            if iface == UNIT_IFACE {
                                running = !matches!(
                                    change.active_state.as_deref(),
                                    Some("inactive" | "failed") | None
                                );
                            }
                            updates.push(event(UnitEvent::Changed {
                                unit: unit.clone(),
                                change,
                            }));
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if let (true, Some(iface)) = (running, bus::type_interface(unit)) {
                    match sd.resources(unit, iface).await {
                        Ok(resources) => updates.push(event(UnitEvent::Resources {
                            unit: unit.clone(),
                            resources,
                        })),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (updates, errors)
            }
        });
        let mut errors = Vec::new();
        for (updates, errs) in futures_util::future::join_all(reads).await {
            out.extend(updates);
            errors.extend(errs);
        }
        out.push(source(if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }));
        Ok::<_, SystemdError>(out)
    };
    match tokio::time::timeout(cfg.call_timeout * 3, round).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => vec![source(Err(e.to_string()))],
        Err(_) => vec![source(Err(format!(
            "no complete answer from systemd on {} within {:?}",
            cfg.bus,
            cfg.call_timeout * 3
        )))],
    }
}

/// Starts the source into `tasks` when there is something to watch. When a reload leaves
/// nothing to watch, the units of the previous configuration are dropped.
pub fn spawn(settings: &Settings, sink: &UpdateSink, tasks: &mut tokio::task::JoinSet<()>) {
    match WatchSettings::new(&settings.systemd, &settings.services) {
        Some(cfg) => {
            let sink = sink.clone();
            tasks.spawn(async move { run(cfg, sink).await });
        }
        None => {
            sink.send(Update::Systemd(UnitEvent::Watched(Default::default())));
        }
    }
}

/// One round for `vibe-agent check`: connect, list, read every watched unit once. Bounded
/// by a few call timeouts; an unreachable bus is one error update, never a hang.
pub async fn check_once(settings: &Settings) -> Vec<Update> {
    match WatchSettings::new(&settings.systemd, &settings.services) {
        Some(cfg) => read_once(&cfg).await,
        None => Vec::new(),
    }
}
