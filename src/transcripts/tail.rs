//! The transcript tailer: finds Claude homes, watches them, reads new complete lines from
//! every `projects/**/*.jsonl`, feeds the [`Ledger`], publishes [`TranscriptTotals`] to the
//! model and persists its state.
//!
//! - Homes come from the config's globs (default `/root/.claude`, `/home/*/.claude` and the
//!   `.config/claude` equivalents), re-evaluated when a watched ancestor changes and at every
//!   reconcile; the `user` label is the home's owner (uid → name from the passwd database).
//! - notify (inotify) watches each home's `projects` recursively, the home itself (so a
//!   `projects` directory created later is seen) and the homes' ancestors (so a new user's
//!   home is seen). A directory that appears is scanned at once, so files written before its
//!   watch landed are not missed; a periodic reconcile scan covers queue overflows and watch
//!   limits.
//! - Reads start at the file's offset and stop at the last newline: a partial last line waits
//!   for its end. A line over the size cap is skipped up to its newline. A file whose identity
//!   changed (inode, or the hash of its first KiB) or that shrank is read again from the start
//!   under a new id; the dedupe keys keep it from counting responses twice. A deleted file's
//!   keys are dropped; totals never go down.
//!
//! Runs on its own thread (file reads and a backfill are blocking, CPU-bound work); the tokio
//! task that [`spawn`] adds only holds a guard that stops the thread, waiting for its final
//! save, when the source is aborted (shutdown or reload).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::task::JoinSet;

use super::error::TranscriptError;
use super::ledger::{FileId, Ledger};
use super::line::{self, Line, SkipReason};
use super::persist::{self, FileRecord, SavedState};
use super::prices::PriceTable;
use super::state::{TailStats, TranscriptTotals, UserTotals};
use crate::common::{Source, unix_now};
use crate::config::Settings;
use crate::model::Update;
use crate::sink::UpdateSink;

/// Bytes read from a file at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// How long a tailer waits quietly for the state lock (a reload's old tailer saving).
const LOCK_PATIENCE: Duration = Duration::from_secs(5);
/// Bytes at the start of a file whose hash tells a replaced file from an appended one.
const PREFIX_BYTES: usize = 1024;
/// How often time-dependent figures (active sessions, blocks) are republished when idle, and
/// how often a long backfill publishes its progress.
const PUBLISH_TICK: Duration = Duration::from_secs(1);
/// notify emits a new directory's event before its watch lands: files written in between
/// are found by scanning the directory (and re-evaluating the homes) again after these delays.
const RESCAN_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(2)];
/// Reader threads of a large read (the first read of a history), at most.
const MAX_READERS: usize = 8;
/// Below this many new bytes, files are read one after the other on the tailer's thread.
const PARALLEL_MIN_BYTES: u64 = 8 << 20;
/// Parsed chunks per reader that may wait for the ledger.
const PARSED_CHUNKS_QUEUED: usize = 2;
/// How long stopping the source waits for the tailer's final save.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// What the tailer needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TailSettings {
    /// Home globs, e.g. `/home/*/.claude`.
    pub homes: Vec<String>,
    pub state_dir: PathBuf,
    pub max_line_bytes: usize,
    pub reconcile_interval: Duration,
    pub save_interval: Duration,
    /// A session is active when it wrote a line this recently.
    pub active_window: Duration,
    /// The prices: the embedded table, `claude.prices_file` and `claude.prices` on top.
    pub prices: PriceTable,
    /// Distinct projects counted per user (`claude.max_projects`); `None`: the project label
    /// is off (`claude.project_label = false`).
    pub max_projects: Option<usize>,
    /// The time zone of "today" (`otlp.time_zone`, shared with the telemetry).
    pub time_zone: jiff::tz::TimeZone,
    /// Reader threads of a large read (the first read of a history); 1 reads on the
    /// tailer's thread only.
    pub readers: usize,
}

impl TailSettings {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            homes: s.claude.homes.clone(),
            state_dir: s.state_dir.clone(),
            max_line_bytes: s.claude.max_line_bytes,
            reconcile_interval: s.claude.reconcile_interval,
            save_interval: s.claude.save_interval,
            active_window: s.claude.active_window,
            prices: s.claude.price_table(),
            max_projects: s.claude.project_label.then_some(s.claude.max_projects),
            time_zone: s.otlp.zone(),
            readers: default_readers(),
        }
    }

    /// Settings for a scan of `homes` (tools, tests, benchmarks): the defaults of the
    /// config, the state in `state_dir`, the UTC day.
    pub fn for_homes(homes: Vec<String>, state_dir: &Path) -> Self {
        Self {
            homes,
            state_dir: state_dir.to_owned(),
            max_line_bytes: 8 << 20,
            reconcile_interval: Duration::from_secs(3600),
            save_interval: Duration::from_secs(3600),
            active_window: Duration::from_secs(300),
            prices: PriceTable::default(),
            max_projects: Some(super::settings::DEFAULT_MAX_PROJECTS),
            time_zone: jiff::tz::TimeZone::UTC,
            readers: default_readers(),
        }
    }
}

