//! Port probe: is the service's port in LISTEN state in the kernel's socket table (what
//! `ss -tln` sees, IPv4 and IPv6), and does a TCP connect succeed within the timeout.
//!
//! The LISTEN set comes from netlink sock_diag: one inet_diag dump per family (AF_INET,
//! AF_INET6) of TCP sockets with `states = 1 << TCP_LISTEN`, the request `ss -tln` sends. The
//! kernel then walks only its listening hash, however many connections the box has. Reading
//! `/proc/net/tcp{,6}` instead makes it walk and format every socket of the namespace on
//! each round; that stays as the fallback when netlink is refused (seccomp or
//! `RestrictAddressFamilies` without AF_NETLINK, an LSM's EPERM/EACCES, no `tcp_diag` in the
//! kernel), logged once at warn with the fix.
//!
//! Pure parts: [`ListenDump`] (sock_diag reply datagrams in, LISTEN ports out, decoded by the
//! rust-netlink packet crates) and [`listening_ports`] (socket-table text in, LISTEN ports
//! out, parsed by procfs). Thin adapters: [`sock_diag_listening_ports`] (sends the dumps and
//! reads until NLMSG_DONE), [`proc_listening_ports`], [`read_listening_ports`] (the first,
//! else the second) and [`probe`] (connects). This module owns no state but the warn-once
//! flag of the fallback.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SockDiagMessage, TCP_LISTEN,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use procfs::FromReadSI;
use procfs::net::{TcpNetEntries, TcpState};

use super::state::PortSample;
use crate::common::UnixTime;

