//! Defects found by testing from outside as a new user and as an attacker: each test here
//! failed before its fix. On both backends.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

use xcord_permissions::bits::{MANAGE_CHANNELS, VIEW_CHANNELS};
use xcord_testkit::ws::{GatewayClient, Incoming};
use xcord_testkit::{Backend, TestAppBuilder, on_both_backends, room, say, spawn_app, string_at};

on_both_backends!(
    nul_characters_are_refused_the_same_way_everywhere,
    channel_positions_are_bounded_and_cannot_overflow,
    messages_carry_a_version_and_stale_edits_conflict,
    a_kick_or_ban_whose_audit_row_fails_changes_nothing,
    a_role_change_whose_audit_row_fails_changes_nothing,
    private_channels_are_private_from_their_first_moment,
    a_session_survives_a_graceful_restart,
    a_second_resume_replays_events_not_the_old_resumed,
    a_flooding_client_that_does_not_read_is_closed_with_4008,
    a_permission_change_during_the_gap_means_identify_anew,
);

const NUL: &str = "a\u{0}b";

async fn nul_characters_are_refused_the_same_way_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "nul").await;
    let (s, c) = (&r.server, &r.channel);
    let first = say(&app, &r.owner, c, "before").await;
    let mid = string_at(&first, "/id");
    // (method, path, body, field named in the 422)
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            format!("/channels/{c}/messages"),
            json!({"content": NUL}),
            "content",
        ),
        (
            Method::POST,
            format!("/channels/{c}/messages"),
            json!({"content": "ok", "nonce": NUL}),
            "nonce",
        ),
        (
            Method::PATCH,
            format!("/channels/{c}/messages/{mid}"),
            json!({"content": NUL}),
            "content",
        ),
        (
            Method::POST,
            "/servers".into(),
            json!({"name": NUL}),
            "name",
        ),
        (
            Method::PATCH,
            format!("/servers/{s}"),
            json!({"description": NUL}),
            "description",
        ),
        (
            Method::POST,
            format!("/servers/{s}/channels"),
            json!({"name": "x", "topic": NUL}),
            "topic",
        ),
        (
            Method::PATCH,
            format!("/channels/{c}"),
            json!({"topic": NUL}),
            "topic",
        ),
        (
            Method::PATCH,
            "/users/@me".into(),
            json!({"bio": NUL}),
            "bio",
        ),
        (
            Method::PUT,
            "/users/@me/status".into(),
            json!({"status": "online", "customStatus": NUL}),
            "customStatus",
        ),
        (
            Method::PATCH,
            format!("/servers/{s}/members/{}", r.member.id),
            json!({"nickname": NUL}),
            "nickname",
        ),
        (
            Method::POST,
            format!("/servers/{s}/members/{}/kick", r.member.id),
            json!({"reason": NUL}),
            "reason",
        ),
        (
            Method::PUT,
            "/users/@me/keys".into(),
            json!({"publicKey": NUL}),
            "publicKey",
        ),
        (
            Method::POST,
            format!("/servers/{s}/roles"),
            json!({"name": NUL}),
            "name",
        ),
    ];
    for (method, path, body, field) in cases {
        let res = app
            .request(
                method.clone(),
                &format!("/api/v1{path}"),
                Some(&body),
                Some(&r.owner.token),
            )
            .await;
        res.assert_error(422, "Validation Error");
        assert_eq!(
            (
                res.body["details"][0]["field"].as_str(),
                res.body["details"][0]["rule"].as_str()
            ),
            (Some(field), Some("noNul")),
            "{method} {path}: {}",
            res.text
        );
    }
    // Unauthenticated ones too.
    for (path, body, field) in [
        (
            "/auth/login",
            json!({"username": NUL, "password": "Secret123"}),
            "username",
        ),
        (
            "/auth/register",
            json!({"email": "n@example.com", "username": "nul_user", "password": NUL}),
            "password",
        ),
        ("/auth/forgot-password", json!({"email": NUL}), "email"),
    ] {
        let res = app.post_api(path, &body).await;
        res.assert_error(422, "Validation Error");
        assert_eq!(res.body["details"][0]["field"], field, "{path}");
    }
    // In a query string: 422 naming the parameter; in a path: nothing can be named so.
    let res = app
        .get_as(
            &r.owner.token,
            &format!("/servers/{s}/messages/search?q=a%00b"),
        )
        .await;
    res.assert_error(422, "Validation Error");
    assert_eq!(res.body["details"][0]["field"], "q");
    let res = app.get("/api/v1/invites/ab%00cd").await;
    res.assert_error(404, "Not Found");
    let res = app
        .post_as(&r.member.token, "/invites/ab%00cd", &json!({}))
        .await;
    res.assert_error(404, "Not Found");
    // Nothing stored was touched: the first message is intact, the member is still there.
    let got = app
        .get_as(&r.owner.token, &format!("/channels/{c}/messages/{mid}"))
        .await;
    assert_eq!(got.body["content"], "before");
    let m = app
        .get_as(
            &r.owner.token,
            &format!("/servers/{s}/members/{}", r.member.id),
        )
        .await;
    assert_eq!(m.status, 200);
}

