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
//! [`bus`] is the hand-written D-Bus client; [`source`] is the loop; [`settings`] is the
//! `[systemd]` section; [`error`] says what failed. This module owns no other state and
//! touches nothing outside systemd's bus API.

pub mod bus;
pub mod error;
pub mod expose;
pub mod settings;
pub mod source;
pub mod state;

pub use bus::BusAddress;
pub use error::SystemdError;
pub use settings::{SystemdSettings, WatchSettings};
pub use source::{check_once, spawn};
pub use state::{UnitEvent, UnitsState};
