//! A real JupyterLab from the test venv (`$VIBE_TEST_VENV`, else
//! `<repo>/target/test-deps/venv`, both made by `scripts/test`), started the way the VIBE
//! box runs it: a token and `--ServerApp.base_url=/jupyter/`, on a free 127.0.0.1 port, with
//! its config, data, runtime and IPython directories in a temporary directory.
//!
//! The server runs in its own process group so the kernels it starts go with it: dropping
//! the fixture sends SIGTERM to the server's PID (it shuts its kernels down), waits, then
//! SIGKILLs the group it leads.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{WAIT, end_child, free_port, http_client, repo_root, wait_until};

/// The venv with JupyterLab in it.
pub fn venv() -> PathBuf {
    std::env::var_os("VIBE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-deps/venv"))
}

/// The venv's `jupyter`, for units run by the systemd sandbox: it must exist, and must not
/// live under /tmp, which the sandbox replaces with its own.
pub fn sandbox_jupyter() -> PathBuf {
    let jupyter = venv().join("bin/jupyter");
    assert!(
        jupyter.exists(),
        "JupyterLab is not installed: {} is missing. Run `bash scripts/test` (it creates the \
         venv with `pip install jupyterlab` and sets VIBE_TEST_VENV)",
        jupyter.display()
    );
    let jupyter = std::fs::canonicalize(&jupyter).unwrap();
    assert!(
        !jupyter.starts_with("/tmp"),
        "VIBE_TEST_VENV={} is under /tmp, which the systemd sandbox replaces with its own; \
         use a venv elsewhere (scripts/test makes target/test-deps/venv)",
        jupyter.display()
    );
    jupyter
}

pub struct JupyterLab {
    pub port: u16,
    pub token: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl JupyterLab {
    /// Starts JupyterLab and waits until `/jupyter/api` answers. A free port can be taken
    /// by someone else before JupyterLab binds it; then it tries another.
    pub async fn start(token: &str) -> Self {
        let jupyter = venv().join("bin/jupyter");
        assert!(
            jupyter.exists(),
            "JupyterLab is not installed: {} is missing. Run `bash scripts/test` (it creates \
             the venv with `pip install jupyterlab` and sets VIBE_TEST_VENV), or point \
             VIBE_TEST_VENV at a venv that has jupyterlab",
            jupyter.display()
        );
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(&jupyter, token, free_port()).await {
                Ok(lab) => return lab,
                Err(log) if attempts < 3 && log.contains("already in use") => continue,
                Err(log) => panic!("JupyterLab exited while starting:\n{log}"),
            }
        }
    }

    /// One start on `port`; `Err(log)` when the server exits before answering.
    async fn try_start(jupyter: &Path, token: &str, port: u16) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("JupyterLab's temp dir");
        let log = std::fs::File::create(dir.path().join("jupyter.log")).expect("log file");
        let child = Command::new(jupyter)
            .args([
                "lab",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                &format!("--port={port}"),
                "--ServerApp.port_retries=0",
                &format!("--IdentityProvider.token={token}"),
                "--ServerApp.base_url=/jupyter/",
                &format!("--ServerApp.root_dir={}", dir.path().display()),
            ])
            .env("JUPYTER_CONFIG_DIR", dir.path().join("config"))
            .env("JUPYTER_DATA_DIR", dir.path().join("data"))
            .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
            .env("IPYTHONDIR", dir.path().join("ipython"))
            .env_remove("JUPYTER_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", jupyter.display()));
        let mut lab = Self {
            port,
            token: token.into(),
            child: Some(child),
            dir,
            client: http_client(),
        };
        let url = lab.url("/api");
        wait_until(WAIT, "JupyterLab to answer /jupyter/api", async || {
            if let Some(c) = lab.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Ok(Err(format!("exit status {status}\n{}", lab.log())));
                }
            }
            match lab.client.get(&url).send().await {
                Ok(r) if r.status() == 200 => Ok(Ok(())),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(format!("{e}\n{}", lab.log())),
            }
        })
        .await?;
        Ok(lab)
    }

    /// `http://127.0.0.1:PORT/jupyter<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/jupyter{path}", self.port)
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jupyter.log")).unwrap_or_default()
    }

    /// Starts a python3 kernel through the REST API; returns its id.
    pub async fn start_kernel(&self) -> String {
        let resp = self
            .client
            .post(self.url("/api/kernels"))
            .header("Authorization", format!("token {}", self.token))
            .json(&serde_json::json!({ "name": "python3" }))
            .send()
            .await
            .expect("POST /jupyter/api/kernels");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.expect("kernel JSON");
        assert_eq!(status, 201, "start kernel: {body}\n{}", self.log());
        body["id"].as_str().expect("kernel id").to_string()
    }

    /// Opens the kernel's channels websocket, as a notebook tab does.
    pub async fn connect_kernel(
        &self,
        kernel: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "ws://127.0.0.1:{}/jupyter/api/kernels/{kernel}/channels",
            self.port
        );
        let mut req = url.as_str().into_client_request().expect("ws request");
        req.headers_mut().insert(
            "Authorization",
            format!("token {}", self.token)
                .parse()
                .expect("header value"),
        );
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap_or_else(|_| panic!("kernel websocket did not open\n{}", self.log()))
            .unwrap_or_else(|e| panic!("kernel websocket: {e}\n{}", self.log()));
        ws
    }

    /// Stops the server by its PID (SIGTERM: it shuts its kernels down and exits), waits up
    /// to `grace`, then SIGKILLs what is left of its process group.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            end_child(&mut child, grace, true);
        }
    }
}

impl Drop for JupyterLab {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}
