//! Host sampling: CPU, load, memory and swap (sysinfo), statvfs of the configured paths
//! (each on its own [`BlockingWorker`], so a hung mount is reported stuck and blocks
//! nothing), memory and CPU of each service's processes (the unit's cgroup, sysinfo), and
//! the agent's own `process_*` figures (procfs).
//!
//! One task samples everything every `host.interval` and sends the results to the model.
//! [`HostSampler::sample_round`] is shared with `vibe-agent check`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::task::JoinSet;

use super::state::{FsResult, FsSample, HostSample, ProcSample, ProcessSample, usage_of};
use crate::common::{Source, unix_now};
use crate::config::Settings;
use crate::juicefs::settings::JuicefsSettings;
use crate::model::Update;
use crate::sink::{Sample, UpdateSink, spawn_periodic};
use crate::worker::{BlockingWorker, WorkerError};

/// Where the cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The cgroup directory under which the service manager puts `system.slice`, from PID 1's
/// `/proc/1/cgroup`: on the unified (v2) hierarchy the `0::` line under /sys/fs/cgroup, on
/// a legacy (v1) host the `name=systemd` line under /sys/fs/cgroup/systemd. The path is
/// `/init.scope` on a host and `/<subtree>/init.scope` when systemd runs in a container
/// without a cgroup namespace. Pure: text in, path out.
pub fn cgroup_root_of(pid1_cgroup: &str, unified: bool) -> PathBuf {
    let (mount, rel) = if unified {
        (
            PathBuf::from(CGROUP_MOUNT),
            pid1_cgroup.lines().find_map(|l| l.strip_prefix("0::")),
        )
    } else {
        (
            Path::new(CGROUP_MOUNT).join("systemd"),
            pid1_cgroup
                .lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p)),
        )
    };
    let rel = rel
        .map(str::trim)
        .and_then(|p| p.strip_suffix("/init.scope"))
        .unwrap_or("");
    mount.join(rel.trim_start_matches('/'))
}

fn statvfs(path: &Path) -> FsResult {
    match rustix::fs::statvfs(path) {
        Ok(st) => FsResult::Ok(usage_of(&st)),
        Err(rustix::io::Errno::NOENT) => FsResult::Missing,
        Err(e) => FsResult::Error(format!("statvfs {}: {e}", path.display())),
    }
}