/// One reader per core, at most [`MAX_READERS`].
pub fn default_readers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_READERS)
}

/// Messages to the tailer thread.
pub enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// The tailer's state. Usable synchronously (`scan`, `totals`) for `check`, tests and the
/// benchmark; [`TranscriptTail::run`] is the live loop.
pub struct TranscriptTail {
    settings: TailSettings,
    ledger: Ledger,
    files: HashMap<PathBuf, FileRecord>,
    next_file_id: FileId,
    /// Home directory → user label.
    homes: BTreeMap<PathBuf, String>,
    stats: TailStats,
    buf: Vec<u8>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    sink: Option<UpdateSink>,
    /// Lines counted or files forgotten since the last publish / save.
    changed: bool,
    unsaved: bool,
    rediscover: bool,
    /// Directories to scan again (None: re-evaluate the homes), and when.
    rescans: Vec<(Instant, Option<PathBuf>)>,
    last_publish: Instant,
    _lock: Option<File>,
}

impl TranscriptTail {
    /// A tailer with no persisted state and no watcher (scans only).
    pub fn new(settings: TailSettings) -> Self {
        let mut ledger = Ledger::new(settings.prices.clone());
        if let Some(max) = settings.max_projects {
            ledger = ledger.with_projects(max);
        }
        Self {
            settings,
            ledger,
            files: HashMap::new(),
            next_file_id: 1,
            homes: BTreeMap::new(),
            stats: TailStats::default(),
            buf: Vec::new(),
            watcher: None,
            watched: HashSet::new(),
            sink: None,
            changed: false,
            unsaved: false,
            rediscover: false,
            rescans: Vec::new(),
            last_publish: Instant::now(),
            _lock: None,
        }
    }

