//! The seed-002 profile's REST API (`/compat/hype`, SPEC §7) and the default server
//! `xcord serve --default-server NAME` makes: envelopes, error shapes, and the same users,
//! servers, channels and messages as the canonical API and gateway.

use reqwest::Method;
use serde_json::{Value, json};
use xcord_testkit::{Backend, TestApp, TestAppBuilder, TestResponse, on_both_backends};

on_both_backends!(
    guests_and_accounts_join_the_default_server,
    accounts_follow_the_seed_auth_flow,
    messages_page_by_offset_and_reach_the_canonical_gateway,
    users_are_public_and_only_their_owner_changes_them,
    channels_follow_the_canonical_permissions,
);

const DEFAULT: &str = "Hype Community";

async fn hype_app(backend: Backend) -> TestApp {
    TestAppBuilder::new(backend)
        .configure(|c| c.default_server_name = Some(DEFAULT.into()))
        .spawn()
        .await
}

async fn hype(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> TestResponse {
    app.request(method, &format!("/compat/hype{path}"), body, token)
        .await
}

/// A Hype account: `(id, access token)`.
async fn hype_register(app: &TestApp, name: &str) -> (String, String) {
    let res = hype(
        app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": name, "email": format!("{name}@example.com"), "password": "Secret123"})),
        None,
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    (res.str_at("/data/user/id"), res.str_at("/data/accessToken"))
}

#[track_caller]
fn assert_failure(res: &TestResponse, status: u16) {
    assert_eq!(res.status, status, "{}", res.text);
    assert_eq!(res.body["success"], false, "{}", res.text);
    assert!(
        res.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        res.text
    );
}

/// The default server's id and its channels by name, as `token` sees them.
async fn default_server(app: &TestApp, token: &str) -> (String, Vec<Value>) {
    let servers = hype(app, Method::GET, "/api/servers", None, Some(token)).await;
    assert_eq!(servers.status, 200, "{}", servers.text);
    let first = &servers.body["data"][0];
    assert_eq!(first["name"], DEFAULT, "{}", servers.text);
    let id = first["id"].as_str().unwrap_or_default().to_owned();
    let channels = hype(
        app,
        Method::GET,
        &format!("/api/servers/{id}/channels"),
        None,
        Some(token),
    )
    .await;
    assert_eq!(channels.status, 200, "{}", channels.text);
    (
        id,
        channels.body["data"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

fn channel_named(channels: &[Value], name: &str) -> String {
    channels
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("no channel {name} in {channels:?}"))
        .to_owned()
}

async fn guests_and_accounts_join_the_default_server(backend: Backend) {
    let app = hype_app(backend).await;
    let anonymous = hype(&app, Method::GET, "/api/servers", None, None).await;
    assert_failure(&anonymous, 401);

    let guest = hype(
        &app,
        Method::POST,
        "/auth/guest",
        Some(&json!({"username": "guest_one"})),
        None,
    )
    .await;
    assert_eq!(guest.status, 200, "{}", guest.text);
    assert_eq!(guest.body["data"]["user"]["username"], "guest_one");
    assert_eq!(guest.body["data"]["user"]["email"], Value::Null);
    let token = guest.str_at("/data/accessToken");

    let servers = hype(&app, Method::GET, "/api/servers", None, Some(&token)).await;
    let server = &servers.body["data"][0];
    assert_eq!(server["name"], DEFAULT);
    assert_eq!(server["isDefault"], true);
    assert_eq!(server["owner"]["username"], "system");
    assert_eq!(server["_count"]["channels"], 3, "{}", servers.text);
    assert!(
        server["_count"]["members"].as_i64() >= Some(2),
        "{}",
        servers.text
    );
    let (id, channels) = default_server(&app, &token).await;
    let shape: Vec<(String, String)> = channels
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("general", "TEXT"),
        ("random", "TEXT"),
        ("General", "VOICE"),
    ] {
        assert!(
            shape.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} missing in {shape:?}"
        );
    }
    // An account registered canonically joins it too: the same server through /api/v1.
    let canonical = app.register("canonical_member").await;
    let mine = app.get_as(&canonical.token, "/servers").await;
    assert!(mine.text.contains(&id), "{}", mine.text);

    // A second start finds the server it made, renamed or not.
    let again = app
        .state
        .core
        .ensure_default_server(DEFAULT)
        .await
        .expect("the default server");
    assert_eq!(again.to_string(), id);

    // A taken guest name is the seed's 400.
    let taken = hype(
        &app,
        Method::POST,
        "/auth/guest",
        Some(&json!({"username": "guest_one"})),
        None,
    )
    .await;
    assert_failure(&taken, 400);
}

async fn accounts_follow_the_seed_auth_flow(backend: Backend) {
    let app = hype_app(backend).await;
    let reg = hype(
        &app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": "hana", "email": "hana@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert_eq!(reg.body["success"], true);
    assert_eq!(reg.body["data"]["user"]["email"], "hana@example.com");
    assert_eq!(reg.body["data"]["user"]["status"], "ONLINE");
    assert!(reg.body["data"]["refreshToken"].is_string());

    let dup = hype(
        &app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": "hana", "email": "other@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    assert_failure(&dup, 400);
    let invalid = hype(
        &app,
        Method::POST,
        "/auth/register",
        Some(&json!({"username": "h", "email": "nope", "password": "short"})),
        None,
    )
    .await;
    assert_eq!(invalid.status, 400, "{}", invalid.text);
    assert_eq!(invalid.body["error"], "Validation failed");
    let paths: Vec<String> = invalid.body["details"]
        .as_array()
        .map(|d| d.iter().map(|e| e["path"][0].to_string()).collect())
        .unwrap_or_default();
    for field in ["username", "email", "password"] {
        assert!(
            paths.iter().any(|p| p.contains(field)),
            "{field}: {}",
            invalid.text
        );
    }

    let login = hype(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "hana@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let token = login.str_at("/data/accessToken");
    let refresh = login.str_at("/data/refreshToken");
    let wrong = hype(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "hana@example.com", "password": "Wrong1234"})),
        None,
    )
    .await;
    assert_failure(&wrong, 401);

    let me = hype(&app, Method::GET, "/auth/me", None, Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["data"]["user"]["username"], "hana");
    // The token is a canonical one.
    assert_eq!(
        app.get_as(&token, "/users/@me").await.body["username"],
        "hana"
    );

    let renewed = hype(
        &app,
        Method::POST,
        "/auth/refresh",
        Some(&json!({"refreshToken": refresh})),
        None,
    )
    .await;
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    assert!(renewed.body["data"]["accessToken"].is_string());
    let reused = hype(
        &app,
        Method::POST,
        "/auth/refresh",
        Some(&json!({"refreshToken": refresh})),
        None,
    )
    .await;
    assert_failure(&reused, 401);
    // A refresh token used twice ends its session (it may have been stolen), as canonically.
    assert_failure(
        &hype(&app, Method::GET, "/auth/me", None, Some(&token)).await,
        401,
    );

    let login = hype(
        &app,
        Method::POST,
        "/auth/login",
        Some(&json!({"email": "hana@example.com", "password": "Secret123"})),
        None,
    )
    .await;
    let token = login.str_at("/data/accessToken");
    let out = hype(&app, Method::POST, "/auth/logout", None, Some(&token)).await;
    assert_eq!(out.status, 200, "{}", out.text);
    assert_eq!(out.body["message"], "Logged out successfully");
    assert_failure(
        &hype(&app, Method::GET, "/auth/me", None, Some(&token)).await,
        401,
    );
    let info = hype(&app, Method::GET, "/api", None, None).await;
    assert_eq!(
        info.body["data"]["endpoints"]["websocket"],
        "/compat/hype/ws"
    );
    assert_failure(
        &hype(&app, Method::GET, "/api/nothing", None, None).await,
        404,
    );
}

async fn messages_page_by_offset_and_reach_the_canonical_gateway(backend: Backend) {
    let app = hype_app(backend).await;
    let (_ida, a) = hype_register(&app, "mia").await;
    let reader = app.register("reader").await;
    let (_, channels) = default_server(&app, &a).await;
    let general = channel_named(&channels, "general");
    let (mut gw, _) = app.gateway_as(&reader).await;

    let sent = hype(
        &app,
        Method::POST,
        "/api/messages",
        Some(&json!({"content": "first from hype", "channelId": general})),
        Some(&a),
    )
    .await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["data"]["author"]["username"], "mia");
    assert_eq!(sent.body["data"]["edited"], false);
    assert_eq!(sent.body["data"]["channelId"], general.as_str());
    let first = sent.str_at("/data/id");
    let created = gw.dispatch("MESSAGE_CREATE").await;
    assert_eq!(created["content"], "first from hype");

    for text in ["second", "third"] {
        let res = app
            .post_as(
                &reader.token,
                &format!("/channels/{general}/messages"),
                &json!({"content": text}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    let page = hype(
        &app,
        Method::GET,
        &format!("/api/messages?channelId={general}&limit=2&offset=0"),
        None,
        Some(&a),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.body["meta"],
        json!({"total": 3, "limit": 2, "offset": 0})
    );
    let contents: Vec<&str> = page.body["data"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x["content"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(contents, ["second", "third"]);
    assert_eq!(
        page.body["data"][0]["author"]["status"], "ONLINE",
        "{}",
        page.text
    );
    let older = hype(
        &app,
        Method::GET,
        &format!("/api/messages?channelId={general}&limit=2&offset=2"),
        None,
        Some(&a),
    )
    .await;
    assert_eq!(older.body["data"][0]["content"], "first from hype");

    // Only the author edits and deletes.
    let theirs = hype(
        &app,
        Method::PUT,
        &format!("/api/messages/{first}"),
        Some(&json!({"content": "hijacked"})),
        Some(&reader.token),
    )
    .await;
    assert_failure(&theirs, 403);
    let edited = hype(
        &app,
        Method::PUT,
        &format!("/api/messages/{first}"),
        Some(&json!({"content": "first, edited"})),
        Some(&a),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["data"]["edited"], true);
    let got = hype(
        &app,
        Method::GET,
        &format!("/api/messages/{first}"),
        None,
        Some(&a),
    )
    .await;
    assert_eq!(got.body["data"]["content"], "first, edited");
    let deleted = hype(
        &app,
        Method::DELETE,
        &format!("/api/messages/{first}"),
        None,
        Some(&a),
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.body["data"]["id"], first.as_str());
    assert_failure(
        &hype(
            &app,
            Method::GET,
            &format!("/api/messages/{first}"),
            None,
            Some(&a),
        )
        .await,
        404,
    );

    // Bad requests.
    let no_channel = hype(&app, Method::GET, "/api/messages", None, Some(&a)).await;
    assert_eq!(no_channel.status, 400, "{}", no_channel.text);
    assert_eq!(no_channel.body["details"][0]["path"][0], "channelId");
    for bad in ["limit=0", "limit=101", "offset=-1"] {
        let res = hype(
            &app,
            Method::GET,
            &format!("/api/messages?channelId={general}&{bad}"),
            None,
            Some(&a),
        )
        .await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
    }
    let empty = hype(
        &app,
        Method::POST,
        "/api/messages",
        Some(&json!({"content": "", "channelId": general})),
        Some(&a),
    )
    .await;
    assert_eq!(empty.status, 400, "{}", empty.text);
    let unknown = hype(
        &app,
        Method::POST,
        "/api/messages",
        Some(&json!({"content": "into the void", "channelId": "123456789"})),
        Some(&a),
    )
    .await;
    assert_failure(&unknown, 404);
    let anonymous = hype(
        &app,
        Method::POST,
        "/api/messages",
        Some(&json!({"content": "who am i", "channelId": general})),
        None,
    )
    .await;
    assert_failure(&anonymous, 401);
}

async fn users_are_public_and_only_their_owner_changes_them(backend: Backend) {
    let app = hype_app(backend).await;
    let (uid, u) = hype_register(&app, "umar").await;
    let (vid, v) = hype_register(&app, "vera").await;

    let list = hype(&app, Method::GET, "/api/users", None, None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(list.body["data"].as_array().is_some_and(|l| l.len() >= 2));
    assert!(
        !list.text.contains("@example.com"),
        "e-mails leak: {}",
        list.text
    );
    assert!(list.body["meta"]["total"].as_i64() >= Some(2));
    // Their own e-mail, to the caller only.
    let own = hype(&app, Method::GET, "/api/users", None, Some(&u)).await;
    assert!(own.text.contains("umar@example.com"));
    assert!(!own.text.contains("vera@example.com"));

    let one = hype(&app, Method::GET, &format!("/api/users/{vid}"), None, None).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["data"]["username"], "vera");
    assert_eq!(one.body["data"]["discriminator"], "vera");
    assert_eq!(one.body["data"]["email"], Value::Null);
    assert_failure(
        &hype(&app, Method::GET, "/api/users/123456789", None, None).await,
        404,
    );

    let status = hype(
        &app,
        Method::PUT,
        &format!("/api/users/{uid}/status"),
        Some(&json!({"status": "idle"})),
        Some(&u),
    )
    .await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.body["data"]["status"], "idle");
    assert_failure(
        &hype(
            &app,
            Method::PUT,
            &format!("/api/users/{uid}/status"),
            Some(&json!({"status": "idle"})),
            Some(&v),
        )
        .await,
        403,
    );
    assert_failure(
        &hype(
            &app,
            Method::PUT,
            &format!("/api/users/{uid}/status"),
            Some(&json!({"status": "idle"})),
            None,
        )
        .await,
        401,
    );
    let bad = hype(
        &app,
        Method::PUT,
        &format!("/api/users/{uid}/status"),
        Some(&json!({"status": "sleeping"})),
        Some(&u),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    let profile = hype(
        &app,
        Method::PUT,
        &format!("/api/users/{uid}"),
        Some(&json!({"displayName": "Umar K", "bio": "hello"})),
        Some(&u),
    )
    .await;
    assert_eq!(profile.status, 200, "{}", profile.text);
    assert_eq!(profile.body["data"]["displayName"], "Umar K");
    assert_eq!(profile.body["data"]["bio"], "hello");
    let taken = hype(
        &app,
        Method::PUT,
        &format!("/api/users/{uid}"),
        Some(&json!({"username": "vera"})),
        Some(&u),
    )
    .await;
    assert_failure(&taken, 409);
    let foreign = hype(
        &app,
        Method::PUT,
        &format!("/api/users/{vid}"),
        Some(&json!({"bio": "not mine"})),
        Some(&u),
    )
    .await;
    assert_failure(&foreign, 403);
    let link = hype(
        &app,
        Method::PUT,
        &format!("/api/users/{uid}"),
        Some(&json!({"avatarUrl": "https://example.com/a.png"})),
        Some(&u),
    )
    .await;
    assert_eq!(link.status, 400, "{}", link.text);
    // Nothing refused above was stored.
    let after = hype(&app, Method::GET, &format!("/api/users/{vid}"), None, None).await;
    assert_eq!(after.body["data"]["bio"], Value::Null);
    assert_eq!(after.body["data"]["username"], "vera");
}

async fn channels_follow_the_canonical_permissions(backend: Backend) {
    let app = hype_app(backend).await;
    let (_, owner) = hype_register(&app, "olga").await;
    let (_, other) = hype_register(&app, "otto").await;
    // Nobody but the system account manages the default server.
    let refused = hype(
        &app,
        Method::POST,
        "/api/channels",
        Some(&json!({"name": "mine", "type": "text"})),
        Some(&owner),
    )
    .await;
    assert_failure(&refused, 403);

    // In a server of her own, Olga creates, renames and deletes channels.
    let server = app
        .post_as(&owner, "/servers", &json!({"name": "Olga's place"}))
        .await;
    assert_eq!(server.status, 201, "{}", server.text);
    let sid = server.str_at("/id");
    let made = hype(
        &app,
        Method::POST,
        "/api/channels",
        Some(&json!({"name": "lounge", "type": "voice", "serverId": sid})),
        Some(&owner),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["data"]["type"], "VOICE");
    assert_eq!(made.body["data"]["server"]["name"], "Olga's place");
    let cid = made.str_at("/data/id");
    let renamed = hype(
        &app,
        Method::PUT,
        &format!("/api/channels/{cid}"),
        Some(&json!({"name": "big-lounge"})),
        Some(&owner),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["data"]["name"], "big-lounge");
    let all = hype(&app, Method::GET, "/api/channels", None, Some(&owner)).await;
    assert!(
        all.text.contains("big-lounge") && all.text.contains("general"),
        "{}",
        all.text
    );

    // Otto is not in her server: he sees nothing of it.
    assert_failure(
        &hype(
            &app,
            Method::GET,
            &format!("/api/channels/{cid}"),
            None,
            Some(&other),
        )
        .await,
        404,
    );
    assert!(
        !hype(&app, Method::GET, "/api/channels", None, Some(&other))
            .await
            .text
            .contains("big-lounge")
    );
    let bad_kind = hype(
        &app,
        Method::POST,
        "/api/channels",
        Some(&json!({"name": "x", "type": "stage", "serverId": sid})),
        Some(&owner),
    )
    .await;
    assert_eq!(bad_kind.status, 400, "{}", bad_kind.text);
    let gone = hype(
        &app,
        Method::DELETE,
        &format!("/api/channels/{cid}"),
        None,
        Some(&owner),
    )
    .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_failure(
        &hype(
            &app,
            Method::GET,
            &format!("/api/channels/{cid}"),
            None,
            Some(&owner),
        )
        .await,
        404,
    );
}

/// A Hype WebSocket client, connecting from `source` (a loopback address).
struct HypeWs {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl HypeWs {
    async fn open(app: &TestApp, source: [u8; 4], query: &str) -> Self {
        use std::net::{Ipv4Addr, SocketAddr};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((Ipv4Addr::from(source), 0)))
            .expect("bind a loopback source address");
        let stream = socket.connect(app.addr).await.expect("connect");
        let url = format!("ws://{}/compat/hype/ws{query}", app.addr);
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("WebSocket handshake");
        Self { ws }
    }

    async fn send(&mut self, kind: &str, data: Value) {
        use futures_util::SinkExt as _;
        let text = json!({"type": kind, "data": data, "timestamp": "2026-01-01T00:00:00Z"});
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(
                text.to_string(),
            ))
            .await
            .expect("send");
    }

    /// The next frame of `kind`, skipping others; `None` when the socket closes first.
    async fn next(&mut self, kind: &str) -> Option<Value> {
        use futures_util::StreamExt as _;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} frame within 10 s"));
            match msg {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON frame");
                    assert!(v["timestamp"].is_string(), "{v}");
                    if v["type"] == kind {
                        return Some(v["data"].clone());
                    }
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
                | None
                | Some(Err(_)) => {
                    return None;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

#[tokio::test]
async fn the_websocket_binds_by_token_or_by_address_and_relays_joined_channels() {
    let app = hype_app(Backend::Sqlite).await;
    let (ana_id, ana) = hype_register(&app, "ana_ws").await;
    let poster = app.register("poster_ws").await;
    let (_, channels) = default_server(&app, &ana).await;
    let general = channel_named(&channels, "general");
    let random = channel_named(&channels, "random");

    // Without a token, naming a user with a live session from this address (127.0.0.1).
    let mut ws = HypeWs::open(&app, [127, 0, 0, 1], "").await;
    ws.send(
        "user_joined",
        json!({"user": {"id": ana_id, "username": "ana_ws"}}),
    )
    .await;
    assert_eq!(
        ws.next("connected").await.expect("bound")["userId"],
        ana_id.as_str()
    );
    ws.send("join_channel", json!({"channelId": general})).await;
    assert_eq!(
        ws.next("channel_joined").await.expect("joined")["channelId"],
        general.as_str()
    );

    // A canonical post in a joined channel arrives; one in another channel does not.
    let in_random = app
        .post_as(
            &poster.token,
            &format!("/channels/{random}/messages"),
            &json!({"content": "elsewhere"}),
        )
        .await;
    assert_eq!(in_random.status, 201, "{}", in_random.text);
    let posted = app
        .post_as(
            &poster.token,
            &format!("/channels/{general}/messages"),
            &json!({"content": "hi hype"}),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    let id = posted.str_at("/id");
    let got = ws.next("new_message").await.expect("new_message");
    assert_eq!(got["content"], "hi hype", "{got}");
    assert_eq!(got["author"]["username"], "poster_ws");
    assert_eq!(got["channelId"], general.as_str());
    let edited = app
        .patch_as(
            &poster.token,
            &format!("/channels/{general}/messages/{id}"),
            &json!({"content": "hi hype!"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    let got = ws.next("message_edited").await.expect("message_edited");
    assert_eq!(
        (got["content"].as_str(), got["edited"].as_bool()),
        (Some("hi hype!"), Some(true))
    );
    let deleted = app
        .delete_as(&poster.token, &format!("/channels/{general}/messages/{id}"))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let got = ws.next("message_deleted").await.expect("message_deleted");
    assert_eq!(got, json!({"messageId": id, "channelId": general}));

    // Joining a channel the user cannot see is refused.
    let private = app
        .post_as(&poster.token, "/servers", &json!({"name": "Poster's"}))
        .await;
    let hidden = private.body["channels"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ws.send("join_channel", json!({"channelId": hidden})).await;
    assert_eq!(
        ws.next("error").await.expect("error")["message"],
        "Channel not found"
    );

    // With ?token=, from any address.
    let mut by_token =
        HypeWs::open(&app, [127, 0, 0, 3], &format!("?token={}", poster.token)).await;
    assert_eq!(
        by_token.next("connected").await.expect("bound")["userId"],
        poster.id.as_str()
    );

    // Without a token from another address, or naming a user without a live session: refused.
    let mut elsewhere = HypeWs::open(&app, [127, 0, 0, 2], "").await;
    elsewhere
        .send("user_joined", json!({"user": {"id": ana_id}}))
        .await;
    assert!(elsewhere.next("error").await.is_some());
    assert!(
        elsewhere.next("connected").await.is_none(),
        "bound from another address"
    );
    let out = hype(&app, Method::POST, "/auth/logout", None, Some(&ana)).await;
    assert_eq!(out.status, 200, "{}", out.text);
    // Logging out ends the socket bound to that session.
    assert!(
        ws.next("new_message").await.is_none(),
        "the socket outlived its session"
    );
    let mut after = HypeWs::open(&app, [127, 0, 0, 1], "").await;
    after
        .send("user_joined", json!({"user": {"id": ana_id}}))
        .await;
    assert!(
        after.next("connected").await.is_none(),
        "bound without a live session"
    );
}

#[tokio::test]
async fn voice_states_said_on_the_socket_reach_every_member_who_sees_the_channel() {
    let app = hype_app(Backend::Sqlite).await;
    let (ana_id, ana) = hype_register(&app, "ana_voice").await;
    let bob = app.register("bob_voice").await;
    let (_, channels) = default_server(&app, &ana).await;
    let voice = channel_named(&channels, "General");
    let text = channel_named(&channels, "general");
    let mut ana_ws = HypeWs::open(&app, [127, 0, 0, 1], &format!("?token={ana}")).await;
    ana_ws.next("connected").await.expect("bound");
    let mut bob_ws = HypeWs::open(&app, [127, 0, 0, 1], &format!("?token={}", bob.token)).await;
    bob_ws.next("connected").await.expect("bound");
    let (mut watcher, _) = app.gateway_as(&bob).await;

    // Ana says she is in the voice channel: without media, as op 8 would.
    let said = json!({"channelId": voice, "userId": ana_id, "username": "ana_voice",
        "avatarUrl": null, "muted": false, "deafened": false});
    ana_ws.send("voice_state", said.clone()).await;
    let joined = bob_ws.next("voice_state").await.expect("voice_state");
    assert_eq!(joined["type"], "user_joined", "{joined}");
    assert_eq!(joined["channelId"], voice.as_str());
    assert_eq!(
        joined["participants"][0]["userId"],
        ana_id.as_str(),
        "{joined}"
    );
    assert_eq!(joined["participants"][0]["username"], "ana_voice");
    assert_eq!(joined["participants"][0]["muted"], false);
    assert!(
        joined["participants"][0]["joinedAt"].is_string(),
        "{joined}"
    );
    let state = watcher.dispatch("VOICE_STATE_UPDATE").await;
    assert_eq!(
        (state["userId"].as_str(), state["channelId"].as_str()),
        (Some(ana_id.as_str()), Some(voice.as_str()))
    );

    // Muting herself is an update, with the flags in the frame and the participant list.
    let mut muted = said.clone();
    muted["muted"] = json!(true);
    ana_ws.send("voice_state", muted).await;
    let updated = bob_ws.next("voice_state").await.expect("voice_state");
    assert_eq!(
        (updated["type"].as_str(), updated["muted"].as_bool()),
        (Some("user_updated"), Some(true)),
        "{updated}"
    );
    assert_eq!(updated["participants"][0]["muted"], true);

    // What is not a voice channel she can join is refused.
    for bad in [json!("nonsense"), json!(text)] {
        let mut frame = said.clone();
        frame["channelId"] = bad;
        ana_ws.send("voice_state", frame).await;
        assert!(ana_ws.next("error").await.is_some());
    }

    // `channelId: null` leaves.
    let mut gone = said.clone();
    gone["channelId"] = Value::Null;
    ana_ws.send("voice_state", gone).await;
    let left = bob_ws.next("voice_state").await.expect("voice_state");
    assert_eq!(
        (left["type"].as_str(), left["channelId"].as_str()),
        (Some("user_left"), Some(voice.as_str())),
        "{left}"
    );
    assert_eq!(left["participants"], json!([]));

    // A voice state said on a socket ends with the socket.
    ana_ws.send("voice_state", said).await;
    let again = bob_ws.next("voice_state").await.expect("voice_state");
    assert_eq!(again["type"], "user_joined", "{again}");
    // A socket opened while she is in voice is told of her leaving too.
    let mut late_ws = HypeWs::open(&app, [127, 0, 0, 1], &format!("?token={}", bob.token)).await;
    late_ws.next("connected").await.expect("bound");
    drop(ana_ws);
    let left = bob_ws.next("voice_state").await.expect("voice_state");
    assert_eq!(left["type"], "user_left", "{left}");
    let told = late_ws.next("voice_state").await.expect("voice_state");
    assert_eq!(
        (told["type"].as_str(), told["channelId"].as_str()),
        (Some("user_left"), Some(voice.as_str())),
        "{told}"
    );
}

#[tokio::test]
async fn browsers_on_another_origin_may_send_the_authorization_header() {
    let app = hype_app(Backend::Sqlite).await;
    let (_, token) = hype_register(&app, "cors_user").await;
    let client = reqwest::Client::new();
    for path in [
        "/compat/hype/api/servers",
        "/compat/rtms/api/conversations",
        "/api/v1/users/@me",
    ] {
        let preflight = client
            .request(Method::OPTIONS, app.url(path))
            .header("Origin", "http://client.example")
            .header("Access-Control-Request-Method", "GET")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
            .await
            .expect("preflight");
        assert!(
            preflight.status().is_success(),
            "{path}: {}",
            preflight.status()
        );
        let allowed = preflight
            .headers()
            .get("access-control-allow-headers")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization"), "{path}: {allowed:?}");
        assert!(
            preflight
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let real = client
            .get(app.url(path))
            .header("Origin", "http://client.example")
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert!(real.status().is_success(), "{path}: {}", real.status());
        assert_eq!(
            real.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*")
        );
    }
}

/// The real binary: `xcord serve --default-server NAME` makes the server on its first start
/// and finds the same one on the next, and a guest of either start is in it.
#[tokio::test]
async fn the_binary_makes_the_default_server_once() {
    use super::process::{signal, start, wait_exit};
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("dir");
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for (round, guest) in ["first_guest", "second_guest"].into_iter().enumerate() {
        let mut run = start(dir.path(), &[], &["--default-server", DEFAULT]);
        let login = client
            .post(format!("http://{}/compat/hype/auth/guest", run.addr))
            .json(&json!({"username": guest}))
            .send()
            .await
            .expect("guest login");
        assert_eq!(login.status().as_u16(), 200, "round {round}");
        let body: Value = login.json().await.unwrap_or_default();
        let token = body["data"]["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let servers: Value = client
            .get(format!("http://{}/compat/hype/api/servers", run.addr))
            .bearer_auth(&token)
            .send()
            .await
            .expect("servers")
            .json()
            .await
            .unwrap_or_default();
        assert_eq!(
            servers["data"][0]["name"], DEFAULT,
            "round {round}: {servers}"
        );
        assert_eq!(servers["data"][0]["_count"]["channels"], 3, "{servers}");
        seen.push(servers["data"][0]["id"].clone());
        signal(&run.child, "TERM");
        assert_eq!(wait_exit(&mut run.child, Duration::from_secs(20)), 0);
    }
    assert_eq!(seen[0], seen[1], "a second start made another server");
}

#[tokio::test]
async fn a_socket_that_floods_is_told_and_closed() {
    let app = hype_app(Backend::Sqlite).await;
    let (_, token) = hype_register(&app, "flooder").await;
    let mut ws = HypeWs::open(&app, [127, 0, 0, 1], &format!("?token={token}")).await;
    assert!(ws.next("connected").await.is_some());
    // The gateway's budget: 120 frames a minute.
    for _ in 0..121 {
        ws.send("leave_channel", json!({"channelId": "1"})).await;
    }
    let told = ws.next("error").await.expect("an error before the close");
    assert!(
        told["message"]
            .as_str()
            .is_some_and(|m| m.contains("Too many")),
        "{told}"
    );
    assert!(
        ws.next("connected").await.is_none(),
        "still open after the flood"
    );
}
