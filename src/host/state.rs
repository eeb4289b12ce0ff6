//! What the model keeps of the host: host-wide figures, the sampled paths' statvfs
//! outcomes, the services' processes and the agent's own process, and the paths' check
//! lines.
//!
//! Pure: no I/O, no clock (every sample carries the time it was taken), no prometheus.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::common::{Check, UnixTime};

/// Memory and CPU of one service's processes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcSample {
    pub at: UnixTime,
    pub processes: u64,
    pub memory_rss_bytes: f64,
    /// CPU use over the last interval, in cores (1.0 = one core busy).
    pub cpu_usage_cores: f64,
}

/// Host-wide figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSample {
    pub at: UnixTime,
    pub cpu_usage_ratio: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_total_bytes: f64,
    pub memory_available_bytes: f64,
    pub swap_total_bytes: f64,
    pub swap_used_bytes: f64,
}

/// statvfs of one configured path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsSample {
    pub at: UnixTime,
    pub path: PathBuf,
    pub result: FsResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FsResult {
    Ok(FsUsage),
    /// The path does not exist (reported, not fatal).
    Missing,
    /// statvfs failed for another reason.
    Error(String),
    /// statvfs did not return within the timeout (a hung mount).
    Stuck,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FsUsage {
    pub size_bytes: f64,
    pub avail_bytes: f64,
    pub free_bytes: f64,
    pub files: f64,
    pub files_free: f64,
}

/// The agent's own process (node_exporter's `process_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ProcessSample {
    pub cpu_seconds_total: f64,
    pub resident_memory_bytes: f64,
    pub virtual_memory_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub threads: f64,
}

/// The sampled paths' check lines, in path order.
pub fn filesystem_checks(filesystems: &BTreeMap<PathBuf, FsSample>) -> Vec<Check> {
    let mut out = Vec::new();
    for fs in filesystems.values() {
        let name = format!("filesystem {}", fs.path.display());
        let (ok, detail) = match &fs.result {
            FsResult::Ok(u) => {
                let used = if u.size_bytes > 0.0 {
                    100.0 * (1.0 - u.avail_bytes / u.size_bytes)
                } else {
                    0.0
                };
                (true, format!("{used:.0}% used"))
            }
            FsResult::Missing => (false, "does not exist".to_string()),
            FsResult::Error(e) => (false, e.clone()),
            FsResult::Stuck => (
                false,
                "stuck: statvfs did not return within the timeout (hung mount?)".to_string(),
            ),
        };
        out.push(Check { name, ok, detail });
    }
    out
}

/// Turns statvfs output into the model's figures (pure: the call is the caller's).
pub fn usage_of(st: &rustix::fs::StatVfs) -> FsUsage {
    let frsize = st.f_frsize as f64;
    FsUsage {
        size_bytes: st.f_blocks as f64 * frsize,
        avail_bytes: st.f_bavail as f64 * frsize,
        free_bytes: st.f_bfree as f64 * frsize,
        files: st.f_files as f64,
        files_free: st.f_ffree as f64,
    }
}
