//! The host's metric families (`vibe_host_*`, `vibe_filesystem_*`, the agent's `process_*`),
//! from the host's sections of the snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus::proto::MetricFamily;

use super::state::{FsResult, FsSample, HostSample, ProcessSample};
use crate::exposition::family::Family;

/// The host's families: host-wide figures, the sampled paths, and the agent's own
/// `process_*` figures.
pub fn families(
    host: Option<&HostSample>,
    filesystems: &BTreeMap<PathBuf, FsSample>,
    process: Option<&ProcessSample>,
    out: &mut Vec<MetricFamily>,
) {
    if let Some(h) = host {
        let gauges: [(&str, &str, f64); 8] = [
            (
                "vibe_host_cpu_usage_ratio",
                "Share of all CPUs busy over the last interval (0 to 1).",
                h.cpu_usage_ratio,
            ),
            ("vibe_host_load1", "1-minute load average.", h.load1),
            ("vibe_host_load5", "5-minute load average.", h.load5),
            ("vibe_host_load15", "15-minute load average.", h.load15),
            (
                "vibe_host_memory_total_bytes",
                "Total memory.",
                h.memory_total_bytes,
            ),
            (
                "vibe_host_memory_available_bytes",
                "Memory available for new work without swapping.",
                h.memory_available_bytes,
            ),
            (
                "vibe_host_swap_total_bytes",
                "Total swap.",
                h.swap_total_bytes,
            ),
            (
                "vibe_host_swap_used_bytes",
                "Swap in use.",
                h.swap_used_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            let mut f = Family::gauge(name, help);
            f.sample(&[], v);
            f.finish(out);
        }
    }

    let mut size = Family::gauge("vibe_filesystem_size_bytes", "Filesystem size (statvfs).");
    let mut avail = Family::gauge(
        "vibe_filesystem_avail_bytes",
        "Space available to unprivileged users (statvfs).",
    );
    let mut free = Family::gauge("vibe_filesystem_free_bytes", "Free space (statvfs).");
    let mut files = Family::gauge("vibe_filesystem_files", "Inodes (statvfs).");
    let mut files_free = Family::gauge("vibe_filesystem_files_free", "Free inodes (statvfs).");
    let mut stuck = Family::gauge(
        "vibe_filesystem_stuck",
        "1 when statvfs of the path did not return within the timeout (a hung mount).",
    );
    let mut exists = Family::gauge(
        "vibe_filesystem_path_exists",
        "1 when the sampled path exists.",
    );
    for fs in filesystems.values() {
        let p = fs.path.to_string_lossy();
        let l = [("path", p.as_ref())];
        stuck.flag(&l, fs.result == FsResult::Stuck);
        exists.flag(&l, fs.result != FsResult::Missing);
        if let FsResult::Ok(u) = &fs.result {
            size.sample(&l, u.size_bytes);
            avail.sample(&l, u.avail_bytes);
            free.sample(&l, u.free_bytes);
            files.sample(&l, u.files);
            files_free.sample(&l, u.files_free);
        }
    }
    for f in [size, avail, free, files, files_free, stuck, exists] {
        f.finish(out);
    }

    if let Some(p) = process {
        let gauges: [(&str, &str, f64); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
            ("process_threads", "Number of OS threads.", p.threads),
        ];
        for (name, help, v) in gauges {
            let mut f = Family::gauge(name, help);
            f.sample(&[], v);
            f.finish(out);
        }
        let mut f = Family::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        f.sample(&[], p.cpu_seconds_total);
        f.finish(out);
    }
}
