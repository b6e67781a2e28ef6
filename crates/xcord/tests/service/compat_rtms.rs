//! The seed-003 profile's REST API (`/compat/rtms/api`, SPEC §7): its envelopes and error
//! shapes, and that it reaches the same users, DMs and messages as the canonical API and
//! gateway.

use reqwest::Method;
use serde_json::{Value, json};
use xcord_testkit::{Backend, TestApp, TestResponse, TestUser, on_both_backends, spawn_app};

on_both_backends!(
    accounts_use_the_seed_envelopes_and_are_canonical_accounts,
    bad_input_gets_the_seed_error_shapes,
    conversations_are_dms_shared_with_the_canonical_api,
    history_pages_by_number_and_read_marks_show,
    the_user_directory_and_presence_routes_answer,
);

const BASE: &str = "/compat/rtms/api";

async fn rtms(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> TestResponse {
    app.request(method, &format!("{BASE}{path}"), body, token)
        .await
}

async fn rtms_register(app: &TestApp, name: &str) -> (TestUser, Value) {
    let res = rtms(
        app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": name, "email": format!("{name}@example.com"), "password": "Secret123"})),
        None,
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let data = &res.body["data"];
    let user = TestUser {
        id: data["user"]["id"].as_str().unwrap_or_default().to_owned(),
        token: data["tokens"]["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        refresh: data["tokens"]["refreshToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    (user, res.body)
}

#[track_caller]
fn assert_seed_error(res: &TestResponse, status: u16, code: &str) {
    assert_eq!(res.status, status, "{}", res.text);
    assert_eq!(res.body["success"], false, "{}", res.text);
    assert_eq!(res.body["error"], code, "{}", res.text);
    assert!(
        res.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        res.text
    );
}

async fn accounts_use_the_seed_envelopes_and_are_canonical_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ann, body) = rtms_register(&app, "ann_rtms").await;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "User registered successfully");
    assert_eq!(body["data"]["user"]["username"], "ann_rtms");
    assert_eq!(body["data"]["user"]["email"], "ann_rtms@example.com");
    assert_eq!(body["data"]["user"]["isActive"], true);
    assert!(!ann.token.is_empty() && !ann.refresh.is_empty(), "{body}");

    // The same account through the canonical API, both ways.
    let canonical = app.get_as(&ann.token, "/users/@me").await;
    assert_eq!(canonical.status, 200, "{}", canonical.text);
    assert_eq!(canonical.body["id"], ann.id.as_str());
    let bob = app.register("bob_rtms").await;
    let login = rtms(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "bob_rtms@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["success"], true);
    assert_eq!(login.body["data"]["user"]["id"], bob.id.as_str());
    let bob_token = login.str_at("/data/tokens/accessToken");

    let me = rtms(&app, Method::GET, "/auth/me", None, Some(&bob_token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["data"]["user"]["username"], "bob_rtms");

    // A profile change shows canonically.
    let renamed = rtms(
        &app,
        Method::PUT,
        "/auth/profile",
        Some(&json!({"username": "bob_renamed"})),
        Some(&bob_token),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["data"]["user"]["username"], "bob_renamed");
    let seen = app.get_as(&bob.token, "/users/@me").await;
    assert_eq!(seen.body["username"], "bob_renamed");

    // Refresh tokens are single use.
    let refreshed = rtms(
        &app,
        Method::POST,
        "/auth/refresh",
        Some(&json!({"refreshToken": ann.refresh})),
        None,
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert!(refreshed.body["data"]["tokens"]["accessToken"].is_string());
    let again = rtms(
        &app,
        Method::POST,
        "/auth/refresh",
        Some(&json!({"refreshToken": ann.refresh})),
        None,
    )
    .await;
    assert_seed_error(&again, 401, "UNAUTHORIZED");

    // Logging out ends the token everywhere.
    let out = rtms(&app, Method::POST, "/auth/logout", None, Some(&bob_token)).await;
    assert_eq!(out.status, 200, "{}", out.text);
    assert_eq!(out.body["success"], true);
    let after = rtms(&app, Method::GET, "/auth/me", None, Some(&bob_token)).await;
    assert_seed_error(&after, 401, "UNAUTHORIZED");
    assert_eq!(app.get_as(&bob_token, "/users/@me").await.status, 401);
}

async fn bad_input_gets_the_seed_error_shapes(backend: Backend) {
    let app = spawn_app(backend).await;
    rtms_register(&app, "cara_rtms").await;
    let users_before = app.get("/api/v1/users/search?q=cara").await.status;

    // Field rules: 400 with one entry per failed field.
    let bad = rtms(
        &app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": "x", "email": "not-an-address", "password": "short"})),
        None,
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.body["success"], false);
    assert_eq!(bad.body["message"], "Validation failed");
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|f| f["field"].as_str()).collect())
        .unwrap_or_default();
    for f in ["username", "email", "password"] {
        assert!(fields.contains(&f), "{f} missing in {}", bad.text);
    }
    // A missing field and a malformed body.
    let missing = rtms(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "a@b.c"})),
        None,
    )
    .await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    assert_eq!(missing.body["errors"][0]["field"], "password");
    let garbled = app
        .request(Method::POST, &format!("{BASE}/auth/login"), None, None)
        .await;
    assert_eq!(garbled.body["success"], false, "{}", garbled.text);
    assert!(
        garbled.status >= 400 && garbled.status < 500,
        "{}",
        garbled.text
    );

    // Taken names, wrong passwords, no token, unknown routes.
    let taken = rtms(
        &app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": "cara_rtms", "email": "other@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    assert_seed_error(&taken, 409, "CONFLICT");
    let wrong = rtms(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "cara_rtms@example.com", "password": "Wrong1234"})),
        None,
    )
    .await;
    assert_seed_error(&wrong, 401, "UNAUTHORIZED");
    let anonymous = rtms(&app, Method::GET, "/conversations", None, None).await;
    assert_seed_error(&anonymous, 401, "UNAUTHORIZED");
    let forged = rtms(
        &app,
        Method::GET,
        "/conversations",
        None,
        Some("not.a.token"),
    )
    .await;
    assert_seed_error(&forged, 401, "UNAUTHORIZED");
    let nowhere = rtms(&app, Method::GET, "/no/such/route", None, None).await;
    assert_seed_error(&nowhere, 404, "NOT_FOUND");
    // Nothing above changed what is stored.
    assert_eq!(
        app.get("/api/v1/users/search?q=cara").await.status,
        users_before
    );
    let login = rtms(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "cara_rtms@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
}

