//! HTTP health probe: the thin reqwest adapter around the pure parsers in
//! [`super::health`]. One request per probe (two for JupyterLab with a token), each bounded
//! by the service's timeout, bodies capped at [`MAX_BODY_BYTES`].

use std::time::{Duration, Instant};

use super::settings::{ServiceKind, ServiceSettings, TokenSource};
use super::state::{HealthDetail, HttpSample, JupyterStatusProbe};
use crate::common::UnixTime;

use super::health;

/// Health bodies are small; anything larger is cut here and fails to parse.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A client for health probes: no proxies (probes target loopback), no redirects followed
/// silently, no connection reuse across probes (a probe must see a fresh connect). An
/// https URL's certificate is checked as `tls` says.
pub fn client(tls: &crate::tlsclient::ClientTls) -> Result<reqwest::Client, String> {
    crate::tlsclient::reqwest_builder(tls)?
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .user_agent(concat!("vibe-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))
}

/// Status and body of one GET.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Answer, String> {
    let fetch = async {
        let mut req = client.get(url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("token {t}"));
        }
        let mut resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            let room = MAX_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY_BYTES {
                break;
            }
        }
        Ok(Answer { status, body })
    };
    match tokio::time::timeout(timeout, fetch).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} (timeout)",
            humantime::format_duration(timeout)
        )),
    }
}

/// reqwest's error in one line: the kind of failure and its innermost cause
/// ("cannot connect: Connection refused (os error 111)").
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "error reading the body"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    format!("{what}: {cause}")
}

/// Reads a JupyterLab token from where the config says it is.
pub fn read_token(source: &TokenSource) -> Result<String, String> {
    let token = match source {
        TokenSource::Inline(t) => t.clone(),
        TokenSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
            format!(
                "cannot read token file {}: {e}; write JupyterLab's token there or set token/token_env",
                p.display()
            )
        })?,
        TokenSource::Env(var) => std::env::var(var).map_err(|_| {
            format!("environment variable {var} (token_env) is not set in the agent's environment")
        })?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err("the configured JupyterLab token is empty".into());
    }
    Ok(token)
}

/// Probes a service's health URL once. `at` is when the probe started.
pub async fn probe(
    client: &reqwest::Client,
    svc: &ServiceSettings,
    url: &str,
    at: UnixTime,
) -> HttpSample {
    let start = Instant::now();
    let answer = get(client, url, None, svc.timeout).await;
    let duration = start.elapsed().as_secs_f64();
    let (status, outcome, mut detail) = match &answer {
        Err(e) => (None, Err(e.clone()), HealthDetail::None),
        Ok(a) => {
            let (outcome, detail) = judge(svc, a);
            (Some(a.status), outcome, detail)
        }
    };
    if svc.kind == ServiceKind::Jupyter && outcome.is_ok() {
        if let Some(source) = &svc.token {
            let status_url = format!("{}/status", url.trim_end_matches('/'));
            let probe = jupyter_status(client, source, &status_url, svc.timeout).await;
            detail = HealthDetail::Jupyter(probe);
        }
    }
    HttpSample {
        at,
        duration,
        status,
        outcome,
        detail,
    }
}

/// Whether an answer passes, by kind.
fn judge(svc: &ServiceSettings, a: &Answer) -> (Result<(), String>, HealthDetail) {
    match svc.kind {
        ServiceKind::CodeServer => {
            if a.status != 200 {
                return (Err(format!("status {}", a.status)), HealthDetail::None);
            }
            match health::parse_codeserver_healthz(&a.body) {
                Ok(h) => (
                    Ok(()),
                    HealthDetail::CodeServer {
                        alive: h.alive,
                        last_heartbeat: h.last_heartbeat,
                    },
                ),
                Err(e) => (Err(e), HealthDetail::None),
            }
        }
        ServiceKind::Jupyter => {
            if a.status != 200 {
                return (Err(format!("status {}", a.status)), HealthDetail::None);
            }
            (
                health::parse_jupyter_api(&a.body).map(|_| ()),
                HealthDetail::None,
            )
        }
        ServiceKind::Http => {
            if a.status != svc.expect_status {
                return (
                    Err(format!(
                        "status {}, expected {}",
                        a.status, svc.expect_status
                    )),
                    HealthDetail::None,
                );
            }
            let outcome = match &svc.expect_json {
                Some((field, value)) => health::check_json_field(&a.body, field, value),
                None => Ok(()),
            };
            (outcome, HealthDetail::None)
        }
    }
}

async fn jupyter_status(
    client: &reqwest::Client,
    source: &TokenSource,
    url: &str,
    timeout: Duration,
) -> JupyterStatusProbe {
    let token = match read_token(source) {
        Ok(t) => t,
        Err(e) => return JupyterStatusProbe::Failed(e),
    };
    match get(client, url, Some(&token), timeout).await {
        Err(e) => JupyterStatusProbe::Failed(format!("{url}: {e}")),
        Ok(a) if a.status == 401 || a.status == 403 => {
            JupyterStatusProbe::AuthFailed { status: a.status }
        }
        Ok(a) if a.status != 200 => {
            JupyterStatusProbe::Failed(format!("{url}: status {}", a.status))
        }
        Ok(a) => match health::parse_jupyter_status(&a.body) {
            Ok(st) => JupyterStatusProbe::Ok(st),
            Err(e) => JupyterStatusProbe::Failed(e),
        },
    }
}
