use xcord_testkit::{Backend, on_both_backends, spawn_app};

on_both_backends!(
    health_reports_the_database_up,
    health_is_503_when_the_database_is_closed,
    readiness_drains_on_shutdown_while_liveness_stays,
);

async fn health_reports_the_database_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.get("/health").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["status"], "OK");
    assert_eq!(res.body["services"]["database"], "up");
    assert_eq!(res.body["version"], env!("CARGO_PKG_VERSION"));
    let ts = res.body["timestamp"].as_str().expect("timestamp");
    assert!(xcord_types::Timestamp::parse_rfc3339(ts).is_some(), "{ts}");
    assert!(res.body.get("error").is_none());
    for probe in ["/health/live", "/health/ready"] {
        let r = app.get(probe).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (200, Some("OK")),
            "{probe}"
        );
    }
}

async fn health_is_503_when_the_database_is_closed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.state.core.store.close().await;
    let res = app.get("/health").await;
    res.assert_error(503, "Service Unavailable");
    assert_eq!(res.body["status"], "DOWN");
    assert_eq!(res.body["services"]["database"], "down");
    app.get("/health/ready")
        .await
        .assert_error(503, "Service Unavailable");
    assert_eq!(app.get("/health/live").await.status, 200);
}

async fn readiness_drains_on_shutdown_while_liveness_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    app.state.begin_shutdown();
    let res = app.get("/health/ready").await;
    res.assert_error(503, "Service Unavailable");
    assert!(
        res.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down"))
    );
    assert_eq!(app.get("/health/live").await.status, 200);
}

/// A real outage: PostgreSQL refuses the database and kills its connections; `/health`
/// turns 503 within the probe timeout, and recovers once connections are allowed again.
#[tokio::test]
async fn postgres_outage_and_recovery_show_in_health() {
    use sqlx::{Connection as _, Executor as _};
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get("/health").await.status, 200);
    let url = app.config.database_url.clone().expect("postgres url");
    let name = url
        .rsplit('/')
        .next()
        .expect("db name")
        .split('?')
        .next()
        .expect("name")
        .to_owned();
    let admin_url = std::env::var("XCORD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| xcord_store::testing::DEFAULT_TEST_POSTGRES_URL.to_owned());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
        )))
        .await
        .expect("refuse connections");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )))
        .await
        .expect("terminate");
    let started = std::time::Instant::now();
    let res = app.get("/health").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "health hung"
    );
    res.assert_error(503, "Service Unavailable");
    assert_eq!(res.body["services"]["database"], "down");

    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
        )))
        .await
        .expect("allow connections");
    let mut recovered = false;
    for _ in 0..20 {
        if app.get("/health").await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "health did not recover after the database came back"
    );
}
