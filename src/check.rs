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
    let client = probe::http::client();
    let table = probe::ListenTable::default();
    let rounds = settings
        .services
        .iter()
        .map(|s| probe::probe_once(&client, &table, s));
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
