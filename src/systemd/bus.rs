//! A hand-written client of systemd's D-Bus API (`org.freedesktop.systemd1`): the Manager
//! methods and unit properties the source needs, and the match rules of the signals it
//! follows. Every method call is bounded by the connection's method timeout, and connecting
//! by the same timeout, so a stuck bus or a stuck systemd costs a timeout, never a hang.
//!
//! Replies come back as whole messages where their order matters: a message's receive
//! position tells whether a property reply is older than a signal about the same unit.

use std::time::Duration;

use zbus::message::Sequence;
use zbus::{Connection, DeserializeDict, MatchRule, Message, MessageStream, OwnedObjectPath, Type};

use super::error::SystemdError;
use super::state::{UnitChange, UnitResources};

pub const SYSTEMD: &str = "org.freedesktop.systemd1";
pub const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";
pub const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
pub const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";
/// Object paths of units live under this prefix.
pub const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

/// Calls in flight on the connection at most. The system bus refuses more than
/// `max_replies_per_connection` pending calls (128 in Debian's system.conf) with
/// `LimitsExceeded`; a resync or poll of many units waits for a slot instead.
const MAX_PENDING_CALLS: usize = 32;

/// Signals queued per match rule before the bus connection waits for the source to read
/// them (a `daemon-reload` announces every unit at once).
const SIGNAL_QUEUE: usize = 4096;

/// The bus to connect to: the system bus, or a D-Bus address (tests use a private bus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    System,
    Address(String),
}

impl BusAddress {
    /// `"system"` or a D-Bus address such as `unix:path=/run/dbus/system_bus_socket`.
    pub fn parse(s: &str) -> Self {
        if s == "system" {
            Self::System
        } else {
            Self::Address(s.to_string())
        }
    }
}

impl std::fmt::Display for BusAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("the system bus"),
            Self::Address(a) => write!(f, "bus {a}"),
        }
    }
}

/// systemd's object path of a unit (its `bus_label_escape`): ASCII letters, and digits
/// after the first character, stay; every other byte becomes `_` and two hex digits.
pub fn unit_path(unit: &str) -> String {
    let mut p = String::with_capacity(UNIT_PATH_PREFIX.len() + unit.len() * 2);
    p.push_str(UNIT_PATH_PREFIX);
    if unit.is_empty() {
        p.push('_');
    }
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

/// The interface that holds a unit type's result, restarts and cgroup accounting, by the
/// unit name's suffix; `None` for types without a cgroup (targets, timers, paths...).
pub fn type_interface(unit: &str) -> Option<&'static str> {
    let suffix = unit.rsplit_once('.')?.1;
    Some(match suffix {
        "service" => "org.freedesktop.systemd1.Service",
        "socket" => "org.freedesktop.systemd1.Socket",
        "mount" => "org.freedesktop.systemd1.Mount",
        "swap" => "org.freedesktop.systemd1.Swap",
        "slice" => "org.freedesktop.systemd1.Slice",
        "scope" => "org.freedesktop.systemd1.Scope",
        _ => return None,
    })
}

/// Names of the properties the source follows, to tell whether an invalidation matters.
pub const FOLLOWED: &[&str] = &[
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "ActiveEnterTimestamp",
    "MainPID",
    "ExecMainStatus",
];

/// The followed properties as they travel in `GetAll` replies and `PropertiesChanged`
/// signals; every other property is skipped.
#[derive(Debug, Default, DeserializeDict, Type)]
#[zbus(signature = "a{sv}", rename_all = "PascalCase")]
struct WireProperties {
    load_state: Option<String>,
    active_state: Option<String>,
    sub_state: Option<String>,
    result: Option<String>,
    n_restarts: Option<u32>,
    active_enter_timestamp: Option<u64>,
    #[zbus(rename = "MainPID")]
    main_pid: Option<u32>,
    exec_main_status: Option<i32>,
}

impl From<WireProperties> for UnitChange {
    fn from(w: WireProperties) -> Self {
        Self {
            load_state: w.load_state,
            active_state: w.active_state,
            sub_state: w.sub_state,
            result: w.result,
            restarts: w.n_restarts,
            active_enter_usec: w.active_enter_timestamp,
            main_pid: w.main_pid,
            exec_main_status: w.exec_main_status,
        }
    }
}

/// A `PropertiesChanged` signal of a unit.
pub struct PropertiesChanged {
    pub path: String,
    pub interface: String,
    pub change: UnitChange,
    /// A followed property was invalidated without its value: read the interface again.
    pub needs_read: bool,
    pub seq: Sequence,
}

impl PropertiesChanged {
    pub fn parse(msg: &Message) -> Result<Self, SystemdError> {
        let path = msg
            .header()
            .path()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let (interface, props, invalidated): (String, WireProperties, Vec<String>) =
            msg.body().deserialize().map_err(|e| SystemdError::Reply {
                what: format!("PropertiesChanged of {path}"),
                source: e,
            })?;
        Ok(Self {
            path,
            interface,
            change: props.into(),
            needs_read: invalidated.iter().any(|p| FOLLOWED.contains(&p.as_str())),
            seq: msg.recv_position(),
        })
    }
}