    /// Also keeps tokens per UTC day and model (agreement checks).
    pub fn with_daily_totals(mut self) -> Self {
        self.ledger = self.ledger.with_daily_totals();
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn stats(&self) -> &TailStats {
        &self.stats
    }

    /// Takes the state directory's lock (one tailer per state directory: a reload's new
    /// tailer waits for the old one's final save) and restores the saved state.
    pub fn open_state(&mut self) -> Result<(), TranscriptError> {
        let dir = &self.settings.state_dir;
        let lock_err = |source| TranscriptError::StateDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(lock_err)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("claude-transcripts.lock"))
            .map_err(lock_err)?;
        // On a reload the old tailer holds the lock until its final save, a moment: wait
        // quietly. Held for longer, it is most likely another agent on the same state_dir.
        let try_lock =
            || rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        let quiet_until = Instant::now() + LOCK_PATIENCE;
        let mut locked = try_lock().is_ok();
        while !locked && Instant::now() < quiet_until {
            std::thread::sleep(Duration::from_millis(10));
            locked = try_lock().is_ok();
        }
        if !locked {
            tracing::warn!(
                dir = %dir.display(),
                "transcript state is still locked after {}s; waiting. Is another vibe-agent \
                 using this agent.state_dir? Give each agent its own",
                LOCK_PATIENCE.as_secs()
            );
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| lock_err(e.into()))?;
        }
        self._lock = Some(lock);
        match persist::load(&persist::path_in(dir)) {
            Ok(Some(s)) => self.restore(s),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "transcript state not restored; reading all transcripts again")
            }
        }
        Ok(())
    }

    fn restore(&mut self, s: SavedState) {
        self.next_file_id = s.next_file_id.max(1);
        self.files = s.files.into_iter().map(|r| (r.path.clone(), r)).collect();
        self.ledger.restore(s.ledger);
    }

    /// Saves offsets, keys and totals atomically.
    pub fn save(&mut self) -> Result<(), TranscriptError> {
        let s = self.saved_state();
        persist::save(&persist::path_in(&self.settings.state_dir), &s)?;
        self.unsaved = false;
        Ok(())
    }

    /// A consistent copy of offsets, keys and totals (taken between two lines, never in
    /// the middle of a file's read).
    fn saved_state(&self) -> SavedState {
        SavedState {
            version: persist::VERSION,
            next_file_id: self.next_file_id,
            files: self.files.values().cloned().collect(),
            ledger: self.ledger.export(),
        }
    }

    /// The figures to publish, as of `now`.
    pub fn totals(&self, now: f64) -> TranscriptTotals {
        let window = self.settings.active_window.as_secs_f64();
        let (day_start, day_end) = local_day(now, &self.settings.time_zone);
        let users = self
            .ledger
            .users()
            .iter()
            .map(|(name, u)| {
                let t = UserTotals {
                    models: u.models.clone(),
                    tools: u.tools.clone(),
                    prompts: u.prompts,
                    api_errors: u.api_errors,
                    sessions_total: u.sessions.len() as u64,
                    active_sessions: u.active_sessions(now, window),
                    last_activity: u.last_activity,
                    block: u.current_block(now),
                    projects: u.projects.clone(),
                    project_overflow: u.project_overflow,
                    today: u.day_totals(day_start, day_end),
                };
                (name.clone(), t)
            })
            .collect();
        let mut tail = self.stats.clone();
        tail.files_watched = self.files.len() as u64;
        tail.homes = self.homes.len() as u64;
        tail.dedupe_keys = self.ledger.keys_held() as u64;
        TranscriptTotals {
            at: now,
            users,
            tail,
        }
    }

    fn publish(&mut self) {
        self.last_publish = Instant::now();
        self.changed = false;
        if let Some(sink) = &self.sink {
            sink.send(Update::ClaudeTranscripts(Arc::new(self.totals(unix_now()))));
        }
    }

    // ---------------------------------------------------------------------------------
    // Homes and watches
    // ---------------------------------------------------------------------------------

    /// Evaluates the home globs; new homes are watched and scanned.
    pub fn discover(&mut self) {
        self.rediscover = false;
        let patterns = self.settings.homes.clone();
        for pattern in &patterns {
            self.watch_ancestors(pattern);
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for home in paths.flatten() {
                if !home.is_dir() {
                    continue;
                }
                self.watch(&home, RecursiveMode::NonRecursive);
                // The owner is read again each time: a home made by root and then given to
                // its user (useradd, chown) takes the user's name from then on.
                let user = owner_name(&home);
                if self.homes.get(&home) != Some(&user) {
                    tracing::info!(home = %home.display(), %user, "watching Claude transcripts");
                    self.homes.insert(home.clone(), user);
                }
                let projects = home.join("projects");
                if projects.is_dir() && !self.watched.contains(&projects) {
                    self.watch(&projects, RecursiveMode::Recursive);
                    self.scan_dir(&projects);
                }
            }
        }
    }

    /// Watches the existing ancestors of a home pattern up to its first literal directory,
    /// so a home (or its user's directory) created later is noticed at once.
    fn watch_ancestors(&mut self, pattern: &str) {
        if self.watcher.is_none() {
            return;
        }
        let mut p = Path::new(pattern).parent();
        while let Some(dir) = p {
            if dir.as_os_str().is_empty() || dir == Path::new("/") {
                break;
            }
            let s = dir.to_string_lossy();
            let literal = !s.contains(['*', '?', '[']);
            if let Ok(paths) = glob::glob(&s) {
                for d in paths.flatten() {
                    if d.is_dir() {
                        self.watch(&d, RecursiveMode::NonRecursive);
                    }
                }
            }
            if literal {
                break;
            }
            p = dir.parent();
        }
    }

    fn watch(&mut self, dir: &Path, mode: RecursiveMode) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        if self.watched.contains(dir) {
            return;
        }
        match w.watch(dir, mode) {
            Ok(()) => {
                self.watched.insert(dir.to_owned());
            }
            Err(e) => {
                self.stats.watch_errors += 1;
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; the reconcile scan covers it");
            }
        }
    }

    /// The project of a transcript, as ccusage names it: the directory under its home's
    /// `projects/` (Claude Code's encoded working directory), subagent files included.
    fn project_of(&self, path: &Path) -> String {
        self.homes
            .keys()
            .find_map(|home| path.strip_prefix(home.join("projects")).ok())
            .and_then(|rel| {
                let mut c = rel.components();
                let first = c.next()?;
                // A file directly in `projects/` has no project directory.
                c.next()?;
                Some(first.as_os_str().to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// The home (and user) whose `projects` holds `path`.
    fn user_of(&self, path: &Path) -> Option<String> {
        self.homes
            .iter()
            .find(|(home, _)| path.starts_with(home.join("projects")))
            .map(|(_, u)| u.clone())
    }

    // ---------------------------------------------------------------------------------
    // Scans
    // ---------------------------------------------------------------------------------

    /// Discovers homes and reads every transcript's new lines; forgets deleted files. The
    /// cold scan at start and the periodic reconcile.
    pub fn reconcile(&mut self) {
        self.discover();
        let homes: Vec<PathBuf> = self.homes.keys().cloned().collect();
        let mut seen = HashSet::new();
        let mut grown = Vec::new();
        for home in &homes {
            if !home.is_dir() {
                continue;
            }
            let projects = home.join("projects");
            if projects.is_dir() && !self.watched.contains(&projects) {
                self.watch(&projects, RecursiveMode::Recursive);
            }
            for path in jsonl_files(&projects) {
                if !self.unchanged(&path) {
                    grown.push(path.clone());
                }
                seen.insert(path);
            }
        }
        self.read_many(grown);
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect();
        self.forget_paths(&gone);
        self.homes.retain(|h, _| h.is_dir());
    }

    /// Reads every transcript under `dir` (a directory that just appeared).
    fn scan_dir(&mut self, dir: &Path) {
        for path in jsonl_files(dir) {
            self.read_if_grown(&path);
        }
    }

    /// Reads `path` unless a stat shows it unchanged since the last read.
    fn read_if_grown(&mut self, path: &Path) {
        if !self.unchanged(path) {
            self.read_path(path);
        }
    }

    /// A stat shows `path` as it was at the last read.
    fn unchanged(&self, path: &Path) -> bool {
        matches!(
            (self.files.get(path), std::fs::metadata(path)),
            (Some(rec), Ok(m)) if rec.dev == m.dev() && rec.ino == m.ino() && rec.offset == m.len()
        )
    }

    fn forget_paths(&mut self, paths: &[PathBuf]) {
        let mut ids = HashSet::new();
        for p in paths {
            if let Some(rec) = self.files.remove(p) {
                ids.insert(rec.id);
                ids.extend(rec.retired);
            }
        }
        if !ids.is_empty() {
            self.ledger.retain_files(|f| !ids.contains(&f));
            self.changed = true;
            self.unsaved = true;
        }
    }

    // ---------------------------------------------------------------------------------
    // Reading
    // ---------------------------------------------------------------------------------

    /// Reads the new complete lines of one transcript.
    pub fn read_path(&mut self, path: &Path) {
        let Some((file, mut rec, grown)) = self.prepare_read(path) else {
            return;
        };
        if grown {
            self.read_lines(file, &mut rec);
        }
        self.files.insert(path.to_owned(), rec);
    }

    /// Opens a transcript and settles its record (new, the same file grown, or a replaced
    /// one read again from the start): the part of a read that needs the tailer's state.
    /// Returns the open file, its record (taken out of `files`; the caller puts it back)
    /// and whether there is anything new to read.
    fn prepare_read(&mut self, path: &Path) -> Option<(File, FileRecord, bool)> {
        let user = self.user_of(path)?;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget_paths(&[path.to_owned()]);
                return None;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open transcript");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let mut prefix = [0u8; PREFIX_BYTES];
        let want = (meta.len() as usize).min(PREFIX_BYTES);
        let got = read_prefix(&file, &mut prefix[..want]);
        let prefix = &prefix[..got];

        let mut rec = match self.files.remove(path) {
            Some(rec) => rec,
            None => {
                let id = self.next_id();
                FileRecord {
                    path: path.to_owned(),
                    id,
                    retired: Vec::new(),
                    user: user.clone(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                    offset: 0,
                    prefix_len: 0,
                    prefix_hash: 0,
                    skipping: false,
                }
            }
        };
        let same_identity = rec.dev == meta.dev()
            && rec.ino == meta.ino()
            && meta.len() >= rec.offset
            && (prefix.len() as u32) >= rec.prefix_len
            && xxhash_rust::xxh3::xxh3_64(&prefix[..rec.prefix_len as usize]) == rec.prefix_hash;
        if !same_identity {
            // Replaced, truncated or rewritten: read it again as a new file. Its old keys
            // stay (under the retired id) so replayed responses are not counted twice.
            tracing::debug!(path = %path.display(), "transcript replaced or truncated; reading it again");
            let new_id = self.next_id();
            let old = std::mem::replace(&mut rec.id, new_id);
            rec.retired.push(old);
            rec.dev = meta.dev();
            rec.ino = meta.ino();
            rec.offset = 0;
            rec.skipping = false;
        }
        rec.prefix_len = prefix.len() as u32;
        rec.prefix_hash = xxhash_rust::xxh3::xxh3_64(prefix);
        rec.user = user;
        let grown = meta.len() > rec.offset;
        Some((file, rec, grown))
    }

    /// Reads the new lines of `paths`, several files at once on every core when there is
    /// much to read (the first read of a history): reader threads read and parse whole
    /// files, this thread alone applies what they parsed to the ledger, in each file's
    /// order. Memory stays bounded: each reader holds one chunk buffer, and at most
    /// [`PARSED_CHUNKS_QUEUED`] parsed chunks per reader wait for the ledger.
    ///
    /// Files are applied in the order their chunks arrive, not in path order: totals are
    /// the same (each response counts once whichever file comes first), only which file
    /// "owns" a response replayed into another may differ, which changes nothing counted.
    fn read_many(&mut self, paths: Vec<PathBuf>) {
        let readers = self.settings.readers.clamp(1, MAX_READERS);
        let pending: u64 = paths
            .iter()
            .filter_map(|p| {
                let len = std::fs::metadata(p).ok()?.len();
                Some(len.saturating_sub(self.files.get(p).map_or(0, |r| r.offset)))
            })
            .sum();
        if readers < 2 || paths.len() < 2 || pending < PARALLEL_MIN_BYTES {
            for p in &paths {
                self.read_path(p);
            }
            return;
        }
        let cap = self.settings.max_line_bytes;
        std::thread::scope(|scope| {
            let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<ReadJob>(readers);
            let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
            let (out_tx, out_rx) =
                std::sync::mpsc::sync_channel::<Parsed>(readers * PARSED_CHUNKS_QUEUED);
            for _ in 0..readers {
                let (jobs, out) = (job_rx.clone(), out_tx.clone());
                scope.spawn(move || parse_files(&jobs, &out, cap));
            }
            drop(out_tx);
            let mut inflight: HashMap<usize, (FileRecord, String)> = HashMap::new();
            for (slot, path) in paths.into_iter().enumerate() {
                let Some((file, rec, grown)) = self.prepare_read(&path) else {
                    continue;
                };
                if !grown {
                    self.files.insert(path, rec);
                    continue;
                }
                let mut job = ReadJob {
                    slot,
                    file,
                    path,
                    offset: rec.offset,
                    skipping: rec.skipping,
                };
                let project = self.project_of(&rec.path);
                inflight.insert(slot, (rec, project));
                loop {
                    while let Ok(p) = out_rx.try_recv() {
                        self.apply_parsed(p, &mut inflight);
                    }
                    match job_tx.try_send(job) {
                        Ok(()) => break,
                        Err(std::sync::mpsc::TrySendError::Full(j)) => {
                            job = j;
                            // Every reader is busy: apply what they parsed meanwhile.
                            match out_rx.recv() {
                                Ok(p) => self.apply_parsed(p, &mut inflight),
                                Err(_) => break,
                            }
                        }
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
                    }
                }
            }
            drop(job_tx);
            while let Ok(p) = out_rx.recv() {
                self.apply_parsed(p, &mut inflight);
            }
            // A reader that died leaves its file's record as far as it was applied.
            for (_, (rec, _)) in inflight.drain() {
                self.files.insert(rec.path.clone(), rec);
            }
        });
    }

    /// Applies one parsed chunk (or the end of a file) from a reader.
    fn apply_parsed(&mut self, p: Parsed, inflight: &mut HashMap<usize, (FileRecord, String)>) {
        match p {
            Parsed::Chunk {
                slot,
                lines,
                bytes,
                offset,
                skipping,
            } => {
                let Some((rec, project)) = inflight.get_mut(&slot) else {
                    return;
                };
                for l in lines {
                    match l {
                        Ok(l) => {
                            self.stats.lines_read += 1;
                            self.ledger.apply(&rec.user, rec.id, project, &l);
                        }
                        Err(reason) => self.skip(reason),
                    }
                }
                self.stats.bytes_read += bytes;
                rec.offset = offset;
                rec.skipping = skipping;
                self.changed = true;
                self.unsaved = true;
                if self.sink.is_some() && self.last_publish.elapsed() >= PUBLISH_TICK {
                    self.publish();
                }
            }
            Parsed::End { slot } => {
                if let Some((rec, _)) = inflight.remove(&slot) {
                    self.files.insert(rec.path.clone(), rec);
                }
            }
        }
    }

    fn next_id(&mut self) -> FileId {
        let id = self.next_file_id;
        self.next_file_id += 1;
        id
    }

    fn read_lines(&mut self, mut file: File, rec: &mut FileRecord) {
        let cap = self.settings.max_line_bytes;
        let project = self.project_of(&rec.path);
        let mut buf = std::mem::take(&mut self.buf);
        let (user, id) = (rec.user.clone(), rec.id);
        let mut skipping = rec.skipping;
        let offset = read_complete_lines(
            &mut file,
            &rec.path,
            rec.offset,
            &mut skipping,
            cap,
            &mut buf,
            |item| match item {
                Item::Line(line) => self.count_line(&user, id, &project, line),
                Item::TooLong => self.skip(SkipReason::TooLong),
                Item::Chunk { bytes, .. } => {
                    self.stats.bytes_read += bytes;
                    if self.sink.is_some() && self.last_publish.elapsed() >= PUBLISH_TICK {
                        self.publish();
                    }
                }
            },
        );
        self.buf = buf;
        rec.skipping = skipping;
        if let Some(offset) = offset {
            rec.offset = offset;
        }
    }

    fn skip(&mut self, reason: SkipReason) {
        self.stats.lines_read += 1;
        *self.stats.lines_skipped.entry(reason.label()).or_default() += 1;
    }

    fn count_line(&mut self, user: &str, file: FileId, project: &str, bytes: &[u8]) {
        self.changed = true;
        self.unsaved = true;
        match line::parse(bytes) {
            Ok(l) => {
                self.stats.lines_read += 1;
                self.ledger.apply(user, file, project, &l);
            }
            Err(reason) => self.skip(reason),
        }
    }

    // ---------------------------------------------------------------------------------
    // Events and the live loop
    // ---------------------------------------------------------------------------------

    fn on_event(&mut self, ev: notify::Event) {
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            // Opens and closes, our own reads and scans included: reacting to them would
            // feed back into more of them. Data arrives as Modify events.
            return;
        }
        if ev.need_rescan() {
            self.stats.watch_errors += 1;
            self.reconcile();
            return;
        }
        for path in ev.paths {
            if self.user_of(&path).is_none() {
                // A home's ancestor or a home changed.
                self.rediscover = true;
                self.schedule_rescan(None);
                continue;
            }
            if path.extension().is_some_and(|e| e == "jsonl") {
                if path.exists() {
                    self.read_path(&path);
                } else {
                    self.forget_paths(&[path]);
                }
            } else if path.is_dir() {
                if self.homes.keys().any(|h| {
                    let projects = h.join("projects");
                    path.starts_with(&projects) && !self.watched.contains(&projects)
                }) {
                    // `projects` itself appeared: discovery watches it recursively and scans.
                    self.rediscover = true;
                } else {
                    self.scan_dir(&path);
                }
                self.schedule_rescan(Some(path));
            } else if !path.exists() {
                let under: Vec<PathBuf> = self
                    .files
                    .keys()
                    .filter(|p| p.starts_with(&path))
                    .cloned()
                    .collect();
                self.forget_paths(&under);
                self.watched.remove(&path);
            }
        }
    }

    fn schedule_rescan(&mut self, dir: Option<PathBuf>) {
        let now = Instant::now();
        for d in RESCAN_DELAYS {
            let at = now + d;
            if !self
                .rescans
                .iter()
                .any(|(t, p)| *p == dir && *t >= at - d / 2)
            {
                self.rescans.push((at, dir.clone()));
            }
        }
    }

    fn run_due_rescans(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rescans)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.rescans = later;
        for (_, dir) in due {
            match dir {
                Some(d) if d.is_dir() => self.scan_dir(&d),
                Some(_) => {}
                None => self.discover(),
            }
        }
    }

    /// The live loop: initial scan, then events, reconciles, saves and publishes until
    /// stopped. Saves once more before returning.
    pub fn run(mut self, rx: Receiver<Msg>) {
        self.reconcile();
        self.publish();
        let (writer, writer_thread) = spawn_writer(
            persist::path_in(&self.settings.state_dir),
            self.sink.clone(),
        );
        self.save_in_background(&writer);
        let now = Instant::now();
        let mut next_reconcile = now + self.settings.reconcile_interval;
        let mut next_save = now + self.settings.save_interval;
        loop {
            let now = Instant::now();
            let next_tick = self.last_publish + PUBLISH_TICK;
            let mut wake = next_reconcile.min(next_save).min(next_tick);
            if let Some(t) = self.rescans.iter().map(|(t, _)| *t).min() {
                wake = wake.min(t);
            }
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Msg::Fs(first)) => {
                    let mut batch = vec![first];
                    let mut stop = false;
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Msg::Fs(r) => batch.push(r),
                            Msg::Stop => stop = true,
                        }
                    }
                    for r in batch {
                        match r {
                            Ok(ev) => self.on_event(ev),
                            Err(e) => {
                                self.stats.watch_errors += 1;
                                tracing::warn!(error = %e, "transcript watch error; reconciling");
                                next_reconcile = Instant::now();
                            }
                        }
                    }
                    if self.rediscover {
                        self.discover();
                    }
                    if self.changed {
                        self.publish();
                    }
                    if stop {
                        break;
                    }
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.run_due_rescans();
            if self.changed {
                self.publish();
            }
            let now = Instant::now();
            if now >= next_reconcile {
                self.reconcile();
                next_reconcile = now + self.settings.reconcile_interval;
                if let Some(sink) = &self.sink {
                    sink.send(Update::Source {
                        source: Source::ClaudeTranscripts,
                        result: Ok(()),
                    });
                }
            }
            if now >= next_save {
                if self.unsaved {
                    self.save_in_background(&writer);
                }
                next_save = now + self.settings.save_interval;
            }
            if now >= self.last_publish + PUBLISH_TICK {
                self.publish();
            }
        }
        // The last save goes through the writer too, so it lands after the earlier ones.
        self.save_in_background(&writer);
        drop(writer);
        let _ = writer_thread.join();
        self.publish();
    }

    fn save_and_report(&mut self) {
        let result = self.save().map_err(|e| e.to_string());
        report_save(self.sink.as_ref(), result);
    }

    /// Hands a copy of the state to `writer`: serializing and fsyncing a large history
    /// (tens of milliseconds for 1 GB of transcripts) then never delays reading new lines.
    fn save_in_background(&mut self, writer: &Sender<SavedState>) {
        if writer.send(self.saved_state()).is_ok() {
            self.unsaved = false;
        } else {
            self.save_and_report();
        }
    }
}

