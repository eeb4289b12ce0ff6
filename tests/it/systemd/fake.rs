//! A private `dbus-daemon` (Debian `dbus`) and a fake `org.freedesktop.systemd1` on it,
//! served by zbus in the test: enough of systemd's Manager and unit properties for the
//! agent's systemd source, with switches systemd does not have (change a unit without
//! announcing it, never answer reads of a unit).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::message::Type as MessageType;
use zbus::{Connection, Message, MessageStream, OwnedObjectPath, Variant};

use crate::support::end_child;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const UNIT_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

/// A `dbus-daemon --session` on a unix socket in a temporary directory, killed by PID on
/// drop. [`DbusDaemon::restart`] brings a new one up on the same socket path.
pub struct DbusDaemon {
    child: Child,
    socket: PathBuf,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the bus socket");
        let socket = dir.path().join("bus");
        let (child, address) = spawn(&socket);
        Self {
            child,
            socket,
            address,
            _dir: dir,
        }
    }

    /// Kills the daemon: every connection to it drops.
    pub fn kill(&mut self) {
        end_child(&mut self.child, Duration::ZERO, false);
    }

    /// A new daemon on the same socket path (the old one is killed first).
    pub fn restart(&mut self) {
        self.kill();
        let (child, address) = spawn(&self.socket);
        assert_eq!(address, self.address);
        self.child = child;
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        end_child(&mut self.child, Duration::ZERO, false);
    }
}

fn spawn(socket: &Path) -> (Child, String) {
    let _ = std::fs::remove_file(socket);
    let address = format!("unix:path={}", socket.display());
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address"])
        .arg(format!("--address={address}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run dbus-daemon ({e}): install Debian's `dbus` package \
                 (scripts/test does)"
            )
        });
    // It prints its address once it listens.
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("dbus-daemon prints its address");
    assert!(line.starts_with("unix:"), "dbus-daemon said {line:?}");
    (child, address)
}

/// One fake unit's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeUnit {
    pub load: &'static str,
    pub active: &'static str,
    pub sub: &'static str,
    pub result: &'static str,
    pub restarts: u32,
    pub active_enter_usec: u64,
    pub memory: u64,
    pub cpu_nsec: u64,
    pub tasks: u64,
}

impl FakeUnit {
    pub fn running() -> Self {
        Self {
            load: "loaded",
            active: "active",
            sub: "running",
            result: "success",
            restarts: 0,
            active_enter_usec: 1_700_000_000_000_000,
            memory: 50 << 20,
            cpu_nsec: 1_500_000_000,
            tasks: 3,
        }
    }

    pub fn state(mut self, active: &'static str, sub: &'static str) -> Self {
        self.active = active;
        self.sub = sub;
        if matches!(active, "inactive" | "failed") {
            self.memory = u64::MAX;
            self.cpu_nsec = u64::MAX;
            self.tasks = u64::MAX;
        }
        self
    }

    /// What systemd answers for a name it has no unit file for.
    fn not_found() -> Self {
        Self {
            load: "not-found",
            active_enter_usec: 0,
            ..Self::running().state("inactive", "dead")
        }
    }

    fn unit_props(&self) -> HashMap<&'static str, Variant<'static>> {
        HashMap::from([
            ("Id", Variant::new("ignored".to_string())),
            ("LoadState", Variant::new(self.load.to_string())),
            ("ActiveState", Variant::new(self.active.to_string())),
            ("SubState", Variant::new(self.sub.to_string())),
            ("ActiveEnterTimestamp", Variant::new(self.active_enter_usec)),
        ])
    }

    fn service_props(&self) -> HashMap<&'static str, Variant<'static>> {
        HashMap::from([
            ("Result", Variant::new(self.result.to_string())),
            ("NRestarts", Variant::new(self.restarts)),
            ("MainPID", Variant::new(4242u32)),
            ("ExecMainStatus", Variant::new(0i32)),
            ("MemoryCurrent", Variant::new(self.memory)),
            ("CPUUsageNSec", Variant::new(self.cpu_nsec)),
            ("TasksCurrent", Variant::new(self.tasks)),
        ])
    }
}

#[derive(Default)]
struct FakeState {
    units: BTreeMap<String, FakeUnit>,
    /// Reads of these units' properties are never answered.
    silent: BTreeSet<String>,
    subscribes: u32,
    /// Calls left unanswered, kept so their serials are never reused.
    unanswered: Vec<Message>,
}

