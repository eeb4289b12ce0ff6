//! Secure transport (issue 17), against real peers: Debian's Prometheus scraping the agent
//! over https with basic auth, Debian's node_exporter serving the same web config file,
//! `openssl` for throwaway CAs and as an https server for health probes, mutual TLS, and
//! forwarding Claude telemetry to an https upstream that checks a header and a token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vibe_agent::config::Settings;
use vibe_agent::daemon::{self, Agent, Listeners};

use crate::support::agent_process::{Printed, run_with_config};
use crate::support::pki::{Ca, Issued, client_config, https_client, served_subject};
use crate::support::{Exposition, WAIT, end_child, free_port, toml_str, wait_until};

const PASSWORD: &str = "correct horse";

/// A bcrypt hash of `password` (a low cost keeps the tests quick; the format is what
/// htpasswd and Python's bcrypt write).
fn hash(password: &str, cost: u32) -> String {
    bcrypt::hash(password, cost).unwrap()
}

/// A web config file for `server` with basic auth for user `prometheus`, plus `extra` YAML.
fn web_config(dir: &Path, server: &Issued, extra: &str) -> PathBuf {
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}\
             basic_auth_users:\n  prometheus: '{}'\n",
            server.cert.display(),
            server.key.display(),
            hash(PASSWORD, 5),
        ),
    )
    .unwrap();
    path
}

/// The agent in-process with metrics on 127.0.0.1:0 under `web_config`, no services, and
/// `extra` TOML appended.
async fn start_agent(state: &Path, web_config: Option<&Path>, extra: &str) -> Agent {
    let web = web_config
        .map(|p| format!("web_config_file = {}\n", toml_str(&p.to_string_lossy())))
        .unwrap_or_default();
    let text = format!(
        "service = []\n[listen]\nmetrics = \"127.0.0.1:0\"\notlp = \"\"\notlp_grpc = \"\"\n{web}\n\
         [agent]\nstate_dir = {}\n\n[systemd]\nunits = []\n\n\
         [host]\npaths = []\ninterval = \"300ms\"\n\n[claude]\nhomes = []\n\n{extra}",
        toml_str(&state.to_string_lossy()),
    );
    let settings = Settings::from_toml(&text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    let listeners = Listeners::bind(&settings).await.unwrap();
    daemon::start(settings, listeners).unwrap()
}

/// Scrapes `url` with `client` (and basic auth when given) and returns the status and body.
async fn get(
    client: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    let mut req = client.get(url);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install Debian's `{}` (`bash scripts/test` does)",
        path.display(),
        if name == "prometheus" {
            "prometheus"
        } else {
            "prometheus-node-exporter"
        }
    );
    path
}

/// A child process killed by PID on drop, with its output in a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        end_child(&mut self.child, Duration::from_secs(5), false);
    }
}