fn report_save(sink: Option<&UpdateSink>, result: Result<(), String>) {
    if let Err(e) = &result {
        tracing::error!(error = %e, "transcript state not saved");
    }
    if let Some(sink) = sink {
        sink.send(Update::Source {
            source: Source::ClaudeTranscripts,
            result,
        });
    }
}

/// The state writer: saves the copies it receives, in order; skips to the newest when it
/// falls behind. Ends when the sender is dropped.
fn spawn_writer(
    path: PathBuf,
    sink: Option<UpdateSink>,
) -> (Sender<SavedState>, std::thread::JoinHandle<()>) {
    let (tx, rx) = channel::<SavedState>();
    let handle = std::thread::Builder::new()
        .name("vibe-tx-save".into())
        .spawn(move || {
            while let Ok(mut s) = rx.recv() {
                while let Ok(newer) = rx.try_recv() {
                    s = newer;
                }
                let result = persist::save(&path, &s).map_err(|e| e.to_string());
                report_save(sink.as_ref(), result);
            }
        })
        .expect("spawn the transcript state writer");
    (tx, handle)
}

/// A file for a reader thread of [`TranscriptTail::read_many`].
struct ReadJob {
    slot: usize,
    file: File,
    path: PathBuf,
    offset: u64,
    skipping: bool,
}

