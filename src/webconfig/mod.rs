//! TLS and basic auth on the agent's listeners, configured by Prometheus' web config file
//! (the exporter-toolkit format node_exporter reads with `--web.config.file`):
//! `listen.web_config_file` for `/metrics`, `otlp.web_config_file` for the OTLP/HTTP
//! receiver.
//!
//! - [`file`]: the YAML's serde mirror and its validation (pure);
//! - [`tls`]: the rustls server configuration built from it, and what a certificate says;
//! - [`guard`]: one listener's configuration, live (re-read when a file changes), and the
//!   password checks;
//! - [`serve`]: a router served under a guard (the TLS acceptor, the auth middleware);
//! - [`state`]: the listeners' counters as the model keeps them (pure);
//! - [`expose`]: their metric families;
//! - [`settings`]: the check the config file's validation runs;
//! - [`error`]: [`WebConfigError`], the leaf.
//!
//! This module never touches the routes' own logic: it wraps whatever router it is given.

pub mod error;
pub mod expose;
pub mod file;
pub mod guard;
pub mod serve;
pub mod settings;
pub mod state;
pub mod tls;

pub use error::WebConfigError;
pub use guard::WebGuard;
pub use serve::serve;
pub use state::ListenerStats;
