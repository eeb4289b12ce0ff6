//! The `vibe_juicefs_*` metric families, built from [`JuicefsState`] with exposition's
//! [`Family`] builder. Called by [`crate::exposition::families`] only.
//!
//! Every family is labelled `mount` and `volume`. What is unknown is left out rather than
//! reported as 0: no quota series without a quota, no client series without client figures.

use prometheus::proto::MetricFamily;

use super::state::{JuicefsState, MountHealth, quota_bytes, quota_inodes};
use crate::exposition::family::Family;

/// Appends the JuiceFS families to `out`.
pub fn families(st: &JuicefsState, out: &mut Vec<MetricFamily>) {
    if st.rounds == 0 {
        return;
    }
    let mut rounds = Family::counter(
        "vibe_juicefs_sampling_rounds_total",
        "Rounds in which the agent visited every JuiceFS mount (a hung mount does not stop \
         them).",
    );
    rounds.sample(&[], st.rounds as f64);
    rounds.finish(out);
    let mut up = Family::gauge(
        "vibe_juicefs_up",
        "1 when the JuiceFS mount answered within the timeout and its client's figures were \
         read (from .stats or the metrics endpoint).",
    );
    let mut mounted = Family::gauge(
        "vibe_juicefs_mounted",
        "1 when the mount is in the mount table as fuse.juicefs (0: configured but missing).",
    );
    let mut stuck = Family::gauge(
        "vibe_juicefs_stuck",
        "1 when the mount did not answer within the timeout (hung FUSE client).",
    );
    let mut source = Family::gauge(
        "vibe_juicefs_source_info",
        "Where the mount's figures came from: stats (<mount>/.stats), metrics (the client's \
         endpoint) or statfs (only used bytes and inodes).",
    );
    let mut used_bytes = Family::gauge(
        "vibe_juicefs_used_bytes",
        "Bytes used by the volume, as the JuiceFS client counts them (juicefs_used_space).",
    );
    let mut used_inodes = Family::gauge(
        "vibe_juicefs_used_inodes",
        "Inodes used by the volume (juicefs_used_inodes).",
    );
    let mut quota_b = Family::gauge(
        "vibe_juicefs_quota_bytes",
        "The volume's capacity or the mount's directory quota; absent when none is set (statfs \
         then reports a synthetic 1 PiB).",
    );
    let mut quota_i = Family::gauge(
        "vibe_juicefs_quota_inodes",
        "The volume's or directory's inode limit; absent when none is set.",
    );
    let mut uptime = Family::gauge(
        "vibe_juicefs_client_uptime_seconds",
        "Seconds since the JuiceFS client started (juicefs_uptime).",
    );
    let mut memory = Family::gauge(
        "vibe_juicefs_client_memory_bytes",
        "Resident memory of the JuiceFS client (juicefs_memory).",
    );
    let mut cpu = Family::counter(
        "vibe_juicefs_client_cpu_seconds_total",
        "CPU time the JuiceFS client used (juicefs_cpu_usage); restarts with the client.",
    );
    let mut hits = Family::counter(
        "vibe_juicefs_blockcache_hits_total",
        "Block reads served from the local cache (juicefs_blockcache_hits).",
    );
    let mut misses = Family::counter(
        "vibe_juicefs_blockcache_misses_total",
        "Block reads the local cache missed (juicefs_blockcache_miss).",
    );
    let mut hit_bytes = Family::counter(
        "vibe_juicefs_blockcache_hit_bytes_total",
        "Bytes read from the local cache (juicefs_blockcache_hit_bytes).",
    );
    let mut miss_bytes = Family::counter(
        "vibe_juicefs_blockcache_miss_bytes_total",
        "Bytes the local cache missed (juicefs_blockcache_miss_bytes).",
    );
    let mut object_errors = Family::counter(
        "vibe_juicefs_object_request_errors_total",
        "Failed requests to the object store (juicefs_object_request_errors).",
    );
    let mut fuse_ops = Family::counter(
        "vibe_juicefs_fuse_operations_total",
        "FUSE operations the client served (count of juicefs_fuse_ops_durations_histogram_seconds).",
    );
    let mut fuse_ops_method = Family::counter(
        "vibe_juicefs_fuse_method_operations_total",
        "FUSE operations by method (juicefs_fuse_ops_total), from clients that export it.",
    );
    let mut open_handles = Family::gauge(
        "vibe_juicefs_fuse_open_handles",
        "Open files and directories of the mount (juicefs_fuse_open_handlers).",
    );

    for m in st.mounts.values() {
        let mount = m.mount.to_string_lossy();
        let l = [("mount", mount.as_ref()), ("volume", m.volume.as_str())];
        up.flag(&l, m.up());
        mounted.flag(&l, m.health != MountHealth::NotMounted);
        stuck.flag(&l, m.health == MountHealth::Stuck);
        if let Some(s) = m.source {
            source.sample(
                &[
                    ("mount", mount.as_ref()),
                    ("volume", m.volume.as_str()),
                    ("source", s.as_str()),
                ],
                1.0,
            );
        }
        if m.health == MountHealth::Answered {
            if let Some(v) = m.used_bytes() {
                used_bytes.sample(&l, v);
            }
            if let Some(v) = m.used_inodes() {
                used_inodes.sample(&l, v);
            }
            if let Some(u) = &m.statfs {
                if let Some(q) = quota_bytes(u) {
                    quota_b.sample(&l, q);
                }
                if let Some(q) = quota_inodes(u) {
                    quota_i.sample(&l, q);
                }
            }
        }
        let Some(c) = &m.client else { continue };
        for (family, value) in [
            (&mut uptime, c.uptime_seconds),
            (&mut memory, c.memory_bytes),
            (&mut cpu, c.cpu_seconds),
            (&mut hits, c.blockcache_hits),
            (&mut misses, c.blockcache_misses),
            (&mut hit_bytes, c.blockcache_hit_bytes),
            (&mut miss_bytes, c.blockcache_miss_bytes),
            (&mut object_errors, c.object_request_errors),
            (&mut fuse_ops, c.fuse_ops),
            (&mut open_handles, c.fuse_open_handles),
        ] {
            if let Some(v) = value {
                family.sample(&l, v);
            }
        }
        for (method, v) in &c.fuse_ops_by_method {
            fuse_ops_method.sample(
                &[
                    ("mount", mount.as_ref()),
                    ("volume", m.volume.as_str()),
                    ("method", method),
                ],
                *v,
            );
        }
    }
    for f in [
        up,
        mounted,
        stuck,
        source,
        used_bytes,
        used_inodes,
        quota_b,
        quota_i,
        uptime,
        memory,
        cpu,
        hits,
        misses,
        hit_bytes,
        miss_bytes,
        object_errors,
        fuse_ops,
        fuse_ops_method,
        open_handles,
    ] {
        f.finish(out);
    }
}