/// Prometheus' targets as (job, health, lastError).
async fn targets(
    client: &reqwest::Client,
    base: &str,
) -> Result<Vec<(String, String, String)>, String> {
    let v: Value = client
        .get(format!("{base}/api/v1/targets"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["labels"]["job"].as_str().unwrap_or("").to_string(),
                t["health"].as_str().unwrap_or("").to_string(),
                t["lastError"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

async fn query(client: &reqwest::Client, base: &str, promql: &str) -> Vec<Value> {
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/query")).unwrap();
    url.query_pairs_mut().append_pair("query", promql);
    let v: Value = match client.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => return Vec::new(),
    };
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Debian's Prometheus scrapes the agent with `scheme: https`, the CA and basic auth (up,
/// samples); a job without credentials gets 401 and one trusting another CA fails the
/// handshake; a certificate rotated on disk is served without a restart and Prometheus
/// keeps scraping. Debian's node_exporter serves the very same web config file, and the
/// same Prometheus scrapes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_over_https_with_basic_auth_and_node_exporter_reads_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "vibe-test-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let server = ca.server("server", "vibe-agent-first");
    // The file names cipher suites, curves, versions and a header, so node_exporter and the
    // agent both read more than the minimum.
    let web = web_config(
        dir.path(),
        &server,
        "  min_version: TLS12\n  max_version: TLS13\n  prefer_server_cipher_suites: true\n  \
         cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  \
         curve_preferences: [X25519, CurveP256]\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
    );

    // node_exporter accepts the file and serves https with basic auth from it.
    let node_port = free_port();
    let node = Daemon::spawn(
        Command::new(tool("prometheus-node-exporter"))
            .arg(format!("--web.config.file={}", web.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .args(["--collector.disable-defaults", "--collector.loadavg"]),
        dir.path().join("node.log"),
    );
    let trusting = https_client(client_config(&ca.cert(), None));
    let node_url = format!("https://127.0.0.1:{node_port}/metrics");
    wait_until(
        WAIT,
        "node_exporter serving https with basic auth",
        async || match get(&trusting, &node_url, Some(("prometheus", PASSWORD))).await {
            Ok((200, body)) if body.contains("node_load1") => Ok(()),
            other => Err(format!("{other:?}\n{}", node.log())),
        },
    )
    .await;
    let (status, _) = get(&trusting, &node_url, None).await.unwrap();
    assert_eq!(status, 401, "node_exporter without credentials");

    // The agent takes the same file unchanged.
    let state = tempfile::tempdir().unwrap();
    let agent = start_agent(state.path(), Some(&web), "").await;
    let agent_url = format!("https://{}/metrics", agent.metrics_addr);
    let resp = trusting
        .get(&agent_url)
        .basic_auth("prometheus", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let (status, _) = get(&trusting, &agent_url, None).await.unwrap();
    assert_eq!(status, 401, "the agent without credentials");
    let (status, _) = get(&trusting, &agent_url, Some(("prometheus", "wrong")))
        .await
        .unwrap();
    assert_eq!(status, 401, "the agent with a wrong password");
    let plain = crate::support::http_client();
    assert!(
        get(
            &plain,
            &format!("http://{}/metrics", agent.metrics_addr),
            None
        )
        .await
        .is_err()
            || get(
                &plain,
                &format!("http://{}/metrics", agent.metrics_addr),
                None
            )
            .await
            .is_ok_and(|(s, _)| s != 200),
        "plain HTTP on the TLS port must not be served"
    );

    // Prometheus: a good job for the agent and for node_exporter, one without credentials,
    // one trusting another CA.
    let auth =
        format!("    basic_auth:\n      username: prometheus\n      password: '{PASSWORD}'\n");
    let job = |name: &str, target: &str, ca_file: &Path, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n{auth}\
             \x20   static_configs:\n      - targets: ['{target}']\n",
            ca_file.display()
        )
    };
    let agent_target = agent.metrics_addr.to_string();
    let node_target = format!("127.0.0.1:{node_port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}{}",
            job("agent", &agent_target, &ca.cert(), &auth),
            job("node", &node_target, &ca.cert(), &auth),
            job("agent-no-auth", &agent_target, &ca.cert(), ""),
            job("agent-wrong-ca", &agent_target, &other.cert(), &auth),
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let prom = Daemon::spawn(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        dir.path().join("prometheus.log"),
    );
    let base = format!("http://127.0.0.1:{prom_port}");
    let api = crate::support::http_client();
    let seen = wait_until(WAIT, "Prometheus' verdict on the four jobs", async || {
        let t = targets(&api, &base)
            .await
            .map_err(|e| format!("{e}\n{}", prom.log()))?;
        let health = |job: &str| {
            t.iter()
                .find(|(j, _, _)| j == job)
                .map(|(_, h, _)| h.as_str())
        };
        if health("agent") == Some("up")
            && health("node") == Some("up")
            && health("agent-no-auth") == Some("down")
            && health("agent-wrong-ca") == Some("down")
        {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    })
    .await;
    let error_of = |job: &str| seen.iter().find(|(j, _, _)| j == job).unwrap().2.clone();
    assert!(error_of("agent-no-auth").contains("401"), "{seen:?}");
    let wrong_ca = error_of("agent-wrong-ca");
    assert!(
        wrong_ca.contains("x509") || wrong_ca.contains("certificate"),
        "{wrong_ca}"
    );
    wait_until(WAIT, "the agent's samples in Prometheus", async || {
        let r = query(&api, &base, "vibe_agent_build_info{job=\"agent\"}").await;
        if r.len() == 1 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;

    // The agent counted what it refused.
    let scrape = async || -> Result<Exposition, String> {
        match get(&trusting, &agent_url, Some(("prometheus", PASSWORD))).await? {
            (200, body) => Ok(Exposition::new(body)),
            (s, body) => Err(format!("{s}: {body}")),
        }
    };
    wait_until(WAIT, "failed logins and handshakes counted", async || {
        let m = scrape().await?;
        let missing = m.value("vibe_agent_web_auth_failures_total{listener=\"metrics\",reason=\"missing_credentials\"}");
        let wrong = m.value("vibe_agent_web_auth_failures_total{listener=\"metrics\",reason=\"wrong_password\"}");
        let handshakes = m.value("vibe_agent_tls_handshake_errors_total{listener=\"metrics\"}");
        let expiry = m.value("vibe_agent_tls_certificate_expiry_timestamp_seconds{listener=\"metrics\"}");
        if missing >= Some(2.0) && wrong >= Some(1.0) && handshakes >= Some(1.0) && expiry > Some(0.0) {
            Ok(())
        } else {
            Err(m.vibe_lines())
        }
    })
    .await;

    // Rotation: a new certificate and key replace the files; the agent serves it on new
    // connections without a restart, and Prometheus keeps scraping.
    assert_eq!(
        served_subject(agent.metrics_addr, &ca.cert())
            .await
            .unwrap(),
        "CN=vibe-agent-first"
    );
    let rotated = ca.server("rotated", "vibe-agent-rotated");
    std::fs::copy(&rotated.key, &server.key).unwrap();
    std::fs::copy(&rotated.cert, &server.cert).unwrap();
    wait_until(
        WAIT,
        "the rotated certificate served",
        async || match served_subject(agent.metrics_addr, &ca.cert()).await {
            Ok(s) if s == "CN=vibe-agent-rotated" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    // Prometheus keeps its connection to the agent alive, so the proof that it takes the
    // new certificate is a new scrape pool: a job added by a configuration reload (SIGHUP)
    // connects afresh.
    std::fs::write(
        &config,
        format!(
            "{}{}",
            std::fs::read_to_string(&config).unwrap(),
            job("agent-after-rotation", &agent_target, &ca.cert(), &auth)
        ),
    )
    .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&prom.child),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    wait_until(
        WAIT,
        "Prometheus scraping the rotated certificate",
        async || {
            let t = targets(&api, &base).await?;
            if t.iter()
                .any(|(j, h, _)| j == "agent-after-rotation" && h == "up")
                && t.iter().any(|(j, h, _)| j == "agent" && h == "up")
            {
                Ok(())
            } else {
                Err(format!("{t:?}\n{}", prom.log()))
            }
        },
    )
    .await;
    let r = query(
        &api,
        &base,
        "max_over_time(scrape_samples_scraped{job=\"agent\"}[1m])",
    )
    .await;
    assert!(!r.is_empty(), "samples scraped: {r:?}");
    agent.shutdown().await;
}

/// `vibe-agent config check` and `check` refuse a web config file with an unknown or
/// unsupported key, naming it; `--web.config.file` is read like `listen.web_config_file`;
/// `check` reports an expired certificate and a key that does not match by name.
#[test]
fn web_config_problems_are_refused_or_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("server", "vibe-1");
    let agent_toml = |web: &Path| {
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            format!(
                "service = []\n[listen]\nmetrics = \"127.0.0.1:0\"\notlp = \"\"\notlp_grpc = \"\"\nweb_config_file = {}\n\
                 [agent]\nstate_dir = {}\n[systemd]\nunits = []\n[host]\npaths = []\n[claude]\nhomes = []\n",
                toml_str(&web.to_string_lossy()),
                toml_str(&dir.path().to_string_lossy())
            ),
        )
        .unwrap();
        p
    };
    let cases: &[(&str, &[&str])] = &[
        ("  cert_fiel: x\n", &["cert_fiel", "unknown field"]),
        (
            "rate_limit:\n  burst: 5\n  interval: 1s\n",
            &["rate_limit", "not supported"],
        ),
        (
            "  min_version: TLS11\n",
            &["tls_server_config.min_version", "TLS11"],
        ),
        (
            "  curve_preferences: [CurveP521]\n",
            &["curve_preferences", "CurveP521"],
        ),
    ];
    for (extra, wanted) in cases {
        let web = dir.path().join("bad.yml");
        // Indented extras belong to tls_server_config; the others are top-level keys.
        let text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}",
            server.cert.display(),
            server.key.display()
        );
        std::fs::write(&web, text).unwrap();
        let out = Printed::from(run_with_config(&agent_toml(&web), &["config", "check"]));
        assert_eq!(out.code, Some(2), "{out}");
        for w in *wanted {
            assert!(out.stderr.contains(w), "lacks {w:?}: {out}");
        }
        assert!(out.stderr.contains("listen.web_config_file"), "{out}");
        // The command-line spelling of exporters reads the file the same way.
        let none = dir.path().join("none.toml");
        std::fs::write(&none, "").unwrap();
        let out = Printed::from(run_with_config(
            &none,
            &[
                "--web.config.file",
                web.to_str().unwrap(),
                "config",
                "check",
            ],
        ));
        assert_eq!(out.code, Some(2), "{out}");
        assert!(
            out.stderr.contains("--web.config.file") && out.stderr.contains(wanted[0]),
            "{out}"
        );
    }

    // A key that is not the certificate's: refused, naming key_file.
    let other = ca.server("other", "other");
    let web = dir.path().join("mismatch.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            server.cert.display(),
            other.key.display()
        ),
    )
    .unwrap();
    let out = Printed::from(run_with_config(&agent_toml(&web), &["check"]));
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("key_file") && out.stderr.contains("does not match"),
        "{out}"
    );

    // An unreadable key, named with the fix.
    let web = dir.path().join("missing.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: /nonexistent/key.pem\n",
            server.cert.display()
        ),
    )
    .unwrap();
    let out = Printed::from(run_with_config(&agent_toml(&web), &["config", "check"]));
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("key_file") && out.stderr.contains("/nonexistent/key.pem"),
        "{out}"
    );

    // An expired certificate loads (a renewal may be on its way) but `check` fails on it.
    let expired = ca.expired_server("expired", "vibe-expired");
    let web = dir.path().join("expired.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            expired.cert.display(),
            expired.key.display()
        ),
    )
    .unwrap();
    let out = Printed::from(run_with_config(&agent_toml(&web), &["check"]));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout
            .contains("[ERROR] metrics listener web config: TLS, certificate CN=vibe-expired")
            && out.stdout.contains("expired at"),
        "{out}"
    );
    // And a good one is reported OK with its names.
    let web = web_config(dir.path(), &server, "");
    let out = Printed::from(run_with_config(&agent_toml(&web), &["check"]));
    assert!(
        out.stdout.contains("[OK] metrics listener web config: TLS, certificate CN=vibe-1 [IP:127.0.0.1, DNS:localhost] valid until"),
        "{out}"
    );
}

