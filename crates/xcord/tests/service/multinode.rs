//! Scale mode: two real nodes on one PostgreSQL database and one real Redis behave as one
//! service (SPEC §1, §4). Redis at `XCORD_TEST_REDIS_URL` (default 127.0.0.1:6379); every
//! run uses its own key prefix.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use xcord::Role;
use xcord_core::ManualClock;
use xcord_permissions::bits::VIEW_CHANNELS;
use xcord_testkit::{Backend, TestApp, TestAppBuilder, room, say, wait_until};
use xcord_types::Timestamp;

pub(super) async fn node(prefix: &str, node_id: u16, join: Option<&TestApp>) -> TestApp {
    let url =
        std::env::var("XCORD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = prefix.to_owned();
    let mut b = TestAppBuilder::new(Backend::Postgres).configure(move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
        c.node_id = node_id;
        c.rate_limits = true;
        c.rate_limit_overrides.insert(
            xcord_core::ratelimit::Tier::Login,
            "3/60".parse().unwrap_or(xcord_core::ratelimit::Limit {
                max: 3,
                window_secs: 60,
            }),
        );
    });
    if let Some(first) = join {
        b = b.joining(first);
    }
    b.spawn().await
}

#[tokio::test]
async fn two_nodes_over_redis_behave_as_one() {
    let prefix = format!("xcord-test-{}", rand_suffix());
    let a = node(&prefix, 1, None).await;
    let b = node(&prefix, 2, Some(&a)).await;
    let r = room(&a, "multi").await;
    for n in [&a, &b] {
        let h = n.get("/health").await;
        assert_eq!(h.status, 200, "{}", h.text);
        assert_eq!(h.body["services"]["redis"], "up");
        assert_eq!(h.body["services"]["bus"], "redis");
    }

    // The owner is connected to A, the member to B.
    let (mut owner_a, _) = a.gateway_as(&r.owner).await;
    let (mut member_b, connected) = b.gateway_as(&r.member).await;
    // CONNECTED on B lists the owner, online through A (presence read from Redis).
    let presences = connected["presences"].as_array().expect("presences");
    assert!(
        presences
            .iter()
            .any(|p| p["userId"] == r.owner.id.as_str() && p["status"] == "online"),
        "{connected}"
    );
    let p = owner_a.presence_of(&r.member.id).await;
    assert_eq!(p["status"], "online", "presence crosses nodes");
    for n in [&a, &b] {
        let count = n.get_as(&r.owner.token, "/users/online/count").await;
        assert_eq!(count.body["onlineUserCount"], 2, "{}", count.text);
    }

    // Messages posted through either node reach the other's clients.
    say(&a, &r.owner, &r.channel, "from a").await;
    assert_eq!(
        member_b.dispatch("MESSAGE_CREATE").await["content"],
        "from a"
    );
    say(&b, &r.member, &r.channel, "from b").await;
    assert_eq!(
        owner_a.dispatch("MESSAGE_CREATE").await["content"],
        "from a"
    );
    assert_eq!(
        owner_a.dispatch("MESSAGE_CREATE").await["content"],
        "from b"
    );
    // Typing through B's gateway reaches A.
    member_b
        .send(json!({"op": 5, "d": {"channelId": r.channel}}))
        .await;
    assert_eq!(
        owner_a.dispatch("TYPING_START").await["userId"],
        r.member.id.as_str()
    );

    // Slowmode holds across nodes: a post through A, then one through B, is too soon.
    let patch = a
        .patch_as(
            &r.owner.token,
            &format!("/channels/{}", r.channel),
            &json!({"rateLimitPerUser": 30}),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text);
    // The member's last post ("from b") went through B; A knows of it.
    let again = a
        .post_as(
            &r.member.token,
            &format!("/channels/{}/messages", r.channel),
            &json!({"content": "too soon"}),
        )
        .await;
    again.assert_error(429, "Too Many Requests");
    assert!(
        again.body["details"]["retryAfter"]
            .as_u64()
            .is_some_and(|s| s <= 30)
    );

    // A permission change made through A applies to the session on B at once.
    let ow = format!("/channels/{}/permissions/{}", r.channel, r.server);
    a.put_as(
        &r.owner.token,
        &ow,
        &json!({"type": "role", "allow": 0, "deny": VIEW_CHANNELS}),
    )
    .await;
    member_b.dispatch("CHANNEL_UPDATE").await;
    say(&a, &r.owner, &r.channel, "secret").await;
    member_b
        .assert_no_dispatch("MESSAGE_CREATE", Duration::from_millis(400))
        .await;

    // Presence follows sessions on both nodes: one left on A keeps the member online.
    let (member_a, _) = a.gateway_as(&r.member).await;
    member_b.drop_connection().await;
    while let Some(xcord_testkit::ws::Incoming::Frame(f)) =
        owner_a.next_within(Duration::from_millis(400)).await
    {
        assert_ne!(f["d"]["status"], "offline", "{f}");
    }
    member_a.drop_connection().await;
    assert_eq!(owner_a.presence_of(&r.member.id).await["status"], "offline");

    // Rate-limit counters are shared: three logins a minute in all, whichever node.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let n = if i % 2 == 0 { &a } else { &b };
        let res = n
            .post_api(
                "/auth/login",
                &json!({"username": "multi_member", "password": "wrong-password"}),
            )
            .await;
        statuses.push(res.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);

    // A logout through A is refused by B at once.
    assert_eq!(b.get_as(&r.member.token, "/auth/me").await.status, 200);
    a.post_as(&r.member.token, "/auth/logout", &json!({})).await;
    wait_until(|| async { b.get_as(&r.member.token, "/auth/me").await.status == 401 }).await;
}

