//! What the agent knows of the watched systemd units: [`UnitsState`], and [`UnitsState::apply`]
//! that folds one [`UnitEvent`] into it.
//!
//! Pure: no D-Bus, no clock, no prometheus. The D-Bus side ([`super::source`]) turns
//! signals and replies into events; the model task owns the state inside the snapshot;
//! exposition ([`super::expose`]) and `vibe-agent check` read it.
//!
//! When the bus or systemd goes away, units keep their last values and are marked
//! [`UnitStatus::stale`] until systemd is read again (`vibe_unit_stale` is then 1, and
//! `vibe_agent_source_up{source="systemd"}` is 0).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::common::{Check, SourceHealth};

/// The five states of `vibe_unit_state` (node_exporter's `node_systemd_unit_state`).
pub const EXPOSED_STATES: [&str; 5] =
    ["active", "activating", "deactivating", "inactive", "failed"];

/// A unit's high-level state (systemd's `ActiveState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    /// `maintenance`, `refreshing` or a state a future systemd adds.
    Other(String),
}

impl ActiveState {
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "reloading" => Self::Reloading,
            "inactive" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Reloading => "reloading",
            Self::Inactive => "inactive",
            Self::Failed => "failed",
            Self::Activating => "activating",
            Self::Deactivating => "deactivating",
            Self::Other(s) => s,
        }
    }

    /// The unit's processes are up: active, or reloading/refreshing while staying up.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Active | Self::Reloading)
            || matches!(self, Self::Other(s) if s == "refreshing")
    }
}

/// Properties of one unit as read or announced; a `None` field was not in the message and
/// keeps its previous value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnitChange {
    pub load_state: Option<String>,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    /// Services only: `success`, `exit-code`, `signal`, ...
    pub result: Option<String>,
    /// Services only: automatic restarts (`Restart=`) since the unit was loaded.
    pub restarts: Option<u32>,
    /// `ActiveEnterTimestamp`, microseconds since the epoch (0: never active).
    pub active_enter_usec: Option<u64>,
    pub main_pid: Option<u32>,
    pub exec_main_status: Option<i32>,
}

impl UnitChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// systemd's resource accounting of a unit. systemd says "not available" with
/// `u64::MAX` (accounting off, or the unit not running); those arrive here as `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UnitResources {
    pub memory_bytes: Option<u64>,
    pub cpu_nsec: Option<u64>,
    pub tasks: Option<u64>,
}

/// One fact from the systemd source.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitEvent {
    /// Connected to the bus and subscribed to systemd's signals.
    Connected,
    /// The bus or systemd went away: every unit keeps its values, marked stale.
    Disconnected,
    /// The complete set of watched units (configured names plus loaded units matching the
    /// patterns). Units outside it are dropped with their values.
    Watched(BTreeSet<String>),
    /// Properties read from systemd or announced by it.
    Changed { unit: String, change: UnitChange },
    /// Resource accounting polled from systemd.
    Resources {
        unit: String,
        resources: UnitResources,
    },
}

/// What is known of one unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitStatus {
    /// `loaded`, `not-found`, `masked`, `error`, ...
    pub load_state: String,
    pub active_state: ActiveState,
    pub sub_state: String,
    /// Services only; empty for other unit types.
    pub result: String,
    pub restarts: Option<u32>,
    /// When the unit last entered the active state, seconds since the epoch.
    pub active_since: Option<f64>,
    pub main_pid: Option<u32>,
    pub exec_main_status: Option<i32>,
    pub resources: UnitResources,
    /// The values predate the loss of the bus; they are kept until systemd is read again.
    pub stale: bool,
}

impl Default for UnitStatus {
    fn default() -> Self {
        Self {
            load_state: "unknown".into(),
            active_state: ActiveState::Inactive,
            sub_state: "unknown".into(),
            result: String::new(),
            restarts: None,
            active_since: None,
            main_pid: None,
            exec_main_status: None,
            resources: UnitResources::default(),
            stale: false,
        }
    }
}

impl UnitStatus {
    fn merge(&mut self, c: UnitChange) {
        if let Some(v) = c.load_state {
            self.load_state = v;
        }
        if let Some(v) = c.active_state {
            self.active_state = ActiveState::parse(&v);
        }
        if let Some(v) = c.sub_state {
            self.sub_state = v;
        }
        if let Some(v) = c.result {
            self.result = v;
        }
        if let Some(v) = c.restarts {
            self.restarts = Some(v);
        }
        if let Some(us) = c.active_enter_usec {
            self.active_since = (us > 0).then(|| us as f64 / 1e6);
        }
        if let Some(v) = c.main_pid {
            self.main_pid = (v > 0).then_some(v);
        }
        if let Some(v) = c.exec_main_status {
            self.exec_main_status = Some(v);
        }
    }