/// What a reader sends back: a chunk's parsed lines (owned, so they outlive the buffer),
/// then the end of the file.
enum Parsed {
    Chunk {
        slot: usize,
        lines: Vec<Result<Line<'static>, SkipReason>>,
        bytes: u64,
        offset: u64,
        skipping: bool,
    },
    End {
        slot: usize,
    },
}

/// A reader thread: takes files from `jobs`, reads and parses them chunk by chunk, and
/// sends the parsed chunks to `out` (blocking while the ledger is behind).
fn parse_files(
    jobs: &std::sync::Mutex<Receiver<ReadJob>>,
    out: &std::sync::mpsc::SyncSender<Parsed>,
    cap: usize,
) {
    let mut buf = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let slot = job.slot;
        let mut lines = Vec::new();
        let mut skipping = job.skipping;
        let mut gone = false;
        read_complete_lines(
            &mut job.file,
            &job.path,
            job.offset,
            &mut skipping,
            cap,
            &mut buf,
            |item| match item {
                Item::Line(l) => lines.push(line::parse(l).map(Line::into_owned)),
                Item::TooLong => lines.push(Err(SkipReason::TooLong)),
                Item::Chunk {
                    bytes,
                    offset,
                    skipping,
                } => {
                    let chunk = Parsed::Chunk {
                        slot,
                        lines: std::mem::take(&mut lines),
                        bytes,
                        offset,
                        skipping,
                    };
                    gone |= out.send(chunk).is_err();
                }
            },
        );
        if gone || out.send(Parsed::End { slot }).is_err() {
            return;
        }
    }
}

