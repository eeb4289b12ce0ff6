//! Starting and stopping the telemetry side of the agent: restores the state file, starts
//! the receivers on the OTLP listeners (HTTP and gRPC, sharing one [`Ingest`]), the
//! forwarder and the persistence task, and at shutdown stops the receivers first and saves
//! the totals last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::forward::Forwarder;
use super::ingest::Ingest;
use super::signal::Signal;
use super::state::{Limits, TelemetryUpdate};
use super::{grpc, receiver};
use crate::config::Settings;
use crate::model::Update;
use crate::sink::UpdateSink;

/// How long shutdown waits for in-flight requests and the last save.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The running receiver, forwarder and persistence task.
pub struct TelemetryService {
    /// Where the OTLP/HTTP receiver listens, when it does.
    pub addr: Option<SocketAddr>,
    /// Where the OTLP/gRPC receiver listens, when it does.
    pub grpc_addr: Option<SocketAddr>,
    /// Each running receiver's stop signal and task.
    receivers: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    persist_stop: oneshot::Sender<()>,
    persist: JoinHandle<()>,
    forwarders: Vec<JoinHandle<()>>,
}

/// Restores saved totals, then starts everything. Queues the restore before the receiver
/// exists, so restored totals are in the model before the first new point.
pub fn start(
    settings: &Settings,
    listener: Option<tokio::net::TcpListener>,
    grpc_listener: Option<tokio::net::TcpListener>,
    guard: Option<Arc<crate::webconfig::guard::WebGuard>>,
    sink: &UpdateSink,
) -> TelemetryService {
    sink.send(Update::ClaudeTelemetry(TelemetryUpdate::Configure(
        Box::new(Limits::from_settings(&settings.otlp)),
    )));
    let file = super::persist::path(&settings.state_dir);
    match super::persist::load(&file) {
        Ok(Some(p)) => {
            tracing::info!(path = %file.display(), families = p.families.len(), "restored Claude telemetry totals");
            sink.send(Update::ClaudeTelemetry(TelemetryUpdate::Restore(Box::new(
                p,
            ))));
        }
        Ok(None) => {}
        // Counting goes on from zero in memory, and the unreadable file is kept aside so
        // it is not overwritten: a person can repair it.
        Err(e) => {
            let aside = file.with_extension("json.unreadable");
            let _ = std::fs::rename(&file, &aside);
            tracing::error!(error = %e, kept = %aside.display(), "cannot restore Claude telemetry totals");
        }
    }

    let mut forwarders = Vec::new();
    let forward = Forwarder::new(
        &[
            (Signal::Metrics, settings.forward.metrics_url.clone()),
            (Signal::Logs, settings.forward.logs_url.clone()),
            (Signal::Traces, settings.forward.traces_url.clone()),
        ],
        settings.otlp.forward_queue_bytes,
        &super::forward::UpstreamOptions::from_settings(&settings.forward),
    )
    .map(|(f, tasks)| {
        forwarders.extend(tasks.into_iter().map(tokio::spawn));
        f
    });

    let (persist_stop, persist_rx) = oneshot::channel();
    let persist = tokio::spawn(super::persist::run(
        file,
        settings.otlp.persist_interval,
        sink.clone(),
        forward.clone(),
        persist_rx,
    ));

    let mut service = TelemetryService {
        addr: None,
        grpc_addr: None,
        receivers: Vec::new(),
        persist_stop,
        persist,
        forwarders,
    };
    let ingest = Arc::new(Ingest::new(&settings.otlp, sink.clone(), forward));
    if let Some(listener) = listener {
        service.addr = listener.local_addr().ok();
        let r = ingest.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let web_sink = sink.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = receiver::serve(listener, r, guard, web_sink, async move {
                let _ = rx.await;
            })
            .await
            {
                tracing::error!(error = %e, "OTLP/HTTP receiver stopped");
            }
        });
        service.receivers.push((tx, task));
    }
    if let Some(listener) = grpc_listener {
        service.grpc_addr = listener.local_addr().ok();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = grpc::serve(listener, ingest, async move {
                let _ = rx.await;
            })
            .await
            {
                tracing::error!(error = %e, "OTLP/gRPC receiver stopped");
            }
        });
        service.receivers.push((tx, task));
    }
    service
}

impl TelemetryService {
    /// Stops taking requests, then saves the totals one last time.
    pub async fn stop(mut self) {
        let receivers = std::mem::take(&mut self.receivers);
        let mut tasks = Vec::new();
        for (tx, task) in receivers {
            let _ = tx.send(());
            tasks.push(task);
        }
        // Both receivers drain in parallel, within one grace period.
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        for f in &self.forwarders {
            f.abort();
        }
        let _ = self.persist_stop.send(());
        if tokio::time::timeout(STOP_GRACE, &mut self.persist)
            .await
            .is_err()
        {
            self.persist.abort();
        }
    }
}
