//! The telemetry state file: every total the receiver has counted, and the per-stream
//! memory needed to keep counting cumulative streams exactly, saved in the state directory
//! so `increase()` never sees a reset when the agent restarts.
//!
//! Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
//! directory): a crash leaves the old file or the new one, never half of one. The adapter
//! task here also sends the model its periodic [`TelemetryUpdate::Tick`], and asks it for
//! the file's content ([`Request::SaveTelemetry`]): the working sets it holds (streams,
//! event hashes) never go into a snapshot. The model copies them out only when its
//! revision moved since the last save, so an idle agent neither copies nor writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::OtlpError;
use super::state::{PersistAnswer, Persisted, TelemetryUpdate};
use crate::model::{Request, Update};
use crate::sink::UpdateSink;

/// The file's name inside the state directory.
pub const STATE_FILE: &str = "claude-telemetry.json";

/// The state file of a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

fn file_error(path: &Path, detail: impl std::fmt::Display) -> OtlpError {
    OtlpError::StateFile {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Reads the state file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<Persisted>, OtlpError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            file_error(
                path,
                format!("{e}; move the file away to start counting from zero"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path, e)),
    }
}

/// Writes the state file atomically.
pub fn save(path: &Path, state: &Persisted) -> Result<(), OtlpError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        file_error(
            path,
            format!("cannot create the state directory: {e}; set agent.state_dir to a writable directory"),
        )
    })?;
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(state).map_err(|e| file_error(path, e))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, e)
    })
}

/// Asks the model for the state file's content unless revision `saved` still holds it;
/// `None` when the model does not answer.
async fn ask(sink: &UpdateSink, saved: Option<u64>) -> Option<PersistAnswer> {
    let (reply, rx) = oneshot::channel();
    // On the request channel: a save request must not be dropped under a flood of data.
    if !sink.request(Request::SaveTelemetry { saved, reply }).await {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .ok()?
        .ok()
}

/// Runs until `stop` fires: every `interval`, ticks the model, asks it for the state
/// file's content and saves it when it changed; at stop, asks and saves once more. The
/// model answers after every update queued before the question, so the last save holds
/// everything the receiver accepted.
pub async fn run(
    file: PathBuf,
    interval: Duration,
    sink: UpdateSink,
    forward: Option<super::forward::Forwarder>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut saved: Option<u64> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stop => true,
        };
        if !stopping {
            sink.send(Update::ClaudeTelemetry(TelemetryUpdate::Tick {
                now: crate::common::unix_now(),
                forward: forward.as_ref().map(|f| f.stats()),
            }));
        }
        match ask(&sink, saved).await {
            Some(PersistAnswer::Changed { revision, state }) => {
                let file = file.clone();
                match tokio::task::spawn_blocking(move || save(&file, &state)).await {
                    Ok(Ok(())) => saved = Some(revision),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot save Claude telemetry totals"),
                    Err(e) => tracing::warn!(error = %e, "telemetry save task failed"),
                }
            }
            Some(PersistAnswer::Unchanged) => {}
            None => tracing::warn!("the model did not answer a telemetry save request"),
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir.path().join("sub"));
        assert!(load(&p).unwrap().is_none());
        let mut st = Persisted {
            version: 1,
            ..Default::default()
        };
        st.cost_today.day = "2026-01-01".into();
        st.cost_today.usd = 1.25;
        save(&p, &st).unwrap();
        assert_eq!(load(&p).unwrap().unwrap(), st);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
        std::fs::write(&p, b"{not json").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("move the file away"), "{err}");
    }
}
