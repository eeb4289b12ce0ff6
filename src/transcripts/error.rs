//! Errors of the transcript source: what failed, on which path, and what to do.

/// Errors of the transcript source.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error(
        "cannot start watching Claude transcripts: {0}; check that inotify is available \
         (fs.inotify.max_user_instances)"
    )]
    Watcher(#[source] notify::Error),
    #[error(
        "cannot use the state directory {path}: {source}; create it or set agent.state_dir \
         to a writable directory"
    )]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save transcript state to {path}: {source}")]
    Save {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
