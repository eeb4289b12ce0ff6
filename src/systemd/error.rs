//! Why talking to systemd failed.

/// Why talking to systemd failed. Messages name the bus and the call.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "cannot connect to {bus}: {source}; is dbus running (set [systemd] bus to its address)?"
    )]
    Connect { bus: String, source: zbus::Error },
    #[error("connecting to {bus} timed out; the bus is not answering")]
    ConnectTimeout { bus: String },
    #[error("{what}: no answer from systemd within the call timeout ([systemd] call_timeout)")]
    Timeout { what: String },
    #[error("{what}: {source}")]
    Call { what: String, source: zbus::Error },
    #[error("{what}: unexpected reply: {source}")]
    Reply { what: String, source: zbus::Error },
    #[error("the connection to the bus closed")]
    Closed,
    #[error("systemd left the bus")]
    SystemdLeft,
}

impl SystemdError {
    pub(crate) fn call(what: String, e: zbus::Error) -> Self {
        match &e {
            zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Self::Timeout { what }
            }
            _ => Self::Call { what, source: e },
        }
    }
}
