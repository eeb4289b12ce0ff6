//! What the model holds of the transcripts: the totals per user and model, and how the
//! tailer is doing. The tailer computes a whole [`TranscriptTotals`] after each batch of lines
//! and the model swaps it in (see the module doc of [`super`] for why the tailer owns the
//! accounting).
//!
//! Pure data: no I/O, no clock.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ledger::{Block, DayTotals, ModelTotals, ProjectTotals};

/// What the model holds: the totals per user, and how the tailer is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TranscriptTotals {
    /// When these figures were computed (active sessions and blocks depend on it).
    pub at: f64,
    pub users: BTreeMap<String, UserTotals>,
    pub tail: TailStats,
}

/// One user's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserTotals {
    pub models: BTreeMap<String, ModelTotals>,
    pub tools: BTreeMap<String, u64>,
    pub prompts: u64,
    pub api_errors: u64,
    pub sessions_total: u64,
    pub active_sessions: u64,
    pub last_activity: Option<f64>,
    pub block: Option<Block>,
    /// Per project (empty when the project label is off).
    pub projects: BTreeMap<String, ProjectTotals>,
    /// Responses counted under `other` because of the project cap.
    pub project_overflow: u64,
    /// Since local midnight (in the configured time zone).
    pub today: DayTotals,
}

/// The tailer's own figures (since the agent started).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TailStats {
    pub lines_read: u64,
    pub lines_skipped: BTreeMap<&'static str, u64>,
    pub bytes_read: u64,
    pub files_watched: u64,
    pub homes: u64,
    /// Watch errors (e.g. the inotify watch limit); the reconcile scan covers for them.
    pub watch_errors: u64,
    /// Dedupe keys held in memory.
    pub dedupe_keys: u64,
}
