//! The job queue across real processes (docs/jobs.md): two nodes racing for the same due
//! jobs, a node SIGKILLed mid-job, a node that dies after posting and before recording it.
//! Crashes are staged with the test hooks `XCORD_TEST_JOBS_FAULT` and
//! `XCORD_TEST_JOBS_LEASE_MS` (3 s leases, so takeovers come quickly).

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sqlx::Row as _;
use xcord_store::{Backend, Store, StoreOptions};
use xcord_types::Timestamp;

use super::process::{Running, command, post_json, signal, start, wait_exit};

const LEASE_MS: &str = "3000";

/// Environment of a node on `db` (PostgreSQL URL, or SQLite in the data dir when `None`).
fn node_env<'a>(
    db: Option<&'a str>,
    node: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("XCORD_NODE_ID", node),
        ("XCORD_RATE_LIMITS", "off"),
        ("XCORD_PASSWORD_HASH", "bcrypt:4"),
        ("XCORD_LOG", "warn"),
        ("XCORD_TEST_JOBS_LEASE_MS", LEASE_MS),
        // Tokens from one node are good on the other.
        (
            "XCORD_JWT_SECRET",
            "jobs-crash-test-secret-0123456789abcdef",
        ),
    ];
    if let Some(url) = db {
        env.push(("XCORD_DATABASE_URL", url));
    }
    env.extend_from_slice(extra);
    env
}