/// A signal of systemd's Manager the source acts on.
pub enum ManagerSignal {
    UnitNew(String),
    UnitRemoved(String),
    /// `Reloading(false)`: a daemon-reload finished.
    Reloaded,
    Other,
}

impl ManagerSignal {
    pub fn parse(msg: &Message) -> Self {
        let header = msg.header();
        let body = msg.body();
        match header.member().map(|m| m.as_str()) {
            Some("UnitNew") => body
                .deserialize::<(String, OwnedObjectPath)>()
                .map_or(Self::Other, |(u, _)| Self::UnitNew(u)),
            Some("UnitRemoved") => body
                .deserialize::<(String, OwnedObjectPath)>()
                .map_or(Self::Other, |(u, _)| Self::UnitRemoved(u)),
            Some("Reloading") => match body.deserialize::<bool>() {
                Ok(false) => Self::Reloaded,
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }
}

/// `NameOwnerChanged` of systemd's name: true when systemd left the bus.
pub fn systemd_left(msg: &Message) -> bool {
    msg.body()
        .deserialize::<(String, String, String)>()
        .is_ok_and(|(_, _, new_owner)| new_owner.is_empty())
}

/// One connection to a bus, talking to systemd on it.
#[derive(Clone)]
pub struct Systemd {
    conn: Connection,
    bus: BusAddress,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Systemd {
    /// Connects and authenticates within `timeout`; every later call has the same timeout.
    pub async fn connect(bus: &BusAddress, timeout: Duration) -> Result<Self, SystemdError> {
        let builder = match bus {
            BusAddress::System => zbus::connection::Builder::system(),
            BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str()),
        };
        let connecting = builder.method_timeout(timeout).build();
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(SystemdError::Connect {
                    bus: bus.to_string(),
                    source: e,
                });
            }
            Err(_) => {
                return Err(SystemdError::ConnectTimeout {
                    bus: bus.to_string(),
                });
            }
        };
        Ok(Self {
            conn,
            bus: bus.clone(),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_CALLS)),
        })
    }

    pub fn bus(&self) -> &BusAddress {
        &self.bus
    }

    async fn call<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<Message, SystemdError>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.conn
            .call_method(Some(SYSTEMD), path, Some(iface), method, body)
            .await
            .map_err(|e| SystemdError::call(format!("{method} on {path}"), e))
    }

    /// Asks systemd to send its signals (it sends none until a client subscribes).
    pub async fn subscribe(&self) -> Result<(), SystemdError> {
        self.call(MANAGER_PATH, MANAGER_IFACE, "Subscribe", &())
            .await?;
        Ok(())
    }

    /// Names of loaded units matching the patterns (any state).
    pub async fn list_units_by_patterns(
        &self,
        patterns: &[String],
    ) -> Result<Vec<String>, SystemdError> {
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
        let states: &[&str] = &[];
        let reply = self
            .call(
                MANAGER_PATH,
                MANAGER_IFACE,
                "ListUnitsByPatterns",
                &(states, patterns),
            )
            .await?;
        let units: Vec<Listed> = reply
            .body()
            .deserialize()
            .map_err(|e| SystemdError::Reply {
                what: "ListUnitsByPatterns".into(),
                source: e,
            })?;
        Ok(units.into_iter().map(|u| u.0).collect())
    }

    /// Names of the unit files on disk matching the patterns (enabled or not, loaded or
    /// not), templates left out: a stopped unit that systemd unloaded is still watched.
    pub async fn list_unit_files_by_patterns(
        &self,
        patterns: &[String],
    ) -> Result<Vec<String>, SystemdError> {
        let states: &[&str] = &[];
        let reply = self
            .call(
                MANAGER_PATH,
                MANAGER_IFACE,
                "ListUnitFilesByPatterns",
                &(states, patterns),
            )
            .await?;
        let files: Vec<(String, String)> =
            reply
                .body()
                .deserialize()
                .map_err(|e| SystemdError::Reply {
                    what: "ListUnitFilesByPatterns".into(),
                    source: e,
                })?;
        Ok(files
            .into_iter()
            .filter_map(|(path, _state)| {
                let name = path.rsplit('/').next()?.to_string();
                (!name.contains("@.")).then_some(name)
            })
            .collect())
    }

    /// Loaded units and unit files matching the patterns.
    pub async fn matching_units(&self, patterns: &[String]) -> Result<Vec<String>, SystemdError> {
        let (mut loaded, files) = futures_util::try_join!(
            self.list_units_by_patterns(patterns),
            self.list_unit_files_by_patterns(patterns)
        )?;
        loaded.extend(files);
        loaded.sort();
        loaded.dedup();
        Ok(loaded)
    }

    /// The followed properties of one interface of a unit, with the reply's position.
    /// Reading a unit that is not loaded makes systemd load it (a missing unit reads as
    /// `LoadState` `not-found`), as `systemctl status` does.
    pub async fn properties(
        &self,
        unit: &str,
        iface: &str,
    ) -> Result<(Sequence, UnitChange), SystemdError> {
        let path = unit_path(unit);
        let reply = self.call(&path, PROPERTIES_IFACE, "GetAll", &iface).await?;
        let props: WireProperties =
            reply
                .body()
                .deserialize()
                .map_err(|e| SystemdError::Reply {
                    what: format!("GetAll {iface} of {unit}"),
                    source: e,
                })?;
        Ok((reply.recv_position(), props.into()))
    }

    /// `MemoryCurrent`, `CPUUsageNSec` and `TasksCurrent` of a unit, read concurrently.
    pub async fn resources(&self, unit: &str, iface: &str) -> Result<UnitResources, SystemdError> {
        let path = unit_path(unit);
        let get = |name: &'static str| {
            let path = path.clone();
            async move {
                let reply = self
                    .call(&path, PROPERTIES_IFACE, "Get", &(iface, name))
                    .await?;
                let v: zbus::OwnedVariant =
                    reply
                        .body()
                        .deserialize()
                        .map_err(|e| SystemdError::Reply {
                            what: format!("{name} of {unit}"),
                            source: e,
                        })?;
                let n = u64::try_from(v).map_err(|e| SystemdError::Reply {
                    what: format!("{name} of {unit}"),
                    source: e,
                })?;
                // systemd's "not available": accounting off or nothing running.
                Ok::<_, SystemdError>((n != u64::MAX).then_some(n))
            }
        };
        let (memory, cpu, tasks) = futures_util::try_join!(
            get("MemoryCurrent"),
            get("CPUUsageNSec"),
            get("TasksCurrent")
        )?;
        Ok(UnitResources {
            memory_bytes: memory,
            cpu_nsec: cpu,
            tasks,
        })
    }

    async fn signals(&self, rule: MatchRule<'static>) -> Result<MessageStream, SystemdError> {
        let what = rule.to_string();
        MessageStream::for_match_rule(rule, &self.conn, std::num::NonZeroUsize::new(SIGNAL_QUEUE))
            .await
            .map_err(|e| SystemdError::call(format!("AddMatch {what}"), e))
    }

    /// `PropertiesChanged` of every unit (filtered to the watched ones by the source).
    pub async fn unit_property_signals(&self) -> Result<MessageStream, SystemdError> {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SYSTEMD)
            .interface(PROPERTIES_IFACE)
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .build()
            .map_err(|e| SystemdError::call("match rule".into(), e))?;
        self.signals(rule).await
    }

    /// The Manager's `UnitNew`, `UnitRemoved` and `Reloading`.
    pub async fn manager_signals(&self) -> Result<MessageStream, SystemdError> {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SYSTEMD)
            .interface(MANAGER_IFACE)
            .path(MANAGER_PATH)
            .build()
            .map_err(|e| SystemdError::call("match rule".into(), e))?;
        self.signals(rule).await
    }

    /// The bus's `NameOwnerChanged` for systemd's name.
    pub async fn owner_signals(&self) -> Result<MessageStream, SystemdError> {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .arg(0, SYSTEMD)
            .build()
            .map_err(|e| SystemdError::call("match rule".into(), e))?;
        self.signals(rule).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_escape_like_systemd() {
        // Paths as systemd 252 reports them in ListUnits.
        for (unit, path) in [
            ("dbus.service", "dbus_2eservice"),
            ("systemd-logind.service", "systemd_2dlogind_2eservice"),
            ("juicefs-new.service", "juicefs_2dnew_2eservice"),
            ("getty@tty1.service", "getty_40tty1_2eservice"),
            ("0day.service", "_30day_2eservice"),
            ("", "_"),
        ] {
            assert_eq!(unit_path(unit), format!("{UNIT_PATH_PREFIX}{path}"));
        }
    }

    #[test]
    fn type_interfaces_by_suffix() {
        assert_eq!(
            type_interface("jupyter.service"),
            Some("org.freedesktop.systemd1.Service")
        );
        assert_eq!(
            type_interface("fs.mount"),
            Some("org.freedesktop.systemd1.Mount")
        );
        assert_eq!(type_interface("multi-user.target"), None);
        assert_eq!(type_interface("noext"), None);
    }

    #[test]
    fn bus_address_parses() {
        assert_eq!(BusAddress::parse("system"), BusAddress::System);
        assert_eq!(
            BusAddress::parse("unix:path=/tmp/bus"),
            BusAddress::Address("unix:path=/tmp/bus".into())
        );
    }
}
