//! Serving a router under a web config: basic auth and response headers as a middleware
//! on every route, and TLS through an acceptor task that performs handshakes concurrently
//! (at most [`MAX_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]) and hands
//! finished connections to axum, so a slow or hostile client never holds up the others.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;

use super::guard::WebGuard;
use super::state::AuthFailure;
use crate::model::Update;
use crate::sink::UpdateSink;

/// TLS handshakes under way at once; connections beyond are closed at once and counted.
pub const MAX_HANDSHAKES: usize = 256;
/// Time a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the listener's counters are offered to the model (only when they moved).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown`; with a guard, under its web config.
/// `sink` receives the listener's counters.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    guard: Option<Arc<WebGuard>>,
    sink: Option<UpdateSink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(guard) = guard else {
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let router = router.layer(axum::middleware::from_fn_with_state(guard.clone(), check));
    let reporter = sink.map(|sink| tokio::spawn(report(guard.clone(), sink)));
    let result = if guard.tls() {
        axum::serve(TlsListener::start(listener, guard.clone())?, router)
            .with_graceful_shutdown(shutdown)
            .await
    } else {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    };
    if let Some(r) = reporter {
        r.abort();
    }
    result
}

/// Sends the counters at start and whenever they moved, at most every [`REPORT_INTERVAL`].
async fn report(guard: Arc<WebGuard>, sink: UpdateSink) {
    let mut sent = None;
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tick.tick().await;
        let generation = guard.generation();
        if sent != Some(generation) {
            sink.send(Update::WebListener(guard.stats()));
            sent = Some(generation);
        }
    }
}

/// The middleware: headers from the file on every answer; basic auth when users are set.
async fn check(State(guard): State<Arc<WebGuard>>, req: Request, next: Next) -> Response {
    let active = guard.current();
    let mut resp = if active.config.users.is_empty() {
        next.run(req).await
    } else {
        match guard.authenticate(&active, req.headers()).await {
            Ok(()) => next.run(req).await,
            Err(AuthFailure::Busy) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many password checks under way; retry shortly.\n",
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Err(_) => {
                let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"vibe-agent\""),
                );
                r
            }
        }
    };
    for (name, value) in &active.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// Finished TLS connections, from the acceptor task.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    fn start(listener: TcpListener, guard: Arc<WebGuard>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                // Ends (and closes the socket) when axum drops the listener at shutdown.
                let accepted = tokio::select! {
                    _ = tx.closed() => break,
                    r = listener.accept() => r,
                };
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and the like: wait a little instead of spinning.
                        tracing::warn!(listener = guard.listener(), error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    guard.handshake_failed();
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let Some(tls) = guard.current().tls.as_ref().map(|t| t.config.clone()) else {
                    continue;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let tx = tx.clone();
                let guard = guard.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            guard.handshake_failed();
                            tracing::debug!(listener = guard.listener(), %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            guard.handshake_failed();
                            tracing::debug!(listener = guard.listener(), %peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor only stops once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