/// Registers a user, creates a server and returns (token, channel).
async fn author(client: &reqwest::Client, node: &Running, name: &str) -> (String, String) {
    let (status, r) = post_json(
        client,
        node.addr,
        "/auth/register",
        None,
        json!({"email": format!("{name}@example.com"), "username": name, "password": "Secret123"}),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let token = r["accessToken"].as_str().expect("token").to_owned();
    let (status, server) = post_json(
        client,
        node.addr,
        "/servers",
        Some(&token),
        json!({"name": format!("{name} jobs")}),
    )
    .await;
    assert_eq!(status, 201, "{server}");
    let channel = server["channels"][0]["id"]
        .as_str()
        .expect("channel")
        .to_owned();
    (token, channel)
}

/// Schedules `n` messages in `channel`, due `secs` from now; their ids.
async fn schedule_many(
    client: &reqwest::Client,
    node: &Running,
    token: &str,
    channel: &str,
    n: usize,
    secs: i64,
) -> Vec<String> {
    let send_at = Timestamp::from_millis(Timestamp::now().as_millis() + secs * 1000).to_rfc3339();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let (status, s) = post_json(
            client,
            node.addr,
            &format!("/channels/{channel}/scheduled-messages"),
            Some(token),
            json!({"content": format!("job {i}"), "sendAt": send_at}),
        )
        .await;
        assert_eq!(status, 201, "{s}");
        ids.push(s["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// Messages posted per scheduled id (by the nonce each is posted with).
async fn posts_per_scheduled(store: &Store) -> std::collections::HashMap<String, i64> {
    let rows = sqlx::query(
        "SELECT nonce, COUNT(*) FROM messages WHERE nonce LIKE 'scheduled:%' GROUP BY nonce",
    )
    .fetch_all(store.pool())
    .await
    .expect("count posts");
    rows.iter()
        .map(|r| {
            let nonce: String = r.try_get(0).expect("nonce");
            let n: i64 = r.try_get(1).expect("count");
            (nonce.trim_start_matches("scheduled:").to_owned(), n)
        })
        .collect()
}

async fn statuses(store: &Store, status: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM scheduled_messages WHERE status = $1")
        .bind(status.to_owned())
        .fetch_one(store.pool())
        .await
        .expect("count")
        .try_get(0)
        .expect("count")
}

/// Jobs not done, with their state, attempts and last error (for failure messages).
async fn open_jobs(store: &Store) -> Vec<String> {
    sqlx::query("SELECT state, attempts, last_error, lease_owner FROM jobs WHERE state <> 'done'")
        .fetch_all(store.pool())
        .await
        .expect("jobs")
        .iter()
        .map(|r| {
            format!(
                "{} attempts={} error={:?} owner={:?}",
                r.try_get::<String, _>(0).unwrap_or_default(),
                r.try_get::<i64, _>(1).unwrap_or_default(),
                r.try_get::<Option<String>, _>(2).ok().flatten(),
                r.try_get::<Option<String>, _>(3).ok().flatten()
            )
        })
        .collect()
}

async fn job_state(store: &Store) -> String {
    sqlx::query("SELECT state FROM jobs")
        .fetch_one(store.pool())
        .await
        .expect("job")
        .try_get(0)
        .expect("state")
}

/// Polls `check` every 100 ms for up to `limit`; whether it came true.
async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

fn assert_each_once(posts: &std::collections::HashMap<String, i64>, ids: &[String]) {
    for id in ids {
        assert_eq!(
            posts.get(id),
            Some(&1),
            "scheduled message {id} posted {posts:?}"
        );
    }
    assert_eq!(posts.len(), ids.len(), "{posts:?}");
}

async fn pg_database() -> xcord_store::testing::TestDatabase {
    xcord_store::testing::TestDatabase::new(Backend::Postgres)
        .await
        .expect("a PostgreSQL test database")
}

async fn open(url: &str) -> Store {
    Store::connect(url, &StoreOptions::default())
        .await
        .expect("open the database")
}

#[tokio::test]
async fn two_nodes_racing_for_due_jobs_post_each_message_once() {
    let db = pg_database().await;
    let (da, dbb) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = start(da.path(), &node_env(Some(db.url()), "1", &[]), &[]);
    let b = start(dbb.path(), &node_env(Some(db.url()), "2", &[]), &[]);
    let client = reqwest::Client::new();
    let (token, channel) = author(&client, &a, "race").await;
    let ids = schedule_many(&client, &b, &token, &channel, 80, 8).await;
    let store = open(db.url()).await;
    assert!(
        within(Duration::from_secs(20), || async {
            statuses(&store, "sent").await == 80
        })
        .await,
        "not all sent: {} sent; open jobs: {:?}; activity {:#?}; node 1 said {:#?}; node 2 said {:#?}",
        statuses(&store, "sent").await,
        open_jobs(&store).await,
        sqlx::query("SELECT state || ' ' || COALESCE(wait_event_type, '-') || ' ' || COALESCE(wait_event, '-') || ' ' || left(query, 160) FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(store.pool())
            .await
            .map(|rows| rows.iter().map(|r| r.try_get::<String, _>(0).unwrap_or_default()).collect::<Vec<_>>())
            .unwrap_or_default(),
        a.lines.try_iter().collect::<Vec<_>>(),
        b.lines.try_iter().collect::<Vec<_>>()
    );
    assert_each_once(&posts_per_scheduled(&store).await, &ids);
    // The queue's metrics (SPEC §6): depth by state, lag, attempts and outcomes. Either
    // node may have run every job, so the counters are looked for across both.
    let mut metrics = String::new();
    for node in [&a, &b] {
        metrics += &reqwest::get(format!("http://{}/metrics", node.addr))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
    }
    for name in [
        "jobs_queue_depth",
        "jobs_lag_seconds",
        "jobs_attempts_total",
        "jobs_outcomes_total",
        "jobs_due_to_done_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("jobs_outcomes_total") && l.contains("outcome=\"done\"")),
        "no done outcomes counted"
    );
    let owners: Vec<String> = sqlx::query("SELECT DISTINCT lease_owner FROM jobs")
        .fetch_all(store.pool())
        .await
        .expect("owners")
        .iter()
        .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
        .collect();
    eprintln!("jobs were run by {owners:?}");
    store.close().await;
    drop((a, b));
}

#[tokio::test]
async fn a_node_killed_mid_job_has_its_jobs_finished_by_another_within_the_lease() {
    let db = pg_database().await;
    let (da, dbb) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut a = start(
        da.path(),
        &node_env(
            Some(db.url()),
            "1",
            &[("XCORD_TEST_JOBS_FAULT", "stall-before-effect")],
        ),
        &[],
    );
    let client = reqwest::Client::new();
    let (token, channel) = author(&client, &a, "stall").await;
    let ids = schedule_many(&client, &a, &token, &channel, 5, 1).await;
    let store = open(db.url()).await;
    // The first node claims every job and holds them (renewing its leases).
    let held = || async {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_owner LIKE 'node1-%'",
        )
        .fetch_one(store.pool())
        .await
        .expect("count")
        .try_get(0)
        .expect("count");
        n == 5
    };
    assert!(
        within(Duration::from_secs(15), held).await,
        "node 1 never held the jobs"
    );
    let b = start(dbb.path(), &node_env(Some(db.url()), "2", &[]), &[]);
    // While node 1 lives its leases hold: node 2 takes nothing.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(statuses(&store, "sent").await, 0);
    assert!(held().await);
    signal(&a.child, "KILL");
    wait_exit(&mut a.child, Duration::from_secs(10));
    let killed = std::time::Instant::now();
    assert!(
        within(Duration::from_secs(10), || async {
            statuses(&store, "sent").await == 5
        })
        .await,
        "the other node did not finish the jobs"
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(3000 + 2000),
        "took {took:?} after the kill"
    );
    assert_each_once(&posts_per_scheduled(&store).await, &ids);
    store.close().await;
    drop(b);
}

/// Node `a` posts and dies before recording it; `b` (or `a` again) must not post again.
async fn after_a_crash_past_the_effect_nothing_is_posted_twice(
    db: Option<&str>,
    data: &Path,
    second_data: &Path,
) {
    let url_of = |dir: &Path| format!("sqlite://{}", dir.join("data").join("xcord.db").display());
    let mut a = start(
        data,
        &node_env(db, "1", &[("XCORD_TEST_JOBS_FAULT", "crash-after-effect")]),
        &[],
    );
    let client = reqwest::Client::new();
    let (token, channel) = author(&client, &a, "crash").await;
    let ids = schedule_many(&client, &a, &token, &channel, 1, 1).await;
    // It posts, then aborts before marking the job done.
    let code = wait_exit(&mut a.child, Duration::from_secs(20));
    assert_ne!(code, 0, "the staged crash");
    let url = db.map(str::to_owned).unwrap_or_else(|| url_of(data));
    let store = open(&url).await;
    assert_eq!(posts_per_scheduled(&store).await.get(&ids[0]), Some(&1));
    assert_eq!(
        job_state(&store).await,
        "running",
        "left before the job was recorded"
    );
    store.close().await;
    // Another node (PostgreSQL) or the same one restarted (SQLite) takes the job over once
    // the dead node's lease lapses, finds the post by its nonce and records it.
    let b = start(second_data, &node_env(db, "2", &[]), &[]);
    let store = open(&url).await;
    assert!(
        within(Duration::from_secs(15), || async {
            job_state(&store).await == "done"
        })
        .await,
        "the job was never taken over and finished"
    );
    assert_each_once(&posts_per_scheduled(&store).await, &ids);
    assert_eq!(statuses(&store, "sent").await, 1);
    store.close().await;
    drop(b);
}

#[tokio::test]
async fn postgres_a_node_dying_after_posting_does_not_post_again() {
    let db = pg_database().await;
    let (da, dbb) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    after_a_crash_past_the_effect_nothing_is_posted_twice(Some(db.url()), da.path(), dbb.path())
        .await;
}

#[tokio::test]
async fn sqlite_a_node_restarted_after_dying_past_the_effect_does_not_post_again() {
    let dir = tempfile::tempdir().expect("dir");
    after_a_crash_past_the_effect_nothing_is_posted_twice(None, dir.path(), dir.path()).await;
    // The operator's view of that queue, and its repairs.
    let jobs = |args: &[&str]| {
        let out = command(dir.path())
            .arg("jobs")
            .args(args)
            .output()
            .expect("xcord jobs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = jobs(&["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("done") && l.contains("scheduled_message")),
        "{listed}"
    );
    assert!(listed.contains("scheduled_message"), "{listed}");
    assert!(jobs(&["retry"]).contains("0 jobs"), "nothing is dead");
    assert!(jobs(&["list", "--state", "waiting"]).lines().count() <= 3);
    assert!(jobs(&["purge", "--state", "done"]).contains("1 finished jobs deleted"));
    assert!(!jobs(&["list"]).contains("scheduled_message"));
    let bad = command(dir.path())
        .args(["jobs", "list", "--state", "sideways"])
        .output()
        .expect("xcord jobs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--state"));
}

/// The machine's RabbitMQ (scripts/test starts it).
fn amqp_url() -> String {
    std::env::var("XCORD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Restarts the broker's application when dropped, so a failing test leaves it running.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
    }
}

fn rabbitmqctl(action: &str) {
    let ok = std::process::Command::new("rabbitmqctl")
        .args(["-q", action])
        .status()
        .expect("rabbitmqctl")
        .success();
    assert!(ok, "rabbitmqctl {action}");
}

/// RabbitMQ carries the due jobs; a broker restart while jobs are due loses nothing and
/// doubles nothing (the database is the record; messages only say "look at job N").
#[tokio::test]
async fn through_rabbitmq_jobs_survive_a_broker_restart_while_due() {
    let db = pg_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let url = amqp_url();
    let node = start(
        dir.path(),
        &node_env(
            Some(db.url()),
            "1",
            &[
                ("XCORD_AMQP_URL", &url),
                ("XCORD_LOG", "warn,xcord_jobs=info"),
            ],
        ),
        &[],
    );
    let client = reqwest::Client::new();
    let (token, channel) = author(&client, &node, "broker").await;
    let store = open(db.url()).await;

    // Through the broker.
    let first = schedule_many(&client, &node, &token, &channel, 20, 2).await;
    assert!(
        within(Duration::from_secs(15), || async {
            statuses(&store, "sent").await == 20
        })
        .await,
        "not delivered through the broker"
    );
    let seen: Vec<String> = node.lines.try_iter().collect();
    assert!(
        seen.iter().any(|l| l.contains("job broker connected")),
        "the node did not use the broker: {seen:#?}"
    );

    // The broker goes away while the next jobs fall due, and comes back.
    let _back = BrokerBack;
    let second = schedule_many(&client, &node, &token, &channel, 20, 2).await;
    rabbitmqctl("stop_app");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent_while_down = statuses(&store, "sent").await;
    rabbitmqctl("start_app");
    assert!(
        within(Duration::from_secs(40), || async {
            statuses(&store, "sent").await == 40
        })
        .await,
        "jobs lost over the restart: {} of 40 sent ({sent_while_down} while the broker was down)",
        statuses(&store, "sent").await
    );
    let mut all = first;
    all.extend(second);
    assert_each_once(&posts_per_scheduled(&store).await, &all);
    store.close().await;
    drop(node);
}
