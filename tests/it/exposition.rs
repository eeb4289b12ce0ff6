//! The metrics listener as Prometheus and a person see it: promtool's verdict on a full
//! exposition, the text format's content type, gzip, the health and readiness endpoints,
//! and the landing page's table of checks.

use std::io::Read;

use crate::support::fake_http::FakeHttp;
use crate::support::{
    Config, Exposition, Service, TestAgent, WAIT, assert_promtool_accepts, wait_until,
};

/// Every kind of series present: services up (code-server and JupyterLab fakes), an
/// existing and a missing path, host and process figures.
fn full_config(cs: &FakeHttp, jl: &FakeHttp) -> Config {
    Config::new()
        .service(Service::code_server("code-server", cs.port()))
        .service(Service::jupyter("jupyter", jl.port(), "sekrit"))
        .host_path("/")
        .host_path("/nonexistent/vibe-agent-test")
}

fn full(m: &Exposition) -> bool {
    m.is(r#"vibe_service_up{service="code-server"}"#, 1.0)
        && m.is(r#"vibe_service_up{service="jupyter"}"#, 1.0)
        && m.is(r#"vibe_jupyter_kernels{service="jupyter"}"#, 0.0)
        && m.is(
            r#"vibe_codeserver_heartbeat_alive{service="code-server"}"#,
            1.0,
        )
        && m.value(r#"vibe_filesystem_size_bytes{path="/"}"#).is_some()
        && m.is(
            r#"vibe_filesystem_path_exists{path="/nonexistent/vibe-agent-test"}"#,
            0.0,
        )
        && m.value("vibe_host_memory_total_bytes").is_some()
        && m.value("process_resident_memory_bytes").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_report_in_a_full_exposition() {
    let (cs, jl) = (
        FakeHttp::code_server("healthz-alive.http"),
        FakeHttp::jupyterlab(),
    );
    let agent = TestAgent::start(&full_config(&cs, &jl)).await;
    let m = agent.wait_for("a full exposition", full).await;

    assert_promtool_accepts(&m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_readiness_and_landing_page_answer_as_documented() {
    let (cs, jl) = (
        FakeHttp::code_server("healthz-alive.http"),
        FakeHttp::jupyterlab(),
    );
    let agent = TestAgent::start(&full_config(&cs, &jl)).await;

    let healthy = agent.get("/-/healthy").await;
    assert_eq!(healthy.status(), 200, "/-/healthy answers from the start");

    wait_until(
        WAIT,
        "/-/ready to answer 200 after the first round",
        async || {
            let status = agent.get("/-/ready").await.status();
            if status == 200 {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        },
    )
    .await;
    let plain = agent.wait_for("a full exposition", full).await;

    let resp = agent.get("/metrics").await;
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Prometheus text format 0.0.4: {content_type}"
    );
    assert!(
        resp.headers().get("content-encoding").is_none(),
        "plain unless asked"
    );

    let resp = agent
        .client
        .get(format!("{}/metrics", agent.base_url))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("gzip scrape");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let gzipped = resp.bytes().await.expect("gzip body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_string(&mut text)
        .expect("the body is gzip of UTF-8 text");
    let decoded = Exposition::new(text);
    assert_eq!(
        decoded.families(),
        plain.families(),
        "same families, gzipped or not"
    );
    assert!(full(&decoded), "{}", decoded.vibe_lines());

    let landing = agent.get("/").await;
    assert_eq!(landing.status(), 200);
    assert!(
        landing.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "the landing page is HTML"
    );
    let page = landing.text().await.unwrap();
    for check in agent.checks() {
        assert!(
            page.contains(&check.name),
            "the landing page lists check {:?}:\n{page}",
            check.name
        );
    }
    assert!(
        page.contains(&format!("code-server port {}", cs.port())),
        "{page}"
    );
    assert!(
        page.contains("filesystem /nonexistent/vibe-agent-test"),
        "{page}"
    );
    assert!(page.contains("/metrics"), "links to /metrics: {page}");
}