async fn channel_positions_are_bounded_and_cannot_overflow(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "pos").await;
    let (s, c) = (&r.server, &r.channel);
    for bad in [i64::MAX, 100_001, -1] {
        let res = app
            .patch_as(
                &r.owner.token,
                &format!("/channels/{c}"),
                &json!({"position": bad}),
            )
            .await;
        res.assert_error(422, "Validation Error");
        assert_eq!(res.body["details"][0]["field"], "position");
        let res = app
            .post_as(
                &r.owner.token,
                &format!("/servers/{s}/channels"),
                &json!({"name": "x", "position": bad}),
            )
            .await;
        res.assert_error(422, "Validation Error");
        let res = app
            .post_as(
                &r.owner.token,
                &format!("/servers/{s}/roles"),
                &json!({"name": "x", "position": bad}),
            )
            .await;
        res.assert_error(422, "Validation Error");
    }
    // The highest position allowed, then more channels: each still gets a position.
    let res = app
        .patch_as(
            &r.owner.token,
            &format!("/channels/{c}"),
            &json!({"position": 100_000}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    for n in 0..3 {
        let res = app
            .post_as(
                &r.owner.token,
                &format!("/servers/{s}/channels"),
                &json!({"name": format!("after-{n}")}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        let p = res.body["position"].as_i64().unwrap_or(-1);
        assert!((0..=100_000).contains(&p), "position {p}");
    }
}

async fn messages_carry_a_version_and_stale_edits_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "mver").await;
    let c = &r.channel;
    let m = say(&app, &r.owner, c, "one").await;
    let id = string_at(&m, "/id");
    let v1 = m["version"].as_i64().expect("a new message has a version");
    let edit = |content: &'static str, version: Option<i64>| {
        let app = &app;
        let token = r.owner.token.clone();
        let path = format!("/api/v1/channels/{c}/messages/{id}");
        async move {
            let mut req = app
                .client
                .patch(app.url(&path))
                .bearer_auth(token)
                .json(&json!({"content": content}));
            if let Some(v) = version {
                req = req.header("if-match", v.to_string());
            }
            xcord_testkit::TestApp::read(req.send().await.expect("request")).await
        }
    };
    let ok = edit("two", Some(v1)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let v2 = ok.body["version"].as_i64().expect("version");
    assert!(v2 > v1);
    let stale = edit("three", Some(v1)).await;
    stale.assert_error(409, "Conflict");
    let got = app
        .get_as(&r.owner.token, &format!("/channels/{c}/messages/{id}"))
        .await;
    assert_eq!(got.body["content"], "two");
    assert_eq!(got.body["version"], v2);
    // Without If-Match the edit applies, as before.
    let ok = edit("four", None).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["version"].as_i64(), Some(v2 + 1));
}

/// Makes every audit insert of `action` fail inside the database, as a full disk or a
/// broken constraint would.
async fn fail_audit_inserts(app: &xcord_testkit::TestApp, action: &str) {
    fail_inserts(
        app,
        &format!("fail_{action}"),
        "audit_log",
        &format!("NEW.action = '{action}'"),
    )
    .await;
}