/// `RequireAndVerifyClientCert`: no certificate and one from another CA are refused in the
/// handshake; one signed by `client_ca_file` is served. `client_allowed_sans` narrows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "server-ca");
    let clients = Ca::new(dir.path(), "client-ca");
    let stranger_ca = Ca::new(dir.path(), "stranger-ca");
    let server = ca.server("server", "vibe-1");
    let scraper = clients.client("scraper", "scraper.example");
    let other_name = clients.client("other", "other.example");
    let stranger = stranger_ca.client("stranger", "scraper.example");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  \
             client_allowed_sans: [scraper.example]\n",
            server.cert.display(),
            server.key.display(),
            clients.cert().display()
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent = start_agent(state.path(), Some(&web), "").await;
    let url = format!("https://{}/metrics", agent.metrics_addr);

    let with = |id: Option<&Issued>| https_client(client_config(&ca.cert(), id));
    let (status, body) = get(&with(Some(&scraper)), &url, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("vibe_agent_build_info"), "{body}");
    for (what, client) in [
        ("no certificate", with(None)),
        ("a certificate from another CA", with(Some(&stranger))),
        (
            "a certificate without an allowed SAN",
            with(Some(&other_name)),
        ),
    ] {
        // TLS 1.3 clients learn of the refusal on their first read.
        let r = get(&client, &url, None).await;
        assert!(r.is_err(), "{what}: served {r:?}");
    }
    let client = with(Some(&scraper));
    wait_until(WAIT, "the three refused handshakes counted", async || {
        let (_, body) = get(&client, &url, None).await?;
        let m = Exposition::new(body);
        match m.value("vibe_agent_tls_handshake_errors_total{listener=\"metrics\"}") {
            Some(n) if n >= 3.0 => Ok(()),
            _ => Err(m.vibe_lines()),
        }
    })
    .await;
    agent.shutdown().await;
}

