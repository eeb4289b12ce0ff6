//! The accounting: folds parsed lines into per-user totals — tokens by type, cost, messages,
//! tool uses, prompts, sessions, last activity, and ccusage's 5-hour billing blocks — with
//! every API response counted once.
//!
//! Deduplication. Claude Code writes one response as one line per content block (same
//! `message.id` and `requestId`, same usage), and a resumed session can replay old responses
//! into another file. The ledger keys each response by `message.id` + `requestId` across all
//! files of all homes and remembers which file counted it first: usage is counted once; the
//! `tool_use` blocks on the other lines of the same response in the same file are counted too
//! (each block is its own line); lines of a response first counted by another file are
//! ignored entirely.
//!
//! Memory bound. A key lives as long as the file that first counted it: when the file is
//! deleted (Claude removes transcripts after `cleanupPeriodDays`), its keys are forgotten,
//! so memory follows the transcripts on disk — 12 bytes of key and owner per response, about
//! 3 MB for a 1 GB history. Totals are kept: deleting transcripts never lowers a counter.
//! Sessions are kept as 8-byte hashes with their last activity time (a few thousand per user).
//! Responses of the last [`RECENT_HORIZON_SECS`] are kept (time, tokens, cost) to compute the
//! current billing block, its burn rate and projection, and today's figures.
//!
//! Projects. Each response is also counted under its project (the directory Claude Code
//! writes under `projects/`, the name ccusage's `--instances` shows), at most
//! `max_projects` per user: responses of further projects go to [`OTHER_PROJECT`] and are
//! counted in `project_overflow`, so the label's cardinality has a limit.
//!
//! Pure: time is passed in, no I/O.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::line::{Event, Line, Tokens, session_key};
use super::prices::PriceTable;

/// Identifies a transcript file for the life of the persisted state.
pub type FileId = u32;

/// Length of a ccusage billing block.
pub const BLOCK_SECS: f64 = 5.0 * 3600.0;

/// How far back responses are kept to find the current billing block and today's figures
/// (a local day is at most 25 hours). A block chain that runs without a 5-hour gap for
/// longer than this starts at the oldest kept response.
pub const RECENT_HORIZON_SECS: f64 = 30.0 * 3600.0;

/// The project value that collects the projects beyond the cap.
pub const OTHER_PROJECT: &str = "other";

/// Per-project totals of one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectTotals {
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// Deduplicated API responses.
    pub messages: u64,
}

/// Figures of one local day (today): tokens and cost of the responses written in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DayTotals {
    /// Local midnight that starts the day.
    pub start: f64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub messages: u64,
}

/// Per-model totals of one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelTotals {
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// Deduplicated API responses.
    pub messages: u64,
    /// Responses that could not be priced (the model is not in the price table).
    pub unpriced_messages: u64,
}

/// One response kept for the billing block: (time, tokens, cost).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecentResponse {
    pub at: f64,
    pub tokens: Tokens,
    pub cost_usd: f64,
}

/// Everything counted for one user (the owner of a Claude home).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserLedger {
    pub models: BTreeMap<String, ModelTotals>,
    pub tools: BTreeMap<String, u64>,
    pub prompts: u64,
    pub api_errors: u64,
    /// Session hash → last activity.
    pub sessions: HashMap<u64, f64>,
    pub last_activity: Option<f64>,
    /// Responses of the last [`RECENT_HORIZON_SECS`] before the newest one, by time.
    pub recent: Vec<RecentResponse>,
    /// Totals per project (see the module doc); empty when the project label is off.
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectTotals>,
    /// Responses counted under [`OTHER_PROJECT`] because the user had `max_projects`
    /// projects already.
    #[serde(default)]
    pub project_overflow: u64,
    /// Tokens per (UTC day number, model), only when day tracking is on (tests, tools).
    #[serde(skip)]
    pub days: BTreeMap<(i64, String), Tokens>,
}

