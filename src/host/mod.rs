//! The host: CPU, load, memory and swap, statvfs of the configured paths, each service's
//! processes, and the agent's own process.
//!
//! [`source`] samples (sysinfo, statvfs on blocking workers, procfs, cgroups); [`state`] is
//! the host's sections of the snapshot; [`expose`] renders them; [`settings`] is `[host]`.

pub mod expose;
pub mod settings;
pub mod source;
pub mod state;

pub use settings::HostSettings;
pub use source::{HostSampler, spawn};
