//! vibe-agent: the host agent of a VIBE dev box. It probes code-server and JupyterLab,
//! watches systemd units, JuiceFS mounts and Claude Code, samples the host and its paths,
//! and exposes what it learns as Prometheus metrics.
//!
//! # Layout
//!
//! Data flows one way: sources → one model task → snapshot → `/metrics`. The rooms:
//!
//! | room | what it owns |
//! |---|---|
//! | [`probe`], [`host`], [`systemd`], [`juicefs`], [`otlp`], [`transcripts`] | one source each |
//! | [`model`] | the hub: the [`model::Snapshot`] (one section per source), [`model::Update`], [`model::Model::apply`] |
//! | [`daemon`] | wiring: starts the sources and the model task, reload, shutdown |
//! | [`sink`] | the sources' side of the model task: the bounded data queue, the request channel beside it, and [`sink::spawn_periodic`], the loop of every source that samples on an interval |
//! | [`exposition`] | the only room that knows the prometheus crate: [`exposition::family`] (the builder) and [`exposition::render`](mod@exposition::render) |
//! | [`server`] | the metrics listener: `/metrics`, the landing page, health and readiness |
//! | [`statusline`] | `vibe-agent statusline` and the Unix socket that answers it, per caller uid, from the snapshot |
//! | [`webconfig`] | TLS and basic auth of the listeners from a Prometheus web config file: its parsing, the TLS acceptor, the password checks, their counters (`state`, `expose`) |
//! | [`tlsclient`] | outbound TLS (https probes, forwarding) and the one rustls crypto provider; a leaf |
//! | [`config`] | the file: `[listen]` and `[agent]`, the other sections through each source's `settings`; [`config::error`] |
//! | [`cli`], [`check`], [`manpage`], [`logging`] | the command line, `vibe-agent check`, the manual pages, logs |
//! | [`common`], [`worker`] | leaves: time, [`common::Source`], source health, check lines; the blocking worker |
//!
//! Every source is a folder of the same shape:
//!
//! - `source` (or the I/O modules the folder names: `receiver`, `tail`, `bus`): samples or
//!   receives, and sends [`model::Update`]s through a [`sink::UpdateSink`] (a source that
//!   samples on an interval implements [`sink::Sample`] and runs on [`sink::spawn_periodic`]);
//! - `state`: pure; its section of the snapshot and how its updates apply (no I/O, no clock,
//!   no prometheus);
//! - `expose`: its metric families, built from its own section only;
//! - `settings`: its part of the configuration file (serde mirror, defaults, validation);
//! - `mod.rs`: the module's doc, its list of files and re-exports, nothing else.
//!
//! A new source is its own folder, plus one line each in the hub ([`model`]: its section and
//! its `Update` variant), the daemon ([`daemon`]: its `spawn`) and the config
//! ([`config::settings`]: its section); its families join `/metrics` with one line in
//! [`exposition::render`](mod@exposition::render).
//!
//! # Import rules
//!
//! - [`model`] imports each source's `state`, never its `mod.rs` or its I/O; a `state` never
//!   imports [`model`] (a `state` may import another source's `state`, e.g. the JuiceFS
//!   mounts fill the host's filesystems).
//! - A source's `expose` imports [`exposition::family`], never [`exposition`] itself (which
//!   imports every `expose`).
//! - A source's `settings` imports [`config::error`], never [`config`] itself (which imports
//!   every `settings`).
//! - Modules inside a folder import their siblings directly (`super::state::X`), never
//!   through the folder's `mod.rs`.
//! - No module imports [`cli`]; [`manpage`] takes the `clap::Command` it renders.
//!
//! There is no circle among the crate's modules: `tests/it/layout.rs` reads every file's
//! `use` lines and paths and fails on any circle, on a hub that imports more than the
//! states, on a state that imports the hub, and on a module that imports [`cli`]. Design notes the code cites are in
//! `docs/design.md`.

pub mod check;
pub mod cli;
pub mod common;
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
pub mod statusline;
pub mod systemd;
pub mod tlsclient;
pub mod transcripts;
pub mod webconfig;
pub mod worker;
