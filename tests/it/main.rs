//! vibe-agent's integration tests, all in one binary (ripgrep's layout): one module per
//! area, seen from outside (metric values, HTTP answers, exit codes, printed lines), and the
//! `support` DSL they share. Real components where the issue asks for them: JupyterLab from
//! the test venv, promtool from Debian's `prometheus`; `scripts/test` installs both.

mod support;

mod claude_usage;
mod cli;
mod code_server;
mod daemon;
mod exposition;
mod filesystem;
mod juicefs;
mod juicefs_fuse;
mod jupyterlab;
mod layout;
mod otlp;
mod otlp_grpc;
mod packaging;
mod rules;
mod systemd;
mod tls;
mod transcripts;
