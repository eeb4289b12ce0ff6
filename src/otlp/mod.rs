//! Claude Code telemetry: OTLP receivers (HTTP and gRPC) whose metrics and events become
//! Prometheus counters that survive Claude sessions and agent restarts.
//!
//! The module owns everything OTLP: decoding request bodies ([`decode`], [`json`], and [`wire`], which converts protobuf
//! metrics without decoding them first), the
//! pure conversion into label-filtered batches ([`convert`]), the telemetry state the model
//! folds those batches into ([`state`]), its metric families ([`expose`]), the HTTP
//! receiver ([`receiver`]) and the gRPC receiver ([`grpc`]) on the OTLP listeners, the one
//! path both hand their requests to ([`ingest`]), the state file ([`persist`]) and its
//! configuration ([`settings`]); [`signal`] and [`error`] are its small shared types. It must
//! not touch the other sources' state; it reaches the model only through
//! [`crate::model::Update::ClaudeTelemetry`].
//!
//! Privacy rule, enforced in [`convert`]: only allow-listed attribute values leave the
//! receiver. Session ids and other identifying attributes are reduced to 64-bit hashes
//! before anything is queued, so no prompt, command, e-mail or id reaches the model,
//! `/metrics` or a log line.

pub mod convert;
pub mod decode;
pub mod error;
pub mod expose;
pub mod forward;
pub mod grpc;
pub mod ingest;
pub mod json;
pub mod names;
pub mod persist;
pub mod receiver;
pub mod service;
pub mod settings;
pub mod signal;
pub mod state;
pub mod wire;

pub use error::OtlpError;
pub use service::{TelemetryService, start};
pub use settings::OtlpSettings;
pub use signal::{Protocol, Signal};
pub use state::{TelemetryState, TelemetryUpdate};
