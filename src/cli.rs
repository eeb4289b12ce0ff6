//! The command line: `run` (the default), `check`, `config check`. Parses arguments and
//! dispatches; the work lives in [`crate::daemon`], [`crate::check`] and [`crate::config`].

use std::path::PathBuf;
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
    /// Prometheus web config file (TLS, basic auth) for /metrics, as exporters spell the
    /// option; overrides listen.web_config_file.
    #[arg(long = "web.config.file", global = true, value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
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

/// Where the configuration comes from: the file, and the command line's overrides.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    required: bool,
    web_config_file: Option<PathBuf>,
}

impl Source {
    fn new(cli: &Cli) -> Self {
        let (path, required) = match &cli.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        Self {
            path,
            required,
            web_config_file: cli.web_config_file.clone(),
        }
    }

    /// Loads the file and applies the overrides (at start and at each reload).
    fn load(&self) -> Result<Settings, String> {
        let mut settings = Settings::load(&self.path, self.required).map_err(|e| e.to_string())?;
        if let Some(web) = &self.web_config_file {
            crate::webconfig::guard::Active::load(web)
                .map_err(|e| format!("--web.config.file: {e}"))?;
            settings.web_config_file = Some(web.clone());
        }
        Ok(settings)
    }
}

fn load(source: &Source) -> Result<(Settings, PathBuf), String> {
    source.load().map(|s| (s, source.path.clone()))
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
    crate::tlsclient::install_default_provider();
    let source = Source::new(&cli);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&source),
        Command::Statusline { socket } => {
            println!("{}", crate::statusline::run_client(&socket));
            ExitCode::SUCCESS
        }
        Command::Check { json } => {
            let settings = match load(&source) {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("vibe-agent: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let snapshot = runtime().block_on(crate::check::run_once(&settings));
            let mut checks = snapshot.checks();
            checks.extend(crate::check::web_config_checks(
                &settings,
                crate::common::unix_now() as i64,
            ));
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
        } => match load(&source) {
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

fn run(source: &Source) -> ExitCode {
    let (settings, path) = match load(source) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vibe-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::logging::init(&settings.log_level);
    match runtime().block_on(serve(settings, path, source.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "vibe-agent stopped");
            eprintln!("vibe-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, path: PathBuf, source: Source) -> anyhow::Result<()> {
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
            _ = hup.recv() => match source.load() {
                Ok(new) => agent.reload(new).await,
                Err(e) => agent.reload_failed(e).await,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    agent.shutdown().await;
    Ok(())
}
