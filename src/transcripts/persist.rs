//! The persisted transcript state: per-file offsets with the file's identity, the dedupe
//! keys each file counted, and the totals — one JSON document, written atomically (temp file,
//! fsync, rename, fsync of the directory), so a restart resumes exactly: lines before a
//! file's offset are never counted twice, lines after it (appended while the agent was down
//! included) are read. A crash during a save leaves the previous document in place.
//!
//! Owns only `claude-transcripts.json` (and its `.tmp`) in the state directory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::TranscriptError;
use super::ledger::{FileId, LedgerState};

/// The file name in the state directory.
pub const STATE_FILE: &str = "claude-transcripts.json";

/// Format version; a document of another version is ignored (and the history re-read).
pub const VERSION: u32 = 1;

/// One tracked transcript file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub id: FileId,
    /// Earlier ids of this path (before a replacement or truncation); their keys are kept
    /// until the path is deleted.
    #[serde(default)]
    pub retired: Vec<FileId>,
    pub user: String,
    pub dev: u64,
    pub ino: u64,
    /// Bytes consumed: everything before this is counted.
    pub offset: u64,
    /// Hash of the first `prefix_len` bytes, to tell a replaced file that reused the inode.
    pub prefix_len: u32,
    pub prefix_hash: u64,
    /// Inside a line longer than the cap: bytes up to the next newline are dropped.
    #[serde(default)]
    pub skipping: bool,
}

/// The whole document.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub next_file_id: FileId,
    pub files: Vec<FileRecord>,
    pub ledger: LedgerState,
}

pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// Reads the saved state; a missing file is an empty state; an unreadable or foreign one is
/// reported and treated as empty (the transcripts are re-read from the start).
pub fn load(path: &Path) -> Result<Option<SavedState>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let s: SavedState = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a transcript state document: {e}", path.display()))?;
    if s.version != VERSION {
        return Err(format!(
            "{} has format version {}, this agent writes {VERSION}",
            path.display(),
            s.version
        ));
    }
    Ok(Some(s))
}

/// Writes `state` to `path` atomically.
pub fn save(path: &Path, state: &SavedState) -> Result<(), TranscriptError> {
    let err = |source| TranscriptError::Save {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| TranscriptError::StateDir {
        path: dir.to_owned(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(err)?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    serde_json::to_writer(&mut w, state).map_err(|e| err(e.into()))?;
    w.flush().map_err(err)?;
    let file = w.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)?;
    // The rename itself must reach the disk before the old document may be assumed gone.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}
