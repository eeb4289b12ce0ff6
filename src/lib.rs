//! vibe-agent: the host agent of a VIBE dev box. It probes code-server and JupyterLab,
//! samples the host and its paths, and exposes what it learns as Prometheus metrics.
//!
//! Data flows one way: sources ([`probe`], [`host`]) send [`model::Update`]s through an
//! [`sink::UpdateSink`] to the model task ([`daemon`]), which publishes
//! [`model::Snapshot`]s that [`server`] renders with [`exposition`]. See DESIGN.md.

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod exposition;
pub mod host;
pub mod juicefs;
pub mod logging;
pub mod manpage;
pub mod model;
pub mod otlp;
pub mod probe;
pub mod server;
pub mod sink;
pub mod systemd;
pub mod transcripts;
pub mod worker;

/// Now, in seconds since the Unix epoch. Sources stamp their samples with it; pure code
/// never calls it.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
