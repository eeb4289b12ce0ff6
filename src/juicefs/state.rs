//! What the model keeps of the JuiceFS mounts: the latest [`MountSample`] of each, the quota
//! read out of statfs, and the `vibe-agent check` lines.
//!
//! Pure: no I/O, no clock. The sampler sends one [`JuicefsRound`] per interval holding every
//! mount it knows; [`apply`] replaces the previous round, so a mount that vanished from the
//! mount table vanishes from the snapshot and from `/metrics`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::figures::ClientFigures;
use crate::common::{Check, UnixTime};
use crate::host::state::{FsResult, FsSample, FsUsage};

/// Every mount's state after the latest round.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JuicefsState {
    /// By mount point.
    pub mounts: BTreeMap<PathBuf, MountSample>,
    /// How long a mount had to answer in the latest round.
    pub timeout_seconds: f64,
    /// Sampling rounds completed since the agent started.
    pub rounds: u64,
}

/// One sampling round of every known mount.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JuicefsRound {
    pub at: UnixTime,
    pub mounts: Vec<MountSample>,
    /// How long a mount had to answer (for the check's wording).
    pub timeout_seconds: f64,
}

/// How the mount answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MountHealth {
    /// Configured, but not in the mount table.
    NotMounted,
    /// statvfs or reading `.stats` did not return within the timeout, or the previous call
    /// still hangs: the FUSE client is not serving requests.
    Stuck,
    /// The mount answered with an error, e.g. "Transport endpoint is not connected" when the
    /// client process died.
    Failed(String),
    /// The mount answered.
    Answered,
}

/// Where the figures of a mount came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FigureSource {
    /// The mount's `.stats` file.
    Stats,
    /// The client's metrics endpoint.
    Metrics,
    /// Only statfs answered: used bytes and inodes come from it, nothing else is known.
    Statfs,
}

impl FigureSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stats => "stats",
            Self::Metrics => "metrics",
            Self::Statfs => "statfs",
        }
    }
}

/// The latest sample of one mount.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MountSample {
    pub mount: PathBuf,
    /// Volume name (mount table source `JuiceFS:<name>`, else the endpoint's `vol_name`).
    pub volume: String,
    /// Listed in `[[juicefs.mount]]` (expected to be there).
    pub configured: bool,
    /// Other mount points of the same client (bind mounts).
    pub bind_mounts: Vec<PathBuf>,
    pub health: MountHealth,
    /// statvfs of the mount, when it answered.
    pub statfs: Option<FsUsage>,
    /// The client's own figures, from `.stats` or the endpoint.
    pub client: Option<ClientFigures>,
    /// Which output the figures came from; `None` when there are none.
    pub source: Option<FigureSource>,
    /// Why `.stats` and the endpoint gave nothing, in words for a person.
    pub client_error: Option<String>,
}

/// JuiceFS's statfs without a capacity set: 1 PiB, doubled while used exceeds 80% of it.
const SYNTHETIC_SPACE_MIN: u64 = 1 << 50;
/// JuiceFS's statfs without an inode limit: 10 Mi free inodes, doubled as needed.
const SYNTHETIC_FREE_INODES_MIN: u64 = 10 << 20;

/// The space quota a statfs reveals: JuiceFS reports its capacity (`juicefs format
/// --capacity`) or a directory quota as the size; without either the size is synthetic (a
/// power of two from 1 PiB up) and there is no quota. A capacity set to exactly a power of two
/// of 1 PiB or more cannot be told from the synthetic figure and is not reported.
pub fn quota_bytes(u: &FsUsage) -> Option<f64> {
    let size = u.size_bytes as u64;
    let synthetic = size >= SYNTHETIC_SPACE_MIN && size.is_power_of_two();
    (!synthetic && size > 0).then_some(u.size_bytes)
}

/// The inode quota a statfs reveals: without a limit JuiceFS reports 10 Mi × 2^k free
/// inodes; anything else is the limit (`--inodes` or a directory quota).
pub fn quota_inodes(u: &FsUsage) -> Option<f64> {
    let free = u.files_free as u64;
    let synthetic = free >= SYNTHETIC_FREE_INODES_MIN
        && free % SYNTHETIC_FREE_INODES_MIN == 0
        && (free / SYNTHETIC_FREE_INODES_MIN).is_power_of_two();
    (!synthetic && u.files > 0.0).then_some(u.files)
}

