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
use super::line::{self, SkipReason};
use super::persist::{self, FileRecord, SavedState};
use super::prices::{PriceOverride, PriceTable};
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
    pub prices: BTreeMap<String, PriceOverride>,
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
            prices: s.claude.prices.clone(),
        }
    }
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
        let ledger = Ledger::new(PriceTable::new(&settings.prices));
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
        for home in &homes {
            if !home.is_dir() {
                continue;
            }
            let projects = home.join("projects");
            if projects.is_dir() && !self.watched.contains(&projects) {
                self.watch(&projects, RecursiveMode::Recursive);
            }
            for path in jsonl_files(&projects) {
                self.read_if_grown(&path);
                seen.insert(path);
            }
        }
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
        if let (Some(rec), Ok(m)) = (self.files.get(path), std::fs::metadata(path))
            && rec.dev == m.dev()
            && rec.ino == m.ino()
            && rec.offset == m.len()
        {
            return;
        }
        self.read_path(path);
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
        let Some(user) = self.user_of(path) else {
            return;
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget_paths(&[path.to_owned()]);
                return;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open transcript");
                return;
            }
        };
        let Ok(meta) = file.metadata() else { return };
        if !meta.is_file() {
            return;
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
        if meta.len() > rec.offset {
            self.read_lines(file, &mut rec);
        }
        self.files.insert(path.to_owned(), rec);
    }

    fn next_id(&mut self) -> FileId {
        let id = self.next_file_id;
        self.next_file_id += 1;
        id
    }

    fn read_lines(&mut self, mut file: File, rec: &mut FileRecord) {
        if file.seek(SeekFrom::Start(rec.offset)).is_err() {
            return;
        }
        let cap = self.settings.max_line_bytes;
        let mut buf = std::mem::take(&mut self.buf);
        let mut filled = 0usize;
        let mut pos = rec.offset;
        loop {
            if buf.len() < filled + CHUNK_BYTES {
                buf.resize(filled + CHUNK_BYTES, 0);
            }
            let n = match file.read(&mut buf[filled..filled + CHUNK_BYTES]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(path = %rec.path.display(), error = %e, "cannot read transcript");
                    break;
                }
            };
            self.stats.bytes_read += n as u64;
            filled += n;
            let mut start = 0usize;
            for nl in memchr::memchr_iter(b'\n', &buf[..filled]) {
                let line = &buf[start..nl];
                if rec.skipping {
                    rec.skipping = false;
                } else if line.len() > cap {
                    self.skip(SkipReason::TooLong);
                } else {
                    self.count_line(&rec.user, rec.id, line);
                }
                start = nl + 1;
            }
            pos += start as u64;
            let rest = filled - start;
            if rec.skipping || rest > cap {
                // Inside an over-long line: drop what is read of it, up to its newline.
                if !rec.skipping {
                    self.skip(SkipReason::TooLong);
                    rec.skipping = true;
                }
                pos += rest as u64;
                filled = 0;
            } else {
                buf.copy_within(start..filled, 0);
                filled = rest;
            }
            if self.sink.is_some() && self.last_publish.elapsed() >= PUBLISH_TICK {
                self.publish();
            }
        }
        if buf.len() > 4 * CHUNK_BYTES {
            // A long line grew the buffer: give the memory back.
            buf = Vec::new();
        }
        self.buf = buf;
        rec.offset = pos;
    }

    fn skip(&mut self, reason: SkipReason) {
        self.stats.lines_read += 1;
        *self.stats.lines_skipped.entry(reason.label()).or_default() += 1;
    }

    fn count_line(&mut self, user: &str, file: FileId, bytes: &[u8]) {
        self.changed = true;
        self.unsaved = true;
        match line::parse(bytes) {
            Ok(l) => {
                self.stats.lines_read += 1;
                self.ledger.apply(user, file, &l);
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
            prices: BTreeMap::new(),
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
