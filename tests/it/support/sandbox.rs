//! The machine's own systemd booted in a PID + mount namespace by `scripts/systemd-sandbox`
//! (needs root; CI runs as root), powered off on drop, also on a panic. Shared by the
//! systemd and packaging tests and by `benches/systemd_latency.rs` (which includes this
//! file by path, so it uses nothing else from the test support).
//!
//! The sandbox's state directory lives where the sandbox can see it: under `target/` by
//! default, or a chosen parent. /tmp is replaced by the sandbox's own, so a directory under
//! the host's /tmp would be hidden from its units.
//!
//! One sandbox at a time on the machine: every sandboxed systemd takes the same cgroup
//! hierarchy as its root (the script makes no cgroup namespace), so two booted at once move
//! and empty each other's cgroups (seen: `systemctl kill` failing with EIO in one while the
//! packaging test's sandbox ran). [`Sandbox::start_under`] waits for an exclusive `flock` on
//! [`MACHINE_LOCK`], held until the sandbox is powered off; it also keeps two checkouts'
//! test runs on one machine apart.

#![allow(dead_code)] // each user needs a different part

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The machine-wide lock that keeps sandboxes one at a time (see the module header).
pub const MACHINE_LOCK: &str = "/var/tmp/vibe-agent-systemd-sandbox.lock";

/// A booted sandbox.
pub struct Sandbox {
    dir: tempfile::TempDir,
    script: PathBuf,
    /// systemd's PID, in this machine's PID namespace.
    pub pid: u32,
    /// Held from before the boot until after the power-off (dropped after `Drop::drop`).
    _machine: File,
}

/// Waits for the machine's sandbox lock.
fn take_machine_lock() -> File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(MACHINE_LOCK)
        .unwrap_or_else(|e| panic!("{MACHINE_LOCK}: {e}"));
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("flock {MACHINE_LOCK}: {e}"));
    file
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Sandbox {
    /// Boots one with its state under the repository's `target/`.
    pub fn start() -> Self {
        let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&target).unwrap();
        Self::start_under(&target, "systemd-sandbox-")
    }

    /// Boots one with its state in a new directory under `parent`, named `prefix…`.
    pub fn start_under(parent: &Path, prefix: &str) -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "the systemd sandbox needs root (it boots systemd in namespaces); run as root, \
             as CI does"
        );
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .unwrap_or_else(|e| panic!("sandbox state dir under {}: {e}", parent.display()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd-sandbox");
        let machine = take_machine_lock();
        let out = Command::new(&script)
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run scripts/systemd-sandbox");
        let mut sb = Self {
            dir,
            script,
            pid: 0,
            _machine: machine,
        };
        assert!(
            out.status.success(),
            "scripts/systemd-sandbox start failed: {}\nboot log:\n{}",
            said(&out),
            std::fs::read_to_string(sb.dir.path().join("boot.log")).unwrap_or_default()
        );
        sb.pid = std::fs::read_to_string(sb.dir.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .expect("scripts/systemd-sandbox wrote systemd's pid");
        sb
    }

    /// The sandbox's state directory (seen at the same path inside and out).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The sandbox's system bus, seen from outside its mount namespace.
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.pid
        )
    }

    /// Runs a command inside.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new(&self.script)
            .arg("exec")
            .arg(self.dir.path())
            .args(args)
            .output()
            .expect("run scripts/systemd-sandbox exec")
    }

    /// Runs a command inside; panics with what it said, the failed units and the journal's
    /// tail when it fails; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        if !out.status.success() {
            let failed = self.exec(&["systemctl", "list-units", "--failed", "--no-pager"]);
            let journal = self.exec(&["journalctl", "--no-pager", "-n", "30"]);
            panic!(
                "{args:?} in the sandbox failed: {}\nfailed units:\n{}\njournal:\n{}",
                said(&out),
                said(&failed),
                said(&journal)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl ARGS` inside; panics when it fails.
    pub fn systemctl(&self, args: &[&str]) {
        let mut full = vec!["systemctl"];
        full.extend_from_slice(args);
        self.ok(&full);
    }

    /// Writes a file under the sandbox's private `/etc/systemd/system` (a unit, or a
    /// drop-in such as `x.service.d/y.conf`).
    pub fn install(&self, relative: &str, text: &str) {
        let path = self.dir.path().join("etc-systemd-system").join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// `systemctl status` of some units, for failure messages.
    pub fn status(&self, units: &[&str]) -> String {
        let mut args = vec!["systemctl", "status", "--no-pager", "-n", "20"];
        args.extend_from_slice(units);
        said(&self.exec(&args))
    }

    /// A directory seen at the same path inside the sandbox and out.
    pub fn shared(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A copy of `file` the sandbox can read, as a path for its commands.
    pub fn hand_in(&self, file: &Path) -> String {
        let copy = self.shared("in").join(file.file_name().unwrap());
        std::fs::copy(file, &copy).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        copy.to_string_lossy().into_owned()
    }

    /// This machine's PIDs of the sandbox's processes named `comm`.
    pub fn host_pids(&self, comm: &str) -> Vec<u32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid)).ok();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok() == ns)
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