    /// systemd has no unit file of this name.
    pub fn not_found(&self) -> bool {
        self.load_state == "not-found"
    }

    /// The state as `systemctl status` words it: "active (running)", "failed (exit-code,
    /// status 1)", "not found".
    pub fn describe(&self) -> String {
        if self.not_found() {
            return "not found (systemd has no unit file of this name)".into();
        }
        let mut s = format!("{} ({})", self.active_state.as_str(), self.sub_state);
        if self.active_state == ActiveState::Failed {
            s = format!("{} ({}", self.active_state.as_str(), self.result);
            if let Some(code) = self.exec_main_status.filter(|c| *c != 0) {
                s.push_str(&format!(", status {code}"));
            }
            s.push(')');
        }
        if self.load_state != "loaded" {
            s.push_str(&format!(", load state {}", self.load_state));
        }
        if self.stale {
            s.push_str(" [stale: systemd not reachable]");
        }
        s
    }
}

/// Every watched unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnitsState {
    /// Connected and subscribed right now.
    pub connected: bool,
    /// Names watched (configured ones and loaded pattern matches), known or not yet read.
    pub watched: BTreeSet<String>,
    /// Units read at least once.
    pub units: BTreeMap<String, UnitStatus>,
}

impl UnitsState {
    /// Folds one event in.
    pub fn apply(&mut self, event: UnitEvent) {
        match event {
            UnitEvent::Connected => self.connected = true,
            UnitEvent::Disconnected => {
                self.connected = false;
                for u in self.units.values_mut() {
                    u.stale = true;
                }
            }
            UnitEvent::Watched(names) => {
                self.units.retain(|name, _| names.contains(name));
                self.watched = names;
            }
            UnitEvent::Changed { unit, change } => {
                if self.watched.contains(&unit) {
                    let u = self.units.entry(unit).or_default();
                    u.merge(change);
                    u.stale = false;
                }
            }
            UnitEvent::Resources { unit, resources } => {
                if let Some(u) = self.units.get_mut(&unit) {
                    u.resources = resources;
                }
            }
        }
    }

    /// Whether a service's unit allows `vibe_service_up`: a service without a unit, or
    /// whose unit systemd has not reported yet (the source never connected, e.g. no system
    /// bus in a container), is not held back by it; a reported unit must be running. A
    /// stale unit counts with its last known state.
    pub fn allows_up(&self, unit: Option<&str>) -> bool {
        match unit.and_then(|u| self.units.get(u)) {
            None => true,
            Some(u) => u.active_state.is_running(),
        }
    }

    /// systemd has reported that it has no unit file of this name (`LoadState`
    /// `not-found`); false while the unit has not been read.
    pub fn not_found(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(UnitStatus::not_found)
    }

    /// The check line of a service's unit, e.g. "code-server unit code-server.service:
    /// active (running)".
    pub fn service_check(&self, service: &str, unit: &str) -> Check {
        let name = format!("{service} unit {unit}");
        match self.units.get(unit) {
            Some(u) => Check {
                name,
                ok: u.active_state.is_running() && !u.stale,
                detail: u.describe(),
            },
            None => Check {
                name,
                ok: false,
                detail: "unknown: systemd has not been read (see the systemd line)".into(),
            },
        }
    }

