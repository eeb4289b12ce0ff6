//! The probe loops: one task per configured service, each with its own interval and
//! timeout, sending port and HTTP health results to the model.
//!
//! The pure parts live in [`super::port::listening_ports`] and [`super::health`]; this
//! module only schedules. [`probe_once`] is shared by the daemon's loops and
//! `vibe-agent check`.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::settings::ServiceSettings;
use super::state::{HealthDetail, HttpSample};
use super::{http, port};
use crate::common::{Source, unix_now};
use crate::config::Settings;
use crate::model::Update;
use crate::sink::{Sample, UpdateSink, spawn_periodic};

/// How long one read of the socket table serves every service's port probe: services
/// probed in the same second share one read. The read is a sock_diag dump of LISTEN
/// sockets (tens of µs); the `/proc/net/tcp{,6}` fallback makes the kernel walk its whole
/// connection table (milliseconds on a large box).
pub const LISTEN_TABLE_REUSE: Duration = Duration::from_secs(1);

/// One read of the LISTEN ports (or why it failed), and when it was made.
type ListenRead = (Instant, Result<BTreeSet<u16>, String>);

/// The ports in LISTEN state, read at most once per [`LISTEN_TABLE_REUSE`].
#[derive(Debug, Default)]
pub struct ListenTable {
    last: Mutex<Option<ListenRead>>,
}

impl ListenTable {
    /// The LISTEN ports, from a read made within the reuse window or a fresh one.
    pub fn read(&self) -> Result<BTreeSet<u16>, String> {
        let mut last = self.last.lock().expect("listen table lock");
        if let Some((at, table)) = last.as_ref() {
            if at.elapsed() < LISTEN_TABLE_REUSE {
                return table.clone();
            }
        }
        let table = port::read_listening_ports().map_err(|e| e.to_string());
        *last = Some((Instant::now(), table.clone()));
        table
    }
}

/// The HTTP client of one service's health probe (its own TLS settings), or why there is
/// none (an unreadable `ca_file`), reported as the probe's failure.
pub type ProbeClient = Result<reqwest::Client, String>;

/// Probes one service once (port, then health) and returns the updates.
pub async fn probe_once(
    client: &ProbeClient,
    table: &ListenTable,
    svc: &ServiceSettings,
) -> Vec<Update> {
    let mut out = Vec::new();
    if let Some(port) = svc.port {
        let at = unix_now();
        let listening = match table.read() {
            Ok(ports) => {
                out.push(Update::Source {
                    source: Source::Ports,
                    result: Ok(()),
                });
                ports
            }
            Err(e) => {
                out.push(Update::Source {
                    source: Source::Ports,
                    result: Err(e),
                });
                Default::default()
            }
        };
        let sample = port::probe(&listening, &svc.host, port, svc.timeout, at).await;
        out.push(Update::Port {
            service: svc.name.clone(),
            sample,
        });
    }
    if let Some(url) = &svc.health_url {
        let sample = match client {
            Ok(client) => http::probe(client, svc, url, unix_now()).await,
            Err(e) => HttpSample {
                at: unix_now(),
                duration: 0.0,
                status: None,
                outcome: Err(e.clone()),
                detail: HealthDetail::None,
            },
        };
        out.push(Update::Http {
            service: svc.name.clone(),
            sample,
        });
    }
    out
}

/// One service's probes, as one periodic source.
struct ServiceProbe {
    client: ProbeClient,
    table: Arc<ListenTable>,
    svc: ServiceSettings,
}

impl Sample for ServiceProbe {
    fn sample(&mut self) -> impl Future<Output = Vec<Update>> + Send {
        probe_once(&self.client, &self.table, &self.svc)
    }
}

/// Starts one probe loop per service into `tasks`. Each loop probes at once, then every
/// interval; a slow probe delays only its own service.
pub fn spawn(settings: &Settings, sink: &UpdateSink, tasks: &mut JoinSet<()>) {
    let table = Arc::new(ListenTable::default());
    for svc in &settings.services {
        let probe = ServiceProbe {
            client: http::client(&svc.tls),
            table: table.clone(),
            svc: svc.clone(),
        };
        spawn_periodic(tasks, svc.interval, sink, probe);
    }
}