/// What [`read_complete_lines`] finds, in file order.
enum Item<'a> {
    /// A complete line (without its newline), at most the cap long.
    Line(&'a [u8]),
    /// A line longer than the cap (skipped up to its newline).
    TooLong,
    /// The end of a chunk: `bytes` were read, everything before `offset` is consumed,
    /// `skipping`: inside an over-long line.
    Chunk {
        bytes: u64,
        offset: u64,
        skipping: bool,
    },
}

/// Reads `file` from `offset` to its end in chunks, handing each complete line to `on`
/// (a partial last line waits for its newline; a line over `cap` becomes [`Item::TooLong`]
/// and `skipping` carries "inside it" across calls). Returns the new offset, or `None` when
/// the file cannot be positioned.
fn read_complete_lines(
    file: &mut File,
    path: &Path,
    offset: u64,
    skipping: &mut bool,
    cap: usize,
    buf: &mut Vec<u8>,
    mut on: impl FnMut(Item<'_>),
) -> Option<u64> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut filled = 0usize;
    let mut pos = offset;
    loop {
        if buf.len() < filled + CHUNK_BYTES {
            buf.resize(filled + CHUNK_BYTES, 0);
        }
        let n = match file.read(&mut buf[filled..filled + CHUNK_BYTES]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read transcript");
                break;
            }
        };
        filled += n;
        let mut start = 0usize;
        for nl in memchr::memchr_iter(b'\n', &buf[..filled]) {
            let line = &buf[start..nl];
            if *skipping {
                *skipping = false;
            } else if line.len() > cap {
                on(Item::TooLong);
            } else {
                on(Item::Line(line));
            }
            start = nl + 1;
        }
        pos += start as u64;
        let rest = filled - start;
        if *skipping || rest > cap {
            // Inside an over-long line: drop what is read of it, up to its newline.
            if !*skipping {
                on(Item::TooLong);
                *skipping = true;
            }
            pos += rest as u64;
            filled = 0;
        } else {
            buf.copy_within(start..filled, 0);
            filled = rest;
        }
        on(Item::Chunk {
            bytes: n as u64,
            offset: pos,
            skipping: *skipping,
        });
    }
    if buf.len() > 4 * CHUNK_BYTES {
        // A long line grew the buffer: give the memory back.
        *buf = Vec::new();
    }
    Some(pos)
}

