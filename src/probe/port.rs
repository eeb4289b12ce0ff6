//! Port probe: is the service's port in LISTEN state in the kernel's socket table (what
//! `ss -tln` sees, IPv4 and IPv6), and does a TCP connect succeed within the timeout.
//!
//! [`listening_ports`] is the pure part: socket-table text in, LISTEN ports out, parsed by
//! procfs. [`probe`] is the thin adapter that reads `/proc/net/tcp{,6}` and connects.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use procfs::FromReadSI;
use procfs::net::{TcpNetEntries, TcpState};

use crate::model::{PortSample, UnixTime};

/// Errors reading the socket table.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot parse socket table {table}: {message}")]
    Parse { table: String, message: String },
}

/// The ports in LISTEN state in one socket table (`/proc/net/tcp` or `/proc/net/tcp6`
/// format). `table` names the input in errors.
pub fn listening_ports(table: &str, text: &[u8]) -> Result<BTreeSet<u16>, PortError> {
    let entries = TcpNetEntries::from_read(text, procfs::current_system_info()).map_err(|e| {
        PortError::Parse {
            table: table.to_string(),
            message: e.to_string(),
        }
    })?;
    Ok(entries
        .0
        .into_iter()
        .filter(|e| e.state == TcpState::Listen)
        .map(|e| e.local_address.port())
        .collect())
}

/// Ports in LISTEN state across `/proc/net/tcp` and `/proc/net/tcp6` of the agent's network
/// namespace. A missing tcp6 table (IPv6 disabled) is not an error.
pub fn read_listening_ports() -> Result<BTreeSet<u16>, PortError> {
    let mut ports = BTreeSet::new();
    for (table, required) in [("/proc/net/tcp", true), ("/proc/net/tcp6", false)] {
        match std::fs::read(table) {
            Ok(text) => ports.extend(listening_ports(table, &text)?),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(PortError::Parse {
                    table: table.to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(ports)
}

/// One probe of `host:port`: LISTEN state from `listening` (read once per round for all
/// services) and a TCP connect bounded by `timeout`.
pub async fn probe(
    listening: &BTreeSet<u16>,
    host: &str,
    port: u16,
    timeout: Duration,
    at: UnixTime,
) -> PortSample {
    let start = Instant::now();
    let connect =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(_stream)) => Ok(start.elapsed().as_secs_f64()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        };
    PortSample {
        at,
        port,
        listening: listening.contains(&port),
        connect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn line(local: &str, remote: &str, state: &str) -> String {
        format!(
            "   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
        )
    }

    /// Table of socket-table rows: (local, remote, state hex) → is the port listed.
    #[test]
    fn only_listen_state_counts() {
        let cases = [
            // 0.0.0.0:8888 LISTEN
            ("00000000:22B8", "00000000:0000", "0A", Some(8888)),
            // 127.0.0.1:8443 LISTEN
            ("0100007F:20FB", "00000000:0000", "0A", Some(8443)),
            // 127.0.0.1:8888 ESTABLISHED: a client, not a listener
            ("0100007F:22B8", "0100007F:C350", "01", None),
            // TIME_WAIT
            ("0100007F:22B8", "0100007F:C351", "06", None),
        ];
        for (local, remote, state, want) in cases {
            let text = format!("{HEADER}{}", line(local, remote, state));
            let ports = listening_ports("fixture", text.as_bytes()).unwrap();
            assert_eq!(ports.iter().next().copied(), want, "{local} {state}");
        }
    }

    #[test]
    fn ipv6_table_parses() {
        // [::]:8888 LISTEN and [::1]:9820 LISTEN
        let text = format!(
            "{HEADER}{}{}",
            line(
                "00000000000000000000000000000000:22B8",
                "00000000000000000000000000000000:0000",
                "0A"
            ),
            line(
                "00000000000000000000000001000000:265C",
                "00000000000000000000000000000000:0000",
                "0A"
            ),
        );
        let ports = listening_ports("tcp6", text.as_bytes()).unwrap();
        assert_eq!(ports.into_iter().collect::<Vec<_>>(), vec![8888, 9820]);
    }

    #[test]
    fn empty_table_has_no_ports_and_garbage_names_the_table() {
        assert!(listening_ports("t", HEADER.as_bytes()).unwrap().is_empty());
        let err = listening_ports("/proc/net/tcp", format!("{HEADER}   0: zz").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/proc/net/tcp"), "{err}");
    }

    #[test]
    fn real_table_sees_a_listener_we_open() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(read_listening_ports().unwrap().contains(&port));
        drop(l);
        assert!(!read_listening_ports().unwrap().contains(&port));
    }

    #[tokio::test]
    async fn connect_refused_and_accepted() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let listening = read_listening_ports().unwrap();
        let ok = probe(&listening, "127.0.0.1", port, Duration::from_secs(1), 1.0).await;
        assert!(ok.listening && ok.connect.is_ok(), "{ok:?}");
        drop(l);
        let listening = read_listening_ports().unwrap();
        let down = probe(&listening, "127.0.0.1", port, Duration::from_secs(1), 1.0).await;
        assert!(!down.listening && down.connect.is_err(), "{down:?}");
    }
}