/// bcrypt checks never stall the listener: a flood of wrong passwords (more than can be
/// checked at once) gets 401 or an immediate 429, every refusal is counted, and a scraper
/// whose credentials passed once is answered meanwhile from the verified set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_flood_is_bounded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    // Cost 10 (htpasswd -B's): each check takes tens of milliseconds, so the flood outruns
    // the checks.
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  prometheus: '{}'\n",
            hash(PASSWORD, 10)
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent = start_agent(state.path(), Some(&web), "").await;
    let url = format!("http://{}/metrics", agent.metrics_addr);
    let client = crate::support::http_client();
    let (status, _) = get(&client, &url, Some(("prometheus", PASSWORD)))
        .await
        .unwrap();
    assert_eq!(status, 200, "the first login");

    const FLOOD: usize = 60;
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let user = if i % 2 == 0 { "prometheus" } else { "mallory" };
                get(&client, &url, Some((user, &format!("guess-{i}"))))
                    .await
                    .unwrap()
                    .0
            })
        })
        .collect();
    // While the flood is checked, the scraper is served (its credentials are verified).
    let (status, _) = get(&client, &url, Some(("prometheus", PASSWORD)))
        .await
        .unwrap();
    assert_eq!(status, 200, "the scraper during the flood");
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let busy = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        busy > 0,
        "no 429 for {FLOOD} concurrent checks: {statuses:?}"
    );
    let m = wait_until(WAIT, "the refusals counted", async || {
        let (_, body) = get(&client, &url, Some(("prometheus", PASSWORD))).await?;
        let m = Exposition::new(body);
        let n = |r: &str| {
            m.value(&format!(
                "vibe_agent_web_auth_failures_total{{listener=\"metrics\",reason=\"{r}\"}}"
            ))
            .unwrap_or(0.0)
        };
        let total = n("wrong_password") + n("unknown_user") + n("too_many_checks");
        if total as usize == FLOOD {
            Ok((n("too_many_checks"), m))
        } else {
            Err(m.vibe_lines())
        }
    })
    .await;
    assert_eq!(m.0 as usize, busy, "{}", m.1.vibe_lines());
    agent.shutdown().await;
}