/// The current (active) ccusage billing block of a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Block {
    pub start: f64,
    pub end: f64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// Times of the block's first and last responses.
    pub first_at: f64,
    pub last_at: f64,
    /// Responses in the block.
    pub messages: u64,
}

/// How fast a block spends, by ccusage's definition (`calculateBurnRate`): the block's
/// tokens (all four types) and cost over the time from its first to its last response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BurnRate {
    pub tokens_per_minute: f64,
    /// Input and output tokens only (ccusage's `tokensPerMinuteForIndicator`).
    pub tokens_per_minute_for_indicator: f64,
    pub cost_usd_per_hour: f64,
}

/// Where the block ends up if it keeps burning at its rate (ccusage 20's projection: the
/// time left rounded to whole minutes, times the burn rate; before ccusage rounds the
/// totals for display).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Projection {
    pub tokens: f64,
    pub cost_usd: f64,
    pub remaining_minutes: f64,
}

impl Block {
    /// Tokens of all four types (ccusage's `getTotalTokens`).
    pub fn total_tokens(&self) -> u64 {
        let t = &self.tokens;
        t.input + t.output + t.cache_creation + t.cache_read
    }

    /// The burn rate; `None` when the block's responses span no time (ccusage: null).
    pub fn burn_rate(&self) -> Option<BurnRate> {
        let minutes = (self.last_at - self.first_at) / 60.0;
        if self.messages == 0 || minutes <= 0.0 {
            return None;
        }
        Some(BurnRate {
            tokens_per_minute: self.total_tokens() as f64 / minutes,
            tokens_per_minute_for_indicator: (self.tokens.input + self.tokens.output) as f64
                / minutes,
            cost_usd_per_hour: self.cost_usd / minutes * 60.0,
        })
    }

    /// The projection at the block's end, as of `now`.
    pub fn projection(&self, now: f64) -> Option<Projection> {
        let rate = self.burn_rate()?;
        let remaining_minutes = ((self.end - now) / 60.0).max(0.0).round();
        Some(Projection {
            tokens: self.total_tokens() as f64 + rate.tokens_per_minute * remaining_minutes,
            cost_usd: self.cost_usd + rate.cost_usd_per_hour / 60.0 * remaining_minutes,
            remaining_minutes,
        })
    }
}

impl UserLedger {
    /// Sessions with activity within `window` seconds before `now`.
    pub fn active_sessions(&self, now: f64, window: f64) -> u64 {
        self.sessions
            .values()
            .filter(|&&t| now - t <= window)
            .count() as u64
    }

    /// The block `now` falls in, as ccusage's `blocks --active` finds it: blocks start at
    /// the hour of their first response and last 5 hours; a response more than 5 hours
    /// after the block's start or after the previous response starts a new block. The
    /// last block is current while `now` is before its end and within 5 hours of its last
    /// response.
    pub fn current_block(&self, now: f64) -> Option<Block> {
        let mut block: Option<(Block, f64)> = None;
        for r in &self.recent {
            match &mut block {
                Some((b, last)) if r.at - b.start <= BLOCK_SECS && r.at - *last <= BLOCK_SECS => {
                    b.tokens.add(&r.tokens);
                    b.cost_usd += r.cost_usd;
                    b.messages += 1;
                    b.last_at = r.at;
                    *last = r.at;
                }
                _ => {
                    let start = (r.at / 3600.0).floor() * 3600.0;
                    block = Some((
                        Block {
                            start,
                            end: start + BLOCK_SECS,
                            tokens: r.tokens,
                            cost_usd: r.cost_usd,
                            first_at: r.at,
                            last_at: r.at,
                            messages: 1,
                        },
                        r.at,
                    ));
                }
            }
        }
        let (b, last) = block?;
        (now < b.end && now - last < BLOCK_SECS).then_some(b)
    }

