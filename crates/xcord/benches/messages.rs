//! Message benchmarks (run on purpose, not in the test suite):
//!
//!   cargo bench -p xcord --bench messages -- history sqlite|postgres [ROWS]
//!   cargo bench -p xcord --bench messages -- post sqlite|postgres [CONCURRENCY] [MESSAGES]
//!
//! `history` seeds one channel with ROWS messages (default 1,000,000) and times pages of 100
//! both at the storage layer and through the whole HTTP stack. `post` times
//! `POST /channels/{id}/messages` with CONCURRENCY clients (default 16) sending MESSAGES in
//! all (default 4,000). Figures go to docs/benchmarks.md.

use std::time::{Duration, Instant};

use serde_json::json;
use xcord_store::{Backend, Page};
use xcord_testkit::{TestApp, TestAppBuilder, TestUser};
use xcord_types::{Snowflake, SnowflakeGenerator};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} n={:<5} min={:>7.3} ms  p50={:>7.3} ms  p95={:>7.3} ms  p99={:>7.3} ms",
        samples.len(),
        ms(samples[0]),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.95)),
        ms(percentile(&samples, 0.99)),
    );
}

async fn app(backend: Backend) -> TestApp {
    TestAppBuilder::new(backend)
        .configure(|c| {
            c.rate_limits = false;
            c.database_max_connections = 16;
            c.log = "warn".into();
        })
        .spawn()
        .await
}

async fn server_channel(app: &TestApp, owner: &TestUser) -> (Snowflake, Snowflake) {
    let s = app
        .post_as(&owner.token, "/servers", &json!({"name": "bench"}))
        .await;
    let server: Snowflake = s.body["id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .expect("server id");
    let channel: Snowflake = s.body["channels"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .expect("channel id");
    (server, channel)
}

/// Inserts `rows` messages into `channel` in large multi-row statements.
async fn seed(app: &TestApp, channel: Snowflake, author: Snowflake, rows: usize) -> Vec<Snowflake> {
    let ids = SnowflakeGenerator::new(7);
    let started = Instant::now();
    let mut all = Vec::with_capacity(rows);
    let store = &app.state.core.store;
    let mut done = 0;
    while done < rows {
        let mut tx = store.begin_write().await.expect("tx");
        for _ in 0..50 {
            let n = 1000.min(rows - done);
            if n == 0 {
                break;
            }
            let mut sql = String::from(
                "INSERT INTO messages (id, channel_id, author_id, content, created_at) VALUES ",
            );
            for k in 0..n {
                let id = ids.next_id();
                all.push(id);
                if k > 0 {
                    sql.push(',');
                }
                // Numbers only: nothing here comes from outside.
                sql.push_str(&format!(
                    "({id}, {channel}, {author}, 'benchmark message {} about topic {}', {})",
                    done + k,
                    (done + k) % 97,
                    id.timestamp().as_millis()
                ));
            }
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .expect("insert");
            done += n;
        }
        tx.commit().await.expect("commit");
    }
    if store.backend() == Backend::Postgres {
        sqlx::query("ANALYZE messages")
            .execute(store.pool())
            .await
            .expect("analyze");
    }
    println!(
        "seeded {rows} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    all
}

async fn history(backend: Backend, rows: usize) {
    let app = app(backend).await;
    let owner = app.register("bench_owner").await;
    let (_, channel) = server_channel(&app, &owner).await;
    let author: Snowflake = owner.id.parse().expect("id");
    let ids = seed(&app, channel, author, rows).await;
    let store = &app.state.core.store;
    let iterations = 300;
    let pick = |i: usize| ids[(i * 7919 + 13) % ids.len()];

    for _ in 0..20 {
        store
            .history(channel, Page::Latest, 100)
            .await
            .expect("warm");
    }
    let mut latest = Vec::new();
    let mut before = Vec::new();
    let mut around = Vec::new();
    for i in 0..iterations {
        let t = Instant::now();
        let page = store
            .history(channel, Page::Latest, 100)
            .await
            .expect("latest");
        latest.push(t.elapsed());
        assert_eq!(page.len(), 100);
        let t = Instant::now();
        let page = store
            .history(channel, Page::Before(pick(i)), 100)
            .await
            .expect("before");
        before.push(t.elapsed());
        assert!(!page.is_empty());
        let t = Instant::now();
        store
            .history(channel, Page::Around(pick(i + 1)), 100)
            .await
            .expect("around");
        around.push(t.elapsed());
    }
    println!(
        "\n{} — history pages of 100 from a channel of {rows} messages",
        backend.name()
    );
    report("store: newest 100", latest);
    report("store: 100 before a random message", before);
    report("store: 100 around a random message", around);

    let mut http = Vec::new();
    for i in 0..iterations {
        let path = format!(
            "/api/v1/channels/{channel}/messages?limit=100&before={}",
            pick(i)
        );
        let t = Instant::now();
        let res = app
            .client
            .get(app.url(&path))
            .bearer_auth(&owner.token)
            .send()
            .await
            .expect("get");
        let status = res.status();
        let _ = res.bytes().await.expect("body");
        http.push(t.elapsed());
        assert!(status.is_success(), "{status}");
    }
    report("HTTP: GET ?limit=100&before=random (full stack)", http);
}

async fn post(backend: Backend, concurrency: usize, messages: usize) {
    let app = std::sync::Arc::new(app(backend).await);
    let owner = app.register("bench_poster").await;
    let (_, channel) = server_channel(&app, &owner).await;
    let per_client = messages / concurrency;
    let path = format!("/api/v1/channels/{channel}/messages");
    // Warm-up.
    for i in 0..50 {
        app.client
            .post(app.url(&path))
            .bearer_auth(&owner.token)
            .json(&json!({"content": format!("warm {i}")}))
            .send()
            .await
            .expect("warm");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (app, path, token) = (app.clone(), path.clone(), owner.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                let res = app
                    .client
                    .post(app.url(&path))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("client {c} message {i}"), "nonce": format!("{c}-{i}")}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(res.status().as_u16(), 201);
                let _ = res.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let elapsed = started.elapsed();
    println!(
        "\n{} — POST /channels/{{id}}/messages, {concurrency} clients, {} messages: {:.0} messages/s",
        backend.name(),
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    report("latency per POST", all);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let backend = match args.get(1).map(String::as_str) {
        Some("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("history") => rt.block_on(history(
            backend,
            args.get(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000),
        )),
        Some("post") => rt.block_on(post(
            backend,
            args.get(2).and_then(|n| n.parse().ok()).unwrap_or(16),
            args.get(3).and_then(|n| n.parse().ok()).unwrap_or(4_000),
        )),
        _ => eprintln!(
            "usage: cargo bench -p xcord --bench messages -- history|post sqlite|postgres [N…]"
        ),
    }
}