/// A node of the deployment `prefix` that runs only `role`, on `clock`.
async fn split_node(
    prefix: &str,
    node_id: u16,
    role: Role,
    clock: Arc<ManualClock>,
    join: Option<&TestApp>,
) -> TestApp {
    let url =
        std::env::var("XCORD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = prefix.to_owned();
    let mut b = TestAppBuilder::new(Backend::Postgres)
        .clock(clock)
        .configure(move |c| {
            c.redis_url = Some(url);
            c.redis_prefix = prefix;
            c.node_id = node_id;
            c.roles = vec![role];
        });
    if let Some(first) = join {
        b = b.joining(first);
    }
    b.spawn().await
}

/// A node started with only `api` and one with only `gateway` share the work over Redis:
/// the api node's posts and typing reach the gateway node's clients, the api node ends the
/// typing it started ten seconds later (it runs the core's housekeeping though it has no
/// gateway), and typing over the gateway node stops when the message is posted through the
/// api node. Each TYPING_STOP comes once.
#[tokio::test]
async fn an_api_node_and_a_gateway_node_split_the_work() {
    let prefix = format!("xcord-test-{}", rand_suffix());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let api = split_node(&prefix, 11, Role::Api, clock.clone(), None).await;
    let gw = split_node(&prefix, 12, Role::Gateway, clock.clone(), Some(&api)).await;
    // Each serves its role only: no WebSocket on the api node, no REST on the gateway node.
    assert!(api.gateway.is_none() && gw.gateway.is_some());
    assert_eq!(api.get("/api/ws").await.status, 404);
    assert_eq!(gw.get("/api/v1/users/@me").await.status, 404);
    for n in [&api, &gw] {
        assert_eq!(n.get("/health").await.status, 200);
    }
    let r = room(&api, "split").await;
    let (mut owner, _) = gw.gateway_as(&r.owner).await;
    let (mut member, _) = gw.gateway_as(&r.member).await;
    let channel = r.channel.as_str();

    // Typing through the api node, which ends it by its own clock.
    let typing = api
        .post_as(
            &r.member.token,
            &format!("/channels/{channel}/typing"),
            &json!({}),
        )
        .await;
    assert_eq!(typing.status, 204, "{}", typing.text);
    assert_eq!(
        owner.dispatch("TYPING_START").await["userId"],
        r.member.id.as_str()
    );
    owner
        .assert_no_dispatch("TYPING_STOP", Duration::from_millis(1_500))
        .await;
    clock.advance_millis(10_500);
    let stop = owner.dispatch("TYPING_STOP").await;
    assert_eq!(stop["userId"], r.member.id.as_str(), "{stop}");
    assert_eq!(stop["channelId"], channel, "{stop}");
    owner
        .assert_no_dispatch("TYPING_STOP", Duration::from_millis(1_500))
        .await;

    // A post through the api node reaches a client of the gateway node.
    say(&api, &r.owner, channel, "through the api node").await;
    assert_eq!(
        member.dispatch("MESSAGE_CREATE").await["content"],
        "through the api node"
    );

    // Typing over the gateway node, then posting through the api node: the gateway node,
    // which started the indicator, stops it when it hears of the message.
    member
        .send(json!({"op": 5, "d": {"channelId": channel}}))
        .await;
    owner.dispatch("TYPING_START").await;
    say(&api, &r.member, channel, "typed over the gateway").await;
    assert_eq!(
        owner.dispatch("MESSAGE_CREATE").await["content"],
        "typed over the gateway"
    );
    assert_eq!(
        owner.dispatch("TYPING_STOP").await["userId"],
        r.member.id.as_str()
    );
    // Not a second time when its ten seconds are up.
    clock.advance_millis(10_500);
    owner
        .assert_no_dispatch("TYPING_STOP", Duration::from_millis(1_500))
        .await;

    // Both stop cleanly, each awaiting its own tasks.
    drop((owner, member));
    gw.stop().await.expect("the gateway node stops");
    api.stop().await.expect("the api node stops");
}

pub(super) fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A private Redis on a free port, for an outage test that must not touch the shared one.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (installed on this machine) starts");
        Self { child, port }
    }

    async fn wait_ready(&self) {
        let port = self.port;
        wait_until(|| async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn health_reports_a_redis_outage_and_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let app = TestAppBuilder::new(Backend::Sqlite)
        .configure(move |c| c.redis_url = Some(format!("redis://127.0.0.1:{port}")))
        .spawn()
        .await;
    assert_eq!(app.get("/health").await.body["services"]["redis"], "up");
    drop(redis);
    let down = app.get("/health").await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.body["services"]["redis"], "down");
    assert_eq!(down.body["status"], "DOWN");
    let again = PrivateRedis::start(port);
    again.wait_ready().await;
    wait_until(|| async { app.get("/health").await.status == 200 }).await;
}