async fn conversations_are_dms_shared_with_the_canonical_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let (dan, _) = rtms_register(&app, "dan_rtms").await;
    let eve = app.register("eve_rtms").await;
    let (mut eve_gw, _) = app.gateway_as(&eve).await;

    let opened = rtms(
        &app,
        Method::POST,
        "/conversations",
        Some(&json!({"participantId": eve.id})),
        Some(&dan.token),
    )
    .await;
    assert_eq!(opened.status, 201, "{}", opened.text);
    let conv = opened.str_at("/data/conversation/id");
    let participants = opened.body["data"]["conversation"]["participants"].to_string();
    assert!(
        participants.contains(&eve.id) && participants.contains(&dan.id),
        "{participants}"
    );
    // Create-or-get.
    let again = rtms(
        &app,
        Method::POST,
        "/conversations",
        Some(&json!({"participantId": eve.id})),
        Some(&dan.token),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.str_at("/data/conversation/id"), conv);

    // A message sent here is a canonical DM message: history and gateway.
    let sent = rtms(
        &app,
        Method::POST,
        "/messages",
        Some(&json!({"conversationId": conv, "content": "hello from rtms"})),
        Some(&dan.token),
    )
    .await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(
        sent.body["data"]["message"]["conversationId"],
        conv.as_str()
    );
    assert_eq!(sent.body["data"]["message"]["senderId"], dan.id.as_str());
    assert_eq!(sent.body["data"]["message"]["messageType"], "text");
    let created = eve_gw.dispatch("MESSAGE_CREATE").await;
    assert_eq!(created["content"], "hello from rtms");
    assert_eq!(
        created["channel_id"]
            .as_str()
            .or(created["channelId"].as_str()),
        Some(conv.as_str()),
        "{created}"
    );
    let canonical = app
        .get_as(&eve.token, &format!("/channels/{conv}/messages"))
        .await;
    assert_eq!(canonical.body["messages"][0]["content"], "hello from rtms");

    // And the other way round: a canonical post is in the conversation here.
    let reply = app
        .post_as(
            &eve.token,
            &format!("/channels/{conv}/messages"),
            &json!({"content": "hi back"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let list = rtms(&app, Method::GET, "/conversations", None, Some(&dan.token)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let convs = &list.body["data"]["conversations"];
    assert_eq!(convs.as_array().map(Vec::len), Some(1), "{}", list.text);
    assert_eq!(convs[0]["id"], conv.as_str());
    assert_eq!(convs[0]["lastMessage"]["content"], "hi back");
    assert_eq!(convs[0]["lastMessage"]["senderId"], eve.id.as_str());

    // Someone outside the conversation can neither read nor write it.
    let (fay, _) = rtms_register(&app, "fay_rtms").await;
    let peek = rtms(
        &app,
        Method::GET,
        &format!("/messages/conversations/{conv}"),
        None,
        Some(&fay.token),
    )
    .await;
    assert!(peek.status == 404 || peek.status == 403, "{}", peek.text);
    assert_eq!(peek.body["success"], false);
    let intrude = rtms(
        &app,
        Method::POST,
        "/messages",
        Some(&json!({"conversationId": conv, "content": "let me in"})),
        Some(&fay.token),
    )
    .await;
    assert!(
        intrude.status == 404 || intrude.status == 403,
        "{}",
        intrude.text
    );
    let ids = rtms(
        &app,
        Method::GET,
        &format!("/messages/conversations/{conv}"),
        None,
        Some(&dan.token),
    )
    .await;
    assert_eq!(ids.body["pagination"]["total"], 2, "{}", ids.text);
    // Nor open one with themselves or someone who does not exist.
    let alone = rtms(
        &app,
        Method::POST,
        "/conversations",
        Some(&json!({"participantId": fay.id})),
        Some(&fay.token),
    )
    .await;
    assert_eq!(alone.status, 400, "{}", alone.text);
    let ghost = rtms(
        &app,
        Method::POST,
        "/conversations",
        Some(&json!({"participantId": "123456789"})),
        Some(&fay.token),
    )
    .await;
    assert_seed_error(&ghost, 404, "NOT_FOUND");
}

async fn history_pages_by_number_and_read_marks_show(backend: Backend) {
    let app = spawn_app(backend).await;
    let (gus, _) = rtms_register(&app, "gus_rtms").await;
    let (hal, _) = rtms_register(&app, "hal_rtms").await;
    let conv = rtms(
        &app,
        Method::POST,
        "/conversations",
        Some(&json!({"participantId": hal.id})),
        Some(&gus.token),
    )
    .await
    .str_at("/data/conversation/id");
    let mut ids = Vec::new();
    for i in 1..=5 {
        let sent = rtms(
            &app,
            Method::POST,
            "/messages",
            Some(&json!({"conversationId": conv, "content": format!("m{i}")})),
            Some(&gus.token),
        )
        .await;
        assert_eq!(sent.status, 201, "{}", sent.text);
        ids.push(sent.str_at("/data/message/id"));
    }
    let page = |n: u32| {
        let (app, conv, token) = (&app, &conv, hal.token.clone());
        async move {
            let res = rtms(
                app,
                Method::GET,
                &format!("/messages/conversations/{conv}?page={n}&limit=2"),
                None,
                Some(&token),
            )
            .await;
            assert_eq!(res.status, 200, "{}", res.text);
            res
        }
    };
    let first = page(1).await;
    assert_eq!(
        first.body["pagination"],
        json!({"page": 1, "limit": 2, "total": 5, "pages": 3})
    );
    let contents = |res: &TestResponse| -> Vec<String> {
        res.body["data"]["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["content"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Page 1 is the newest, each page oldest first.
    assert_eq!(contents(&first), ["m4", "m5"]);
    assert_eq!(contents(&page(2).await), ["m2", "m3"]);
    assert_eq!(contents(&page(3).await), ["m1"]);
    assert!(contents(&page(4).await).is_empty());
    assert_eq!(first.body["data"]["messages"][0]["isRead"], false);

    // Hal reads up to m4: m1–m4 show as read to the sender, m5 not.
    let read = rtms(
        &app,
        Method::PATCH,
        &format!("/messages/{}/read", ids[3]),
        None,
        Some(&hal.token),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["data"]["messageId"], ids[3].as_str());
    let seen = rtms(
        &app,
        Method::GET,
        &format!("/messages/conversations/{conv}?limit=5"),
        None,
        Some(&gus.token),
    )
    .await;
    let flags: Vec<bool> = seen.body["data"]["messages"]
        .as_array()
        .map(|a| a.iter().map(|m| m["isRead"] == true).collect())
        .unwrap_or_default();
    assert_eq!(flags, [true, true, true, true, false], "{}", seen.text);
    // The canonical read state moved too.
    let states = app.get_as(&hal.token, "/users/@me/read-states").await;
    assert!(states.text.contains(&ids[3]), "{}", states.text);

    for bad in ["page=0", "limit=0", "limit=101", "page=x"] {
        let res = rtms(
            &app,
            Method::GET,
            &format!("/messages/conversations/{conv}?{bad}"),
            None,
            Some(&hal.token),
        )
        .await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
        assert_eq!(res.body["message"], "Validation failed");
    }
    let unknown = rtms(
        &app,
        Method::PATCH,
        "/messages/999999999/read",
        None,
        Some(&hal.token),
    )
    .await;
    assert_seed_error(&unknown, 404, "NOT_FOUND");
    let malformed = rtms(
        &app,
        Method::GET,
        "/messages/conversations/abc",
        None,
        Some(&hal.token),
    )
    .await;
    assert_seed_error(&malformed, 404, "NOT_FOUND");
}

async fn the_user_directory_and_presence_routes_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut users = Vec::new();
    for name in ["ida_rtms", "jon_rtms", "kim_rtms"] {
        users.push(rtms_register(&app, name).await.0);
    }
    let list = rtms(
        &app,
        Method::GET,
        "/users/list?page=1&limit=2",
        None,
        Some(&users[0].token),
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.body["pagination"],
        json!({"page": 1, "limit": 2, "total": 3, "pages": 2})
    );
    let names: Vec<&str> = list.body["data"]["users"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u["username"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["ida_rtms", "jon_rtms"]);
    assert!(
        !list.text.contains("@example.com"),
        "e-mails leak: {}",
        list.text
    );

    // Kim comes online on the canonical gateway.
    let kim = &users[2];
    let (_gw, _) = app.gateway_as(kim).await;
    let count = rtms(
        &app,
        Method::GET,
        "/users/online/count",
        None,
        Some(&users[0].token),
    )
    .await;
    assert_eq!(count.status, 200, "{}", count.text);
    assert!(
        count.body["data"]["onlineUserCount"].as_i64() >= Some(1),
        "{}",
        count.text
    );
    assert!(count.body["data"]["timestamp"].is_string());
    let online = rtms(
        &app,
        Method::GET,
        "/users/online/list",
        None,
        Some(&users[0].token),
    )
    .await;
    assert_eq!(online.status, 200, "{}", online.text);
    assert!(
        online.body["data"]["onlineUsers"].is_array(),
        "{}",
        online.text
    );
    // Presence of someone the caller shares nothing with follows the canonical privacy rule;
    // of oneself, it answers.
    let own = rtms(
        &app,
        Method::GET,
        &format!("/users/online/status/{}", kim.id),
        None,
        Some(&kim.token),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.body["data"]["isOnline"], true, "{}", own.text);
    let health = app.get("/compat/rtms/health").await;
    assert_eq!(health.body["status"], "OK");
}