impl MountSample {
    /// Up: the mount answered and the client's figures were read (from `.stats` or the
    /// endpoint).
    pub fn up(&self) -> bool {
        self.health == MountHealth::Answered
            && matches!(
                self.source,
                Some(FigureSource::Stats | FigureSource::Metrics)
            )
    }

    /// Bytes used: the client's `juicefs_used_space`, else statfs's size minus free.
    pub fn used_bytes(&self) -> Option<f64> {
        self.client
            .as_ref()
            .and_then(|c| c.used_bytes)
            .or_else(|| self.statfs.map(|u| u.size_bytes - u.free_bytes))
    }

    /// Inodes used: the client's `juicefs_used_inodes`, else statfs's files minus free.
    pub fn used_inodes(&self) -> Option<f64> {
        self.client
            .as_ref()
            .and_then(|c| c.used_inodes)
            .or_else(|| self.statfs.map(|u| u.files - u.files_free))
    }

    /// What `vibe_filesystem_*{path}` says of the mount point (nothing when not mounted).
    fn fs_result(&self) -> Option<FsResult> {
        match &self.health {
            MountHealth::NotMounted => None,
            MountHealth::Stuck => Some(FsResult::Stuck),
            MountHealth::Failed(e) => Some(FsResult::Error(e.clone())),
            MountHealth::Answered => self.statfs.map(FsResult::Ok),
        }
    }