#[tokio::test]
async fn a_session_of_a_stopped_node_resumes_on_another() {
    use xcord_testkit::ws::{GatewayClient, Incoming};
    let prefix = format!("xcord-test-{}", rand_suffix());
    let mut a = node(&prefix, 1, None).await;
    let b = node(&prefix, 2, Some(&a)).await;
    let r = room(&a, "handover").await;
    let (mut m, _) = a.gateway_as(&r.member).await;
    say(&b, &r.owner, &r.channel, "before").await;
    assert_eq!(m.dispatch("MESSAGE_CREATE").await["content"], "before");
    let session = m.session_id.clone().expect("session id");
    let seq = m.last_seq;

    // Node A stops (SIGTERM). The client goes to B the moment it is told to, while A is
    // still shutting down; the service goes on through B meanwhile.
    let stopping = a.shut_down();
    let moving = async {
        let mut closed = None;
        for _ in 0..100 {
            if let Some(Incoming::Closed(code)) = m.next_within(Duration::from_secs(10)).await {
                closed = code;
                break;
            }
        }
        assert_eq!(closed, Some(1012));
        let mut posted = Vec::new();
        for n in 0..5 {
            posted.push(say(&b, &r.owner, &r.channel, &format!("gap {n}")).await["id"].clone());
        }
        let (mut c, _) = GatewayClient::open(b.addr, "/api/ws").await;
        c.send(json!({"op": 6, "d": {"token": r.member.token, "sessionId": session, "seq": seq}}))
            .await;
        (c, posted)
    };
    let (stopped, (mut c, posted)) = tokio::join!(stopping, moving);
    stopped.expect("clean shutdown");
    let mut messages = Vec::new();
    let mut last = seq;
    for _ in 0..200 {
        let f = c.frame().await;
        assert_ne!(f["op"], 9, "not resumable on B");
        let s = f["s"].as_u64().expect("numbered");
        assert_eq!(s, last + 1, "gap-free numbering: {f}");
        last = s;
        if f["t"] == "RESUMED" {
            break;
        }
        if f["t"] == "MESSAGE_CREATE" {
            messages.push(f["d"]["id"].clone());
        }
    }
    assert_eq!(
        messages, posted,
        "every message posted while A was down, once, in order"
    );
    say(&b, &r.owner, &r.channel, "live").await;
    assert_eq!(c.dispatch("MESSAGE_CREATE").await["content"], "live");
}

#[tokio::test]
async fn an_event_its_node_never_published_reaches_the_other_node() {
    use xcord_store::RolePatch;
    use xcord_types::Snowflake;

    let prefix = format!("xcord-test-{}", rand_suffix());
    let mut a = node(&prefix, 1, None).await;
    let b = node(&prefix, 2, Some(&a)).await;
    let r = room(&a, "relay").await;
    let made = a
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/roles", r.server),
            &json!({"name": "before"}),
        )
        .await;
    made.expect_status(201, "role");
    let role_id: Snowflake = xcord_testkit::string_at(&made.body, "/id")
        .parse()
        .expect("role id");
    let server: Snowflake = r.server.parse().expect("server id");
    let (mut member_b, _) = b.gateway_as(&r.member).await;

    // A's use-case commits with its event; A dies before publishing (its relay is the
    // other candidate, B's the one a real crash leaves).
    let patch = RolePatch {
        name: Some("after".into()),
        ..RolePatch::default()
    };
    crate::outbox::update_role_and_die(&a.state.core, server, role_id, &patch).await;
    // A stops (and holds the database of both nodes, so it stays in the test).
    a.shut_down().await.expect("A stops");

    let ev = member_b.dispatch("ROLE_UPDATE").await;
    assert_eq!(ev["role"]["name"], "after");
    member_b
        .assert_no_dispatch("ROLE_UPDATE", Duration::from_secs(3))
        .await;
}
