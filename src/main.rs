//! The `vibe-agent` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    vibe_agent::cli::main()
}
