//! `vibe-agent check`: every probe once, through the same probe and host code the daemon
//! runs and the same model, then one line per check.

use std::sync::Arc;

use crate::common::{Check, Source, unix_now};
use crate::config::Settings;
use crate::host::HostSampler;
use crate::model::{Model, Snapshot, Update};
use crate::probe;
use crate::probe::state::ConfigureServices;

/// Runs every probe once and returns the resulting snapshot.
pub async fn run_once(settings: &Settings) -> Arc<Snapshot> {
    let mut model = Model::new(
        ConfigureServices::from_services(&settings.services),
        unix_now(),
    );
    let table = probe::ListenTable::default();
    let clients: Vec<probe::ProbeClient> = settings
        .services
        .iter()
        .map(|s| probe::http::client(&s.tls))
        .collect();
    let rounds = settings
        .services
        .iter()
        .zip(&clients)
        .map(|(s, client)| probe::probe_once(client, &table, s));
    let (probes, units) = futures_util::future::join(
        futures_util::future::join_all(rounds),
        crate::systemd::check_once(settings),
    )
    .await;
    for update in probes.into_iter().flatten().chain(units) {
        model.apply(update);
    }
    match HostSampler::new(settings) {
        Ok(mut host) => host
            .sample_round()
            .await
            .into_iter()
            .for_each(|u| model.apply(u)),
        Err(e) => model.apply(Update::Source {
            source: Source::Host,
            result: Err(e.to_string()),
        }),
    }
    for update in crate::juicefs::check_once(settings).await {
        model.apply(update);
    }
    model.publish()
}

/// The checks of a snapshot as text lines, and whether all passed.
pub fn report(checks: &[Check], json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(checks).expect("checks serialize");
        s.push('\n');
        s
    } else {
        checks.iter().map(|c| format!("{c}\n")).collect()
    }
}

/// One line per web config file (`listen.web_config_file`, `otlp.web_config_file`): whether
/// it loads, and whether the certificate it serves is valid now. `now` is Unix seconds.
pub fn web_config_checks(settings: &Settings, now: i64) -> Vec<Check> {
    let mut out = Vec::new();
    let files = [
        ("metrics", settings.web_config_file.as_ref()),
        (
            "otlp",
            settings
                .otlp
                .web_config_file
                .as_ref()
                .filter(|_| settings.otlp_addr.is_some()),
        ),
    ];
    for (listener, file) in files {
        let Some(file) = file else { continue };
        let name = format!("{listener} listener web config");
        let active = match crate::webconfig::guard::Active::load(file) {
            Ok(a) => a,
            Err(e) => {
                out.push(Check {
                    name,
                    ok: false,
                    detail: e.to_string(),
                });
                continue;
            }
        };
        let auth = match active.config.users.len() {
            0 => "no basic auth".to_string(),
            n => format!("basic auth for {n} user(s)"),
        };
        let Some(tls) = &active.tls else {
            out.push(Check {
                name,
                ok: true,
                detail: format!("plain HTTP, {auth}"),
            });
            continue;
        };
        let c = &tls.cert;
        let when = |t: i64| {
            jiff::Timestamp::from_second(t)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| t.to_string())
        };
        let (ok, state) = if now > c.not_after {
            (
                false,
                format!(
                    "expired at {}; install a renewed certificate",
                    when(c.not_after)
                ),
            )
        } else if now < c.not_before {
            (false, format!("not valid before {}", when(c.not_before)))
        } else {
            (
                true,
                format!(
                    "valid until {} ({} days)",
                    when(c.not_after),
                    (c.not_after - now) / 86_400
                ),
            )
        };
        out.push(Check {
            name,
            ok,
            detail: format!(
                "TLS, certificate {} [{}] {state}; {auth}",
                c.subject,
                c.names.join(", ")
            ),
        });
    }
    out
}