/// PIDs in a cgroup, from its `cgroup.procs` text (one PID a line).
pub fn parse_cgroup_procs(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The host sampler's state: sysinfo's view (CPU usage needs the previous reading) and
/// one statvfs worker per path.
pub struct HostSampler {
    sys: System,
    workers: BTreeMap<PathBuf, BlockingWorker>,
    fs_timeout: Duration,
    units: Vec<(String, String)>,
    /// Parent of `system.slice`: see [`cgroup_root_of`].
    cgroup_root: PathBuf,
    /// Paths the JuiceFS source samples itself: see [`left_to_juicefs`].
    juicefs: JuicefsSettings,
}

/// The configured paths that are JuiceFS mount points: the JuiceFS source statvfs-es them on
/// its own worker (and reports `vibe_filesystem_*{path}` for them), so the host sampler
/// leaves them alone and a hung mount blocks one thread, not two. Pure: the mount table's
/// text in, paths out.
pub fn left_to_juicefs(
    paths: &[PathBuf],
    juicefs: &JuicefsSettings,
    mountinfo: &str,
) -> Vec<PathBuf> {
    use crate::juicefs::mountinfo::{juicefs_mounts, parse_mountinfo};
    let mut owned: Vec<PathBuf> = juicefs.mounts.iter().map(|m| m.path.clone()).collect();
    if juicefs.discover {
        owned.extend(
            juicefs_mounts(&parse_mountinfo(mountinfo))
                .into_iter()
                .map(|m| m.mount_point),
        );
    }
    paths
        .iter()
        .filter(|p| owned.contains(p))
        .cloned()
        .collect()
}

impl HostSampler {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut sys = System::new()?;
        sys.refresh_cpu_usage();
        let mut workers = BTreeMap::new();
        for path in &settings.host.paths {
            workers.insert(path.clone(), BlockingWorker::new("vibe-statvfs")?);
        }
        let units = settings
            .services
            .iter()
            .filter_map(|s| s.unit.clone().map(|u| (s.name.clone(), u)))
            .collect();
        let cgroup_root = cgroup_root_of(
            &std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default(),
            Path::new(CGROUP_MOUNT).join("cgroup.controllers").exists(),
        );
        Ok(Self {
            sys,
            workers,
            fs_timeout: settings.host.fs_timeout,
            units,
            cgroup_root,
            juicefs: settings.juicefs.clone(),
        })
    }

    /// One round: host, every path (concurrently, each bounded by the timeout), services'
    /// processes, and the agent itself.
    pub async fn sample_round(&mut self) -> Vec<Update> {
        let mut out = Vec::new();
        let at = unix_now();
        let paths: Vec<PathBuf> = self.workers.keys().cloned().collect();
        let mountinfo = std::fs::read_to_string(&self.juicefs.mountinfo).unwrap_or_default();
        let skip = left_to_juicefs(&paths, &self.juicefs, &mountinfo);
        let fs_rounds =
            self.workers
                .iter()
                .filter(|(p, _)| !skip.contains(p))
                .map(|(path, worker)| {
                    let path = path.clone();
                    let timeout = self.fs_timeout;
                    async move {
                        let p = path.clone();
                        let result = match worker.run(timeout, move || statvfs(&p)).await {
                            Ok(r) => r,
                            Err(WorkerError::Busy | WorkerError::Timeout) => FsResult::Stuck,
                        };
                        FsSample { at, path, result }
                    }
                });
        let fs = futures_util::future::join_all(fs_rounds).await;
        out.extend(fs.into_iter().map(Update::Filesystem));

        let mut errors = Vec::new();
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let load = System::load_average().unwrap_or_else(|e| {
            errors.push(format!("load average: {e}"));
            sysinfo::LoadAvg::default()
        });
        out.push(Update::Host(HostSample {
            at,
            cpu_usage_ratio: f64::from(self.sys.global_cpu_usage()) / 100.0,
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
            memory_total_bytes: self.sys.total_memory() as f64,
            memory_available_bytes: self.sys.available_memory() as f64,
            swap_total_bytes: self.sys.total_swap() as f64,
            swap_used_bytes: self.sys.used_swap() as f64,
        }));

        for (service, unit) in self.units.clone() {
            let procs = self
                .cgroup_root
                .join("system.slice")
                .join(&unit)
                .join("cgroup.procs");
            let Ok(text) = std::fs::read_to_string(&procs) else {
                continue; // not running under systemd here: no per-service figures
            };
            let pids: Vec<Pid> = parse_cgroup_procs(&text)
                .into_iter()
                .map(Pid::from_u32)
                .collect();
            self.sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&pids),
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
            let (mut rss, mut cpu) = (0.0, 0.0);
            for pid in &pids {
                if let Some(p) = self.sys.process(*pid) {
                    rss += p.memory() as f64;
                    cpu += f64::from(p.cpu_usage()) / 100.0;
                }
            }
            out.push(Update::ServiceProcesses {
                service,
                sample: ProcSample {
                    at,
                    processes: pids.len() as u64,
                    memory_rss_bytes: rss,
                    cpu_usage_cores: cpu,
                },
            });
        }

        match self_process() {
            Ok(p) => out.push(Update::Process(p)),
            Err(e) => errors.push(format!("/proc/self: {e}")),
        }
        out.push(Update::Source {
            source: Source::Host,
            result: if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            },
        });
        out
    }
}

/// The agent's own figures, as node_exporter's process collector reports them.
pub fn self_process() -> procfs::ProcResult<ProcessSample> {
    let me = procfs::process::Process::myself()?;
    let stat = me.stat()?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs()? as f64;
    let max_fds = me
        .limits()
        .map(|l| match l.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(v) => v as f64,
            procfs::process::LimitValue::Unlimited => f64::INFINITY,
        })
        .unwrap_or(0.0);
    Ok(ProcessSample {
        cpu_seconds_total: (stat.utime + stat.stime) as f64 / ticks,
        resident_memory_bytes: stat.rss as f64 * procfs::page_size() as f64,
        virtual_memory_bytes: stat.vsize as f64,
        start_time_seconds: boot + stat.starttime as f64 / ticks,
        open_fds: me.fd_count()? as f64,
        max_fds,
        threads: stat.num_threads as f64,
    })
}

