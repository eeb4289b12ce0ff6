//! A stand-in for a JuiceFS mount that a test can hang and resume.
//!
//! [`HangableMount::start`] mounts a tiny real FUSE filesystem (the `fuser` crate, mounted
//! through Debian `fuse3`'s `fusermount3`) that looks like a JuiceFS client from outside:
//! fstype `fuse.juicefs`, source `JuiceFS:<volume>`, a root holding `.stats` (served with
//! `direct_io`, as JuiceFS serves its internal files), and statfs figures the test sets. Told
//! to hang, it blocks every request in its session thread, so whoever calls into the mount
//! waits in the kernel, exactly as with a stalled client; told to resume, it answers them.
//!
//! When `/dev/fuse` is missing (a CI container without the device), it says so loudly on
//! stderr and falls back to a directory whose `.stats` is a FIFO without a writer (reading it
//! blocks like a hung mount) and a fake mount table naming that directory `fuse.juicefs`.
//! Drop resumes, then unmounts (`fusermount3 -u -z`).

#![allow(dead_code)] // the benchmark-style helpers are not used by every test

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};

/// statfs as the test wants the mount to report it (4 KiB blocks, as JuiceFS reports).
#[derive(Debug, Clone, Copy)]
pub struct Statfs {
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub files: u64,
    pub files_free: u64,
}

impl Statfs {
    /// What JuiceFS reports without a capacity or inode limit: 1 PiB, 10 Mi free inodes.
    pub fn synthetic(used_bytes: u64, used_inodes: u64) -> Self {
        let total = 1u64 << 50;
        Self {
            total_bytes: total,
            avail_bytes: total - used_bytes,
            files: used_inodes + (10 << 20),
            files_free: 10 << 20,
        }
    }

    /// With `juicefs format --capacity` / `--inodes` set.
    pub fn with_quota(used_bytes: u64, capacity: u64, used_inodes: u64, inodes: u64) -> Self {
        Self {
            total_bytes: capacity,
            avail_bytes: capacity - used_bytes,
            files: inodes,
            files_free: inodes - used_inodes,
        }
    }
}

/// What the filesystem serves, shared between the test and the FUSE session thread.
struct Shared {
    stats: Mutex<String>,
    statfs: Mutex<Statfs>,
    hung: Mutex<bool>,
    resumed: Condvar,
    /// statfs answers with this error (as a dead client's mount does: ENOTCONN).
    statfs_error: Mutex<Option<Errno>>,
}

impl Shared {
    /// Every request passes here first: while hung it waits, like a stalled client.
    fn gate(&self) {
        let mut hung = self.hung.lock().unwrap();
        while *hung {
            hung = self.resumed.wait(hung).unwrap();
        }
    }
}

const ROOT: INodeNo = INodeNo::ROOT;
const STATS_INO: INodeNo = INodeNo(2);
const STATS_NAME: &str = ".stats";