    /// Tokens and cost of the responses in `[start, end)` (a local day that began at most
    /// [`RECENT_HORIZON_SECS`] before the newest response).
    pub fn day_totals(&self, start: f64, end: f64) -> DayTotals {
        let mut d = DayTotals {
            start,
            ..DayTotals::default()
        };
        let from = self.recent.partition_point(|r| r.at < start);
        for r in self.recent[from..].iter().take_while(|r| r.at < end) {
            d.tokens.add(&r.tokens);
            d.cost_usd += r.cost_usd;
            d.messages += 1;
        }
        d
    }

    fn remember_recent(&mut self, r: RecentResponse) {
        let pos = self.recent.partition_point(|x| x.at <= r.at);
        self.recent.insert(pos, r);
        let newest = self.recent.last().map_or(r.at, |x| x.at);
        let old = self
            .recent
            .partition_point(|x| x.at < newest - RECENT_HORIZON_SECS);
        if old > 0 {
            self.recent.drain(..old);
        }
    }
}

/// All users' accounting and the dedupe keys.
#[derive(Debug, Clone)]
pub struct Ledger {
    prices: PriceTable,
    users: BTreeMap<String, UserLedger>,
    /// Response key → the file that counted it.
    keys: HashMap<u64, FileId>,
    track_days: bool,
    /// Distinct projects kept per user; `None`: projects are not tracked (label off).
    max_projects: Option<usize>,
}

/// What the ledger persists (keys are saved per file by the caller).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LedgerState {
    pub users: BTreeMap<String, UserLedger>,
    pub keys: BTreeMap<FileId, Vec<u64>>,
}

impl Ledger {
    pub fn new(prices: PriceTable) -> Self {
        Self {
            prices,
            users: BTreeMap::new(),
            keys: HashMap::new(),
            track_days: false,
            max_projects: None,
        }
    }

    /// Also counts per project, at most `max` projects per user (see the module doc).
    pub fn with_projects(mut self, max: usize) -> Self {
        self.max_projects = Some(max);
        self
    }

    /// The price table in use.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Also keeps tokens per UTC day and model (for agreement checks against ccusage).
    pub fn with_daily_totals(mut self) -> Self {
        self.track_days = true;
        self
    }

    pub fn users(&self) -> &BTreeMap<String, UserLedger> {
        &self.users
    }

    /// Number of response keys held.
    pub fn keys_held(&self) -> usize {
        self.keys.len()
    }

    /// Folds one parsed line of `file`, owned by `user`, in `project`.
    pub fn apply(&mut self, user: &str, file: FileId, project: &str, line: &Line<'_>) {
        let u = match self.users.get_mut(user) {
            Some(u) => u,
            None => self.users.entry(user.to_string()).or_default(),
        };
        if let Some(ts) = line.timestamp {
            if u.last_activity.is_none_or(|t| ts > t) {
                u.last_activity = Some(ts);
            }
            if let Some(sid) = &line.session_id {
                let last = u.sessions.entry(session_key(sid)).or_insert(ts);
                if ts > *last {
                    *last = ts;
                }
            }
        }
        let r = match &line.event {
            Event::Response(r) => r,
            Event::Prompt => {
                u.prompts += 1;
                return;
            }
            Event::Other => return,
        };
        if r.api_error {
            u.api_errors += 1;
            return;
        }
        let first = match r.dedupe_key {
            None => true,
            Some(k) => match self.keys.entry(k) {
                Entry::Vacant(v) => {
                    v.insert(file);
                    true
                }
                // Another content block of a response this file counted: tools only.
                Entry::Occupied(o) if *o.get() == file => false,
                // Replayed from another file: already counted there.
                Entry::Occupied(_) => return,
            },
        };
        for tool in &r.tool_uses {
            match u.tools.get_mut(tool.as_ref()) {
                Some(n) => *n += 1,
                None => {
                    u.tools.insert(tool.to_string(), 1);
                }
            }
        }
        if !first {
            return;
        }
        let m = match u.models.get_mut(r.model.as_ref()) {
            Some(m) => m,
            None => u.models.entry(r.model.to_string()).or_default(),
        };
        m.tokens.add(&r.tokens);
        m.messages += 1;
        let cost = match r.cost_usd {
            Some(c) => Some(c),
            None => self.prices.cost(&r.model, &r.tokens),
        };
        match cost {
            Some(c) => m.cost_usd += c,
            None => m.unpriced_messages += 1,
        }
        if let Some(max) = self.max_projects {
            let key = if u.projects.contains_key(project) || u.projects.len() < max {
                project
            } else {
                u.project_overflow += 1;
                OTHER_PROJECT
            };
            let p = match u.projects.get_mut(key) {
                Some(p) => p,
                None => u.projects.entry(key.to_string()).or_default(),
            };
            p.tokens.add(&r.tokens);
            p.cost_usd += cost.unwrap_or(0.0);
            p.messages += 1;
        }
        let at = line.timestamp.unwrap_or(0.0);
        if self.track_days {
            let day = (at / 86400.0).floor() as i64;
            u.days
                .entry((day, r.model.to_string()))
                .or_default()
                .add(&r.tokens);
        }
        u.remember_recent(RecentResponse {
            at,
            tokens: r.tokens,
            cost_usd: cost.unwrap_or(0.0),
        });
    }