/// Errors reading the socket table.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot parse socket table {table}: {message}")]
    Parse { table: String, message: String },
    /// A system call on the netlink socket failed (creating it is where seccomp or
    /// `RestrictAddressFamilies` refuse).
    #[error("netlink sock_diag {request}: {call} failed: {source}")]
    NetlinkIo {
        request: &'static str,
        call: &'static str,
        source: std::io::Error,
    },
    /// The kernel answered the request with NLMSG_ERROR (or a negative NLMSG_DONE).
    #[error("netlink sock_diag {request}: the kernel refused it: {source}")]
    NetlinkRefused {
        request: &'static str,
        source: std::io::Error,
    },
    /// The reply does not decode as a sock_diag dump.
    #[error("netlink sock_diag {request}: malformed reply: {message}")]
    NetlinkReply {
        request: &'static str,
        message: String,
    },
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
pub fn proc_listening_ports() -> Result<BTreeSet<u16>, PortError> {
    let mut ports = BTreeSet::new();
    for (table, required) in [("/proc/net/tcp", true), ("/proc/net/tcp6", false)] {
        match read_socket_table(table) {
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

/// Read size for a socket table. `/proc` reports size 0, so `std::fs::read` starts with
/// 32-byte reads, and each read() of `/proc/net/tcp` makes the kernel resume its walk of the
/// connection hash table: one large buffer keeps that to a read or two per table.
const PROC_READ_BYTES: usize = 64 * 1024;

fn read_socket_table(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut text = vec![0; PROC_READ_BYTES];
    let mut len = 0;
    loop {
        if len == text.len() {
            text.resize(2 * len, 0);
        }
        match file.read(&mut text[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    text.truncate(len);
    Ok(text)
}

/// The two dumps of one read: address family and the name errors give the request.
pub const LISTEN_DUMPS: [(u8, &str); 2] = [
    (AF_INET, "inet_diag dump of TCP LISTEN sockets, AF_INET"),
    (AF_INET6, "inet_diag dump of TCP LISTEN sockets, AF_INET6"),
];

/// Receive buffer of the netlink socket. The kernel sizes a dump's datagrams to the reader's
/// buffer, capped at 32 KiB, so this one never truncates (a truncation is still detected).
const RECV_BUFFER_BYTES: usize = 32 * 1024;

/// The request of one dump: every TCP socket of `family` in LISTEN state, no extensions,
/// numbered `sequence`.
pub fn listen_dump_request(family: u8, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// The reply to one LISTEN dump, read datagram by datagram: the ports seen so far and
/// whether NLMSG_DONE has arrived. Pure: the bytes come from the caller.
#[derive(Debug)]
pub struct ListenDump {
    request: &'static str,
    sequence: u32,
    ports: BTreeSet<u16>,
    done: bool,
}

impl ListenDump {
    /// Awaits the reply to `request` (its name in errors) sent with `sequence`.
    pub fn new(request: &'static str, sequence: u32) -> Self {
        Self {
            request,
            sequence,
            ports: BTreeSet::new(),
            done: false,
        }
    }

    /// Reads one datagram of the reply (one or more netlink messages). Returns true once
    /// NLMSG_DONE has been read; NLMSG_ERROR with an error code, a negative NLMSG_DONE, a
    /// message after NLMSG_DONE, another request's sequence number or undecodable bytes are
    /// errors naming the request.
    pub fn read_datagram(&mut self, datagram: &[u8]) -> Result<bool, PortError> {
        let malformed = |message: String| PortError::NetlinkReply {
            request: self.request,
            message,
        };
        let mut rest = datagram;
        while !rest.is_empty() {
            if self.done {
                return Err(malformed(format!("{} bytes after NLMSG_DONE", rest.len())));
            }
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(rest)
                .map_err(|e| malformed(e.to_string()))?;
            if message.header.sequence_number != self.sequence {
                return Err(malformed(format!(
                    "message of sequence {} while reading the reply to sequence {}",
                    message.header.sequence_number, self.sequence
                )));
            }
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    // The kernel filters on the requested states; checked again so a
                    // reply never counts a connection as a listener.
                    if response.header.state == TCP_LISTEN {
                        self.ports.insert(response.header.socket_id.source_port);
                    }
                }
                NetlinkPayload::Done(done) if done.code < 0 => {
                    return Err(PortError::NetlinkRefused {
                        request: self.request,
                        source: std::io::Error::from_raw_os_error(-done.code),
                    });
                }
                NetlinkPayload::Done(_) => self.done = true,
                NetlinkPayload::Error(error) if error.code.is_some() => {
                    return Err(PortError::NetlinkRefused {
                        request: self.request,
                        source: error.to_io(),
                    });
                }
                // An acknowledgement (error code 0) or a no-op carries nothing.
                NetlinkPayload::Error(_) | NetlinkPayload::Noop => {}
                _ => {
                    return Err(malformed(format!(
                        "unexpected message of type {}",
                        message.header.message_type
                    )));
                }
            }
            // Messages are aligned to 4 bytes within a datagram.
            let step = (message.header.length as usize).next_multiple_of(4);
            rest = rest.get(step..).unwrap_or_default();
        }
        Ok(self.done)
    }

    /// The LISTEN ports of the whole reply; an error if NLMSG_DONE never came.
    pub fn finish(self) -> Result<BTreeSet<u16>, PortError> {
        if !self.done {
            return Err(PortError::NetlinkReply {
                request: self.request,
                message: "the reply ended before NLMSG_DONE".to_string(),
            });
        }
        Ok(self.ports)
    }
}
/// Ports in LISTEN state in the agent's network namespace, IPv4 and IPv6, from netlink
/// sock_diag: one LISTEN dump per family over a fresh socket, each read until NLMSG_DONE.
pub fn sock_diag_listening_ports() -> Result<BTreeSet<u16>, PortError> {
    let io = |request, call, source| PortError::NetlinkIo {
        request,
        call,
        source,
    };
    let first = LISTEN_DUMPS[0].1;
    let socket = Socket::new(NETLINK_SOCK_DIAG)
        .map_err(|e| io(first, "socket(AF_NETLINK, NETLINK_SOCK_DIAG)", e))?;
    // Port 0 is the kernel; connecting also binds the socket to a port of its own.
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| io(first, "connect to the kernel", e))?;
    let mut ports = BTreeSet::new();
    let mut buf = Vec::with_capacity(RECV_BUFFER_BYTES);
    for (sequence, (family, request)) in (1..).zip(LISTEN_DUMPS) {
        socket
            .send(&listen_dump_request(family, sequence), 0)
            .map_err(|e| io(request, "send", e))?;
        let mut dump = ListenDump::new(request, sequence);
        loop {
            buf.clear();
            // MSG_TRUNC: the datagram's full length comes back even when it did not fit.
            let len = socket
                .recv(&mut buf, libc::MSG_TRUNC)
                .map_err(|e| io(request, "recv", e))?;
            if len > buf.len() {
                return Err(PortError::NetlinkReply {
                    request,
                    message: format!(
                        "a datagram of {len} bytes does not fit the {} byte receive buffer",
                        buf.len()
                    ),
                });
            }
            if dump.read_datagram(&buf)? {
                break;
            }
        }
        ports.extend(dump.finish()?);
    }
    Ok(ports)
}

/// Whether the fallback to `/proc/net/tcp{,6}` has been logged at warn in this process.
static PROC_FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

/// Ports in LISTEN state in the agent's network namespace, IPv4 and IPv6: from netlink
/// sock_diag, or, when that fails, from `/proc/net/tcp{,6}` (the first failure is logged at
/// warn with the fix, later ones at debug; every read tries netlink again).
pub fn read_listening_ports() -> Result<BTreeSet<u16>, PortError> {
    read_with_fallback(
        sock_diag_listening_ports,
        proc_listening_ports,
        &PROC_FALLBACK_WARNED,
    )
}

/// `primary`, else `fallback`; `warned` makes the first fallback a warning.
fn read_with_fallback(
    primary: impl FnOnce() -> Result<BTreeSet<u16>, PortError>,
    fallback: impl FnOnce() -> Result<BTreeSet<u16>, PortError>,
    warned: &AtomicBool,
) -> Result<BTreeSet<u16>, PortError> {
    match primary() {
        Ok(ports) => Ok(ports),
        Err(e) => {
            if warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "netlink sock_diag failed; reading /proc/net/tcp{{,6}}");
            } else {
                tracing::warn!(
                    error = %e,
                    "cannot read LISTEN sockets over netlink sock_diag; reading /proc/net/tcp \
                     and /proc/net/tcp6 instead, which makes the kernel format every connection \
                     on each probe round. Fix: allow AF_NETLINK to the agent (systemd \
                     RestrictAddressFamilies=, a seccomp profile, the container runtime) and, \
                     if the kernel answers ENOENT, load the tcp_diag module (modprobe tcp_diag)"
                );
            }
            fallback()
        }
    }
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
        assert!(proc_listening_ports().unwrap().contains(&port));
        drop(l);
        assert!(!proc_listening_ports().unwrap().contains(&port));
    }

    use std::net::{TcpListener, TcpStream};
    use std::num::NonZeroI32;

    use netlink_packet_core::{DoneMessage, ErrorMessage, NLM_F_MULTIPART};
    use netlink_packet_sock_diag::inet::{InetResponse, InetResponseHeader};

    const REQUEST: &str = "inet_diag dump of TCP LISTEN sockets, AF_INET";
    const TCP_ESTABLISHED: u8 = 1;

    fn serialize(mut message: NetlinkMessage<SockDiagMessage>) -> Vec<u8> {
        message.finalize();
        let mut buf = vec![0; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    fn multipart_header(sequence: u32) -> NetlinkHeader {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_MULTIPART;
        header.sequence_number = sequence;
        header
    }

    /// One inet_diag message of a dump reply: a socket of `family` in `state` on `port`.
    fn socket_message(family: u8, state: u8, port: u16, sequence: u32) -> Vec<u8> {
        let mut socket_id = if family == AF_INET6 {
            SocketId::new_v6()
        } else {
            SocketId::new_v4()
        };
        socket_id.source_port = port;
        let response = InetResponse {
            header: InetResponseHeader {
                family,
                state,
                timer: None,
                socket_id,
                recv_queue: 0,
                send_queue: 128,
                uid: 0,
                inode: 4242,
            },
            nlas: Default::default(),
        };
        serialize(NetlinkMessage::new(
            multipart_header(sequence),
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(Box::new(response))),
        ))
    }

    fn done_message(code: i32, sequence: u32) -> Vec<u8> {
        let mut done = DoneMessage::default();
        done.code = code;
        serialize(NetlinkMessage::new(
            multipart_header(sequence),
            NetlinkPayload::Done(done),
        ))
    }

    fn error_message(errno: i32, sequence: u32) -> Vec<u8> {
        let mut error = ErrorMessage::default();
        error.code = NonZeroI32::new(-errno);
        // The kernel echoes the request's header.
        error.header = listen_dump_request(AF_INET, sequence)[..16].to_vec();
        serialize(NetlinkMessage::new(
            multipart_header(sequence),
            NetlinkPayload::Error(error),
        ))
    }

    #[test]
    fn multipart_reply_gives_the_listen_ports_of_every_datagram() {
        let mut dump = ListenDump::new(REQUEST, 7);
        // Datagram 1: two listeners and a connection the filter let through.
        let first = [
            socket_message(AF_INET, TCP_LISTEN, 8888, 7),
            socket_message(AF_INET, TCP_ESTABLISHED, 50000, 7),
            socket_message(AF_INET, TCP_LISTEN, 8443, 7),
        ]
        .concat();
        assert!(!dump.read_datagram(&first).unwrap());
        // Datagram 2: one more listener, then the end of the dump.
        let second = [
            socket_message(AF_INET, TCP_LISTEN, 9820, 7),
            done_message(0, 7),
        ]
        .concat();
        assert!(dump.read_datagram(&second).unwrap());
        let ports = dump.finish().unwrap();
        assert_eq!(
            ports.into_iter().collect::<Vec<_>>(),
            vec![8443, 8888, 9820]
        );
    }

    #[test]
    fn ipv6_reply_and_a_done_alone_in_its_datagram() {
        let mut dump = ListenDump::new(LISTEN_DUMPS[1].1, 2);
        assert!(
            !dump
                .read_datagram(&socket_message(AF_INET6, TCP_LISTEN, 8888, 2))
                .unwrap()
        );
        assert!(dump.read_datagram(&done_message(0, 2)).unwrap());
        assert_eq!(dump.finish().unwrap(), BTreeSet::from([8888]));
    }

    #[test]
    fn nlmsg_error_names_the_request_and_the_errno() {
        let mut dump = ListenDump::new(REQUEST, 1);
        let err = dump
            .read_datagram(&error_message(libc::EPERM, 1))
            .unwrap_err();
        assert!(
            matches!(&err, PortError::NetlinkRefused { source, .. }
                if source.raw_os_error() == Some(libc::EPERM)),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(REQUEST), "{text}");
        assert!(text.contains("not permitted"), "{text}");
        // A dump that fails midway ends with a negative NLMSG_DONE.
        let mut dump = ListenDump::new(REQUEST, 1);
        let reply = [
            socket_message(AF_INET, TCP_LISTEN, 8888, 1),
            done_message(-libc::ENOBUFS, 1),
        ]
        .concat();
        let err = dump.read_datagram(&reply).unwrap_err();
        assert!(matches!(&err, PortError::NetlinkRefused { source, .. }
                if source.raw_os_error() == Some(libc::ENOBUFS)));
    }

    #[test]
    fn malformed_replies_are_errors_naming_the_request() {
        let listener = socket_message(AF_INET, TCP_LISTEN, 8888, 3);
        let cases: [(&str, Vec<u8>); 4] = [
            ("cut short", listener[..listener.len() - 10].to_vec()),
            (
                "another sequence",
                socket_message(AF_INET, TCP_LISTEN, 8888, 4),
            ),
            (
                "data after NLMSG_DONE",
                [done_message(0, 3), listener.clone()].concat(),
            ),
            ("not netlink", vec![1, 2, 3]),
        ];
        for (case, datagram) in cases {
            let err = ListenDump::new(REQUEST, 3)
                .read_datagram(&datagram)
                .unwrap_err();
            assert!(
                matches!(err, PortError::NetlinkReply { .. }),
                "{case}: {err:?}"
            );
            assert!(err.to_string().contains(REQUEST), "{case}: {err}");
        }
        // No NLMSG_DONE: the reply is incomplete, not empty.
        let mut dump = ListenDump::new(REQUEST, 3);
        assert!(!dump.read_datagram(&listener).unwrap());
        let err = dump.finish().unwrap_err().to_string();
        assert!(err.contains("before NLMSG_DONE"), "{err}");
    }

    /// A listener on `[::1]:0`, or None where the machine has no IPv6.
    fn ipv6_listener() -> Option<TcpListener> {
        TcpListener::bind("[::1]:0").ok()
    }

    #[test]
    fn sock_diag_sees_our_listeners_and_not_our_connections() {
        let mut listeners = vec![TcpListener::bind("127.0.0.1:0").unwrap()];
        listeners.extend(ipv6_listener());
        let mut connections = Vec::new();
        for l in &listeners {
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (server, _) = l.accept().unwrap();
            connections.push((client, server));
        }
        let ports = sock_diag_listening_ports().unwrap();
        for l in &listeners {
            let addr = l.local_addr().unwrap();
            assert!(ports.contains(&addr.port()), "{addr} not in {ports:?}");
        }
        for (client, _) in &connections {
            let ephemeral = client.local_addr().unwrap();
            assert!(
                !ports.contains(&ephemeral.port()),
                "client {ephemeral} reported"
            );
        }
        // The accepted sockets keep the listeners' ports; once the listeners close, those
        // established sockets do not make the ports count as listening.
        let listened: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        let ports = sock_diag_listening_ports().unwrap();
        for port in listened {
            assert!(
                !ports.contains(&port),
                "closed listener {port} still reported"
            );
        }
        drop(connections);
    }

    #[test]
    fn sock_diag_and_proc_net_tcp_agree_on_the_ports_we_own() {
        // 100 listeners: more than the first datagram of a dump holds (about 30), so the
        // reply comes in several datagrams.
        let mut listeners: Vec<TcpListener> = (0..100)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners.extend(ipv6_listener());
        let mut owned = BTreeSet::new();
        let mut connections = Vec::new();
        for l in &listeners {
            owned.insert(l.local_addr().unwrap().port());
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            owned.insert(client.local_addr().unwrap().port());
            connections.push((client, l.accept().unwrap().0));
        }
        let diag = sock_diag_listening_ports().unwrap();
        let proc = proc_listening_ports().unwrap();
        let ours = |set: &BTreeSet<u16>| set.intersection(&owned).copied().collect::<BTreeSet<_>>();
        let listened: BTreeSet<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ours(&diag), ours(&proc));
        assert_eq!(ours(&diag), listened);
        drop(connections);
    }

    /// Log lines written while `f` runs, at debug and above.
    fn captured_log(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn refused_netlink_falls_back_to_proc_and_warns_once_with_the_fix() {
        let warned = AtomicBool::new(false);
        let refused = || {
            Err(PortError::NetlinkIo {
                request: REQUEST,
                call: "socket(AF_NETLINK, NETLINK_SOCK_DIAG)",
                source: std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
            })
        };
        let from_proc = || Ok(BTreeSet::from([8888]));
        let log = captured_log(|| {
            for _ in 0..3 {
                let ports = read_with_fallback(refused, from_proc, &warned).unwrap();
                assert_eq!(ports, BTreeSet::from([8888]));
            }
        });
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{log}");
        for want in [
            "NETLINK_SOCK_DIAG",
            "/proc/net/tcp",
            "AF_NETLINK",
            "RestrictAddressFamilies",
        ] {
            assert!(
                warnings[0].contains(want),
                "{want} missing: {}",
                warnings[0]
            );
        }
        assert_eq!(
            log.lines().filter(|l| l.contains("DEBUG")).count(),
            2,
            "{log}"
        );
        // When netlink answers, /proc is not read.
        let ports = read_with_fallback(
            || Ok(BTreeSet::from([9820])),
            || panic!("/proc read although netlink answered"),
            &warned,
        )
        .unwrap();
        assert_eq!(ports, BTreeSet::from([9820]));
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
