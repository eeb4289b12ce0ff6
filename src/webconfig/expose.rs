//! The `vibe_agent_web_*` and `vibe_agent_tls_*` families, from the listeners' counters.
//! Called by the exposition's render only. Nothing is exposed for a listener
//! without a web config file.

use prometheus::proto::MetricFamily;

use super::state::{AuthFailure, WebState};
use crate::exposition::family::Family;

/// Appends the families to `out`.
pub fn families(st: &WebState, out: &mut Vec<MetricFamily>) {
    let mut info = Family::gauge(
        "vibe_agent_web_config_info",
        "A listener served under a web config file: whether it speaks TLS and asks for basic \
         auth (1 for each listener with a file).",
    );
    let mut reload_ok = Family::gauge(
        "vibe_agent_web_config_last_reload_successful",
        "0 when the web config file (or a certificate, key or CA it names) changed and could \
         not be loaded; the last good one stays in service.",
    );
    let mut reload_failures = Family::counter(
        "vibe_agent_web_config_reload_failures_total",
        "Changed web config files (or certificates, keys, CAs) that could not be loaded.",
    );
    let mut auth = Family::counter(
        "vibe_agent_web_auth_failures_total",
        "Requests refused by basic auth, by reason: missing_credentials, unknown_user, \
         wrong_password, too_many_checks (answered 429).",
    );
    let mut handshakes = Family::counter(
        "vibe_agent_tls_handshake_errors_total",
        "TLS handshakes that failed or timed out (no or a refused client certificate, a \
         client that does not trust the certificate, plain HTTP sent to the TLS port...).",
    );
    let mut expiry = Family::gauge(
        "vibe_agent_tls_certificate_expiry_timestamp_seconds",
        "When the certificate the listener serves expires (notAfter).",
    );
    for (listener, s) in st {
        let l = [("listener", *listener)];
        info.sample(
            &[
                ("listener", listener),
                ("tls", if s.tls { "true" } else { "false" }),
                ("basic_auth", if s.basic_auth { "true" } else { "false" }),
            ],
            1.0,
        );
        reload_ok.flag(&l, s.last_reload_ok);
        reload_failures.sample(&l, s.reload_failures as f64);
        if s.basic_auth || s.auth_failures.iter().any(|n| *n > 0) {
            for (i, why) in AuthFailure::ALL.iter().enumerate() {
                auth.sample(
                    &[("listener", listener), ("reason", why.as_str())],
                    s.auth_failures[i] as f64,
                );
            }
        }
        if s.tls {
            handshakes.sample(&l, s.handshake_errors as f64);
        }
        if let Some(t) = s.cert_not_after {
            expiry.sample(&l, t as f64);
        }
    }
    for f in [info, reload_ok, reload_failures, auth, handshakes, expiry] {
        f.finish(out);
    }
}
