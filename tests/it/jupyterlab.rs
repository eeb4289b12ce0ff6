//! Against a real JupyterLab started as the box starts it (token, base URL `/jupyter/`):
//! liveness, kernels and connections from `/api/status`, a wrong token, and a stopped server.

use std::time::Duration;

use crate::support::jupyterlab::JupyterLab;
use crate::support::{Config, Service, TestAgent};

const UP: &str = r#"vibe_service_up{service="jupyter"}"#;
const HTTP_UP: &str = r#"vibe_http_up{service="jupyter"}"#;
const LISTENING: &str = r#"vibe_port_listening{service="jupyter"}"#;
const KERNELS: &str = r#"vibe_jupyter_kernels{service="jupyter"}"#;
const CONNECTIONS: &str = r#"vibe_jupyter_connections{service="jupyter"}"#;
const AUTH_FAILED: &str = r#"vibe_jupyter_auth_failed{service="jupyter"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_and_connections_appear_and_a_stopped_jupyterlab_reads_as_down() {
    let mut lab = JupyterLab::start("vibe-test-token").await;
    let agent =
        TestAgent::start(&Config::new().service(Service::jupyter("jupyter", lab.port, &lab.token)))
            .await;

    let m = agent
        .wait_for("JupyterLab up, listening, no kernels", |m| {
            m.is(UP, 1.0)
                && m.is(HTTP_UP, 1.0)
                && m.is(LISTENING, 1.0)
                && m.is(KERNELS, 0.0)
                && m.is(CONNECTIONS, 0.0)
        })
        .await;
    assert_eq!(
        m.value(AUTH_FAILED),
        Some(0.0),
        "the right token is accepted"
    );
    let started = m
        .value(r#"vibe_jupyter_started_timestamp_seconds{service="jupyter"}"#)
        .expect("started timestamp");
    assert!(
        started > 1.6e9,
        "started is a Unix time in seconds: {started}"
    );

    let kernel = lab.start_kernel().await;
    agent.wait_for("one kernel", |m| m.is(KERNELS, 1.0)).await;

    let channels = lab.connect_kernel(&kernel).await;
    agent
        .wait_for("one connection to the kernel", |m| {
            m.is(CONNECTIONS, 1.0) && m.is(KERNELS, 1.0)
        })
        .await;
    drop(channels);

    lab.stop(Duration::from_secs(20));
    agent
        .wait_for("JupyterLab down and its port closed", |m| {
            m.is(UP, 0.0) && m.is(LISTENING, 0.0) && m.is(HTTP_UP, 0.0)
        })
        .await;
    let port_check = agent.check(&format!("jupyter port {}", lab.port));
    assert!(!port_check.ok, "{port_check}");
    assert_eq!(port_check.detail, "not listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_reads_as_an_authentication_failure_not_as_down() {
    let lab = JupyterLab::start("the-right-token").await;
    let agent = TestAgent::start(&Config::new().service(Service::jupyter(
        "jupyter",
        lab.port,
        "a-wrong-token",
    )))
    .await;

    let m = agent
        .wait_for("an authentication failure while liveness passes", |m| {
            m.is(AUTH_FAILED, 1.0) && m.is(HTTP_UP, 1.0) && m.is(LISTENING, 1.0)
        })
        .await;
    assert_eq!(
        m.value(KERNELS),
        None,
        "no status figures without a valid token"
    );
    let status = agent.check("jupyter status");
    assert!(!status.ok, "{status}");
    assert!(
        status.detail.contains("authentication failed"),
        "the check line says what is wrong: {status}"
    );
    let http = agent.check("jupyter http");
    assert!(http.ok, "liveness is not an authentication matter: {http}");
}
