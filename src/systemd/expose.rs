//! The `vibe_unit_*` metric families of the watched units, built from [`UnitsState`] with
//! exposition's [`Family`] builder. Called by [`crate::exposition::families`] only.

use prometheus::proto::MetricFamily;

use super::state::{EXPOSED_STATES, UnitsState};
use crate::exposition::family::Family;

/// Appends the unit families to `out`.
pub fn families(st: &UnitsState, out: &mut Vec<MetricFamily>) {
    let mut state = Family::gauge(
        "vibe_unit_state",
        "1 for the unit's current ActiveState among active, activating, deactivating, \
         inactive and failed (node_exporter semantics: reloading sets none).",
    );
    let mut info = Family::gauge(
        "vibe_unit_info",
        "systemd's view of the unit: load state, sub-state and result (services).",
    );
    let mut restarts = Family::counter(
        "vibe_unit_restarts_total",
        "Automatic restarts of the service by systemd (NRestarts).",
    );
    let mut since = Family::gauge(
        "vibe_unit_active_since_timestamp_seconds",
        "When the unit last entered the active state (ActiveEnterTimestamp).",
    );
    let mut memory = Family::gauge(
        "vibe_unit_memory_bytes",
        "Memory of the unit's cgroup as systemd accounts it (MemoryCurrent).",
    );
    let mut cpu = Family::counter(
        "vibe_unit_cpu_seconds_total",
        "CPU time of the unit's cgroup as systemd accounts it (CPUUsageNSec); restarts at \
         each start of the unit.",
    );
    let mut tasks = Family::gauge(
        "vibe_unit_tasks",
        "Tasks (threads) in the unit's cgroup (TasksCurrent).",
    );
    let mut stale = Family::gauge(
        "vibe_unit_stale",
        "1 when the unit's values are the last ones read before systemd or the bus became \
         unreachable.",
    );
    for (name, u) in &st.units {
        let unit = name.as_str();
        for s in EXPOSED_STATES {
            state.flag(
                &[("unit", unit), ("state", s)],
                u.active_state.as_str() == s,
            );
        }
        info.sample(
            &[
                ("unit", unit),
                ("load_state", &u.load_state),
                ("sub_state", &u.sub_state),
                ("result", &u.result),
            ],
            1.0,
        );
        let l = [("unit", unit)];
        if let Some(n) = u.restarts {
            restarts.sample(&l, f64::from(n));
        }
        if let Some(t) = u.active_since {
            since.sample(&l, t);
        }
        if let Some(b) = u.resources.memory_bytes {
            memory.sample(&l, b as f64);
        }
        if let Some(ns) = u.resources.cpu_nsec {
            cpu.sample(&l, ns as f64 / 1e9);
        }
        if let Some(n) = u.resources.tasks {
            tasks.sample(&l, n as f64);
        }
        stale.flag(&l, u.stale);
    }
    for f in [state, info, restarts, since, memory, cpu, tasks, stale] {
        f.finish(out);
    }
}
