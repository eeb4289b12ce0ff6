//! code-server's `/healthz`, served byte for byte as code-server's express app answers it
//! (see `tests/fixtures/README.md`): alive, expired (idle, not down), a body that is not
//! JSON, a 500, and a server that accepts the connection but never answers.

use crate::support::fake_http::{FakeHttp, Reply};
use crate::support::{Config, Service, TestAgent, WAIT, wait_until};

/// One fixture and what the agent must expose for it.
struct Case {
    service: &'static str,
    fixture: &'static str,
    http_up: f64,
    status: f64,
    service_up: f64,
    /// `vibe_codeserver_heartbeat_alive`, absent when the body did not parse.
    alive: Option<f64>,
    /// `vibe_codeserver_last_heartbeat_timestamp_seconds` (the body has milliseconds).
    last_heartbeat: Option<f64>,
    /// Words the `<service> http` check line must contain.
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        service: "cs-alive",
        fixture: "healthz-alive.http",
        http_up: 1.0,
        status: 200.0,
        service_up: 1.0,
        alive: Some(1.0),
        last_heartbeat: Some(1795316400.123),
        says: "alive",
    },
    Case {
        service: "cs-expired",
        fixture: "healthz-expired.http",
        http_up: 1.0,
        status: 200.0,
        service_up: 1.0,
        alive: Some(0.0),
        last_heartbeat: Some(1795316340.0),
        says: "idle, not down",
    },
    Case {
        service: "cs-not-json",
        fixture: "healthz-not-json.http",
        http_up: 0.0,
        status: 200.0,
        service_up: 0.0,
        alive: None,
        last_heartbeat: None,
        says: "JSON",
    },
    Case {
        service: "cs-500",
        fixture: "healthz-500.http",
        http_up: 0.0,
        status: 500.0,
        service_up: 0.0,
        alive: None,
        last_heartbeat: None,
        says: "500",
    },
];

fn series(family: &str, service: &str) -> String {
    format!("{family}{{service=\"{service}\"}}")
}

impl Case {
    /// Every expected value holds in `m`; else what differs.
    fn check(&self, m: &crate::support::Exposition) -> Result<(), String> {
        let want: [(&str, Option<f64>); 5] = [
            ("vibe_http_up", Some(self.http_up)),
            ("vibe_http_status_code", Some(self.status)),
            ("vibe_service_up", Some(self.service_up)),
            ("vibe_codeserver_heartbeat_alive", self.alive),
            (
                "vibe_codeserver_last_heartbeat_timestamp_seconds",
                self.last_heartbeat,
            ),
        ];
        for (family, want) in want {
            let got = m.value(&series(family, self.service));
            if got != want {
                return Err(format!(
                    "{}: {family} is {got:?}, want {want:?}",
                    self.service
                ));
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_read_as_the_box_means_them() {
    let fakes: Vec<FakeHttp> = CASES
        .iter()
        .map(|c| FakeHttp::code_server(c.fixture))
        .collect();
    let mut config = Config::new();
    for (case, fake) in CASES.iter().zip(&fakes) {
        config = config.service(Service::code_server(case.service, fake.port()));
    }
    let agent = TestAgent::start(&config).await;

    wait_until(WAIT, "every /healthz case read as expected", async || {
        let m = agent.scrape().await;
        let diffs: Vec<String> = CASES.iter().filter_map(|c| c.check(&m).err()).collect();
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n{}", diffs.join("\n"), m.vibe_lines()))
        }
    })
    .await;

    for case in CASES {
        let check = agent.check(&format!("{} http", case.service));
        assert_eq!(check.ok, case.http_up == 1.0, "{check}");
        assert!(
            check.detail.contains(case.says),
            "{}: {check}",
            case.service
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthz_that_never_answers_times_out_at_its_timeout_while_metrics_keep_answering() {
    let hang = FakeHttp::always(Reply::Hang);
    let agent = TestAgent::start(
        &Config::new().service(Service::code_server("cs-hang", hang.port()).every("2s", "1s")),
    )
    .await;

    let m = agent
        .wait_for("the hung probe to time out", |m| {
            m.is(&series("vibe_http_up", "cs-hang"), 0.0)
        })
        .await;
    assert_eq!(
        m.value(&series("vibe_http_status_code", "cs-hang")),
        Some(0.0),
        "no response, no status"
    );
    let duration = m
        .value(&series("vibe_http_duration_seconds", "cs-hang"))
        .expect("duration of the timed-out probe");
    assert!(
        duration >= 1.0,
        "the probe waited its full 1 s timeout, took {duration} s"
    );
    assert_eq!(
        m.value(&series("vibe_port_listening", "cs-hang")),
        Some(1.0),
        "the port itself is fine"
    );
    let check = agent.check("cs-hang http");
    assert!(!check.ok && check.detail.contains("timeout"), "{check}");

    // While probes keep hanging on the fake, every scrape answers (the client's timeout is
    // 30 s; speed is for the benchmark, not for a test).
    let seen = hang.requests();
    wait_until(
        WAIT,
        "two more hung probes, scraping all along",
        async || {
            let m = agent.scrape().await;
            assert!(m.value(&series("vibe_service_up", "cs-hang")).is_some());
            if hang.requests() >= seen + 2 {
                Ok(())
            } else {
                Err(format!("{} requests so far", hang.requests()))
            }
        },
    )
    .await;
}
