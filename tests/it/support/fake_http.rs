//! Fake HTTP servers that answer with recorded responses byte for byte (`tests/fixtures/**/
//! *.http`), or accept a request and never answer. Each runs on its own thread on
//! 127.0.0.1:0 and stops when dropped, closing every connection it holds.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::fixture;

/// What a fake does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Write these bytes (a whole response), then wait for the next request.
    Raw(Vec<u8>),
    /// Read the request and never answer; the connection stays open until the fake drops.
    Hang,
}

/// The parts of a request the fakes route on.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header lines as sent, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Route = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running fake server.
pub struct FakeHttp {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Every connection still open, by number: closed when the fake drops.
    open: Arc<Mutex<HashMap<usize, TcpStream>>>,
    requests: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeHttp {
    /// Starts a fake whose answers come from `route`.
    pub fn start(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake on 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake's address");
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(HashMap::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let route: Arc<Route> = Arc::new(route);
        let acceptor = {
            let (stop, open, requests) = (stop.clone(), open.clone(), requests.clone());
            std::thread::spawn(move || {
                for (id, conn) in listener.incoming().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(clone) = conn.try_clone() {
                        open.lock().unwrap().insert(id, clone);
                    }
                    let (route, requests, open) = (route.clone(), requests.clone(), open.clone());
                    std::thread::spawn(move || {
                        if serve(conn, &*route, &requests) == Ended::Closed {
                            open.lock().unwrap().remove(&id);
                        }
                    });
                }
            })
        };
        Self {
            addr,
            stop,
            open,
            requests,
            acceptor: Some(acceptor),
        }
    }

    /// Always the same reply, whatever the path.
    pub fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone())
    }

    /// A fake code-server: `GET /healthz` answers with `healthz`, a fixture under
    /// `tests/fixtures/code-server/`; any other path is code-server's 404.
    pub fn code_server(healthz: &str) -> Self {
        let healthz = Reply::Raw(fixture(&format!("code-server/{healthz}")));
        let not_found = Reply::Raw(fixture("code-server/not-found.http"));
        Self::start(move |req| {
            if req.path.trim_end_matches('/') == "/healthz" {
                healthz.clone()
            } else {
                not_found.clone()
            }
        })
    }

    /// A fake JupyterLab under `/jupyter/` with token `sekrit`: recorded `/api` and
    /// `/api/status` answers, 403 for a wrong or missing token.
    pub fn jupyterlab() -> Self {
        let api = Reply::Raw(fixture("jupyterlab/api.http"));
        let status = Reply::Raw(fixture("jupyterlab/api-status.http"));
        let forbidden = Reply::Raw(fixture("jupyterlab/api-status-forbidden.http"));
        Self::start(move |req| match req.path.as_str() {
            "/jupyter/api" | "/jupyter/api/" => api.clone(),
            "/jupyter/api/status" if req.header("authorization") == Some("token sekrit") => {
                status.clone()
            }
            _ => forbidden.clone(),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, conn) in self.open.lock().unwrap().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

#[derive(PartialEq)]
enum Ended {
    /// The client closed the connection (or it broke).
    Closed,
    /// A request is left unanswered on purpose; the connection stays open.
    Hanging,
}

/// Serves requests on one connection until the client closes it (keep-alive, as Node and
/// Tornado do).
fn serve(mut conn: TcpStream, route: &Route, requests: &AtomicUsize) -> Ended {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let request = Request {
            method: first.next().unwrap_or("").to_string(),
            path: first.next().unwrap_or("").to_string(),
            headers: lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect(),
        };
        requests.fetch_add(1, Ordering::SeqCst);
        match route(&request) {
            Reply::Raw(bytes) => {
                if conn.write_all(&bytes).is_err() {
                    return Ended::Closed;
                }
            }
            // The fake's clone of the socket keeps the connection open.
            Reply::Hang => return Ended::Hanging,
        }
    }
}