/// An https health URL: checked against a `ca_file`, or not at all with
/// `insecure_skip_verify`; without either the system's CAs do not know the test CA and the
/// probe fails saying so. The server is `openssl s_server -WWW`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_health_urls_with_ca_file_or_insecure_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("server", "health");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("healthz"), "{\"status\":\"ok\"}\n").unwrap();
    let port = free_port();
    let _openssl = Daemon::spawn(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&server.cert)
            .arg("-key")
            .arg(&server.key)
            .current_dir(&www),
        dir.path().join("s_server.log"),
    );
    let url = format!("https://127.0.0.1:{port}/healthz");
    let service = |name: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nkind = \"http\"\nhealth_url = \"{url}\"\n\
             expect_json_field = \"status\"\nexpect_json_value = \"ok\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n{extra}\n"
        )
    };
    let toml = format!(
        "[listen]\nmetrics = \"127.0.0.1:0\"\notlp = \"\"\notlp_grpc = \"\"\n[agent]\nstate_dir = {}\n\
         [systemd]\nunits = []\n[host]\npaths = []\ninterval = \"300ms\"\n[claude]\nhomes = []\n\n{}{}{}",
        toml_str(&dir.path().to_string_lossy()),
        service(
            "with-ca",
            &format!("ca_file = {}\n", toml_str(&ca.cert().to_string_lossy()))
        ),
        service("insecure", "insecure_skip_verify = true\n"),
        service("system-cas", ""),
    );
    let settings = Settings::from_toml(&toml, Path::new("test.toml")).unwrap();
    let listeners = Listeners::bind(&settings).await.unwrap();
    let agent = daemon::start(settings, listeners).unwrap();
    let metrics = crate::support::MetricsClient::new(agent.metrics_addr);
    metrics
        .wait_for("https probes judged", |m| {
            m.is("vibe_http_up{service=\"with-ca\"}", 1.0)
                && m.is("vibe_http_up{service=\"insecure\"}", 1.0)
                && m.is("vibe_http_up{service=\"system-cas\"}", 0.0)
        })
        .await;
    // A round that ran before s_server listened is down too ("connection refused"): wait for
    // one that reached the server and was refused for its certificate.
    let judged = |s: &vibe_agent::model::Snapshot| {
        s.checks()
            .into_iter()
            .find(|c| c.name == "system-cas http")
            .is_some_and(|c| c.detail.contains("certificate") || c.detail.contains("Issuer"))
    };
    // On timeout the last snapshot comes back and the assertion below names what it says.
    let snapshot = agent
        .wait_for(crate::support::WAIT, judged)
        .await
        .unwrap_or_else(|last| last);
    let check = snapshot
        .checks()
        .into_iter()
        .find(|c| c.name == "system-cas http")
        .expect("a system-cas check line");
    assert!(
        check.detail.contains("certificate") || check.detail.contains("Issuer"),
        "{check:?}"
    );
    agent.shutdown().await;
}