/// Installs the trigger `name` that makes inserts into `table` for which `when` holds
/// fail, as a full disk or a lost connection would.
pub(crate) async fn fail_inserts(
    app: &xcord_testkit::TestApp,
    name: &str,
    table: &str,
    when: &str,
) {
    let sql = match app.backend() {
        Backend::Sqlite => format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {when} \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ),
        Backend::Postgres => format!(
            "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
               IF {when} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; \
             END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
        ),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(app.state.core.store.pool())
        .await
        .expect("install the trigger");
}

async fn a_kick_or_ban_whose_audit_row_fails_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "atomic").await;
    let s = &r.server;
    let mut sub = app.state.core.bus.subscribe(xcord_bus::TopicFilter::All);
    fail_audit_inserts(&app, "member_kick").await;
    fail_audit_inserts(&app, "member_ban_add").await;
    let kick = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/members/{}/kick", r.member.id),
            &json!({"reason": "x"}),
        )
        .await;
    kick.assert_error(500, "Internal Server Error");
    assert!(
        !kick.text.contains("injected"),
        "internals leaked: {}",
        kick.text
    );
    let ban = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/bans"),
            &json!({"userId": r.member.id, "deleteMessageDays": 1}),
        )
        .await;
    ban.assert_error(500, "Internal Server Error");
    // Still a member, not banned, counted, and told nothing.
    let m = app
        .get_as(
            &r.owner.token,
            &format!("/servers/{s}/members/{}", r.member.id),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.text);
    let bans = app
        .get_as(&r.owner.token, &format!("/servers/{s}/bans"))
        .await;
    assert_eq!(bans.body["bans"], json!([]));
    let srv = app.get_as(&r.owner.token, &format!("/servers/{s}")).await;
    assert_eq!(srv.body["memberCount"], 2);
    say(&app, &r.member, &r.channel, "still here").await;
    // Everything published up to the new message: no removal among it.
    for _ in 0..100 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
            .await
            .expect("the message's event")
            .expect("bus open");
        assert_ne!(ev.name, "SERVER_MEMBER_REMOVE", "a removal was announced");
        if ev.name == "MESSAGE_CREATE" {
            return;
        }
    }
    panic!("no MESSAGE_CREATE among 100 events");
}

async fn private_channels_are_private_from_their_first_moment(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "priv").await;
    let s = &r.server;
    let (mut m, _) = app.gateway_as(&r.member).await;
    let (mut o, _) = app.gateway_as(&r.owner).await;
    let private = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/channels"),
            &json!({"name": "staff", "topic": "secret plans",
                    "permissionOverwrites": [{"id": s, "type": "role", "allow": 0, "deny": VIEW_CHANNELS}]}),
        )
        .await;
    assert_eq!(private.status, 201, "{}", private.text);
    let cid = private.str_at("/id");
    assert_eq!(
        private.body["permissionOverwrites"],
        json!([{"id": s, "type": "role", "allow": 0, "deny": VIEW_CHANNELS}])
    );
    let created = o.dispatch("CHANNEL_CREATE").await;
    assert_eq!(created["id"], cid.as_str());
    // The member hears nothing of it and cannot find it.
    m.assert_no_dispatch("CHANNEL_CREATE", Duration::from_millis(400))
        .await;
    app.get_as(&r.member.token, &format!("/channels/{cid}"))
        .await
        .assert_error(404, "Not Found");
    // Renaming it tells the member nothing either.
    let renamed = app
        .patch_as(
            &r.owner.token,
            &format!("/channels/{cid}"),
            &json!({"topic": "even more secret"}),
        )
        .await;
    assert_eq!(renamed.status, 200);
    o.dispatch("CHANNEL_UPDATE").await;
    m.assert_no_dispatch("CHANNEL_UPDATE", Duration::from_millis(400))
        .await;
    // Bad overwrites are refused before anything is made.
    for (body, status) in [
        (
            json!({"name": "x", "permissionOverwrites": [{"id": s, "type": "team", "allow": 0, "deny": 0}]}),
            422,
        ),
        (
            json!({"name": "x", "permissionOverwrites": [{"id": s, "type": "role", "allow": 1u64 << 60, "deny": 0}]}),
            422,
        ),
        (
            json!({"name": "x", "permissionOverwrites": [{"id": "123456789", "type": "role", "allow": 0, "deny": 1}]}),
            404,
        ),
    ] {
        let res = app
            .post_as(&r.owner.token, &format!("/servers/{s}/channels"), &body)
            .await;
        assert_eq!(res.status, status, "{body}: {}", res.text);
    }
    // Without MANAGE_ROLES a channel manager cannot set overwrites at creation.
    let role = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/roles"),
            &json!({"name": "builders", "permissions": MANAGE_CHANNELS | VIEW_CHANNELS}),
        )
        .await;
    let role_id = role.expect_status(201, "create a role").str_at("/id");
    app.put_as(
        &r.owner.token,
        &format!("/servers/{s}/members/{}/roles/{role_id}", r.member.id),
        &json!({}),
    )
    .await;
    let res = app
        .post_as(
            &r.member.token,
            &format!("/servers/{s}/channels"),
            &json!({"name": "mine", "permissionOverwrites": [{"id": s, "type": "role", "allow": 0, "deny": VIEW_CHANNELS}]}),
        )
        .await;
    res.assert_error(403, "Forbidden");
    let channels = app
        .get_as(&r.owner.token, &format!("/servers/{s}/channels"))
        .await;
    let names: Vec<&str> = channels.body["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"x") && !names.contains(&"mine"),
        "{names:?}"
    );
}

