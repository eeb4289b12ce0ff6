//! One listener's web config, live: the loaded file (TLS configuration, users, headers),
//! re-read when the file or a certificate, key or CA it names changes; HTTP basic auth
//! against its bcrypt hashes; and the listener's counters.
//!
//! A change is noticed on the next connection or request after it, at most once per
//! [`RECHECK`] (a few `stat` calls). A file that fails to load is logged once and counted;
//! the last good configuration stays in service.
//!
//! bcrypt is slow on purpose, so it never runs on the runtime's threads: checks run on the
//! blocking pool, at most [`HASH_CHECKS`] at once, with at most [`HASH_WAITING`] waiting
//! (more are answered 429 at once). Credentials that passed are remembered by a SHA-256 of
//! user, hash and password (at most [`VERIFIED_CAP`]), so a scraper costs one bcrypt per
//! restart and a flood of wrong passwords cannot slow it down.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine;
use tokio::sync::Semaphore;

use super::error::WebConfigError;
use super::file::{Pem, WebConfig};
use super::state::{AuthFailure, ListenerStats};
use super::tls::ServerTls;

/// Shortest time between two looks at the files.
pub const RECHECK: Duration = Duration::from_secs(1);
/// bcrypt checks running at once.
pub const HASH_CHECKS: usize = 2;
/// bcrypt checks waiting for a slot before new ones are refused with 429.
pub const HASH_WAITING: usize = 16;
/// Remembered good credentials; the set is emptied when full.
pub const VERIFIED_CAP: usize = 1024;

/// The loaded file.
#[derive(Debug)]
pub struct Active {
    pub config: WebConfig,
    pub tls: Option<ServerTls>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Active {
    /// Reads and validates the web config file and what it names.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = super::file::parse(&text, path)?;
        let tls = match &config.tls {
            Some(t) => Some(super::tls::server_config(t, path)?),
            None => None,
        };
        let headers = config
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).expect("validated header name"),
                    HeaderValue::from_str(v).expect("validated header value"),
                )
            })
            .collect();
        Ok(Self {
            config,
            tls,
            headers,
        })
    }

    /// The files this configuration came from: the web config file and the PEM files.
    fn files(&self, path: &Path) -> Vec<PathBuf> {
        let mut files = vec![path.to_owned()];
        if let Some(t) = &self.config.tls {
            for pem in [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Pem::File(p) = pem {
                    files.push(p.clone());
                }
            }
        }
        files
    }
}

/// What identifies a file's content cheaply: inode, size, modification time.
type Fingerprint = Vec<Option<(u64, u64, i128)>>;

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f).ok().map(|m| {
                (
                    m.ino(),
                    m.len(),
                    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                )
            })
        })
        .collect()
}

struct Watch {
    checked_at: Instant,
    seen: Fingerprint,
}

/// The counters of one listener.
#[derive(Debug, Default)]
struct Counters {
    auth_failures: [AtomicU64; 4],
    handshake_errors: AtomicU64,
    reload_failures: AtomicU64,
    reload_failed: AtomicBool,
    /// Bumped on every change, so the reporter sends only what moved.
    generation: AtomicU64,
}

/// One listener's live web config.
pub struct WebGuard {
    listener: &'static str,
    path: PathBuf,
    tls_mode: bool,
    active: RwLock<Arc<Active>>,
    watch: Mutex<Watch>,
    counters: Counters,
    checks: Semaphore,
    waiting: AtomicUsize,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt hash (and its cost) checked for unknown users, at the cost of the file's
    /// hashes; made on first need, on the blocking pool.
    decoy: Arc<Mutex<Option<(u32, String)>>>,
}

