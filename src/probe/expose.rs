//! The services' metric families (`vibe_service_*`, `vibe_port_*`, `vibe_http_*`,
//! `vibe_codeserver_*`, `vibe_jupyter_*`), from the services' section of the snapshot.

use prometheus::proto::MetricFamily;

use super::state::{HealthDetail, JupyterStatusProbe, ServiceState};
use crate::exposition::family::Family;
use crate::systemd::state::UnitsState;

/// The services' families: checks, health bodies and processes. `units` decides, with the
/// probes, whether a service is up (see [`ServiceState::up`]).
pub fn families(services: &[ServiceState], units: &UnitsState, out: &mut Vec<MetricFamily>) {
    let mut service_up = Family::gauge(
        "vibe_service_up",
        "1 when every enabled check of the service passes.",
    );
    let mut present = Family::gauge(
        "vibe_service_present",
        "0 when the service is absent: systemd has no unit file of its unit (LoadState \
         not-found) and nothing listens on its port; absent is not down and raises no alert.",
    );
    let mut listening = Family::gauge(
        "vibe_port_listening",
        "1 when the service's port is in LISTEN state in the kernel's socket table.",
    );
    let mut accepting = Family::gauge(
        "vibe_port_connect_success",
        "1 when a TCP connect to the service's port succeeded within the timeout.",
    );
    let mut connect_secs = Family::gauge(
        "vibe_port_connect_duration_seconds",
        "Duration of the last successful TCP connect to the service's port.",
    );
    let mut http_up = Family::gauge("vibe_http_up", "1 when the last health probe passed.");
    let mut http_status = Family::gauge(
        "vibe_http_status_code",
        "HTTP status of the last health probe (0 when no response arrived).",
    );
    let mut http_secs = Family::gauge(
        "vibe_http_duration_seconds",
        "Duration of the last health probe.",
    );
    let mut cs_alive = Family::gauge(
        "vibe_codeserver_heartbeat_alive",
        "1 when code-server's /healthz says alive; 0 when expired (idle for 60 s, not down).",
    );
    let mut cs_heartbeat = Family::gauge(
        "vibe_codeserver_last_heartbeat_timestamp_seconds",
        "code-server's last heartbeat, from /healthz.",
    );
    let mut j_kernels = Family::gauge("vibe_jupyter_kernels", "JupyterLab's running kernels.");
    let mut j_conns = Family::gauge(
        "vibe_jupyter_connections",
        "JupyterLab's open client connections.",
    );
    let mut j_activity = Family::gauge(
        "vibe_jupyter_last_activity_timestamp_seconds",
        "JupyterLab's last activity, from /api/status.",
    );
    let mut j_started = Family::gauge(
        "vibe_jupyter_started_timestamp_seconds",
        "When the JupyterLab server started, from /api/status.",
    );
    let mut j_auth = Family::gauge(
        "vibe_jupyter_auth_failed",
        "1 when JupyterLab rejected the agent's token (401/403) on /api/status.",
    );
    let mut j_status_up = Family::gauge(
        "vibe_jupyter_status_up",
        "1 when JupyterLab's authenticated /api/status answered and parsed.",
    );
    let mut procs = Family::gauge(
        "vibe_service_processes",
        "Processes in the service's systemd unit cgroup.",
    );
    let mut rss = Family::gauge(
        "vibe_service_memory_rss_bytes",
        "Resident memory of the service's processes.",
    );
    let mut cpu = Family::gauge(
        "vibe_service_cpu_usage_cores",
        "CPU used by the service's processes over the last interval, in cores.",
    );

    for svc in services {
        let name = svc.info.name.as_str();
        let l = [("service", name)];
        service_up.flag(&l, svc.up(units));
        present.flag(&l, svc.present(units));
        if let Some(p) = &svc.port {
            let port = p.port.to_string();
            let lp = [("service", name), ("port", port.as_str())];
            listening.flag(&lp, p.listening);
            accepting.flag(&lp, p.connect.is_ok());
            if let Ok(secs) = p.connect {
                connect_secs.sample(&lp, secs);
            }
        }
        if let Some(h) = &svc.http {
            http_up.flag(&l, h.outcome.is_ok());
            http_status.sample(&l, h.status.map_or(0.0, f64::from));
            http_secs.sample(&l, h.duration);
            match &h.detail {
                HealthDetail::None => {}
                HealthDetail::CodeServer {
                    alive,
                    last_heartbeat,
                } => {
                    cs_alive.flag(&l, *alive);
                    if let Some(t) = last_heartbeat {
                        cs_heartbeat.sample(&l, *t);
                    }
                }
                HealthDetail::Jupyter(probe) => {
                    j_auth.flag(&l, matches!(probe, JupyterStatusProbe::AuthFailed { .. }));
                    j_status_up.flag(&l, matches!(probe, JupyterStatusProbe::Ok(_)));
                    if let JupyterStatusProbe::Ok(st) = probe {
                        j_kernels.sample(&l, st.kernels);
                        j_conns.sample(&l, st.connections);
                        if let Some(t) = st.last_activity {
                            j_activity.sample(&l, t);
                        }
                        if let Some(t) = st.started {
                            j_started.sample(&l, t);
                        }
                    }
                }
            }
        }
        if let Some(p) = &svc.procs {
            procs.sample(&l, p.processes as f64);
            rss.sample(&l, p.memory_rss_bytes);
            cpu.sample(&l, p.cpu_usage_cores);
        }
    }
    for f in [
        service_up,
        present,
        listening,
        accepting,
        connect_secs,
        http_up,
        http_status,
        http_secs,
        cs_alive,
        cs_heartbeat,
        j_kernels,
        j_conns,
        j_activity,
        j_started,
        j_auth,
        j_status_up,
        procs,
        rss,
        cpu,
    ] {
        f.finish(out);
    }
}
