//! A small run of the whole tool against a real server (SQLite), checking what it reports.

use std::time::Duration;

use xcord_bench::{Options, run};
use xcord_testkit::{Backend, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_reports_every_figure() {
    let app = spawn_app(Backend::Sqlite).await;
    let opts = Options {
        target: format!("http://{}", app.addr),
        gateway_target: None,
        server_pid: Some(std::process::id()),
        members: 5,
        connections: 8,
        messages: 40,
        senders: 2,
        concurrency: 4,
        rate: 0.0,
        sources: 2,
        read_secs: 1,
        read_clients: 4,
        idle_steps: vec![10],
        phase_limit: Duration::from_secs(60),
    };
    let report = run(&opts).await.expect("the run completes");
    let fig = |phase: &str, name: &str| {
        report
            .row(phase)
            .and_then(|r| r.get(name))
            .unwrap_or_else(|| panic!("no {phase}.{name} in\n{}", report.table()))
    };
    assert_eq!(fig("setup", "members"), 5.0);
    assert_eq!(fig("idle", "connections"), 10.0);
    assert_eq!(fig("connect", "connections"), 8.0);
    assert_eq!(fig("post", "accepted"), 40.0);
    assert_eq!(fig("post", "failed"), 0.0);
    assert!(fig("post", "posts_per_sec") > 0.0);
    assert!(fig("post", "post_p99_ms") >= fig("post", "post_p50_ms"));
    assert_eq!(fig("delivery", "expected"), 320.0);
    assert_eq!(fig("delivery", "delivered_fraction"), 1.0);
    assert_eq!(fig("delivery", "duplicates"), 0.0);
    assert!(fig("delivery", "max_ms") >= fig("delivery", "p50_ms"));
    assert!(fig("read_me", "reads_per_sec") > 0.0);
    assert_eq!(fig("read_me", "errors"), 0.0);
    assert!(fig("read_history", "requests") > 0.0);
    assert!(fig("server", "rss_mib") > 0.0);
    // JSON lines: one object per row.
    let lines = report.json_lines();
    assert_eq!(lines.lines().count(), report.rows.len());
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        assert!(v["phase"].is_string());
    }
}

#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let opts = Options {
        target: "http://192.0.2.1:3000".into(),
        ..Options::default()
    };
    let err = run(&opts).await.expect_err("refused");
    assert!(format!("{err:#}").contains("non-loopback"), "{err:#}");
}