/// `org.freedesktop.systemd1` on a bus, served from a task of the test's runtime.
pub struct FakeSystemd {
    conn: Connection,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSystemd {
    pub async fn start(address: &str, units: &[(&str, FakeUnit)]) -> Self {
        let conn = zbus::connection::Builder::address(address)
            .build()
            .await
            .expect("fake systemd connects to the test bus");
        let state = Arc::new(Mutex::new(FakeState {
            units: units
                .iter()
                .map(|(n, u)| (n.to_string(), u.clone()))
                .collect(),
            ..FakeState::default()
        }));
        let mut calls = MessageStream::from(&conn);
        conn.request_name(SYSTEMD)
            .await
            .expect("own org.freedesktop.systemd1");
        let (c, st) = (conn.clone(), state.clone());
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = calls.next().await {
                if msg.message_type() == MessageType::MethodCall {
                    serve(&c, &st, msg).await;
                }
            }
        });
        Self { conn, state, task }
    }

    /// How many times a client called `Subscribe`.
    pub fn subscribes(&self) -> u32 {
        self.state.lock().unwrap().subscribes
    }

    /// Changes a unit; with `announce`, sends `PropertiesChanged` for both interfaces as
    /// systemd does, otherwise changes it silently (a missed signal).
    pub async fn set(&self, unit: &str, u: FakeUnit, announce: bool) {
        self.state
            .lock()
            .unwrap()
            .units
            .insert(unit.to_string(), u.clone());
        if announce {
            let path = unit_path(unit);
            let none: Vec<String> = Vec::new();
            for (iface, props) in [
                (UNIT_IFACE, u.unit_props()),
                (SERVICE_IFACE, u.service_props()),
            ] {
                self.conn
                    .emit_signal(
                        None::<&str>,
                        path.as_str(),
                        "org.freedesktop.DBus.Properties",
                        "PropertiesChanged",
                        &(iface, props, &none),
                    )
                    .await
                    .expect("emit PropertiesChanged");
            }
        }
    }

    /// Loads a new unit and announces it (`UnitNew`).
    pub async fn add(&self, unit: &str, u: FakeUnit) {
        self.state.lock().unwrap().units.insert(unit.to_string(), u);
        self.manager_signal("UnitNew", unit).await;
    }

    /// Unloads a unit and announces it (`UnitRemoved`).
    pub async fn remove(&self, unit: &str) {
        self.state.lock().unwrap().units.remove(unit);
        self.manager_signal("UnitRemoved", unit).await;
    }

    /// From now on, reads of this unit's properties are never answered.
    pub fn go_silent_about(&self, unit: &str) {
        self.state.lock().unwrap().silent.insert(unit.to_string());
    }

    async fn manager_signal(&self, member: &str, unit: &str) {
        let path = OwnedObjectPath::try_from(unit_path(unit)).unwrap();
        self.conn
            .emit_signal(
                None::<&str>,
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                member,
                &(unit, path),
            )
            .await
            .expect("emit a Manager signal");
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unit_path(unit: &str) -> String {
    let mut p = UNIT_PREFIX.to_string();
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

fn unit_of_path(path: &str) -> Option<String> {
    let label = path.strip_prefix(UNIT_PREFIX)?.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < label.len() {
        if label[i] == b'_' && i + 2 < label.len() + 1 {
            let hex = std::str::from_utf8(label.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(label[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `juicefs-*.service`-style globs: one `*` at most, which is all the tests use.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
        None => pattern == name,
    }
}

type Listed = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

async fn serve(conn: &Connection, state: &Mutex<FakeState>, msg: Message) {
    let header = msg.header();
    let member = header.member().map(|m| m.to_string()).unwrap_or_default();
    let path = header.path().map(|p| p.to_string()).unwrap_or_default();
    let body = msg.body();
    let result = match member.as_str() {
        "Subscribe" => {
            state.lock().unwrap().subscribes += 1;
            conn.reply(&header, &()).await
        }
        "ListUnitsByPatterns" => {
            let (_states, patterns): (Vec<String>, Vec<String>) =
                body.deserialize().expect("ListUnitsByPatterns(as, as)");
            let listed: Vec<Listed> = state
                .lock()
                .unwrap()
                .units
                .iter()
                .filter(|(n, _)| patterns.iter().any(|p| glob(p, n)))
                .map(|(n, u)| {
                    (
                        n.clone(),
                        String::new(),
                        u.load.into(),
                        u.active.into(),
                        u.sub.into(),
                        String::new(),
                        OwnedObjectPath::try_from(unit_path(n)).unwrap(),
                        0,
                        String::new(),
                        OwnedObjectPath::try_from("/").unwrap(),
                    )
                })
                .collect();
            conn.reply(&header, &listed).await
        }
        "ListUnitFilesByPatterns" => {
            let (_states, patterns): (Vec<String>, Vec<String>) =
                body.deserialize().expect("ListUnitFilesByPatterns(as, as)");
            let files: Vec<(String, String)> = state
                .lock()
                .unwrap()
                .units
                .keys()
                .filter(|n| patterns.iter().any(|p| glob(p, n)))
                .map(|n| (format!("/etc/systemd/system/{n}"), "enabled".to_string()))
                .collect();
            conn.reply(&header, &files).await
        }
        "GetAll" | "Get" => {
            let unit = unit_of_path(&path).unwrap_or_default();
            let props = {
                let mut st = state.lock().unwrap();
                if st.silent.contains(&unit) {
                    st.unanswered.push(msg.clone());
                    return;
                }
                let u = st
                    .units
                    .get(&unit)
                    .cloned()
                    .unwrap_or_else(FakeUnit::not_found);
                let iface: String = if member == "GetAll" {
                    body.deserialize().expect("GetAll(s)")
                } else {
                    body.deserialize::<(String, String)>().expect("Get(ss)").0
                };
                if iface == UNIT_IFACE {
                    u.unit_props()
                } else {
                    u.service_props()
                }
            };
            if member == "GetAll" {
                conn.reply(&header, &props).await
            } else {
                let (_, name): (String, String) = body.deserialize().unwrap();
                match props.get(name.as_str()) {
                    Some(v) => conn.reply(&header, v).await,
                    None => {
                        conn.reply_dbus_error(&header, zbus::fdo::Error::UnknownProperty(name))
                            .await
                    }
                }
            }
        }
        other => {
            conn.reply_dbus_error(
                &header,
                zbus::fdo::Error::UnknownMethod(format!("the fake has no {other}")),
            )
            .await
        }
    };
    // The client may be gone (a test restarting the bus): nothing to do about it.
    let _ = result;
}
