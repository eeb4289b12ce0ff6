//! What the model keeps of the probed services: each configured service ([`ServiceInfo`])
//! with its latest port, HTTP health and process samples ([`ServiceState`]), how updates
//! apply to that list, and the services' `vibe-agent check` lines.
//!
//! Pure: no I/O, no clock (every sample carries the time it was taken), no prometheus.

use serde::Serialize;

use super::settings::{ServiceKind, ServiceSettings};
use crate::common::{Check, UnixTime};
use crate::host::state::ProcSample;
use crate::systemd::state::UnitsState;

/// The service list as the model needs it: names, kinds, and which checks are enabled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigureServices(pub Vec<ServiceInfo>);

impl ConfigureServices {
    pub fn from_services(services: &[ServiceSettings]) -> Self {
        Self(
            services
                .iter()
                .map(|s| ServiceInfo {
                    name: s.name.clone(),
                    kind: s.kind,
                    unit: s.unit.clone(),
                    port: s.port,
                    health_url: s.health_url.clone(),
                    status_enabled: s.kind == ServiceKind::Jupyter && s.token.is_some(),
                })
                .collect(),
        )
    }
}

/// What the model knows of a service's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub kind: ServiceKind,
    pub unit: Option<String>,
    pub port: Option<u16>,
    pub health_url: Option<String>,
    /// JupyterLab with a token: `/api/status` is probed too.
    pub status_enabled: bool,
}

/// One port probe: the kernel's socket table and a TCP connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortSample {
    pub at: UnixTime,
    pub port: u16,
    /// In LISTEN state in the socket table (IPv4 or IPv6).
    pub listening: bool,
    /// `Ok(seconds)` when a TCP connect succeeded within the timeout.
    pub connect: Result<f64, String>,
}

/// One HTTP health probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSample {
    pub at: UnixTime,
    /// Seconds from request to the end of the body (or to the failure).
    pub duration: f64,
    /// Status code, when a response arrived.
    pub status: Option<u16>,
    /// `Ok(())` when the probe passed; otherwise why not, in words for a person.
    pub outcome: Result<(), String>,
    /// What the body said, for kinds that have one.
    pub detail: HealthDetail,
}

/// Parsed health bodies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum HealthDetail {
    None,
    /// code-server `/healthz`. `expired` (idle for 60 s) is still up.
    CodeServer {
        alive: bool,
        last_heartbeat: Option<UnixTime>,
    },
    /// JupyterLab `/api/status`, when probed.
    Jupyter(JupyterStatusProbe),
}

/// The outcome of JupyterLab's authenticated status request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum JupyterStatusProbe {
    Ok(JupyterStatus),
    /// 401 or 403: the configured token is wrong. Distinct from down.
    AuthFailed {
        status: u16,
    },
    /// The token could not be read, the request failed, or the body made no sense.
    Failed(String),
}

/// JupyterLab `/api/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JupyterStatus {
    pub kernels: f64,
    pub connections: f64,
    pub started: Option<UnixTime>,
    pub last_activity: Option<UnixTime>,
}

/// One service and its latest samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceState {
    pub info: ServiceInfo,
    pub port: Option<PortSample>,
    pub http: Option<HttpSample>,
    pub procs: Option<ProcSample>,
}

impl ServiceState {
    /// 1 when every enabled check passes: port listening and accepting, health probe up,
    /// and the unit running once systemd has reported it (see
    /// [`UnitsState::allows_up`](crate::systemd::UnitsState::allows_up)). A check that has
    /// not reported yet does not pass. JupyterLab's authenticated `/api/status` is not part
    /// of it: a wrong token in the agent's config says nothing about whether users can work,
    /// and is reported on its own (`vibe_jupyter_auth_failed`, alert VibeJupyterAuthFailing).
    pub fn up(&self, units: &UnitsState) -> bool {
        let port_ok = self.info.port.is_none()
            || self
                .port
                .as_ref()
                .is_some_and(|p| p.listening && p.connect.is_ok());
        let http_ok =
            self.info.health_url.is_none() || self.http.as_ref().is_some_and(|h| h.outcome.is_ok());
        port_ok && http_ok && units.allows_up(self.info.unit.as_deref())
    }