fn attr(ino: INodeNo, kind: FileType, size: u64) -> FileAttr {
    FileAttr {
        ino,
        size,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o444
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

struct FakeJuicefs(Arc<Shared>);

impl Filesystem for FakeJuicefs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.0.gate();
        if parent == ROOT && name == STATS_NAME {
            // JuiceFS's internal files have no meaningful size; reads use direct_io.
            reply.entry(
                &Duration::ZERO,
                &attr(STATS_INO, FileType::RegularFile, 0),
                fuser::Generation(0),
            );
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.0.gate();
        match ino {
            ROOT => reply.attr(&Duration::ZERO, &attr(ROOT, FileType::Directory, 0)),
            STATS_INO => reply.attr(&Duration::ZERO, &attr(STATS_INO, FileType::RegularFile, 0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.0.gate();
        if ino == STATS_INO {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.0.gate();
        if ino != STATS_INO {
            return reply.error(Errno::ENOENT);
        }
        let text = self.0.stats.lock().unwrap();
        let bytes = text.as_bytes();
        let start = (offset as usize).min(bytes.len());
        let end = (start + size as usize).min(bytes.len());
        reply.data(&bytes[start..end]);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.0.gate();
        if ino != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (STATS_INO, FileType::RegularFile, STATS_NAME),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.0.gate();
        if let Some(e) = *self.0.statfs_error.lock().unwrap() {
            return reply.error(e);
        }
        let s = *self.0.statfs.lock().unwrap();
        let blocks = s.total_bytes / 4096;
        let avail = s.avail_bytes / 4096;
        reply.statfs(blocks, avail, avail, s.files, s.files_free, 4096, 255, 4096);
    }
}

/// How the mount is made.
enum Backing {
    /// A real FUSE mount served by this process.
    Fuse(Option<fuser::BackgroundSession>),
    /// `/dev/fuse` is missing: `.stats` is a FIFO while hung, a regular file otherwise.
    Fifo,
}

/// A JuiceFS-looking mount under a temporary directory.
pub struct HangableMount {
    shared: Arc<Shared>,
    backing: Backing,
    dir: tempfile::TempDir,
    mount: PathBuf,
    volume: String,
}

/// Whether this machine can mount FUSE filesystems; `Err` says what is missing.
pub fn fuse_available() -> Result<(), String> {
    // Lets a developer exercise the fallback on a machine that has FUSE.
    if std::env::var_os("VIBE_TEST_FORCE_FIFO").is_some() {
        return Err("VIBE_TEST_FORCE_FIFO is set".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist (no FUSE device in this container)".into());
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .any(|d| d.join("fusermount3").is_file());
    if !found {
        panic!(
            "/dev/fuse exists but fusermount3 is not installed: install Debian's fuse3 \
             (apt-get install fuse3; scripts/test does)"
        );
    }
    Ok(())
}

impl HangableMount {
    /// Mounts a fake JuiceFS volume named `volume` serving `stats`.
    pub fn start(volume: &str, stats: &str, statfs: Statfs) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let shared = Arc::new(Shared {
            stats: Mutex::new(stats.to_string()),
            statfs: Mutex::new(statfs),
            hung: Mutex::new(false),
            resumed: Condvar::new(),
            statfs_error: Mutex::new(None),
        });
        let backing = match fuse_available() {
            Ok(()) => {
                // AutoUnmount makes fuser mount through fusermount3 (as root it would call
                // mount(2) itself with fstype "fuse" and drop the subtype), which gives the
                // mount JuiceFS's fstype `fuse.juicefs` and unmounts it if this process dies.
                let mut config = fuser::Config::default();
                config.mount_options = vec![
                    MountOption::FSName(format!("JuiceFS:{volume}")),
                    MountOption::Subtype("juicefs".into()),
                    MountOption::DefaultPermissions,
                    MountOption::AutoUnmount,
                ];
                config.acl = fuser::SessionACL::All;
                let session = fuser::spawn_mount(FakeJuicefs(shared.clone()), &mount, &config)
                    .unwrap_or_else(|e| {
                        panic!("mount the test FUSE filesystem at {}: {e}", mount.display())
                    });
                Backing::Fuse(Some(session))
            }
            Err(why) => {
                eprintln!(
                    "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !!! {why}.\n\
                     !!! NOT testing a real FUSE mount: falling back to a blocking FIFO as\n\
                     !!! .stats and a fake mount table. Give the machine /dev/fuse to test\n\
                     !!! what the issue asks for.\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
                std::fs::write(mount.join(STATS_NAME), stats).expect("write .stats");
                let table = format!(
                    "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
                     900 1 0:999 / {} rw,relatime - fuse.juicefs JuiceFS:{} rw,user_id=0\n",
                    mount.display().to_string().replace(' ', "\\040"),
                    volume
                );
                std::fs::write(dir.path().join("mountinfo"), table).expect("fake mountinfo");
                Backing::Fifo
            }
        };
        Self {
            shared,
            backing,
            dir,
            mount,
            volume: volume.to_string(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// True when this is a real FUSE mount (not the FIFO fallback).
    pub fn is_fuse(&self) -> bool {
        matches!(self.backing, Backing::Fuse(_))
    }

    /// The mount table the agent must read to find this mount: none for a real mount
    /// (discovery reads the kernel's table), the fake table for the fallback.
    pub fn mountinfo(&self) -> Option<PathBuf> {
        match self.backing {
            Backing::Fuse(_) => None,
            Backing::Fifo => Some(self.dir.path().join("mountinfo")),
        }
    }

    pub fn set_statfs(&self, s: Statfs) {
        *self.shared.statfs.lock().unwrap() = s;
    }

    /// Makes statfs fail with `e` (`None`: answer again). FUSE mounts only.
    pub fn fail_statfs(&self, e: Option<Errno>) {
        *self.shared.statfs_error.lock().unwrap() = e;
    }

    pub fn set_stats(&self, text: &str) {
        *self.shared.stats.lock().unwrap() = text.to_string();
        if let Backing::Fifo = self.backing {
            if !*self.shared.hung.lock().unwrap() {
                std::fs::write(self.mount.join(STATS_NAME), text).expect("write .stats");
            }
        }
    }

    /// From now on every call into the mount blocks until [`resume`](Self::resume).
    pub fn hang(&self) {
        *self.shared.hung.lock().unwrap() = true;
        if let Backing::Fifo = self.backing {
            let stats = self.mount.join(STATS_NAME);
            let _ = std::fs::remove_file(&stats);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &stats,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .expect("mkfifo .stats");
        }
    }

    /// Answers every blocked call and serves normally again.
    pub fn resume(&self) {
        let mut hung = self.shared.hung.lock().unwrap();
        if !*hung {
            return;
        }
        *hung = false;
        self.shared.resumed.notify_all();
        if let Backing::Fifo = self.backing {
            let stats = self.mount.join(STATS_NAME);
            let text = self.shared.stats.lock().unwrap().clone();
            // Later reads find a regular file...
            let tmp = self.dir.path().join("stats.tmp");
            std::fs::write(&tmp, &text).expect("write .stats");
            // ...and a reader blocked on the FIFO gets the text and its end: open the FIFO
            // for writing without blocking (fails when nobody reads it, which is fine).
            let fifo = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&stats);
            std::fs::rename(&tmp, &stats).expect("replace the FIFO");
            if let Ok(mut f) = fifo {
                use std::io::Write;
                let _ = f.write_all(text.as_bytes());
            }
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

impl Drop for HangableMount {
    fn drop(&mut self) {
        self.resume();
        if let Backing::Fuse(session) = &mut self.backing {
            drop(session.take());
            // In case the session could not unmount (a caller still inside): detach it.
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mount)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