    /// Forgets the keys counted by `file` (it was deleted). Totals stay.
    pub fn forget_file(&mut self, file: FileId) {
        self.keys.retain(|_, f| *f != file);
    }

    /// Forgets the keys of every file not in `live`.
    pub fn retain_files(&mut self, live: impl Fn(FileId) -> bool) {
        self.keys.retain(|_, f| live(*f));
    }

    /// The persisted form.
    pub fn export(&self) -> LedgerState {
        let mut keys: BTreeMap<FileId, Vec<u64>> = BTreeMap::new();
        for (k, f) in &self.keys {
            keys.entry(*f).or_default().push(*k);
        }
        LedgerState {
            users: self.users.clone(),
            keys,
        }
    }

    /// Restores a persisted state.
    pub fn restore(&mut self, state: LedgerState) {
        self.users = state.users;
        self.keys = state
            .keys
            .into_iter()
            .flat_map(|(f, ks)| ks.into_iter().map(move |k| (k, f)))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcripts::line::parse;

    fn assistant(msg: &str, req: Option<&str>, model: &str, block: &str, ts: &str) -> String {
        let req = req.map_or(String::new(), |r| format!(r#""requestId":"{r}","#));
        format!(
            r#"{{"type":"assistant","sessionId":"s1",{req}"timestamp":"{ts}","message":{{"id":"{msg}","model":"{model}","content":[{block}],"usage":{{"input_tokens":10,"output_tokens":100,"cache_creation_input_tokens":1000,"cache_read_input_tokens":10000}}}}}}"#
        )
    }

    const TEXT: &str = r#"{"type":"text","text":"hi"}"#;
    const BASH: &str = r#"{"type":"tool_use","id":"t","name":"Bash","input":{}}"#;
    const READ: &str = r#"{"type":"tool_use","id":"t","name":"Read","input":{}}"#;
    const T0: &str = "2026-08-01T10:00:00.000Z";

    fn feed(l: &mut Ledger, user: &str, file: FileId, lines: &[String]) {
        for line in lines {
            l.apply(user, file, "-proj", &parse(line.as_bytes()).unwrap());
        }
    }

    fn totals<'a>(l: &'a Ledger, user: &str, model: &str) -> &'a ModelTotals {
        &l.users()[user].models[model]
    }

    /// Table of line sequences and what must be counted.
    #[test]
    fn dedupe_table() {
        let m = "claude-opus-4-8";
        struct Case {
            name: &'static str,
            files: Vec<(FileId, Vec<String>)>,
            messages: u64,
            tools: &'static [(&'static str, u64)],
        }
        let cases = vec![
            Case {
                name: "one response written as three content-block lines",
                files: vec![(
                    1,
                    vec![
                        assistant("m1", Some("r1"), m, TEXT, T0),
                        assistant("m1", Some("r1"), m, BASH, T0),
                        assistant("m1", Some("r1"), m, READ, T0),
                    ],
                )],
                messages: 1,
                tools: &[("Bash", 1), ("Read", 1)],
            },
            Case {
                name: "a subagent file repeating its parent's response is not counted twice",
                files: vec![
                    (1, vec![assistant("m1", Some("r1"), m, BASH, T0)]),
                    (2, vec![assistant("m1", Some("r1"), m, BASH, T0)]),
                ],
                messages: 1,
                tools: &[("Bash", 1)],
            },
            Case {
                name: "same message id, other request: two responses",
                files: vec![(
                    1,
                    vec![
                        assistant("m1", Some("r1"), m, TEXT, T0),
                        assistant("m1", Some("r2"), m, TEXT, T0),
                    ],
                )],
                messages: 2,
                tools: &[],
            },
            Case {
                name: "no request id: no key, every line counts (as ccusage)",
                files: vec![(
                    1,
                    vec![
                        assistant("m1", None, m, TEXT, T0),
                        assistant("m1", None, m, TEXT, T0),
                    ],
                )],
                messages: 2,
                tools: &[],
            },
        ];
        for c in cases {
            let mut l = Ledger::new(PriceTable::default());
            for (f, lines) in &c.files {
                feed(&mut l, "alice", *f, lines);
            }
            let t = totals(&l, "alice", m);
            assert_eq!(t.messages, c.messages, "{}", c.name);
            assert_eq!(t.tokens.output, 100 * c.messages, "{}", c.name);
            let tools: Vec<(&str, u64)> = l.users()["alice"]
                .tools
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect();
            assert_eq!(tools, c.tools, "{}", c.name);
        }
    }

    #[test]
    fn cost_is_priced_or_flagged_never_silently_zero() {
        let mut l = Ledger::new(PriceTable::default());
        feed(
            &mut l,
            "bob",
            1,
            &[
                assistant("m1", Some("r1"), "claude-opus-4-8", TEXT, T0),
                assistant("m2", Some("r2"), "claude-fable-9", TEXT, T0),
            ],
        );
        let opus = totals(&l, "bob", "claude-opus-4-8");
        // 10·5 + 100·25 + 1000·6.25 + 10000·0.5 per million
        assert!((opus.cost_usd - 0.0138).abs() < 1e-12, "{}", opus.cost_usd);
        assert_eq!(opus.unpriced_messages, 0);
        let fable = totals(&l, "bob", "claude-fable-9");
        assert_eq!(fable.tokens.input, 10);
        assert_eq!(fable.unpriced_messages, 1);
        assert_eq!(fable.cost_usd, 0.0);
    }

    #[test]
    fn cost_usd_on_old_lines_is_used_as_is() {
        let line = assistant("m1", Some("r1"), "claude-fable-9", TEXT, T0).replacen(
            "{",
            r#"{"costUSD":0.25,"#,
            1,
        );
        let mut l = Ledger::new(PriceTable::default());
        feed(&mut l, "bob", 1, &[line]);
        let t = totals(&l, "bob", "claude-fable-9");
        assert_eq!((t.cost_usd, t.unpriced_messages), (0.25, 0));
    }

    #[test]
    fn synthetic_errors_prompts_sessions_activity() {
        let mut l = Ledger::new(PriceTable::default());
        let lines = vec![
            r#"{"type":"user","sessionId":"s1","timestamp":"2026-08-01T10:00:00.000Z","message":{"role":"user","content":"hi"}}"#.to_string(),
            r#"{"type":"assistant","sessionId":"s1","timestamp":"2026-08-01T10:00:01.000Z","isApiErrorMessage":true,"message":{"id":"e","model":"<synthetic>","content":[],"usage":{"input_tokens":0,"output_tokens":0}}}"#.to_string(),
            r#"{"type":"user","sessionId":"s2","timestamp":"2026-08-01T11:00:00.000Z","message":{"role":"user","content":"again"}}"#.to_string(),
        ];
        feed(&mut l, "carol", 1, &lines);
        let u = &l.users()["carol"];
        assert_eq!(u.prompts, 2);
        assert_eq!(u.api_errors, 1);
        assert!(u.models.is_empty(), "<synthetic> is not a model");
        assert_eq!(u.sessions.len(), 2);
        let t11 = parse_ts("2026-08-01T11:00:00.000Z");
        assert_eq!(u.last_activity, Some(t11));
        assert_eq!(u.active_sessions(t11 + 60.0, 300.0), 1);
        assert_eq!(u.active_sessions(t11 + 3600.0, 300.0), 0);
    }

    fn parse_ts(s: &str) -> f64 {
        crate::transcripts::line::parse_timestamp(s).unwrap()
    }

    #[test]
    fn billing_blocks_follow_ccusage() {
        let mut l = Ledger::new(PriceTable::default());
        let at = |h: u32, m: u32| format!("2026-08-01T{h:02}:{m:02}:00.000Z");
        let lines: Vec<String> = [
            (1, 30), // old block 01:00-06:00
            (2, 0),
            (9, 15), // gap > 5 h: new block 09:00-14:00
            (13, 59),
            (14, 30), // past the block's end: new block 14:00-19:00
        ]
        .iter()
        .enumerate()
        .map(|(i, (h, m))| {
            assistant(
                &format!("m{i}"),
                Some("r"),
                "claude-opus-4-8",
                TEXT,
                &at(*h, *m),
            )
        })
        .collect();
        feed(&mut l, "dave", 1, &lines);
        let u = &l.users()["dave"];
        let now = parse_ts(&at(15, 0));
        let b = u.current_block(now).expect("a block is active");
        assert_eq!(b.start, parse_ts(&at(14, 0)));
        assert_eq!(b.end, parse_ts(&at(19, 0)));
        assert_eq!(b.tokens.output, 100);
        assert!(u.current_block(parse_ts(&at(19, 0))).is_none(), "ended");
        // Out-of-order arrival (a cold scan of many files) gives the same block.
        let mut l2 = Ledger::new(PriceTable::default());
        let mut rev = lines.clone();
        rev.reverse();
        feed(&mut l2, "dave", 1, &rev);
        assert_eq!(l2.users()["dave"].current_block(now), Some(b));
    }

    #[test]
    fn deleted_files_keep_totals_and_free_keys() {
        let mut l = Ledger::new(PriceTable::default());
        feed(
            &mut l,
            "eve",
            7,
            &[assistant("m1", Some("r1"), "claude-opus-4-8", TEXT, T0)],
        );
        assert_eq!(l.keys_held(), 1);
        l.forget_file(7);
        assert_eq!(l.keys_held(), 0);
        assert_eq!(totals(&l, "eve", "claude-opus-4-8").messages, 1);
    }

    #[test]
    fn export_restore_round_trips() {
        let mut l = Ledger::new(PriceTable::default());
        feed(
            &mut l,
            "eve",
            3,
            &[assistant("m1", Some("r1"), "claude-opus-4-8", BASH, T0)],
        );
        let json = serde_json::to_string(&l.export()).unwrap();
        let mut back = Ledger::new(PriceTable::default());
        back.restore(serde_json::from_str(&json).unwrap());
        // The next block of the same response, after a restart: tool counted, usage not.
        feed(
            &mut back,
            "eve",
            3,
            &[assistant("m1", Some("r1"), "claude-opus-4-8", READ, T0)],
        );
        let u = &back.users()["eve"];
        assert_eq!(u.models["claude-opus-4-8"].messages, 1);
        assert_eq!(u.tools.len(), 2);
    }
}