    /// False when the service is absent: systemd has no unit file of its unit (`LoadState`
    /// `not-found`) and nobody answers where it would (its port, when configured, is not
    /// listening; its health endpoint, when configured, fails). A box installed without
    /// code-server or JupyterLab then reads "absent", not "down", and raises no alert
    /// (`vibe_service_present 0`). Anything else is present: a service without a unit, a
    /// unit systemd has not reported yet, a unit that exists but is stopped, or something
    /// listening on the port under another unit.
    pub fn present(&self, units: &UnitsState) -> bool {
        let not_found = self
            .info
            .unit
            .as_deref()
            .is_some_and(|u| units.not_found(u));
        let nobody_listens =
            self.info.port.is_none() || self.port.as_ref().is_some_and(|p| !p.listening);
        let nobody_answers = self.info.health_url.is_none()
            || self.http.as_ref().is_some_and(|h| h.outcome.is_err());
        !(not_found && nobody_listens && nobody_answers)
    }

    /// Every enabled check has reported at least once.
    pub fn sampled(&self) -> bool {
        (self.info.port.is_none() || self.port.is_some())
            && (self.info.health_url.is_none() || self.http.is_some())
    }
}

/// Replaces the configured services. A service whose checks did not change keeps its
/// samples; services no longer configured are dropped with theirs.
pub fn configure(services: &mut Vec<ServiceState>, ConfigureServices(infos): ConfigureServices) {
    let old = std::mem::take(services);
    for info in infos {
        let kept = old
            .iter()
            .find(|o| o.info == info)
            .map(|o| (o.port.clone(), o.http.clone(), o.procs.clone()));
        let (port, http, procs) = kept.unwrap_or((None, None, None));
        services.push(ServiceState {
            info,
            port,
            http,
            procs,
        });
    }
}

/// The service of this name, if configured (samples of unknown services are ignored).
pub fn service_mut<'a>(
    services: &'a mut [ServiceState],
    name: &str,
) -> Option<&'a mut ServiceState> {
    services.iter_mut().find(|s| s.info.name == name)
}

/// The services' check lines, in configuration order: unit (when `units_watched`, i.e. the
/// systemd source runs), port, HTTP health, and JupyterLab's status.
pub fn checks(services: &[ServiceState], units: &UnitsState, units_watched: bool) -> Vec<Check> {
    let mut out = Vec::new();
    for s in services {
        let name = &s.info.name;
        if !s.present(units) {
            out.push(absent_check(s));
            continue;
        }
        if let Some(unit) = s.info.unit.as_deref().filter(|_| units_watched) {
            out.push(units.service_check(name, unit));
        }
        if let Some(port) = s.info.port {
            let check = |ok, detail: String| Check {
                name: format!("{name} port {port}"),
                ok,
                detail,
            };
            out.push(match &s.port {
                None => check(false, "not probed yet".into()),
                Some(p) => match (p.listening, &p.connect) {
                    (true, Ok(secs)) => check(true, format!("listening, connect in {}", ms(*secs))),
                    (true, Err(e)) => check(false, format!("listening, but connect: {e}")),
                    (false, _) => check(false, "not listening".into()),
                },
            });
        }
        if let Some(url) = &s.info.health_url {
            let check = |ok, detail: String| Check {
                name: format!("{name} http"),
                ok,
                detail,
            };
            out.push(match &s.http {
                None => check(false, format!("{url}: not probed yet")),
                Some(h) => match &h.outcome {
                    Ok(()) => {
                        let what = match &h.detail {
                            HealthDetail::CodeServer { alive: true, .. } => " (alive)",
                            HealthDetail::CodeServer { alive: false, .. } => {
                                " (expired: idle, not down)"
                            }
                            _ => "",
                        };
                        check(
                            true,
                            format!(
                                "{url}: {} in {}{what}",
                                h.status.unwrap_or(0),
                                ms(h.duration)
                            ),
                        )
                    }
                    Err(e) => check(false, format!("{url}: {e}")),
                },
            });
        }
        if s.info.status_enabled {
            let check = |ok, detail: String| Check {
                name: format!("{name} status"),
                ok,
                detail,
            };
            out.push(match s.http.as_ref().map(|h| &h.detail) {
                Some(HealthDetail::Jupyter(JupyterStatusProbe::Ok(st))) => check(
                    true,
                    format!("{} kernels, {} connections", st.kernels, st.connections),
                ),
                Some(HealthDetail::Jupyter(JupyterStatusProbe::AuthFailed { status })) => check(
                    false,
                    format!(
                        "authentication failed ({status}): the token in the agent's \
                             config is not accepted by JupyterLab"
                    ),
                ),
                Some(HealthDetail::Jupyter(JupyterStatusProbe::Failed(e))) => {
                    check(false, e.clone())
                }
                _ => check(false, "not probed (liveness failed)".into()),
            });
        }
    }
    out
}