/// What the test upstream received: (path, headers, body).
type Received = Arc<Mutex<Vec<(String, axum::http::HeaderMap, Vec<u8>)>>>;

/// Forwarding to an https upstream that wants a tenant header and a bearer token: the
/// agent trusts it through `ca_file`, sends both, and the upstream records the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_to_an_https_upstream_with_a_header_and_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("upstream", "upstream");
    // The upstream: the agent's own TLS acceptor around a recording route that insists on
    // the header and the token.
    let upstream_web = dir.path().join("upstream.yml");
    std::fs::write(
        &upstream_web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            server.cert.display(),
            server.key.display()
        ),
    )
    .unwrap();
    let received = Received::default();
    let rec = received.clone();
    let app = axum::Router::new().route(
        "/insert/opentelemetry/v1/logs",
        axum::routing::post(move |h: axum::http::HeaderMap, body: axum::body::Bytes| {
            let rec = rec.clone();
            async move {
                let ok = h
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer s3cr3t-token")
                    && h.get("accountid").is_some_and(|v| v == "12");
                rec.lock().unwrap().push((
                    "/insert/opentelemetry/v1/logs".into(),
                    h,
                    body.to_vec(),
                ));
                if ok {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    let guard = vibe_agent::webconfig::WebGuard::load("upstream", &upstream_web).unwrap();
    let up = tokio::spawn(vibe_agent::webconfig::serve(
        listener,
        app,
        Some(guard),
        None,
        std::future::pending(),
    ));

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cr3t-token\n").unwrap();
    let otlp_port = free_port();
    let toml = format!(
        "service = []\n[listen]\nmetrics = \"127.0.0.1:0\"\notlp = \"127.0.0.1:{otlp_port}\"\notlp_grpc = \"\"\n\
         [agent]\nstate_dir = {}\n[systemd]\nunits = []\n[host]\npaths = []\n\
         [claude]\nhomes = []\n[claude.forward]\nlogs_url = \"https://127.0.0.1:{}/insert/opentelemetry/v1/logs\"\n\
         ca_file = {}\nbearer_token_file = {}\nheaders = {{ AccountID = \"12\", ProjectID = \"3\" }}\n",
        toml_str(&dir.path().to_string_lossy()),
        upstream_addr.port(),
        toml_str(&ca.cert().to_string_lossy()),
        toml_str(&token_file.to_string_lossy()),
    );
    let settings = Settings::from_toml(&toml, Path::new("test.toml")).unwrap();
    // The token and headers stay out of `config check`'s printout.
    let printed = toml::to_string_pretty(&settings).unwrap();
    assert!(!printed.contains("s3cr3t-token"), "{printed}");
    let listeners = Listeners::bind(&settings).await.unwrap();
    let agent = daemon::start(settings, listeners).unwrap();

    let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"claude_code.user_prompt"}}]}]}]}"#;
    let resp = crate::support::http_client()
        .post(format!("http://127.0.0.1:{otlp_port}/v1/logs"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let got = wait_until(WAIT, "the body at the upstream", async || {
        let r = received.lock().unwrap().clone();
        if r.is_empty() {
            Err("nothing yet".into())
        } else {
            Ok(r)
        }
    })
    .await;
    let (_, headers, got_body) = &got[0];
    assert_eq!(got_body.as_slice(), body.as_slice());
    assert_eq!(headers["authorization"], "Bearer s3cr3t-token");
    assert_eq!(headers["accountid"], "12");
    assert_eq!(headers["projectid"], "3");
    assert_eq!(headers["content-type"], "application/json");
    agent.shutdown().await;
    up.abort();
}
