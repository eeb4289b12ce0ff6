//! JuiceFS mounts: which there are, how each answers, and what its client says about itself.
//!
//! Every interval the sampler reads the mount table ([`mountinfo`]: `fuse.juicefs` mounts,
//! plus the `[[juicefs.mount]]`s of the config, which are reported missing when absent), then
//! visits every mount once: statvfs of the mount point and a read of its `.stats` file, both on
//! the mount's own [`crate::worker::BlockingWorker`]. A stalled FUSE client blocks any caller in
//! uninterruptible sleep, so nothing here touches a mount from an async task: the worker's
//! single-flight turns a hung mount into one blocked thread and a `Stuck` sample every round,
//! the rest of the agent never waits on it, and the next call after the mount comes back
//! succeeds by itself. When the mount answers but `.stats` gives nothing, the client's
//! metrics endpoint (HTTP, bounded by the same timeout) is asked instead;
//! [`state::FigureSource`] says which was used.
//!
//! Parsers ([`mountinfo`], [`figures`]) and the model side ([`state`]) are pure; [`source`]
//! is the adapter that owns the files, the worker threads and the HTTP client. It must not
//! read or write the model's state: it only sends [`state::JuicefsRound`]s. [`expose`]
//! renders the state; [`settings`] is `[juicefs]`.

pub mod expose;
pub mod figures;
pub mod mountinfo;
pub mod settings;
pub mod source;
pub mod state;

pub use settings::JuicefsSettings;
pub use source::{JuicefsSampler, STATS_FILE, check_once, spawn};
pub use state::{FigureSource, JuicefsRound, JuicefsState, MountHealth, MountSample};
