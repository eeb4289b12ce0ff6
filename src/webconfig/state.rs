//! What the model keeps of the listeners served under a web config file: a copy of each
//! one's counters ([`ListenerStats`], sent by [`super::serve`]), keyed by listener. Pure.

use std::collections::BTreeMap;

/// Listener name → its latest counters.
pub type WebState = BTreeMap<&'static str, ListenerStats>;

/// Why a request was refused (`reason` of `vibe_agent_web_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Basic` header, or one that does not decode.
    Missing,
    UnknownUser,
    WrongPassword,
    /// Too many password checks under way; answered 429.
    Busy,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 4] = [
        AuthFailure::Missing,
        AuthFailure::UnknownUser,
        AuthFailure::WrongPassword,
        AuthFailure::Busy,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_credentials",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::Busy => "too_many_checks",
        }
    }
}

/// A copy of one listener's state, for the model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListenerStats {
    /// "metrics" or "otlp".
    pub listener: &'static str,
    pub tls: bool,
    pub basic_auth: bool,
    /// By [`AuthFailure::ALL`] order.
    pub auth_failures: [u64; 4],
    pub handshake_errors: u64,
    pub reload_failures: u64,
    pub last_reload_ok: bool,
    /// Expiry of the served certificate, seconds since the epoch.
    pub cert_not_after: Option<i64>,
}
