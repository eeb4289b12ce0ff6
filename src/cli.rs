//! The command line: `run` (the default), `check`, `config check`. Parses arguments and
//! dispatches; the work lives in [`crate::daemon`], [`crate::check`] and [`crate::config`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{DEFAULT_CONFIG_PATH, Settings};
use crate::daemon::{self, Listeners};

/// Host agent of the VIBE dev box: probes code-server and JupyterLab, samples the host,
/// and exposes Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "vibe-agent", version = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("VIBE_AGENT_REVISION"), ")"), about, long_about = None)]
pub struct Cli {
    /// Configuration file. Without it, /etc/vibe-agent/agent.toml is read when it exists,
    /// and the embedded defaults are used when it does not.
    #[arg(long, global = true, value_name = "PATH", env = "VIBE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run,
    /// Run every probe once and print one line per check; exit 0 only when all pass.
    Check {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Write the manual pages (roff) into DIR, for packaging; without DIR, print the main
    /// page to standard output.
    #[command(hide = true)]
    Man {
        /// Directory for vibe-agent.1 and the subcommands' pages.
        dir: Option<PathBuf>,
    },
    /// Print one status line for Claude Code's `statusLine` command: reads the JSON Claude
    /// Code passes on stdin, asks the running agent for the caller's figures (today, the
    /// 5-hour block, burn rate) and prints model, costs and notes. Always exits 0.
    Statusline {
        /// The agent's statusline socket (listen.statusline).
        #[arg(long, value_name = "PATH", env = "VIBE_AGENT_STATUSLINE_SOCKET", default_value = crate::config::settings::DEFAULT_STATUSLINE_SOCKET)]
        socket: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file and print the effective settings.
    Check,
}

/// Exit status of `check` when a check fails.
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status when the configuration is unusable.
const EXIT_CONFIG: u8 = 2;

fn load(config: Option<&Path>) -> Result<(Settings, PathBuf), String> {
    let (path, required) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    Settings::load(&path, required)
        .map(|s| (s, path))
        .map_err(|e| e.to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config.as_deref()),
        Command::Statusline { socket } => {
            println!("{}", crate::statusline::run_client(&socket));
            ExitCode::SUCCESS
        }
        Command::Check { json } => {
            let settings = match load(cli.config.as_deref()) {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("vibe-agent: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let snapshot = runtime().block_on(crate::check::run_once(&settings));
            let checks = snapshot.checks();
            print!("{}", crate::check::report(&checks, json));
            if checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_CHECK_FAILED)
            }
        }
        Command::Man { dir } => {
            let pages = crate::manpage::pages(Cli::command());
            let Some(dir) = dir else {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&pages[0].1);
                return ExitCode::SUCCESS;
            };
            for (name, text) in pages {
                let path = dir.join(name);
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!(
                        "vibe-agent: cannot write {}: {e}; create the directory first",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => match load(cli.config.as_deref()) {
            Ok((settings, path)) => {
                let source = if path.exists() {
                    format!("{} is valid", path.display())
                } else {
                    format!("{} does not exist: embedded defaults", path.display())
                };
                println!("# {source}; effective settings:");
                print!(
                    "{}",
                    toml::to_string_pretty(&settings).expect("settings serialize to TOML")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vibe-agent: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn run(config: Option<&Path>) -> ExitCode {
    let (settings, path) = match load(config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vibe-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::logging::init(&settings.log_level);
    match runtime().block_on(serve(settings, path, config.is_some())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "vibe-agent stopped");
            eprintln!("vibe-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, path: PathBuf, required: bool) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signal handlers exist before READY=1 is sent, so a reload right after start is a
    // reload, not the default action of SIGHUP (which ends the process).
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listeners = Listeners::bind(&settings).await?;
    let agent = daemon::start(settings, listeners)?;
    tracing::info!(
        metrics = %agent.metrics_addr,
        config = %path.display(),
        version = env!("CARGO_PKG_VERSION"),
        "vibe-agent started"
    );
    loop {
        tokio::select! {
            _ = hup.recv() => match Settings::load(&path, required) {
                Ok(new) => agent.reload(new).await,
                Err(e) => agent.reload_failed(e.to_string()).await,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    agent.shutdown().await;
    Ok(())
}