/// Reads frames until the server closes; returns the close code and whether op 7 came.
async fn until_closed(c: &mut GatewayClient) -> (Option<u16>, bool) {
    let mut reconnect = false;
    for _ in 0..1000 {
        match c.next_within(Duration::from_secs(10)).await {
            Some(Incoming::Frame(f)) => reconnect |= f["op"] == 7,
            Some(Incoming::Closed(code)) => return (code, reconnect),
            None => panic!("the server did not close the connection"),
        }
    }
    panic!("no close after 1000 frames");
}

/// Sends RESUME and reads everything up to RESUMED: the replayed dispatches and RESUMED.
async fn resume(
    c: &mut GatewayClient,
    token: &str,
    session: &str,
    seq: u64,
) -> (Vec<serde_json::Value>, serde_json::Value) {
    c.send(json!({"op": 6, "d": {"token": token, "sessionId": session, "seq": seq}}))
        .await;
    let mut replayed = Vec::new();
    for _ in 0..1000 {
        let f = c.frame().await;
        if f["t"] == "RESUMED" {
            return (replayed, f);
        }
        assert_ne!(f["op"], 9, "the session was not resumable: {replayed:?}");
        replayed.push(f);
    }
    panic!("no RESUMED after 1000 frames");
}

async fn a_session_survives_a_graceful_restart(backend: Backend) {
    let mut a = spawn_app(backend).await;
    let r = room(&a, "restart").await;
    let s = &r.server;
    // A channel the member cannot see, to show the replay stays permission-aware.
    let hidden = a
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/channels"),
            &json!({"name": "hidden", "permissionOverwrites": [{"id": s, "type": "role", "allow": 0, "deny": VIEW_CHANNELS}]}),
        )
        .await;
    let hidden = hidden
        .expect_status(201, "create a hidden channel")
        .str_at("/id");
    let (mut m, _) = a.gateway_as(&r.member).await;
    say(&a, &r.owner, &r.channel, "before").await;
    assert_eq!(m.dispatch("MESSAGE_CREATE").await["content"], "before");
    let session = m.session_id.clone().expect("session id");
    let seq = m.last_seq;

    // SIGTERM: op 7, then close 1012.
    a.shut_down().await.expect("clean shutdown");
    assert_eq!(until_closed(&mut m).await, (Some(1012), true));

    // The restarted node: the gap's messages are posted through it.
    let b = TestAppBuilder::new(backend).joining(&a).spawn().await;
    let mut posted = Vec::new();
    for n in 0..3 {
        posted.push(say(&b, &r.owner, &r.channel, &format!("gap {n}")).await["id"].clone());
    }
    say(&b, &r.owner, &hidden, "not for the member").await;
    // Posted and deleted within the gap: never shown.
    let gone = say(&b, &r.owner, &r.channel, "regretted").await;
    let gone = string_at(&gone, "/id");
    let del = b
        .delete_as(
            &r.owner.token,
            &format!("/channels/{}/messages/{gone}", r.channel),
        )
        .await;
    assert_eq!(del.status, 204, "{}", del.text);

    // Somebody else's token cannot take the session, nor spoil it.
    let (mut thief, _) = GatewayClient::open(b.addr, "/api/ws").await;
    thief
        .send(json!({"op": 6, "d": {"token": r.owner.token, "sessionId": session, "seq": seq}}))
        .await;
    let refused = thief.frame().await;
    assert_eq!(refused, json!({"op": 9, "d": {"resumable": false}}));

    let (mut back, _) = GatewayClient::open(b.addr, "/api/ws").await;
    let (replayed, resumed) = resume(&mut back, &r.member.token, &session, seq).await;
    let got: Vec<(u64, serde_json::Value)> = replayed
        .iter()
        .filter(|f| f["t"] == "MESSAGE_CREATE")
        .map(|f| (f["s"].as_u64().unwrap_or(0), f["d"]["id"].clone()))
        .collect();
    assert_eq!(
        got.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
        posted,
        "every message of the gap, once, in order, and nothing hidden: {replayed:?}"
    );
    assert!(
        !replayed.iter().any(|f| f["d"]["content"] == "regretted"),
        "{replayed:?}"
    );
    // Numbered on from what the client had, without a gap.
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|f| f["s"].as_u64().unwrap_or(0))
        .collect();
    let expected: Vec<u64> = (seq + 1..=seq + replayed.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(resumed["op"], 10);
    assert_eq!(resumed["s"].as_u64(), Some(seq + replayed.len() as u64 + 1));
    assert_eq!(resumed["d"]["sessionId"], session.as_str());
    assert_eq!(resumed["d"]["replayed"], replayed.len());
    // Live again: the next message follows at once, numbered next.
    say(&b, &r.owner, &r.channel, "after").await;
    let live = back.dispatch_frame("MESSAGE_CREATE").await;
    assert_eq!(live["d"]["content"], "after");
    assert!(live["s"].as_u64() > resumed["s"].as_u64(), "{live}");
    // A saved session is taken once: the same RESUME elsewhere is refused.
    let (mut again, _) = GatewayClient::open(b.addr, "/api/ws").await;
    back.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, resumed2) = resume(&mut again, &r.member.token, &session, seq).await;
    assert_eq!(
        resumed2["t"], "RESUMED",
        "the node holding it resumes it in memory"
    );
}

