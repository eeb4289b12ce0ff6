//! Host paths: an existing path reports its filesystem's size; a missing one is reported
//! as missing, with no size, and nothing else suffers.

use std::path::PathBuf;

use crate::support::{Config, TestAgent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sampled_path_reports_its_size_or_its_absence() {
    let existing = tempfile::tempdir().expect("temp dir");
    // (path, exists)
    let table: Vec<(PathBuf, bool)> = vec![
        ("/".into(), true),
        (existing.path().to_path_buf(), true),
        ("/nonexistent/vibe-agent-test".into(), false),
        (existing.path().join("not-created-yet"), false),
    ];
    let mut config = Config::new();
    for (path, _) in &table {
        config = config.host_path(path);
    }
    let agent = TestAgent::start(&config).await;
    let sel = |family: &str, path: &PathBuf| format!("{family}{{path=\"{}\"}}", path.display());

    let m = agent
        .wait_for("every path sampled", |m| {
            table
                .iter()
                .all(|(p, _)| m.value(&sel("vibe_filesystem_path_exists", p)).is_some())
        })
        .await;

    for (path, exists) in &table {
        let shown = path.display();
        assert_eq!(
            m.value(&sel("vibe_filesystem_path_exists", path)),
            Some(if *exists { 1.0 } else { 0.0 }),
            "{shown}"
        );
        assert_eq!(
            m.value(&sel("vibe_filesystem_stuck", path)),
            Some(0.0),
            "{shown}"
        );
        let size = m.value(&sel("vibe_filesystem_size_bytes", path));
        let avail = m.value(&sel("vibe_filesystem_avail_bytes", path));
        if *exists {
            assert!(size.is_some_and(|s| s > 0.0), "{shown}: size {size:?}");
            assert!(
                avail.is_some_and(|a| a <= size.unwrap()),
                "{shown}: avail {avail:?}"
            );
        } else {
            assert_eq!(size, None, "{shown}: no size for a missing path");
            assert_eq!(avail, None, "{shown}");
        }
        let check = agent.check(&format!("filesystem {shown}"));
        assert_eq!(check.ok, *exists, "{check}");
        if !exists {
            assert!(check.detail.contains("does not exist"), "{check}");
        }
    }

    // Missing paths take nothing else down.
    assert!(m.value("vibe_host_memory_total_bytes").is_some());
    assert_eq!(agent.get("/-/healthy").await.status(), 200);
    assert_eq!(m.value(r#"vibe_agent_source_up{source="host"}"#), Some(1.0));
}