/// The local day `now` falls in, in `tz`: its midnight and the next one, as Unix seconds.
pub fn local_day(now: f64, tz: &jiff::tz::TimeZone) -> (f64, f64) {
    let day = || -> Result<(f64, f64), jiff::Error> {
        let date = jiff::Timestamp::from_second(now.floor() as i64)?
            .to_zoned(tz.clone())
            .date();
        let start = date.to_zoned(tz.clone())?.timestamp();
        let end = date.tomorrow()?.to_zoned(tz.clone())?.timestamp();
        Ok((start.as_second() as f64, end.as_second() as f64))
    };
    day().unwrap_or_else(|_| {
        let start = (now / 86400.0).floor() * 86400.0;
        (start, start + 86400.0)
    })
}

fn read_prefix(file: &File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// Every `*.jsonl` under `dir` (session files and `subagents/agent-*.jsonl`).
fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(walkdir::DirEntry::into_path)
        .collect();
    out.sort();
    out
}

/// The owner of a home, by name (the uid when the passwd database has no entry).
pub fn owner_name(home: &Path) -> String {
    let Ok(m) = std::fs::metadata(home) else {
        return "unknown".into();
    };
    match uzers::get_user_by_uid(m.uid()) {
        Some(u) => u.name().to_string_lossy().into_owned(),
        None => m.uid().to_string(),
    }
}

