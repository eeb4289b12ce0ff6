//! The service probes: for each configured `[[service]]`, its port (the kernel's LISTEN
//! table and a TCP connect) and its HTTP health endpoint, each service on its own interval
//! and timeout.
//!
//! [`source`] schedules the probes and sends their results; [`port`], [`http`] and
//! [`health`] probe and parse (parsers pure); [`state`] is the services' section of the
//! snapshot; [`expose`] renders it; [`settings`] is the `[[service]]` list.

pub mod expose;
pub mod health;
pub mod http;
pub mod port;
pub mod settings;
pub mod source;
pub mod state;

pub use settings::{ServiceKind, ServiceSettings, TokenSource};
pub use source::{ListenTable, ProbeClient, probe_once, spawn};