    /// The bus's line and one line per watched unit that is not a service's unit. A unit
    /// line fails when the unit failed or is not running.
    pub fn other_checks(
        &self,
        service_units: &[&str],
        health: Option<&SourceHealth>,
    ) -> Vec<Check> {
        let mut out = Vec::new();
        let Some(h) = health else { return out };
        out.push(Check {
            name: "systemd".into(),
            ok: h.up,
            detail: match (h.up, &h.last_error) {
                (true, _) => format!("connected, {} units watched", self.watched.len()),
                (false, Some(e)) => e.clone(),
                (false, None) => "not connected yet".into(),
            },
        });
        for (name, u) in &self.units {
            if service_units.contains(&name.as_str()) {
                continue;
            }
            out.push(Check {
                name: format!("unit {name}"),
                ok: u.active_state.is_running() && !u.stale,
                detail: u.describe(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(names: &[&str]) -> UnitEvent {
        UnitEvent::Watched(names.iter().map(|s| s.to_string()).collect())
    }

    fn change(active: &str, sub: &str) -> UnitChange {
        UnitChange {
            load_state: Some("loaded".into()),
            active_state: Some(active.into()),
            sub_state: Some(sub.into()),
            ..UnitChange::default()
        }
    }

    #[test]
    fn changes_merge_and_partial_signals_keep_other_fields() {
        let mut st = UnitsState::default();
        st.apply(watched(&["a.service"]));
        st.apply(UnitEvent::Changed {
            unit: "a.service".into(),
            change: UnitChange {
                result: Some("success".into()),
                restarts: Some(2),
                active_enter_usec: Some(1_700_000_000_500_000),
                ..change("active", "running")
            },
        });
        st.apply(UnitEvent::Changed {
            unit: "a.service".into(),
            change: UnitChange {
                restarts: Some(3),
                ..UnitChange::default()
            },
        });
        let u = &st.units["a.service"];
        assert_eq!(u.active_state, ActiveState::Active);
        assert_eq!(u.restarts, Some(3));
        assert_eq!(u.active_since, Some(1_700_000_000.5));
        assert_eq!(u.describe(), "active (running)");
    }

    #[test]
    fn unwatched_units_are_ignored_and_dropped() {
        let mut st = UnitsState::default();
        st.apply(watched(&["a.service", "b.service"]));
        for u in ["a.service", "b.service", "c.service"] {
            st.apply(UnitEvent::Changed {
                unit: u.into(),
                change: change("active", "running"),
            });
        }
        assert_eq!(st.units.len(), 2, "c is not watched");
        st.apply(watched(&["a.service"]));
        assert_eq!(st.units.keys().collect::<Vec<_>>(), ["a.service"]);
    }

    #[test]
    fn disconnect_keeps_values_marked_stale_until_read_again() {
        let mut st = UnitsState::default();
        st.apply(UnitEvent::Connected);
        st.apply(watched(&["a.service"]));
        st.apply(UnitEvent::Changed {
            unit: "a.service".into(),
            change: change("active", "running"),
        });
        st.apply(UnitEvent::Disconnected);
        assert!(!st.connected);
        let u = &st.units["a.service"];
        assert!(u.stale);
        assert_eq!(u.active_state, ActiveState::Active, "last value kept");
        assert!(st.allows_up(Some("a.service")), "last known state counts");
        assert!(
            !st.service_check("a", "a.service").ok,
            "but check says stale"
        );
        st.apply(UnitEvent::Changed {
            unit: "a.service".into(),
            change: change("active", "running"),
        });
        assert!(!st.units["a.service"].stale);
    }

    #[test]
    fn service_up_follows_a_reported_unit_only() {
        let mut st = UnitsState::default();
        assert!(
            st.allows_up(Some("jupyter.service")),
            "never reported: not held back"
        );
        assert!(st.allows_up(None));
        st.apply(watched(&["jupyter.service"]));
        st.apply(UnitEvent::Changed {
            unit: "jupyter.service".into(),
            change: change("inactive", "dead"),
        });
        assert!(!st.allows_up(Some("jupyter.service")));
        st.apply(UnitEvent::Changed {
            unit: "jupyter.service".into(),
            change: change("reloading", "reload"),
        });
        assert!(st.allows_up(Some("jupyter.service")));
    }

    #[test]
    fn check_lines_read_like_systemctl() {
        let mut st = UnitsState::default();
        st.apply(watched(&["x.service", "gone.service", "juicefs-a.service"]));
        st.apply(UnitEvent::Changed {
            unit: "x.service".into(),
            change: UnitChange {
                result: Some("exit-code".into()),
                exec_main_status: Some(3),
                ..change("failed", "failed")
            },
        });
        st.apply(UnitEvent::Changed {
            unit: "gone.service".into(),
            change: UnitChange {
                load_state: Some("not-found".into()),
                ..change("inactive", "dead")
            },
        });
        st.apply(UnitEvent::Changed {
            unit: "juicefs-a.service".into(),
            change: change("active", "running"),
        });
        assert_eq!(
            st.service_check("x", "x.service").to_string(),
            "[ERROR] x unit x.service: failed (exit-code, status 3)"
        );
        assert!(
            st.service_check("g", "gone.service")
                .to_string()
                .starts_with("[ERROR] g unit gone.service: not found")
        );
        let health = SourceHealth {
            up: true,
            ..SourceHealth::default()
        };
        let lines: Vec<String> = st
            .other_checks(&["x.service", "gone.service"], Some(&health))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "[OK] systemd: connected, 3 units watched",
                "[OK] unit juicefs-a.service: active (running)"
            ]
        );
        assert!(
            st.other_checks(&[], None).is_empty(),
            "source off: no lines"
        );
    }
}
