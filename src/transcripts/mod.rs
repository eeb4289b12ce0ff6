//! Claude Code transcripts: every configured home's `projects/**/*.jsonl` read live, with
//! exact token and cost accounting per user and model.
//!
//! Shape: pure parts beside thin adapters.
//! - [`line`] parses one JSONL line into facts (usage, prompt, session, time); [`prices`]
//!   prices a response; [`ledger`] folds facts into totals with deduplication and billing
//!   blocks. No I/O, time passed in.
//! - [`tail`] is the adapter: it finds homes, watches them with notify (inotify) plus a
//!   periodic reconcile scan, reads complete lines from per-file offsets, and persists
//!   offsets, dedupe keys and totals together ([`persist`]).
//! - [`state`] is what the model holds ([`TranscriptTotals`]); [`expose`] renders it as metric
//!   families; [`settings`] is the `[claude]` section; [`error`] says what failed.
//!
//! Where the accounting lives: the tailer owns the [`ledger::Ledger`] and sends the model a
//! totals snapshot ([`TranscriptTotals`], a few hundred numbers) after each batch of lines,
//! not one update per line. Reasons: (1) the offsets and the dedupe state must be saved
//! atomically *with* the totals they produced, and they live in the tailer, so the tailer
//! must own the totals too — otherwise the persistence would need the model to send state
//! back, against the one-directional flow; (2) a 1 GB backfill is millions of lines, which
//! would flood the model's bounded queue (and drop updates), while a snapshot is idempotent:
//! a dropped one is repaired by the next; (3) the model task stays cheap: it swaps an `Arc`.
//!
//! Agreement with ccusage 20.0.24 (tests/it/transcripts.rs checks tokens per day and model
//! exactly, cost to 1e-9): same validity rules, same prices (`--offline`), costUSD used when
//! written (ccusage's default "auto" mode). Known differences, none of which occur in Claude
//! Code's own files or the generated corpus: web-search requests are priced ($10 per 1000;
//! ccusage prices them at 0); any JSON spacing is parsed (ccusage only looks at lines holding
//! the exact bytes `"usage":{`); a `null` field counts as absent (ccusage drops such lines);
//! the dedupe key is `message.id` + `requestId` across all files, where later ccusage
//! versions also scope it by session. Cost rounding: both add one f64 per response, in a
//! different order, so totals differ in the last bits only (the test allows 1e-9 relative).
//!
//! Never copies content: labels are user names (home owners), model ids and tool names; no
//! prompt, response, command or file content reaches a metric or a log line.

pub mod error;
pub mod expose;
pub mod ledger;
pub mod line;
pub mod persist;
pub mod prices;
pub mod settings;
pub mod state;
pub mod tail;

pub use error::TranscriptError;
pub use ledger::{Block, DayTotals, ModelTotals, ProjectTotals};
pub use settings::ClaudeSettings;
pub use state::{TailStats, TranscriptTotals, UserTotals};
pub use tail::{TailSettings, spawn};