impl Sample for HostSampler {
    fn sample(&mut self) -> impl Future<Output = Vec<Update>> + Send {
        self.sample_round()
    }
}

/// Starts the host sampling loop into `tasks`.
pub fn spawn(
    settings: &Settings,
    sink: &UpdateSink,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let sampler = HostSampler::new(settings)?;
    spawn_periodic(tasks, settings.host.interval, sink, sampler);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_procs_parse() {
        assert_eq!(parse_cgroup_procs("12\n345\n\n"), vec![12, 345]);
        assert_eq!(parse_cgroup_procs(""), Vec::<u32>::new());
        assert_eq!(parse_cgroup_procs("x\n7\n"), vec![7]);
    }

    #[test]
    fn cgroup_root_from_pid1() {
        let cases = [
            ("0::/init.scope\n", true, "/sys/fs/cgroup/"),
            (
                "0::/machine.slice/box/init.scope\n",
                true,
                "/sys/fs/cgroup/machine.slice/box",
            ),
            ("12:pids:/\n0::/init.scope\n", true, "/sys/fs/cgroup/"),
            ("", true, "/sys/fs/cgroup/"),
            ("0::/\n", true, "/sys/fs/cgroup/"),
            (
                "9:name=systemd:/init.scope\n0::/\n",
                false,
                "/sys/fs/cgroup/systemd/",
            ),
            (
                "9:name=systemd:/box/init.scope\n",
                false,
                "/sys/fs/cgroup/systemd/box",
            ),
            ("8:pids:/\n", false, "/sys/fs/cgroup/systemd/"),
        ];
        for (text, unified, want) in cases {
            assert_eq!(cgroup_root_of(text, unified), Path::new(want), "{text:?}");
        }
    }

    #[test]
    fn juicefs_mount_points_are_left_to_the_juicefs_source() {
        let table = "36 25 0:52 / /fs rw,relatime - fuse.juicefs JuiceFS:vibe rw\n\
                     37 25 8:1 / /data rw - ext4 /dev/sda1 rw\n";
        let paths: Vec<PathBuf> = vec!["/data".into(), "/fs".into(), "/other".into()];
        let mut j = crate::juicefs::settings::JuicefsSettings::default();
        assert_eq!(
            left_to_juicefs(&paths, &j, table),
            vec![PathBuf::from("/fs")]
        );
        j.discover = false;
        assert!(left_to_juicefs(&paths, &j, table).is_empty());
        j.mounts.push(crate::juicefs::settings::ConfiguredMount {
            path: "/other".into(),
            metrics_url: "http://127.0.0.1:9567/metrics".into(),
        });
        assert_eq!(
            left_to_juicefs(&paths, &j, table),
            vec![PathBuf::from("/other")]
        );
    }

    #[test]
    fn statvfs_of_root_missing_and_usage() {
        assert!(matches!(statvfs(Path::new("/")), FsResult::Ok(u) if u.size_bytes > 0.0));
        assert_eq!(statvfs(Path::new("/nonexistent/vibe")), FsResult::Missing);
    }

    #[test]
    fn self_process_reads_sane_figures() {
        let p = self_process().unwrap();
        assert!(p.resident_memory_bytes > 0.0);
        assert!(p.threads >= 1.0);
        assert!(p.open_fds >= 3.0);
        assert!(p.start_time_seconds > 1.0e9);
    }

    #[tokio::test]
    async fn round_reports_missing_paths_without_failing() {
        let settings = Settings {
            host: crate::host::settings::HostSettings {
                paths: vec!["/".into(), "/nonexistent/vibe".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut s = HostSampler::new(&settings).unwrap();
        let updates = s.sample_round().await;
        let fs: Vec<_> = updates
            .iter()
            .filter_map(|u| match u {
                Update::Filesystem(f) => Some((f.path.clone(), f.result.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(fs.len(), 2);
        assert!(matches!(fs[0].1, FsResult::Ok(_)));
        assert_eq!(fs[1].1, FsResult::Missing);
        assert!(
            updates
                .iter()
                .any(|u| matches!(u, Update::Host(h) if h.memory_total_bytes > 0.0))
        );
    }
}
