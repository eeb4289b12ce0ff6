//! The small types every room shares: time, the names of the sources and their health, and
//! the check lines of `vibe-agent check` and the landing page.
//!
//! A leaf: it imports nothing from the crate, so any module may import it without making a
//! circle (see the Layout section of `lib.rs`).

use serde::Serialize;

/// Seconds since the Unix epoch, as a float (what Prometheus timestamps want).
pub type UnixTime = f64;

/// Now, in seconds since the Unix epoch. Sources stamp their samples with it; pure code
/// never calls it.
pub fn unix_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A source of data that reports its health in `vibe_agent_source_up{source}` and
/// `vibe_agent_source_errors_total{source}`. Variants are in the alphabetical order of
/// their names, so a map keyed by them lists sources as their names sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Claude transcript tailer.
    ClaudeTranscripts,
    /// Host sampling (CPU, memory, paths, processes).
    Host,
    /// JuiceFS mounts.
    Juicefs,
    /// Reads of the kernel's LISTEN socket table for the port probes.
    Ports,
    /// The systemd D-Bus source.
    Systemd,
}

impl Source {
    /// The `source` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClaudeTranscripts => "claude_transcripts",
            Self::Host => "host",
            Self::Juicefs => "juicefs",
            Self::Ports => "ports",
            Self::Systemd => "systemd",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source's health.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SourceHealth {
    pub up: bool,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

impl SourceHealth {
    /// Folds in the outcome of one round of work: `Err` counts an error and sets it down.
    pub fn record(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.up = true,
            Err(e) => {
                self.up = false;
                self.errors_total += 1;
                self.last_error = Some(e);
            }
        }
    }
}

/// One line of `vibe-agent check` and of the landing page's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// e.g. "jupyter port 8888".
    pub name: String,
    pub ok: bool,
    /// e.g. "listening", "not listening", "authentication failed (403): ...".
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = if self.ok { "[OK]" } else { "[ERROR]" };
        write!(f, "{tag} {}: {}", self.name, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_sort_as_their_names_do() {
        let all = [
            Source::ClaudeTranscripts,
            Source::Host,
            Source::Juicefs,
            Source::Ports,
            Source::Systemd,
        ];
        let mut by_name = all;
        by_name.sort_by_key(|s| s.as_str());
        assert_eq!(all, by_name);
        for s in all {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
    }
}