async fn a_second_resume_replays_events_not_the_old_resumed(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "resume2").await;
    let (mut m, _) = app.gateway_as(&r.member).await;
    let session = m.session_id.clone().expect("session id");
    say(&app, &r.owner, &r.channel, "one").await;
    m.dispatch("MESSAGE_CREATE").await;
    let seq = m.last_seq;
    m.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Ids are random, not time-ordered numbers.
    assert!(
        session.len() == 32 && session.chars().all(|c| c.is_ascii_hexdigit()),
        "{session}"
    );
    // Another user's RESUME with this id is refused and spoils nothing.
    let (mut thief, _) = GatewayClient::open(app.addr, "/api/ws").await;
    thief
        .send(json!({"op": 6, "d": {"token": r.owner.token, "sessionId": session, "seq": seq}}))
        .await;
    assert_eq!(
        thief.frame().await,
        json!({"op": 9, "d": {"resumable": false}})
    );
    let (mut c1, _) = GatewayClient::open(app.addr, "/api/ws").await;
    let (replayed, first) = resume(&mut c1, &r.member.token, &session, seq).await;
    assert!(
        !replayed.iter().any(|f| f["t"] == "MESSAGE_CREATE"),
        "{replayed:?}"
    );
    say(&app, &r.owner, &r.channel, "two").await;
    c1.dispatch("MESSAGE_CREATE").await;
    c1.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Resuming from before the first RESUMED: the message, not that RESUMED again.
    let (mut c2, _) = GatewayClient::open(app.addr, "/api/ws").await;
    let (replayed, second) = resume(&mut c2, &r.member.token, &session, seq).await;
    let messages: Vec<&serde_json::Value> = replayed
        .iter()
        .filter(|f| f["t"] == "MESSAGE_CREATE")
        .collect();
    assert_eq!(messages.len(), 1, "{replayed:?}");
    assert_eq!(messages[0]["d"]["content"], "two");
    assert!(second["s"].as_u64() > first["s"].as_u64());
}

