//! The systemd source: live state, restarts and resources of the watched units, over one
//! long-lived D-Bus connection to systemd (zbus).
//!
//! Units watched: each configured service's unit, the names in `[systemd] units`, and the
//! units matching its patterns (default `juicefs-*.service`): loaded ones
//! (`ListUnitsByPatterns`) and unit files on disk (`ListUnitFilesByPatterns`), listed again
//! when units appear or disappear, after a daemon-reload and at each resync. A stopped
//! unit that systemd unloads stays watched (inactive) while its file exists; a unit whose
//! file is removed leaves `/metrics`.
//! After `Manager.Subscribe()`, systemd's `PropertiesChanged` signals drive the updates
//! (a change reaches the model as soon as systemd announces it); a slow resync reads every
//! watched unit again to catch a missed signal; `MemoryCurrent`, `CPUUsageNSec` and
//! `TasksCurrent` are polled on their own interval, since systemd announces no change of
//! them. Nothing is read on the scrape path.
//!
//! Every D-Bus call has a timeout. When the bus or systemd goes away, the source reports
//! itself down (`vibe_agent_source_up{source="systemd"} 0`), the units keep their last
//! values marked stale (`vibe_unit_stale 1`), and it reconnects with backoff and
//! subscribes again.
//!
//! [`state`] is the pure part (the model owns a [`state::UnitsState`]); [`expose`] renders it;
//! [`bus`] is the hand-written D-Bus client; [`source`] is the loop. This module owns no
//! other state and touches nothing outside systemd's bus API.

pub mod bus;
pub mod expose;
pub mod source;
pub mod state;

use std::time::Duration;

pub use bus::BusAddress;
pub use state::{UnitEvent, UnitsState};

use crate::config::Settings;

/// Source name in `vibe_agent_source_up` and `vibe_agent_source_errors_total`.
pub const SYSTEMD_SOURCE: &str = "systemd";

/// Why talking to systemd failed. Messages name the bus and the call.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "cannot connect to {bus}: {source}; is dbus running (set [systemd] bus to its address)?"
    )]
    Connect { bus: String, source: zbus::Error },
    #[error("connecting to {bus} timed out; the bus is not answering")]
    ConnectTimeout { bus: String },
    #[error("{what}: no answer from systemd within the call timeout ([systemd] call_timeout)")]
    Timeout { what: String },
    #[error("{what}: {source}")]
    Call { what: String, source: zbus::Error },
    #[error("{what}: unexpected reply: {source}")]
    Reply { what: String, source: zbus::Error },
    #[error("the connection to the bus closed")]
    Closed,
    #[error("systemd left the bus")]
    SystemdLeft,
}

impl SystemdError {
    fn call(what: String, e: zbus::Error) -> Self {
        match &e {
            zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Self::Timeout { what }
            }
            _ => Self::Call { what, source: e },
        }
    }
}

/// The source's settings, from `[systemd]` and the services' units.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemdSettings {
    pub bus: BusAddress,
    /// Unit names watched whether loaded or not (services' units, plain names in `units`).
    pub names: Vec<String>,
    /// Globs for `ListUnitsByPatterns` (entries of `units` with `*`, `?` or `[`).
    pub patterns: Vec<String>,
    pub resync_interval: Duration,
    pub poll_interval: Duration,
    pub call_timeout: Duration,
}

impl SystemdSettings {
    /// `None` when there is nothing to watch (no service has a unit, `units` is empty):
    /// the source then does not run and reports nothing.
    pub fn from_settings(s: &Settings) -> Option<Self> {
        let mut names: Vec<String> = s.services.iter().filter_map(|s| s.unit.clone()).collect();
        let mut patterns = Vec::new();
        for u in &s.systemd_units {
            if u.contains(['*', '?', '[']) {
                patterns.push(u.clone());
            } else if !names.contains(u) {
                names.push(u.clone());
            }
        }
        if names.is_empty() && patterns.is_empty() {
            return None;
        }
        Some(Self {
            bus: BusAddress::parse(&s.systemd_bus),
            names,
            patterns,
            resync_interval: s.systemd_resync_interval,
            poll_interval: s.systemd_poll_interval,
            call_timeout: s.systemd_call_timeout,
        })
    }
}

/// Starts the source into `tasks` when there is something to watch. When a reload leaves
/// nothing to watch, the units of the previous configuration are dropped.
pub fn spawn(
    settings: &Settings,
    sink: &crate::sink::UpdateSink,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    match SystemdSettings::from_settings(settings) {
        Some(cfg) => {
            let sink = sink.clone();
            tasks.spawn(async move { source::run(cfg, sink).await });
        }
        None => {
            sink.send(crate::model::Update::Systemd(UnitEvent::Watched(
                Default::default(),
            )));
        }
    }
}

/// One round for `vibe-agent check`: connect, list, read every watched unit once. Bounded
/// by a few call timeouts; an unreachable bus is one error update, never a hang.
pub async fn check_once(settings: &Settings) -> Vec<crate::model::Update> {
    match SystemdSettings::from_settings(settings) {
        Some(cfg) => source::read_once(&cfg).await,
        None => Vec::new(),
    }
}