    /// The `vibe-agent check` line of the mount.
    pub fn check(&self, timeout_seconds: f64) -> Check {
        let name = format!("juicefs {} ({})", self.mount.display(), self.volume);
        let (ok, detail) = match &self.health {
            MountHealth::NotMounted => (
                false,
                "not mounted: configured, but not a fuse.juicefs mount in the mount table; \
                 is its juicefs-*.service running?"
                    .to_string(),
            ),
            MountHealth::Stuck => (
                false,
                format!(
                    "stuck: the mount did not answer within {timeout_seconds} s (hung FUSE \
                     client or metadata engine?)"
                ),
            ),
            MountHealth::Failed(e) => (false, e.clone()),
            MountHealth::Answered => {
                let mut parts = Vec::new();
                if let Some(b) = self.used_bytes() {
                    let quota = self.statfs.as_ref().and_then(quota_bytes);
                    parts.push(match quota {
                        Some(q) if q > 0.0 => {
                            format!(
                                "{} used of a {} quota ({:.0}%)",
                                gib(b),
                                gib(q),
                                100.0 * b / q
                            )
                        }
                        _ => format!("{} used, no quota", gib(b)),
                    });
                }
                if let Some(i) = self.used_inodes() {
                    parts.push(format!("{i:.0} inodes"));
                }
                match self.source {
                    Some(s @ (FigureSource::Stats | FigureSource::Metrics)) => {
                        parts.push(format!(
                            "figures from {}",
                            if s == FigureSource::Stats {
                                ".stats"
                            } else {
                                "the metrics endpoint"
                            }
                        ));
                        (true, parts.join(", "))
                    }
                    _ => {
                        let why = self.client_error.as_deref().unwrap_or("no figures");
                        parts.push(format!("client figures unavailable: {why}"));
                        (false, parts.join(", "))
                    }
                }
            }
        };
        Check { name, ok, detail }
    }
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// Folds a round into the snapshot's sections: replaces the mounts, and writes each mount
/// point's statvfs outcome to `filesystems` (the host's section) so a hung mount shows as
/// `vibe_filesystem_stuck{path} 1` even when it is not among the host's paths. Mount points
/// that left the table leave `filesystems` too (the host sampler puts back the ones it
/// samples itself).
pub fn apply(
    juicefs: &mut Arc<JuicefsState>,
    filesystems: &mut Arc<BTreeMap<PathBuf, FsSample>>,
    round: JuicefsRound,
) {
    let fs = Arc::make_mut(filesystems);
    for gone in juicefs
        .mounts
        .keys()
        .filter(|p| !round.mounts.iter().any(|m| &m.mount == *p))
    {
        fs.remove(gone);
    }
    for m in &round.mounts {
        match m.fs_result() {
            Some(result) => {
                fs.insert(
                    m.mount.clone(),
                    FsSample {
                        at: round.at,
                        path: m.mount.clone(),
                        result,
                    },
                );
            }
            None => {
                fs.remove(&m.mount);
            }
        }
    }
    *juicefs = Arc::new(JuicefsState {
        mounts: round
            .mounts
            .into_iter()
            .map(|m| (m.mount.clone(), m))
            .collect(),
        timeout_seconds: round.timeout_seconds,
        rounds: juicefs.rounds + 1,
    });
}

impl JuicefsState {
    /// The check lines of every mount, in mount-point order.
    pub fn checks(&self) -> impl Iterator<Item = Check> + '_ {
        self.mounts.values().map(|m| m.check(self.timeout_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(size: f64, free: f64, files: f64, files_free: f64) -> FsUsage {
        FsUsage {
            size_bytes: size,
            avail_bytes: free,
            free_bytes: free,
            files,
            files_free,
        }
    }

    #[test]
    fn synthetic_capacity_is_no_quota() {
        let pib = (1u64 << 50) as f64;
        // Fresh volume: 1 PiB, 10 Mi free inodes.
        assert_eq!(
            quota_bytes(&usage(pib, pib - 4096.0, 10.0 + 10_485_760.0, 10_485_760.0)),
            None
        );
        assert_eq!(
            quota_inodes(&usage(pib, pib, 10.0 + 10_485_760.0, 10_485_760.0)),
            None
        );
        // Used past 80% of 1 PiB: JuiceFS doubles it.
        assert_eq!(quota_bytes(&usage(2.0 * pib, 1.1 * pib, 0.0, 0.0)), None);
        // Many inodes: 10 Mi doubled three times.
        assert_eq!(quota_inodes(&usage(pib, pib, 9e7, 83_886_080.0)), None);
    }

    #[test]
    fn capacity_and_inode_limits_are_quotas() {
        let tib = (1u64 << 40) as f64;
        // `juicefs format --capacity 1024` (GiB) and `--inodes 1000000`.
        let u = usage(tib, 0.25 * tib, 1_000_000.0, 400_000.0);
        assert_eq!(quota_bytes(&u), Some(tib));
        assert_eq!(quota_inodes(&u), Some(1_000_000.0));
        // A directory quota on a subdir mount: used + available, any number.
        assert_eq!(
            quota_bytes(&usage(53_687_091_200.0, 1e9, 5.0, 3.0)),
            Some(53_687_091_200.0)
        );
        assert_eq!(quota_bytes(&usage(0.0, 0.0, 0.0, 0.0)), None);
    }

    fn sample(health: MountHealth, source: Option<FigureSource>) -> MountSample {
        MountSample {
            mount: "/fs".into(),
            volume: "vibe".into(),
            configured: true,
            bind_mounts: vec![],
            health,
            statfs: Some(usage(
                (1u64 << 50) as f64,
                (1u64 << 50) as f64 - 1e9,
                10_485_770.0,
                10_485_760.0,
            )),
            client: source
                .filter(|s| *s != FigureSource::Statfs)
                .map(|_| ClientFigures {
                    used_bytes: Some(2.0 * (1u64 << 30) as f64),
                    used_inodes: Some(10.0),
                    ..Default::default()
                }),
            source,
            client_error: None,
        }
    }

    #[test]
    fn up_needs_an_answer_and_client_figures() {
        assert!(sample(MountHealth::Answered, Some(FigureSource::Stats)).up());
        assert!(sample(MountHealth::Answered, Some(FigureSource::Metrics)).up());
        assert!(!sample(MountHealth::Answered, Some(FigureSource::Statfs)).up());
        assert!(!sample(MountHealth::Stuck, Some(FigureSource::Metrics)).up());
        assert!(!sample(MountHealth::NotMounted, None).up());
    }

    #[test]
    fn check_lines_read_like_a_health_script() {
        let ok = sample(MountHealth::Answered, Some(FigureSource::Stats)).check(2.0);
        assert_eq!(
            ok.to_string(),
            "[OK] juicefs /fs (vibe): 2.0 GiB used, no quota, 10 inodes, figures from .stats"
        );
        let stuck = sample(MountHealth::Stuck, None).check(2.0);
        assert!(
            stuck
                .to_string()
                .starts_with("[ERROR] juicefs /fs (vibe): stuck"),
            "{stuck}"
        );
        let missing = sample(MountHealth::NotMounted, None).check(2.0);
        assert!(missing.detail.contains("not mounted"), "{missing}");
        let mut no_figures = sample(MountHealth::Answered, Some(FigureSource::Statfs));
        no_figures.client_error = Some("connection refused".into());
        let c = no_figures.check(2.0);
        assert!(!c.ok);
        assert!(
            c.detail
                .ends_with("client figures unavailable: connection refused"),
            "{c}"
        );
    }
}