async fn a_flooding_client_that_does_not_read_is_closed_with_4008(backend: Backend) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app(backend).await;
    let (c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    let mut ws = c.into_inner();
    // Two seconds of heartbeats as fast as the socket takes them, reading nothing.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let frame = json!({"op": 1, "d": {"seq": null}}).to_string();
    let mut sent = 0u32;
    while tokio::time::Instant::now() < until && sent < 2_000_000 {
        // Mostly pings: each asks the server to write a pong nobody reads.
        let m = if sent % 4_000 == 3_999 {
            Message::Text(frame.clone().into())
        } else {
            Message::Ping(vec![0u8; 120].into())
        };
        if ws.send(m).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 121, "the flood did not get going ({sent} frames)");
    let mut code = None;
    for _ in 0..100_000 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            // Reset or ended without a close frame: what a client sees as 1006.
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the server neither closed nor answered"),
        }
    }
    assert_eq!(code, Some(4008), "after {sent} frames");
}

async fn a_permission_change_during_the_gap_means_identify_anew(backend: Backend) {
    let mut a = spawn_app(backend).await;
    let r = room(&a, "gapperm").await;
    let (mut m, _) = a.gateway_as(&r.member).await;
    let session = m.session_id.clone().expect("session id");
    let seq = m.last_seq;
    a.shut_down().await.expect("clean shutdown");
    until_closed(&mut m).await;
    let b = TestAppBuilder::new(backend).joining(&a).spawn().await;
    // @everyone loses VIEW_CHANNELS on the channel while the member is away: replaying
    // with today's permissions could not tell them, so the resume is refused.
    let ow = b
        .put_as(
            &r.owner.token,
            &format!("/channels/{}/permissions/{}", r.channel, r.server),
            &json!({"type": "role", "allow": 0, "deny": VIEW_CHANNELS}),
        )
        .await;
    assert!(ow.status < 300, "{}", ow.text);
    let (mut c, _) = GatewayClient::open(b.addr, "/api/ws").await;
    c.send(json!({"op": 6, "d": {"token": r.member.token, "sessionId": session, "seq": seq}}))
        .await;
    let mut answer = None;
    for _ in 0..100 {
        let f = c.frame().await;
        if f["op"] == 9 || f["t"] == "RESUMED" {
            answer = Some(f);
            break;
        }
    }
    assert_eq!(answer, Some(json!({"op": 9, "d": {"resumable": false}})));
}

async fn a_role_change_whose_audit_row_fails_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "rolefail").await;
    let s = &r.server;
    let keep = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/roles"),
            &json!({"name": "keeper"}),
        )
        .await;
    assert_eq!(keep.status, 201, "{}", keep.text);
    let keep_id = keep.body["id"].as_str().unwrap_or_default().to_owned();
    let mut sub = app.state.core.bus.subscribe(xcord_bus::TopicFilter::All);
    fail_audit_inserts(&app, "role_create").await;
    fail_audit_inserts(&app, "role_delete").await;
    fail_audit_inserts(&app, "channel_delete").await;
    app.delete_as(&r.owner.token, &format!("/channels/{}", r.channel))
        .await
        .assert_error(500, "Internal Server Error");
    app.post_as(
        &r.owner.token,
        &format!("/servers/{s}/roles"),
        &json!({"name": "ghost"}),
    )
    .await
    .assert_error(500, "Internal Server Error");
    app.delete_as(&r.owner.token, &format!("/servers/{s}/roles/{keep_id}"))
        .await
        .assert_error(500, "Internal Server Error");
    // No ghost role, the keeper and the channel are still there, and nobody was told
    // otherwise.
    let roles = app
        .get_as(&r.owner.token, &format!("/servers/{s}/roles"))
        .await;
    let names: Vec<&str> = roles.body["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"keeper") && !names.contains(&"ghost"),
        "{names:?}"
    );
    say(&app, &r.owner, &r.channel, "after").await;
    for _ in 0..100 {
        let ev = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("the message's event")
            .expect("bus open");
        assert!(
            !matches!(ev.name, "ROLE_CREATE" | "ROLE_DELETE" | "CHANNEL_DELETE"),
            "announced: {}",
            ev.name
        );
        if ev.name == "MESSAGE_CREATE" {
            return;
        }
    }
    panic!("no MESSAGE_CREATE among 100 events");
}
