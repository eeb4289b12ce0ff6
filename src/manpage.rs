//! The manual pages, generated from the CLI definition so they never drift from it:
//! `vibe-agent(1)` and one page per visible subcommand (`vibe-agent-check(1)`, …), as
//! clap_mangen names them. The main page adds what clap cannot know: exit status, signals,
//! files, environment. Pure: a [`clap::Command`] in, pages out, no file system;
//! `vibe-agent man DIR` (in the cli module, which owns the command) writes them.

use roff::{Roff, bold, italic, roman};

/// Every page of the command `cmd` (the CLI's definition) as (file name, roff text), the
/// main page first.
pub fn pages(cmd: clap::Command) -> Vec<(String, Vec<u8>)> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = vec![("vibe-agent.1".to_string(), main_page(&cmd))];
    let mut stack: Vec<clap::Command> = visible_subcommands(&cmd);
    while let Some(sub) = stack.pop() {
        stack.extend(visible_subcommands(&sub));
        let man = clap_mangen::Man::new(sub);
        let mut text = Vec::new();
        man.render(&mut text)
            .expect("rendering into a Vec cannot fail");
        out.push((man.get_filename(), text));
    }
    out[1..].sort();
    out
}

fn visible_subcommands(cmd: &clap::Command) -> Vec<clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect()
}

/// Definition-list entry: a bold term, then its text.
fn item(r: &mut Roff, term: &str, text: &str) {
    r.control("TP", []).text([bold(term)]).text([roman(text)]);
}

fn main_page(cmd: &clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut w = Vec::new();
    type Section = fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    let render = |w: &mut Vec<u8>, sections: &[Section]| {
        for section in sections {
            section(&man, w).expect("rendering into a Vec cannot fail");
        }
    };
    render(
        &mut w,
        &[
            clap_mangen::Man::render_title,
            clap_mangen::Man::render_name_section,
            clap_mangen::Man::render_synopsis_section,
        ],
    );

    let mut r = Roff::new();
    r.control("SH", ["DESCRIPTION"]).text([roman(
        "Without a subcommand, vibe-agent runs: it probes code-server and JupyterLab \
         (systemd unit state over D-Bus, listening ports, HTTP health), samples the host, \
         the VIBE paths and JuiceFS, receives Claude Code's OpenTelemetry on \
         127.0.0.1:4318 and tails every user's ~/.claude transcripts, and serves Prometheus \
         metrics on 127.0.0.1:9820/metrics. It runs with embedded defaults when no \
         configuration file exists.",
    )]);
    w.extend_from_slice(r.render().as_bytes());
    render(
        &mut w,
        &[
            clap_mangen::Man::render_options_section,
            clap_mangen::Man::render_subcommands_section,
        ],
    );

    let mut r = Roff::new();

    r.control("SH", ["EXIT STATUS"]);
    item(&mut r, "0", "Success; for check, every check passed.");
    item(
        &mut r,
        "1",
        "check: at least one check failed. run: a fatal error after start (a listener could not be bound, for instance); the reason is logged.",
    );
    item(
        &mut r,
        "2",
        "The configuration file is unusable; the error names the file, the line and the key.",
    );

    r.control("SH", ["SIGNALS"]);
    item(
        &mut r,
        "SIGHUP",
        "Re-read the configuration file (systemctl reload vibe-agent). Services, paths, \
         units, intervals and the log level apply at once; listener addresses need a \
         restart. A file that does not load keeps the running configuration.",
    );
    item(
        &mut r,
        "SIGTERM, SIGINT",
        "Stop: sources stop, the listeners close, totals are saved; exits within 5 s.",
    );

    r.control("SH", ["FILES"]);
    item(
        &mut r,
        crate::config::DEFAULT_CONFIG_PATH,
        "The configuration (TOML). Every key is optional; packaging installs a commented copy.",
    );
    item(
        &mut r,
        "/var/lib/vibe-agent/",
        "State (agent.state_dir, or $STATE_DIRECTORY under systemd): the Claude telemetry \
         totals and the transcript offsets and totals, saved atomically so counters survive \
         restarts.",
    );
    item(
        &mut r,
        "/usr/share/vibe-agent/",
        "Alert and recording rules (rules/) and Grafana dashboards (grafana/).",
    );

    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "VIBE_AGENT_CONFIG",
        "The configuration file, as --config.",
    );
    item(
        &mut r,
        "RUST_LOG",
        "Log filter; when set it wins over agent.log_level until a restart.",
    );
    item(
        &mut r,
        "STATE_DIRECTORY",
        "Set by systemd's StateDirectory=; the default agent.state_dir.",
    );
    item(
        &mut r,
        "JOURNAL_STREAM",
        "Set by systemd; logs then go to the journal instead of standard error.",
    );

    r.control("SH", ["SEE ALSO"]);
    let mut see: Vec<String> = visible_subcommands(cmd)
        .iter()
        .map(|s| format!("vibe-agent-{}(1)", s.get_name()))
        .collect();
    see.push("systemctl(1)".into());
    r.text([roman(see.join(", "))]);
    r.control("PP", []).text([
        roman("The README at "),
        italic("/usr/share/doc/vibe-agent/README.md"),
        roman(" holds every configuration key and metric."),
    ]);
    w.extend_from_slice(r.render().as_bytes());

    render(&mut w, &[clap_mangen::Man::render_version_section]);
    w
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The pages of the agent's own command line.
    fn pages() -> Vec<(String, Vec<u8>)> {
        super::pages(crate::cli::Cli::command())
    }

    fn text(page: &[u8]) -> String {
        String::from_utf8(page.to_vec()).unwrap()
    }

    #[test]
    fn every_visible_subcommand_has_a_page_and_hidden_ones_none() {
        let names: Vec<String> = pages().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "vibe-agent.1",
                "vibe-agent-check.1",
                "vibe-agent-config-check.1",
                "vibe-agent-config.1",
                "vibe-agent-run.1",
                "vibe-agent-statusline.1",
            ]
        );
    }

    #[test]
    fn every_page_the_main_page_names_exists() {
        let pages = pages();
        // roff quotes section names with spaces; the check reads them unquoted.
        let main = text(&pages[0].1).replace('"', "");
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH SUBCOMMANDS",
            ".SH EXIT STATUS",
            ".SH SIGNALS",
            ".SH FILES",
            ".SH ENVIRONMENT",
            ".SH SEE ALSO",
        ] {
            assert!(main.contains(section), "{section} missing:\n{main}");
        }
        assert!(!main.contains("vibe-agent-help"), "{main}");
        assert!(!main.contains("vibe-agent-man"), "{main}");
        // Every vibe-agent-X(1) the page refers to is generated.
        let mut rest = main.as_str();
        while let Some(i) = rest
            .find("vibe\\-agent\\-")
            .or_else(|| rest.find("vibe-agent-"))
        {
            let tail = &rest[i..];
            let end = tail.find("(1)").expect("a reference ends with (1)");
            let name = tail[..end].replace('\\', "");
            if !name.contains(' ') {
                assert!(
                    pages.iter().any(|(n, _)| *n == format!("{name}.1")),
                    "the main page refers to {name}(1), which is not generated"
                );
            }
            rest = &tail[end..];
        }
    }

    #[test]
    fn subcommand_pages_carry_their_options() {
        let pages = pages();
        let check = pages
            .iter()
            .find(|(n, _)| n == "vibe-agent-check.1")
            .unwrap();
        assert!(text(&check.1).contains("json"), "{}", text(&check.1));
    }
}