/// Stops the tailer thread when the source task is aborted, and waits (bounded) for its
/// final save, so a reload's new tailer starts from the saved state.
struct StopOnDrop {
    tx: Sender<Msg>,
    done: Option<Receiver<()>>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(STOP_WAIT);
        }
    }
}

/// Starts the transcript source: a tailer thread, and a task whose abort stops it.
pub fn spawn(settings: &Settings, sink: &UpdateSink, tasks: &mut JoinSet<()>) {
    let ts = TailSettings::from_settings(settings);
    let (tx, rx) = channel::<Msg>();
    let (done_tx, done_rx) = channel::<()>();
    let thread_sink = sink.clone();
    let watch_tx = tx.clone();
    let started = std::thread::Builder::new()
        .name("vibe-transcripts".into())
        .spawn(move || {
            let sink = thread_sink;
            let mut tail = TranscriptTail::new(ts);
            tail.sink = Some(sink.clone());
            let result = tail.open_state().and_then(|()| {
                notify::recommended_watcher(move |r| {
                    let _ = watch_tx.send(Msg::Fs(r));
                })
                .map_err(TranscriptError::Watcher)
            });
            match result {
                Ok(w) => {
                    tail.watcher = Some(w);
                    tail.run(rx);
                }
                Err(e) => {
                    tracing::error!(error = %e, "transcript source not started");
                    sink.send(Update::Source {
                        source: Source::ClaudeTranscripts,
                        result: Err(e.to_string()),
                    });
                }
            }
            let _ = done_tx.send(());
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the transcript thread");
        return;
    }
    let guard = StopOnDrop {
        tx,
        done: Some(done_rx),
    };
    tasks.spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> TailSettings {
        TailSettings {
            homes: Vec::new(),
            state_dir: dir.to_path_buf(),
            max_line_bytes: 1 << 20,
            reconcile_interval: Duration::from_secs(60),
            save_interval: Duration::from_secs(60),
            active_window: Duration::from_secs(300),
            prices: PriceTable::default(),
            max_projects: None,
            time_zone: jiff::tz::TimeZone::UTC,
            readers: 1,
        }
    }

    #[test]
    fn a_second_tailer_waits_for_the_state_lock_and_takes_it_when_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = TranscriptTail::new(settings(dir.path()));
        first.open_state().unwrap();
        let (tx, rx) = channel();
        let s = settings(dir.path());
        let second = std::thread::spawn(move || {
            let mut t = TranscriptTail::new(s);
            let r = t.open_state();
            tx.send(()).unwrap();
            r.map(|()| t)
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second tailer took a held lock"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the second tailer still waits after the first let go");
        let second = second
            .join()
            .unwrap()
            .expect("the second tailer opened the state");
        assert!(second._lock.is_some());
    }
}