/// The one line of an absent service (see [`ServiceState::present`]): it passes, since a
/// service that is not installed is not down.
fn absent_check(s: &ServiceState) -> Check {
    let mut why = format!(
        "unit {} is not installed",
        s.info.unit.as_deref().unwrap_or_default()
    );
    if let Some(port) = s.info.port {
        why.push_str(&format!(", nothing listens on port {port}"));
    }
    Check {
        name: s.info.name.clone(),
        ok: true,
        detail: format!(
            "absent ({why}): not monitored as down; install it, or remove the [[service]] \
             from the agent's config to drop this line"
        ),
    }
}

fn ms(secs: f64) -> String {
    format!("{:.1} ms", secs * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::state::{UnitChange, UnitEvent};

    fn jupyter(listening: Option<bool>, http_ok: Option<bool>) -> ServiceState {
        ServiceState {
            info: ServiceInfo {
                name: "jupyter".into(),
                kind: ServiceKind::Jupyter,
                unit: Some("jupyter.service".into()),
                port: Some(8888),
                health_url: Some("http://127.0.0.1:8888/jupyter/api".into()),
                status_enabled: false,
            },
            port: listening.map(|listening| PortSample {
                at: 1.0,
                port: 8888,
                listening,
                connect: if listening {
                    Ok(0.001)
                } else {
                    Err("refused".into())
                },
            }),
            http: http_ok.map(|ok| HttpSample {
                at: 1.0,
                duration: 0.001,
                status: ok.then_some(200),
                outcome: if ok { Ok(()) } else { Err("refused".into()) },
                detail: HealthDetail::None,
            }),
            procs: None,
        }
    }

    fn units(load_state: Option<&str>) -> UnitsState {
        let mut u = UnitsState::default();
        u.apply(UnitEvent::Watched(["jupyter.service".to_string()].into()));
        if let Some(load) = load_state {
            u.apply(UnitEvent::Changed {
                unit: "jupyter.service".into(),
                change: UnitChange {
                    load_state: Some(load.into()),
                    active_state: Some("inactive".into()),
                    sub_state: Some("dead".into()),
                    ..UnitChange::default()
                },
            });
        }
        u
    }

    /// Issue 18: absent only when systemd has no unit file and nobody answers.
    #[test]
    fn absent_needs_a_missing_unit_and_nobody_listening() {
        let missing = units(Some("not-found"));
        let absent = jupyter(Some(false), Some(false));
        assert!(!absent.present(&missing));
        assert!(!absent.up(&missing));
        let lines = checks(std::slice::from_ref(&absent), &missing, true);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].ok, "absent is not a failure: {lines:?}");
        assert!(
            lines[0]
                .to_string()
                .starts_with("[OK] jupyter: absent (unit jupyter.service is not installed, nothing listens on port 8888)"),
            "{lines:?}"
        );

        // Something listens or answers: present (the unit line says not found).
        assert!(jupyter(Some(true), Some(false)).present(&missing));
        assert!(jupyter(Some(false), Some(true)).present(&missing));
        // Not probed yet: not known to be silent, so present.
        assert!(jupyter(None, None).present(&missing));
        // Installed but stopped, or systemd not read: present, and down.
        let stopped = units(Some("loaded"));
        assert!(absent.present(&stopped));
        assert!(!absent.up(&stopped));
        assert!(absent.present(&units(None)));
        assert!(
            checks(std::slice::from_ref(&absent), &stopped, true)
                .iter()
                .all(|c| !c.ok)
        );
    }
}
