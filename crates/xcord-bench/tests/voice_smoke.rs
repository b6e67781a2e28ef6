//! A small voice run against a real server (SQLite, the SFU in the same process): rooms of
//! str0m peers that must hear each other with next to no loss.

use std::time::Duration;

use xcord_bench::{VoiceOptions, run_voice};
use xcord_testkit::{Backend, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_of_three_hear_each_other() {
    let app = spawn_app(Backend::Sqlite).await;
    let opts = VoiceOptions {
        target: format!("http://{}", app.addr),
        server_pid: Some(std::process::id()),
        rooms: vec![2],
        participants: 3,
        warmup: Duration::from_millis(500),
        secs: Duration::from_secs(3),
        drivers: 2,
        concurrency: 8,
        sources: 2,
        phase_limit: Duration::from_secs(30),
    };
    let report = tokio::time::timeout(Duration::from_secs(60), run_voice(&opts))
        .await
        .expect("the run ends in time")
        .expect("the run completes");
    let fig = |name: &str| {
        report
            .row("voice")
            .and_then(|r| r.get(name))
            .unwrap_or_else(|| panic!("no voice.{name} in\n{}", report.table()))
    };
    let table = report.table();
    assert_eq!(fig("participants"), 6.0, "{table}");
    assert_eq!(fig("connected"), 6.0, "{table}");
    // 6 senders at 50 packets/s, each heard by 2: 600 copies a second.
    assert_eq!(fig("streams"), 12.0, "{table}");
    let expected = fig("expected");
    assert!(
        expected >= 12.0 * 50.0 * 2.5,
        "about 3 s of every stream: {table}"
    );
    assert!(fig("received") > 0.0, "{table}");
    assert!(fig("loss_pct") < 1.0, "{table}");
    let fwd = fig("server_forwarded_per_sec");
    assert!((500.0..700.0).contains(&fwd), "{table}");
    assert!(fig("client_received_per_sec") > 500.0, "{table}");
    assert!(fig("latency_p99_ms") >= fig("latency_p50_ms"), "{table}");
    assert!(fig("latency_p50_ms") < 50.0, "{table}");
}
