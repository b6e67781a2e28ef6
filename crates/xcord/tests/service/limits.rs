//! Rate limits (SPEC §3): headers on every limited response, 429 with Retry-After, keys per
//! address, per e-mail and per user; `XCORD_RATE_LIMITS=off` lifts them.

use serde_json::json;
use xcord_core::ratelimit::{Limit, Tier};
use xcord_testkit::{Backend, TestAppBuilder, on_both_backends};

on_both_backends!(
    register_and_login_are_limited_per_address,
    password_reset_is_limited_per_email,
    authenticated_calls_share_a_per_user_budget,
);

fn limited(backend: Backend) -> TestAppBuilder {
    TestAppBuilder::new(backend).configure(|c| c.rate_limits = true)
}

async fn register_and_login_are_limited_per_address(backend: Backend) {
    let app = limited(backend).spawn().await;
    for i in 0..3 {
        let res = app
            .post_api("/auth/register", &json!({"email": format!("r{i}@example.com"), "username": format!("rr{i}"), "password": "Secret123"}))
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        assert_eq!(res.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            res.header("x-ratelimit-remaining"),
            Some((2 - i).to_string().as_str())
        );
        assert!(
            res.header("x-ratelimit-reset")
                .and_then(|r| r.parse::<u64>().ok())
                .is_some_and(|r| r > 3500 && r <= 3600)
        );
    }
    let fourth = app
        .post_api(
            "/auth/register",
            &json!({"email": "r3@example.com", "username": "rr3", "password": "Secret123"}),
        )
        .await;
    fourth.assert_error(429, "Too Many Requests");
    let retry: u64 = fourth
        .header("retry-after")
        .and_then(|r| r.parse().ok())
        .expect("Retry-After");
    assert!(retry > 3500 && retry <= 3600, "{retry}");
    assert_eq!(fourth.header("x-ratelimit-remaining"), Some("0"));
    // Guest accounts count against the same budget.
    app.post_api("/auth/guest", &json!({"username": "gg1"}))
        .await
        .assert_error(429, "Too Many Requests");
    // Nothing was created by the refused call.
    app.post_api(
        "/auth/login",
        &json!({"username": "rr3", "password": "Secret123"}),
    )
    .await
    .assert_error(401, "Unauthorized");

    // Five logins a minute from one address: the refused `rr3` login above was the first.
    for _ in 0..4 {
        assert_eq!(
            app.post_api(
                "/auth/login",
                &json!({"username": "rr0", "password": "Secret123"})
            )
            .await
            .status,
            200
        );
    }
    let sixth = app
        .post_api(
            "/auth/login",
            &json!({"username": "rr0", "password": "Secret123"}),
        )
        .await;
    sixth.assert_error(429, "Too Many Requests");
    assert!(sixth.header("retry-after").is_some());
}

async fn password_reset_is_limited_per_email(backend: Backend) {
    let app = limited(backend).spawn().await;
    for _ in 0..3 {
        let r = app
            .post_api(
                "/auth/forgot-password",
                &json!({"email": "Same@example.com"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.header("x-ratelimit-remaining").is_some());
    }
    app.post_api(
        "/auth/forgot-password",
        &json!({"email": "same@EXAMPLE.com"}),
    )
    .await
    .assert_error(429, "Too Many Requests");
    assert_eq!(
        app.post_api(
            "/auth/forgot-password",
            &json!({"email": "other@example.com"})
        )
        .await
        .status,
        200
    );
}

async fn authenticated_calls_share_a_per_user_budget(backend: Backend) {
    let app = limited(backend)
        .configure(|c| {
            c.rate_limit_overrides.insert(
                Tier::General,
                Limit {
                    max: 4,
                    window_secs: 60,
                },
            );
        })
        .spawn()
        .await;
    let a = app.register("busy").await;
    let b = app.login("busy", "Secret123").await;
    let other = app.register("calm").await;
    for left in ["3", "2", "1"] {
        let r = app.get_as(&a.token, "/users/@me").await;
        assert_eq!(
            (r.status, r.header("x-ratelimit-remaining")),
            (200, Some(left))
        );
    }
    // The budget is the user's, whichever session spends it.
    assert_eq!(app.get_as(&b.token, "/auth/me").await.status, 200);
    let over = app.get_as(&a.token, "/users/@me/settings").await;
    over.assert_error(429, "Too Many Requests");
    assert_eq!(over.header("x-ratelimit-limit"), Some("4"));
    assert_eq!(
        app.get_as(&other.token, "/users/@me").await.status,
        200,
        "other users are unaffected"
    );
}

#[tokio::test]
async fn limits_off_means_no_limits_and_no_headers() {
    let app = TestAppBuilder::new(Backend::Sqlite)
        .configure(|c| c.rate_limits = false)
        .spawn()
        .await;
    for i in 0..6 {
        let r = app
            .post_api("/auth/register", &json!({"email": format!("n{i}@example.com"), "username": format!("nn{i}"), "password": "Secret123"}))
            .await;
        assert_eq!(r.status, 201);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
}
