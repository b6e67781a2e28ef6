//! Accounts and authentication over HTTP, on both backends.

use std::sync::Arc;

use serde_json::json;
use xcord_core::{Clock as _, ManualClock};
use xcord_testkit::{
    Backend, TestApp, TestAppBuilder, TestUser, on_both_backends, spawn_app, token_in_mail,
};
use xcord_types::Timestamp;

on_both_backends!(
    register_login_me_refresh_logout,
    registration_rules_are_enforced,
    wrong_password_and_unknown_user_answer_alike,
    reused_refresh_token_revokes_the_session,
    tokens_expire_by_the_clock,
    missing_malformed_and_foreign_tokens_are_401,
    guest_accounts_and_their_upgrade,
    email_verification_flow,
    verification_can_be_required_before_login,
    password_reset_flow_revokes_every_session,
    two_factor_login_with_totp_and_backup_codes,
    sessions_are_listed_and_revocable,
    login_rehashes_passwords_made_with_another_algorithm,
);

async fn register_login_me_refresh_logout(backend: Backend) {
    let app = spawn_app(backend).await;
    let reg = app
        .post_api("/auth/register", &json!({"email": "Ann@Example.com", "username": "Ann", "password": "Secret123", "dateOfBirth": "1990-05-01"}))
        .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert_eq!(reg.body["username"], "Ann");
    assert_eq!(reg.body["email"], "ann@example.com");
    assert_eq!(reg.body["verificationEmailSent"], true);
    assert_eq!(
        reg.body["user"]["discriminator"].as_str().map(str::len),
        Some(4)
    );
    let first = TestUser::from_login(&reg.body);

    // Login by username in any case, and by e-mail.
    for body in [
        json!({"username": "aNN", "password": "Secret123"}),
        json!({"email": "ANN@example.com", "password": "Secret123"}),
    ] {
        let res = app.post_api("/auth/login", &body).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.body["user"]["id"], first.id.as_str());
        assert_eq!(res.body["user"]["email"], "ann@example.com");
    }
    let me = app.get_as(&first.token, "/auth/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], first.id.as_str());
    assert_eq!(me.body, app.get_as(&first.token, "/users/@me").await.body);
    assert!(
        me.body.get("passwordHash").is_none() && !me.text.contains("$2b$"),
        "no hash may leak: {}",
        me.text
    );

    let r = app
        .post_api("/auth/refresh", &json!({"refreshToken": first.refresh}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (access2, refresh2) = (r.str_at("/accessToken"), r.str_at("/refreshToken"));
    assert_ne!(refresh2, first.refresh);
    assert_eq!(app.get_as(&access2, "/users/@me").await.status, 200);

    assert_eq!(
        app.post_as(&access2, "/auth/logout", &json!({}))
            .await
            .status,
        204
    );
    // Both tokens of that session are dead at once.
    app.get_as(&access2, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    app.get_as(&first.token, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    app.post_api("/auth/refresh", &json!({"refreshToken": refresh2}))
        .await
        .assert_error(401, "Unauthorized");
}

async fn registration_rules_are_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("taken").await;
    let cases = [
        (
            json!({"email": "a@x.io", "username": "user1", "password": "weakpass"}),
            422,
            "password",
        ),
        (
            json!({"email": "a@x.io", "username": "user1", "password": "Sh0rt"}),
            422,
            "password",
        ),
        (
            json!({"email": "not-mail", "username": "user1", "password": "Secret123"}),
            422,
            "email",
        ),
        (
            json!({"email": "a@x.io", "username": "u!", "password": "Secret123"}),
            422,
            "username",
        ),
        (
            json!({"email": "a@x.io", "username": "user1", "password": "Secret123", "dateOfBirth": "2020-01-01"}),
            422,
            "dateOfBirth",
        ),
        (
            json!({"email": "a@x.io", "username": "user1", "password": "Secret123", "dateOfBirth": "soon"}),
            422,
            "dateOfBirth",
        ),
        (
            json!({"email": "a@x.io", "password": "Secret123"}),
            422,
            "username",
        ),
        (
            json!({"email": "b@x.io", "username": "TAKEN", "password": "Secret123"}),
            409,
            "",
        ),
        (
            json!({"email": "TAKEN@example.com", "username": "fresh", "password": "Secret123"}),
            409,
            "",
        ),
    ];
    for (body, status, field) in cases {
        let res = app.post_api("/auth/register", &body).await;
        assert_eq!(res.status, status, "{body}: {}", res.text);
        if status == 422 {
            assert_eq!(res.body["error"], "Validation Error");
            let fields: Vec<&str> = res.body["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["field"].as_str())
                .collect();
            assert!(fields.contains(&field), "{body}: {}", res.text);
        } else {
            res.assert_error(409, "Conflict");
        }
    }
    let under13 = app
        .post_api("/auth/register", &json!({"email": "kid@x.io", "username": "kid", "password": "Secret123", "dateOfBirth": "2020-01-01"}))
        .await;
    assert_eq!(under13.body["details"][0]["rule"], "minimumAge");
    // Several problems are reported together.
    let many = app
        .post_api(
            "/auth/register",
            &json!({"email": "bad", "username": "x", "password": "weak"}),
        )
        .await;
    assert_eq!(
        many.body["details"].as_array().map(Vec::len),
        Some(3),
        "{}",
        many.text
    );
    // Nothing was stored for any refused registration.
    app.post_api(
        "/auth/login",
        &json!({"username": "user1", "password": "Secret123"}),
    )
    .await
    .assert_error(401, "Unauthorized");
}

async fn wrong_password_and_unknown_user_answer_alike(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("bob").await;
    let wrong = app
        .post_api(
            "/auth/login",
            &json!({"username": "bob", "password": "Wrong1234"}),
        )
        .await;
    let unknown = app
        .post_api(
            "/auth/login",
            &json!({"username": "nobody", "password": "Wrong1234"}),
        )
        .await;
    let unknown_mail = app
        .post_api(
            "/auth/login",
            &json!({"email": "nobody@example.com", "password": "Wrong1234"}),
        )
        .await;
    wrong.assert_error(401, "Unauthorized");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, unknown_mail.body);
    app.post_api("/auth/login", &json!({"password": "Secret123"}))
        .await
        .assert_error(422, "Validation Error");
}

async fn reused_refresh_token_revokes_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let u = app.register("carol").await;
    let other = app.login("carol", "Secret123").await;
    let r1 = app
        .post_api("/auth/refresh", &json!({"refreshToken": u.refresh}))
        .await;
    assert_eq!(r1.status, 200);
    let live = TestUser::from_login(
        &json!({"userId": u.id, "accessToken": r1.body["accessToken"], "refreshToken": r1.body["refreshToken"]}),
    );
    // The spent token comes back: theft. The session dies, new tokens included.
    app.post_api("/auth/refresh", &json!({"refreshToken": u.refresh}))
        .await
        .assert_error(401, "Unauthorized");
    app.get_as(&live.token, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    app.post_api("/auth/refresh", &json!({"refreshToken": live.refresh}))
        .await
        .assert_error(401, "Unauthorized");
    // Another session of the same user is untouched.
    assert_eq!(app.get_as(&other.token, "/users/@me").await.status, 200);
    app.post_api("/auth/refresh", &json!({"refreshToken": "made-up"}))
        .await
        .assert_error(401, "Unauthorized");
    app.post_api("/auth/refresh", &json!({}))
        .await
        .assert_error(422, "Validation Error");
}

async fn clocked(backend: Backend) -> (TestApp, ManualClock) {
    let clock = ManualClock::new(Timestamp::now());
    let app = TestAppBuilder::new(backend)
        .clock(Arc::new(clock.clone()))
        .spawn()
        .await;
    (app, clock)
}

async fn tokens_expire_by_the_clock(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let u = app.register("dave").await;
    clock.advance_millis(14 * 60 * 1000);
    assert_eq!(app.get_as(&u.token, "/users/@me").await.status, 200);
    clock.advance_millis(61 * 1000);
    let res = app.get_as(&u.token, "/users/@me").await;
    res.assert_error(401, "Unauthorized");
    assert!(
        res.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{}",
        res.text
    );
    // The refresh token still works for 7 days.
    let r = app
        .post_api("/auth/refresh", &json!({"refreshToken": u.refresh}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    clock.advance_millis(7 * 24 * 3600 * 1000 + 1000);
    let stale = r.str_at("/refreshToken");
    app.post_api("/auth/refresh", &json!({"refreshToken": stale}))
        .await
        .assert_error(401, "Unauthorized");
}

async fn missing_malformed_and_foreign_tokens_are_401(backend: Backend) {
    let app = spawn_app(backend).await;
    app.get("/api/v1/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    app.get_as("garbage", "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    // Signed with another secret.
    let foreign = xcord_core::token::TokenKeys::new(b"someone-else-entirely-0123456789")
        .issue(
            xcord_types::Snowflake::from_i64(1),
            xcord_types::Snowflake::from_i64(2),
            Timestamp::now(),
            900,
        )
        .map(|(t, _)| t)
        .expect("a token signed with another key");
    app.get_as(&foreign, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    let res = app
        .client
        .get(app.url("/api/v1/users/@me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 401);
}

async fn guest_accounts_and_their_upgrade(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .post_api("/auth/guest", &json!({"username": "visitor_1"}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["user"]["isGuest"], true);
    assert_eq!(res.body["user"]["email"], serde_json::Value::Null);
    let g = TestUser::from_login(&res.body);
    app.post_api("/auth/guest", &json!({"username": "VISITOR_1"}))
        .await
        .assert_error(409, "Conflict");
    app.post_api("/auth/guest", &json!({"username": "no"}))
        .await
        .assert_error(422, "Validation Error");
    // A guest has no password to log in with.
    app.post_api(
        "/auth/login",
        &json!({"username": "visitor_1", "password": "Secret123"}),
    )
    .await
    .assert_error(401, "Unauthorized");
    // Half an upgrade is refused; a whole one turns the guest into an account.
    app.patch_as(&g.token, "/users/@me", &json!({"email": "v@example.com"}))
        .await
        .assert_error(422, "Validation Error");
    let up = app
        .patch_as(
            &g.token,
            "/users/@me",
            &json!({"email": "V@example.com", "newPassword": "Upgrade123"}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(
        (up.body["isGuest"].as_bool(), up.body["email"].as_str()),
        (Some(false), Some("v@example.com"))
    );
    assert_eq!(app.login("visitor_1", "Upgrade123").await.id, g.id);
    // The guest's session survives its own upgrade.
    assert_eq!(app.get_as(&g.token, "/users/@me").await.status, 200);
}

async fn email_verification_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    let u = app.register("erin").await;
    let mail = app
        .wait_for_mail("erin@example.com", "verification token")
        .await;
    let token = token_in_mail(&mail, "verification token:");
    assert_eq!(
        app.get_as(&u.token, "/users/@me").await.body["emailVerified"],
        false
    );
    app.post_api("/auth/verify-email", &json!({"token": "wrong"}))
        .await
        .assert_error(400, "Bad Request");
    let ok = app
        .post_api("/auth/verify-email", &json!({"token": token}))
        .await;
    assert_eq!(
        (ok.status, ok.body["success"].as_bool()),
        (200, Some(true)),
        "{}",
        ok.text
    );
    assert_eq!(
        app.get_as(&u.token, "/users/@me").await.body["emailVerified"],
        true
    );
    app.post_api("/auth/verify-email", &json!({"token": token}))
        .await
        .assert_error(400, "Bad Request");
    app.post_as(&u.token, "/auth/resend-verification", &json!({}))
        .await
        .assert_error(409, "Conflict");
    // A changed address is unverified again and gets a new mail.
    let changed = app
        .patch_as(
            &u.token,
            "/users/@me",
            &json!({"email": "erin2@example.com", "currentPassword": "Secret123"}),
        )
        .await;
    assert_eq!(
        (changed.status, changed.body["emailVerified"].as_bool()),
        (200, Some(false)),
        "{}",
        changed.text
    );
    app.wait_for_mail("erin2@example.com", "verification token")
        .await;
    let resent = app
        .post_as(&u.token, "/auth/resend-verification", &json!({}))
        .await;
    assert_eq!(resent.status, 200, "{}", resent.text);
}

async fn verification_can_be_required_before_login(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| c.require_email_verification = true)
        .spawn()
        .await;
    let reg = app
        .post_api(
            "/auth/register",
            &json!({"email": "fay@example.com", "username": "fay", "password": "Secret123"}),
        )
        .await;
    assert_eq!(reg.status, 201);
    assert!(
        reg.body.get("accessToken").is_none() && reg.body.get("user").is_none(),
        "{}",
        reg.text
    );
    app.post_api(
        "/auth/login",
        &json!({"username": "fay", "password": "Secret123"}),
    )
    .await
    .assert_error(403, "Forbidden");
    // A wrong password still says nothing about verification.
    app.post_api(
        "/auth/login",
        &json!({"username": "fay", "password": "Nope12345"}),
    )
    .await
    .assert_error(401, "Unauthorized");
    let token = token_in_mail(
        &app.wait_for_mail("fay@example.com", "verification token")
            .await,
        "verification token:",
    );
    assert_eq!(
        app.post_api("/auth/verify-email", &json!({"token": token}))
            .await
            .status,
        200
    );
    app.login("fay", "Secret123").await;
}

async fn password_reset_flow_revokes_every_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("gus").await;
    let b = app.login("gus", "Secret123").await;
    let known = app
        .post_api(
            "/auth/forgot-password",
            &json!({"email": "GUS@example.com"}),
        )
        .await;
    let unknown = app
        .post_api(
            "/auth/forgot-password",
            &json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(
        known.body, unknown.body,
        "the answer must not tell whether the address exists"
    );
    let token = token_in_mail(
        &app.wait_for_mail("gus@example.com", "reset token").await,
        "reset token:",
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !app.outbox().iter().any(|m| m.contains("ghost@example.com")),
        "no mail for unknown addresses"
    );

    app.post_api(
        "/auth/reset-password",
        &json!({"token": token, "newPassword": "weak"}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_api(
        "/auth/reset-password",
        &json!({"token": "bogus", "newPassword": "NewSecret1"}),
    )
    .await
    .assert_error(400, "Bad Request");
    let ok = app
        .post_api(
            "/auth/reset-password",
            &json!({"token": token, "newPassword": "NewSecret1"}),
        )
        .await;
    assert_eq!(
        (ok.status, ok.body["success"].as_bool()),
        (200, Some(true)),
        "{}",
        ok.text
    );
    for u in [&a, &b] {
        app.get_as(&u.token, "/users/@me")
            .await
            .assert_error(401, "Unauthorized");
        app.post_api("/auth/refresh", &json!({"refreshToken": u.refresh}))
            .await
            .assert_error(401, "Unauthorized");
    }
    app.post_api(
        "/auth/login",
        &json!({"username": "gus", "password": "Secret123"}),
    )
    .await
    .assert_error(401, "Unauthorized");
    app.login("gus", "NewSecret1").await;
    app.post_api(
        "/auth/reset-password",
        &json!({"token": token, "newPassword": "Another1x"}),
    )
    .await
    .assert_error(400, "Bad Request");
}

fn totp_code(secret: &str, at: Timestamp) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret)
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_else(|e| panic!("the TOTP secret {secret:?} is not base32: {e:?}"));
    let totp = totp_rs::Builder::new()
        .with_secret(bytes)
        .with_account_name("x".to_owned())
        .build_noncompliant();
    totp.generate(u64::try_from(at.as_millis() / 1000).unwrap_or(0))
        .to_string()
}

async fn two_factor_login_with_totp_and_backup_codes(backend: Backend) {
    let (app, clock) = clocked(backend).await;
    let u = app.register("hana").await;
    let en = app.post_as(&u.token, "/auth/enable-2fa", &json!({})).await;
    assert_eq!(en.status, 200, "{}", en.text);
    let secret = en.str_at("/secret");
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(en.body["qrCode"].as_str().unwrap_or_default())
        .unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "qrCode must be a base64 PNG");
    assert!(
        en.body["otpauthUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("otpauth://totp/"))
    );
    let codes: Vec<String> = en.body["backupCodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes.len(), 10);
    // The secret is not stored in clear.
    let stored = app
        .state
        .core
        .store
        .user_by_username("hana")
        .await
        .expect("read hana's row")
        .and_then(|u| u.mfa_secret)
        .unwrap_or_default();
    assert!(!stored.is_empty() && !stored.contains(&secret));

    app.post_as(&u.token, "/auth/verify-2fa", &json!({"code": "000000"}))
        .await
        .assert_error(400, "Bad Request");
    let on = app
        .post_as(
            &u.token,
            "/auth/verify-2fa",
            &json!({"code": totp_code(&secret, clock.now())}),
        )
        .await;
    assert_eq!(
        (on.status, on.body["enabled"].as_bool()),
        (200, Some(true)),
        "{}",
        on.text
    );
    app.post_as(&u.token, "/auth/enable-2fa", &json!({}))
        .await
        .assert_error(409, "Conflict");
    assert_eq!(
        app.get_as(&u.token, "/users/@me").await.body["twoFactorEnabled"],
        true
    );

    let first = app
        .post_api(
            "/auth/login",
            &json!({"username": "hana", "password": "Secret123"}),
        )
        .await;
    assert_eq!(
        (first.status, first.body["mfaRequired"].as_bool()),
        (200, Some(true)),
        "{}",
        first.text
    );
    assert!(first.body.get("accessToken").is_none());
    let ticket = first.str_at("/ticket");
    app.post_api(
        "/auth/login/mfa",
        &json!({"ticket": ticket, "code": "123456"}),
    )
    .await
    .assert_error(401, "Unauthorized");
    // The code that switched 2FA on cannot be replayed.
    app.post_api(
        "/auth/login/mfa",
        &json!({"ticket": ticket, "code": totp_code(&secret, clock.now())}),
    )
    .await
    .assert_error(401, "Unauthorized");
    clock.advance_millis(30_000);
    let ok = app
        .post_api(
            "/auth/login/mfa",
            &json!({"ticket": ticket, "code": totp_code(&secret, clock.now())}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.body["accessToken"].is_string());
    // A ticket is single-use.
    app.post_api(
        "/auth/login/mfa",
        &json!({"ticket": ticket, "code": totp_code(&secret, clock.now())}),
    )
    .await
    .assert_error(401, "Unauthorized");

    // A backup code works once.
    let t2 = app
        .post_api(
            "/auth/login",
            &json!({"username": "hana", "password": "Secret123"}),
        )
        .await
        .str_at("/ticket");
    let with_backup = app
        .post_api(
            "/auth/login/mfa",
            &json!({"ticket": t2, "code": codes[0].to_uppercase()}),
        )
        .await;
    assert_eq!(with_backup.status, 200, "{}", with_backup.text);
    let t3 = app
        .post_api(
            "/auth/login",
            &json!({"username": "hana", "password": "Secret123"}),
        )
        .await
        .str_at("/ticket");
    app.post_api("/auth/login/mfa", &json!({"ticket": t3, "code": codes[0]}))
        .await
        .assert_error(401, "Unauthorized");

    // Too many wrong codes kill a ticket.
    let t4 = app
        .post_api(
            "/auth/login",
            &json!({"username": "hana", "password": "Secret123"}),
        )
        .await
        .str_at("/ticket");
    for _ in 0..5 {
        app.post_api("/auth/login/mfa", &json!({"ticket": t4, "code": "999999"}))
            .await
            .assert_error(401, "Unauthorized");
    }
    clock.advance_millis(30_000);
    app.post_api(
        "/auth/login/mfa",
        &json!({"ticket": t4, "code": totp_code(&secret, clock.now())}),
    )
    .await
    .assert_error(401, "Unauthorized");

    app.post_as(&u.token, "/auth/disable-2fa", &json!({"code": "111111"}))
        .await
        .assert_error(400, "Bad Request");
    let off = app
        .post_as(&u.token, "/auth/disable-2fa", &json!({"code": codes[1]}))
        .await;
    assert_eq!(
        (off.status, off.body["enabled"].as_bool()),
        (200, Some(false)),
        "{}",
        off.text
    );
    app.login("hana", "Secret123").await;
    app.post_as(&u.token, "/auth/disable-2fa", &json!({"code": codes[2]}))
        .await
        .assert_error(400, "Bad Request");
}

async fn sessions_are_listed_and_revocable(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("ivy").await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        )
        .json(&json!({"username": "ivy", "password": "Secret123"}))
        .send()
        .await
        .expect("login");
    let b = TestUser::from_login(&TestApp::read(res).await.body);
    let list = app.get_as(&a.token, "/auth/sessions").await;
    assert_eq!(list.status, 200);
    let sessions = list.body["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sessions.len(), 2, "{}", list.text);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let firefox = sessions
        .iter()
        .find(|s| s["device"] == "Firefox on Linux")
        .expect("device from user agent");
    assert_eq!(firefox["ip"], "127.0.0.1");
    assert_eq!(firefox["current"], false);
    let fid = firefox["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a session without an id: {}", list.text))
        .to_owned();

    assert_eq!(
        app.delete_as(&a.token, &format!("/auth/sessions/{fid}"))
            .await
            .status,
        204
    );
    app.get_as(&b.token, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    app.delete_as(&a.token, &format!("/auth/sessions/{fid}"))
        .await
        .assert_error(404, "Not Found");
    // Another user's session is not yours to see or end.
    let other = app.register("jon").await;
    let theirs = app
        .get_as(&other.token, "/auth/sessions")
        .await
        .expect_status(200, "list jon's sessions")
        .str_at("/sessions/0/id");
    app.delete_as(&a.token, &format!("/auth/sessions/{theirs}"))
        .await
        .assert_error(404, "Not Found");
    assert_eq!(app.get_as(&other.token, "/users/@me").await.status, 200);
    assert_eq!(
        app.get_as(&a.token, "/auth/sessions").await.body["sessions"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn login_rehashes_passwords_made_with_another_algorithm(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| c.password_hash = xcord_core::password::PasswordAlgorithm::Argon2id)
        .spawn()
        .await;
    let u = app.register("kim").await;
    let old = bcrypt::hash("Secret123", 4).expect("a bcrypt hash");
    let id = u.id.parse().expect("id");
    let store = &app.state.core.store;
    let mut tx = store.begin_write().await.expect("begin");
    store
        .set_password_hash(&mut tx, id, &old, Timestamp::now())
        .await
        .expect("downgrade");
    tx.commit().await.expect("commit");
    app.login("kim", "Secret123").await;
    let mut upgraded = false;
    for _ in 0..50 {
        let h = app
            .state
            .core
            .store
            .user_by_id(id)
            .await
            .expect("read kim's row")
            .and_then(|u| u.password_hash)
            .unwrap_or_default();
        if h.starts_with("$argon2id$") {
            upgraded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        upgraded,
        "the bcrypt hash was not replaced by argon2id after login"
    );
    app.login("kim", "Secret123").await;
}