impl std::fmt::Debug for WebGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebGuard")
            .field("listener", &self.listener)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WebGuard {
    /// Loads `path` for the listener named `listener` ("metrics", "otlp").
    pub fn load(listener: &'static str, path: &Path) -> Result<Arc<Self>, WebConfigError> {
        let active = Active::load(path)?;
        let seen = fingerprint(&active.files(path));
        Ok(Arc::new(Self {
            listener,
            path: path.to_owned(),
            tls_mode: active.tls.is_some(),
            active: RwLock::new(Arc::new(active)),
            watch: Mutex::new(Watch {
                checked_at: Instant::now(),
                seen,
            }),
            counters: Counters::default(),
            checks: Semaphore::new(HASH_CHECKS),
            waiting: AtomicUsize::new(0),
            verified: Mutex::new(HashSet::new()),
            decoy: Arc::default(),
        }))
    }

    /// Whether the listener speaks TLS (fixed at start, as with the toolkit).
    pub fn tls(&self) -> bool {
        self.tls_mode
    }

    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// The configuration in service, after a look at the files when [`RECHECK`] has passed.
    pub fn current(&self) -> Arc<Active> {
        self.refresh();
        self.active.read().expect("web config lock").clone()
    }

    fn refresh(&self) {
        // Whoever holds the watch is checking right now; the others go on with what is
        // in service.
        let Ok(mut watch) = self.watch.try_lock() else {
            return;
        };
        if watch.checked_at.elapsed() < RECHECK {
            return;
        }
        watch.checked_at = Instant::now();
        let files = self
            .active
            .read()
            .expect("web config lock")
            .files(&self.path);
        let now = fingerprint(&files);
        if now == watch.seen {
            return;
        }
        watch.seen = now;
        let result = Active::load(&self.path).and_then(|a| {
            if a.tls.is_some() == self.tls_mode {
                Ok(a)
            } else {
                Err(WebConfigError::Invalid {
                    path: self.path.clone(),
                    key: "tls_server_config".into(),
                    message: "turning TLS on or off takes effect when the agent restarts; \
                              the running listener keeps its mode"
                        .into(),
                })
            }
        });
        match result {
            Ok(a) => {
                watch.seen = fingerprint(&a.files(&self.path));
                tracing::info!(listener = self.listener, file = %self.path.display(), "web config reloaded");
                *self.active.write().expect("web config lock") = Arc::new(a);
                self.verified.lock().expect("verified lock").clear();
                self.counters.reload_failed.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(listener = self.listener, error = %e, "web config reload failed; keeping the one in service");
                self.counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.reload_failed.store(true, Ordering::Relaxed);
            }
        }
        self.counters.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed TLS handshake.
    pub fn handshake_failed(&self) {
        self.counters
            .handshake_errors
            .fetch_add(1, Ordering::Relaxed);
        self.counters.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self, why: AuthFailure) -> AuthFailure {
        let i = AuthFailure::ALL
            .iter()
            .position(|a| *a == why)
            .expect("listed");
        self.counters.auth_failures[i].fetch_add(1, Ordering::Relaxed);
        self.counters.generation.fetch_add(1, Ordering::Relaxed);
        why
    }

    /// Changes since start; the reporter sends a copy when this moves.
    pub fn generation(&self) -> u64 {
        self.counters.generation.load(Ordering::Relaxed)
    }

    /// A copy of the counters.
    pub fn stats(&self) -> ListenerStats {
        let c = &self.counters;
        let active = self.active.read().expect("web config lock");
        ListenerStats {
            listener: self.listener,
            tls: self.tls_mode,
            basic_auth: !active.config.users.is_empty(),
            auth_failures: std::array::from_fn(|i| c.auth_failures[i].load(Ordering::Relaxed)),
            handshake_errors: c.handshake_errors.load(Ordering::Relaxed),
            reload_failures: c.reload_failures.load(Ordering::Relaxed),
            last_reload_ok: !c.reload_failed.load(Ordering::Relaxed),
            cert_not_after: active.tls.as_ref().map(|t| t.cert.not_after),
        }
    }

    /// Checks a request's basic auth against `active`'s users (which must not be empty).
    pub async fn authenticate(
        &self,
        active: &Active,
        headers: &HeaderMap,
    ) -> Result<(), AuthFailure> {
        let Some((user, password)) = basic_credentials(headers) else {
            return Err(self.refused(AuthFailure::Missing));
        };
        let known = active.config.users.get(&user);
        let key = verified_key(&user, known.map_or("", String::as_str), &password);
        if known.is_some() && self.verified.lock().expect("verified lock").contains(&key) {
            return Ok(());
        }
        // Bounded waiting: beyond HASH_WAITING, refuse at once rather than queue.
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= HASH_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refused(AuthFailure::Busy));
        }
        let permit = self.checks.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(_permit) = permit else {
            return Err(self.refused(AuthFailure::Busy));
        };
        // An unknown user costs a bcrypt too, against a decoy hash, so timing does not say
        // which users exist.
        let hash = known.cloned();
        let cost = active
            .config
            .users
            .values()
            .find_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
        let decoy = self.decoy.clone();
        let matched = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| {
                let mut d = decoy.lock().expect("decoy lock");
                match d.as_ref() {
                    Some((c, h)) if *c == cost => h.clone(),
                    _ => {
                        let h = bcrypt::hash("vibe-agent decoy", cost).unwrap_or_default();
                        *d = Some((cost, h.clone()));
                        h
                    }
                }
            });
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match (known, matched) {
            (Some(_), true) => {
                let mut set = self.verified.lock().expect("verified lock");
                if set.len() >= VERIFIED_CAP {
                    set.clear();
                }
                set.insert(key);
                Ok(())
            }
            (Some(_), false) => Err(self.refused(AuthFailure::WrongPassword)),
            (None, _) => Err(self.refused(AuthFailure::UnknownUser)),
        }
    }
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// SHA-256 over user, hash and password, each length-prefixed.
fn verified_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpwOnc="),
        );
        assert_eq!(basic_credentials(&h), Some(("u".into(), "p:w".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer dTpw"),
        );
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn verified_keys_separate_their_parts() {
        assert_ne!(verified_key("ab", "h", "c"), verified_key("a", "h", "bc"));
        assert_eq!(verified_key("a", "h", "b"), verified_key("a", "h", "b"));
    }
}
