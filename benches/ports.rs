//! Cost of one read of the LISTEN set (the port probe's socket-table read): netlink sock_diag
//! (`port::sock_diag_listening_ports`, what the agent uses) against its peer measured in the
//! same run, `/proc/net/tcp` + `/proc/net/tcp6` parsed by procfs (`port::proc_listening_ports`,
//! the fallback), first with no extra connection, then with N established loopback
//! connections held open by this process.
//!
//! Run: `cargo bench --bench ports`. `BENCH_CONNECTIONS` (default 2000, at most 20 000) sets
//! N, `BENCH_READS` (default 300) the reads per method and phase. Prints figures, asserts
//! nothing. The two methods alternate read by read, so load from other processes falls on
//! both alike.
//!
//! Each connection is a client and a server socket of this process (2 descriptors, 2 rows of
//! `/proc/net/tcp`); RLIMIT_NOFILE is raised to fit. At the end the clients close with
//! SO_LINGER 0 (a reset), so no TIME_WAIT rows outlive the run.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use vibe_agent::probe::port::{proc_listening_ports, sock_diag_listening_ports};

/// Upper bound on `BENCH_CONNECTIONS`: the run must stay a guest on a shared machine.
const MAX_CONNECTIONS: usize = 20_000;
/// Reads per method before timing.
const WARMUP_READS: usize = 20;

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
        Err(_) => default,
    }
}

/// Rows of `/proc/net/tcp` and `/proc/net/tcp6` (sockets the fallback makes the kernel format).
fn socket_rows() -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .map(|text| text.lines().count().saturating_sub(1))
        .sum()
}

/// Raises the soft RLIMIT_NOFILE to at least `want` (bounded by the hard limit); returns the
/// soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = limit.maximum.map_or(want, |max| want.min(max));
    limit.current = Some(target);
    setrlimit(Resource::Nofile, limit).expect("raise RLIMIT_NOFILE");
    target
}

/// N established loopback connections: (client, server) pairs around one listener.
struct Connections {
    _listener: TcpListener,
    pairs: Vec<(TcpStream, TcpStream)>,
}

impl Connections {
    fn open(n: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let mut pairs = Vec::with_capacity(n);
        for i in 0..n {
            let client = TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connection {i} of {n} to {addr}: {e}"));
            let (server, _) = listener.accept().expect("accept");
            pairs.push((client, server));
        }
        Self {
            _listener: listener,
            pairs,
        }
    }

    /// Closes every connection with a reset (SO_LINGER 0 on the client), leaving no
    /// TIME_WAIT rows behind.
    fn close(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        for (client, server) in self.pairs {
            // SAFETY: a valid socket descriptor and a linger struct of the size given.
            unsafe {
                libc::setsockopt(
                    client.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(client);
            drop(server);
        }
    }
}

type Reader = fn() -> Result<BTreeSet<u16>, vibe_agent::probe::port::PortError>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median µs per read of each reader, alternating them read by read; and whether both
/// returned the same set on the last read.
fn time_reads(reads: usize) -> (f64, f64, bool) {
    let readers: [Reader; 2] = [sock_diag_listening_ports, proc_listening_ports];
    for _ in 0..WARMUP_READS {
        for read in readers {
            read().expect("read the LISTEN set");
        }
    }
    let mut times = [Vec::with_capacity(reads), Vec::with_capacity(reads)];
    let mut last: [BTreeSet<u16>; 2] = Default::default();
    for _ in 0..reads {
        for (i, read) in readers.iter().enumerate() {
            let start = Instant::now();
            let ports = read().expect("read the LISTEN set");
            times[i].push(start.elapsed().as_secs_f64() * 1e6);
            last[i] = ports;
        }
    }
    let [diag, proc] = times;
    (median(diag), median(proc), last[0] == last[1])
}

fn main() {
    let n = env_count("BENCH_CONNECTIONS", 2000);
    let reads = env_count("BENCH_READS", 300).max(1);
    assert!(
        n <= MAX_CONNECTIONS,
        "BENCH_CONNECTIONS={n}: at most {MAX_CONNECTIONS}"
    );
    let nofile = raise_nofile(2 * n as u64 + 256);
    if (nofile as usize) < 2 * n + 64 {
        eprintln!("RLIMIT_NOFILE is {nofile}: too few descriptors for {n} connections");
        std::process::exit(1);
    }

    println!("LISTEN-set read: netlink sock_diag (agent) vs /proc/net/tcp{{,6}} (fallback)");
    println!("{reads} reads per method and phase, alternating, after {WARMUP_READS} warm-up reads");
    println!();
    println!(
        "| extra connections | socket rows | sock_diag median (µs) | /proc/net/tcp{{,6}} median (µs) | /proc / sock_diag | same set |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |extra: usize| {
        let rows = socket_rows();
        let (diag, proc, same) = time_reads(reads);
        println!(
            "| {extra} | {rows} | {diag:.1} | {proc:.1} | {:.1}x | {} |",
            proc / diag,
            if same { "yes" } else { "no" }
        );
    };
    row(0);
    let connections = Connections::open(n);
    row(n);
    connections.close();
    println!();
    println!(
        "socket rows: lines of /proc/net/tcp + /proc/net/tcp6 at the start of the phase \
         (each connection is two: client and server)"
    );
}
