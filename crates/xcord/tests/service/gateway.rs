//! The WebSocket gateway with real clients, on both backends: the handshake, every op and
//! close code, numbered dispatches, resume, permission changes on live sessions, slow
//! consumers, presence, typing, voice states and shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use xcord_core::{Clock as _, ManualClock};
use xcord_permissions::bits::*;
use xcord_testkit::ws::{GatewayClient, Incoming};
use xcord_testkit::{
    Backend, TestApp, TestAppBuilder, on_both_backends, room, say, spawn_app, wait_until,
};
use xcord_types::Timestamp;

on_both_backends!(
    identify_announces_everything_a_client_starts_from,
    every_close_code_has_its_cause,
    dispatches_are_numbered_named_and_permission_aware,
    resume_replays_the_gap_in_order,
    permission_changes_apply_to_live_sessions,
    a_slow_consumer_is_cut_off_without_slowing_others,
    presence_follows_every_session_of_a_user,
    typing_expires_and_stops_on_a_message,
    voice_states_are_stored_and_broadcast,
    direct_messages_reach_only_their_recipients,
    shutdown_asks_every_client_to_reconnect,
);

const QUIET: Duration = Duration::from_millis(400);

async fn identify_announces_everything_a_client_starts_from(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| c.gateway_heartbeat_ms = 5_000)
        .spawn()
        .await;
    let r = room(&app, "ident").await;
    say(&app, &r.owner, &r.channel, "before").await;
    let (mut c, hello) = GatewayClient::open(app.addr, "/api/ws").await;
    assert_eq!(hello, json!({"op": 0, "d": {"heartbeatInterval": 5000}}));
    c.heartbeat().await;
    c.send(json!({"op": 3, "d": {"token": r.member.token}}))
        .await;
    let f = c.dispatch_frame("CONNECTED").await;
    assert_eq!(
        (f["op"].clone(), f["s"].clone()),
        (json!(10), json!(1)),
        "{f}"
    );
    let d = &f["d"];
    assert!(
        d["sessionId"].as_str().is_some_and(|s| s.len() >= 16),
        "{d}"
    );
    assert_eq!(d["user"]["id"], r.member.id.as_str());
    assert!(d["user"]["email"].is_string(), "the user's own view: {d}");
    let servers = d["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["id"], r.server.as_str());
    assert!(
        servers[0]["channels"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    );
    assert!(
        servers[0]["roles"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(d["dmChannels"].is_array() && d["presences"].is_array());
    assert!(d["readStates"].is_array(), "{d}");

    // `/gateway` with `?token=` identifies at once.
    let (mut q, _) = GatewayClient::open(
        app.addr,
        &format!("/gateway?token={}&encoding=json", r.owner.token),
    )
    .await;
    let d = q.dispatch("CONNECTED").await;
    assert_eq!(d["user"]["id"], r.owner.id.as_str());
    // A token copied with its `Bearer ` prefix works too.
    let (mut b, _) = GatewayClient::open(app.addr, "/api/ws").await;
    b.send(json!({"op": 3, "d": {"token": format!("Bearer {}", r.member.token)}}))
        .await;
    assert_eq!(
        b.dispatch("CONNECTED").await["user"]["id"],
        r.member.id.as_str()
    );
    // A plain GET is refused with the error shape.
    app.get("/api/ws").await.assert_error(400, "Bad Request");
}

async fn closed_with(app: &TestApp, frames: &[Value]) -> Option<u16> {
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    for f in frames {
        c.send(f.clone()).await;
    }
    c.closed().await
}

async fn every_close_code_has_its_cause(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| c.gateway_heartbeat_ms = 300)
        .spawn()
        .await;
    let u = app.register("closer").await;
    let identify = json!({"op": 3, "d": {"token": u.token}});
    assert_eq!(
        closed_with(&app, &[json!({"op": 99, "d": {}})]).await,
        Some(4001)
    );
    assert_eq!(
        closed_with(&app, &[json!({"op": 0, "d": {}})]).await,
        Some(4001)
    );
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    c.send_text("{not json").await;
    assert_eq!(c.closed().await, Some(4002));
    assert_eq!(
        closed_with(&app, &[json!({"op": 3, "d": {}})]).await,
        Some(4002)
    );
    assert_eq!(
        closed_with(&app, &[json!({"op": 5, "d": {"channelId": "1"}})]).await,
        Some(4003)
    );
    assert_eq!(
        closed_with(&app, &[json!({"op": 3, "d": {"token": "nope"}})]).await,
        Some(4004)
    );
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws?token=forged").await;
    assert_eq!(c.closed().await, Some(4004));
    assert_eq!(
        closed_with(&app, &[identify.clone(), identify.clone()]).await,
        Some(4005)
    );
    // A revoked token is refused too.
    let other = app.register("closer2").await;
    app.post_as(&other.token, "/auth/logout", &json!({})).await;
    assert_eq!(
        closed_with(&app, &[json!({"op": 3, "d": {"token": other.token}})]).await,
        Some(4004)
    );
    // Logging out ends the gateway sessions of that login at once.
    let third = app.register("closer3").await;
    let (mut live, _) = app.gateway_as(&third).await;
    app.post_as(&third.token, "/auth/logout", &json!({})).await;
    let f = loop {
        let f = live.frame().await;
        if f["op"] == 9 {
            break f;
        }
    };
    assert_eq!(f["d"]["resumable"], false);
    assert_eq!(live.closed().await, Some(4004));
    // Flooding: more than 120 frames a minute.
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    for _ in 0..130 {
        c.send(json!({"op": 1, "d": {"seq": null}})).await;
    }
    assert_eq!(c.closed().await, Some(4008));
    // Silence for two intervals (600 ms here) from the connection's start.
    let started = std::time::Instant::now();
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    c.send(identify).await;
    c.dispatch("CONNECTED").await;
    assert_eq!(c.closed().await, Some(4009));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    // Heartbeats keep a connection open, whether `{seq}`, a bare number or null.
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    for d in [json!(5), json!(null)] {
        c.send(json!({"op": 1, "d": d})).await;
        assert_eq!(c.frame().await, json!({"op": 2, "d": {}}));
    }
    c.send_text(r#"{"op":1}"#).await;
    assert_eq!(c.frame().await["op"], 2);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.heartbeat().await;
    }
    assert!(c.next_within(Duration::from_millis(100)).await.is_none());
}

fn seq(f: &Value) -> u64 {
    f["s"].as_u64().unwrap_or_else(|| panic!("no s in {f}"))
}

async fn dispatches_are_numbered_named_and_permission_aware(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "disp").await;
    let outsider = app.register("disp_outsider").await;
    let (mut m, _) = app.gateway_as(&r.member).await;
    let (mut o, _) = app.gateway_as(&outsider).await;
    let msg = say(&app, &r.owner, &r.channel, "hello").await;
    let id = msg["id"].as_str().expect("id");
    let f = m.dispatch_frame("MESSAGE_CREATE").await;
    assert_eq!(f["op"], 11);
    assert_eq!(f["d"]["content"], "hello");
    assert_eq!(f["d"]["author"]["id"], r.owner.id.as_str());
    let first = seq(&f);
    let path = format!("/channels/{}/messages/{id}", r.channel);
    app.patch_as(&r.owner.token, &path, &json!({"content": "edited"}))
        .await;
    let f = m.dispatch_frame("MESSAGE_UPDATE").await;
    assert_eq!(
        (f["op"].clone(), f["d"]["content"].clone()),
        (json!(12), json!("edited"))
    );
    assert_eq!(seq(&f), first + 1);
    app.put_as(
        &r.member.token,
        &format!("{path}/reactions/%F0%9F%91%8D"),
        &json!({}),
    )
    .await;
    let f = m.dispatch_frame("MESSAGE_REACTION_ADD").await;
    assert_eq!((f["op"].clone(), seq(&f)), (json!(14), first + 2));
    app.delete_as(&r.owner.token, &path).await;
    let f = m.dispatch_frame("MESSAGE_DELETE").await;
    assert_eq!(f["op"], 13);
    assert_eq!(f["d"]["id"], id);
    assert_eq!(f["d"]["channelId"], r.channel.as_str());
    assert_eq!(f["d"]["serverId"], r.server.as_str());
    assert_eq!(seq(&f), first + 3);
    // A channel created by the owner reaches the member with op 20.
    let ch = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/channels", r.server),
            &json!({"name": "news"}),
        )
        .await;
    let f = m.dispatch_frame("CHANNEL_CREATE").await;
    assert_eq!(
        (f["op"].clone(), f["d"]["id"].clone()),
        (json!(20), ch.body["id"].clone())
    );
    assert_eq!(f["d"]["serverId"], r.server.as_str());
    // The outsider heard none of it.
    o.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    o.assert_no_dispatch("CHANNEL_CREATE", Duration::ZERO).await;
}

async fn resume_replays_the_gap_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "resume").await;
    let (mut m, connected) = app.gateway_as(&r.member).await;
    let session = connected["sessionId"].as_str().expect("session").to_owned();
    say(&app, &r.owner, &r.channel, "seen").await;
    m.dispatch("MESSAGE_CREATE").await;
    let last = m.last_seq;
    m.drop_connection().await;
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(say(&app, &r.owner, &r.channel, &format!("missed {i}")).await["id"].clone());
    }
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    c.send(json!({"op": 6, "d": {"token": r.member.token, "sessionId": session, "seq": last}}))
        .await;
    let mut got = Vec::new();
    let mut seqs = Vec::new();
    let resumed = loop {
        let f = c.frame().await;
        if f["t"] == "RESUMED" {
            break f;
        }
        if f["t"] == "MESSAGE_CREATE" {
            got.push(f["d"]["id"].clone());
        }
        seqs.push(seq(&f));
    };
    assert_eq!(got, missed, "every missed message, in order");
    let expected: Vec<u64> = (last + 1..=last + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "original sequence numbers without a gap");
    assert_eq!(resumed["op"], 10);
    assert_eq!(resumed["d"]["sessionId"], session.as_str());
    assert_eq!(resumed["d"]["replayed"], seqs.len());
    let mut next = seq(&resumed) + 1;
    say(&app, &r.owner, &r.channel, "live").await;
    loop {
        let f = c.frame().await;
        assert_eq!(seq(&f), next, "numbering goes on after RESUMED: {f}");
        next += 1;
        if f["t"] == "MESSAGE_CREATE" {
            break;
        }
    }
    let after = next;

    // Unknown sessions, other users' sessions and impossible sequences are refused.
    for (token, sid, s) in [
        (r.member.token.as_str(), "0123456789abcdef", 0),
        (r.owner.token.as_str(), session.as_str(), 1),
        (r.member.token.as_str(), session.as_str(), after + 50),
    ] {
        let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
        c.send(json!({"op": 6, "d": {"token": token, "sessionId": sid, "seq": s}}))
            .await;
        assert_eq!(c.frame().await, json!({"op": 9, "d": {"resumable": false}}));
        // The connection stays usable for a fresh IDENTIFY.
        c.send(json!({"op": 3, "d": {"token": token}})).await;
        assert_eq!(seq(&c.dispatch_frame("CONNECTED").await), 1);
    }
    // Past the resume window a session is gone.
    let app = TestAppBuilder::new(backend)
        .configure(|c| c.gateway_resume_secs = 1)
        .spawn()
        .await;
    let u = app.register("resume_late").await;
    let (c, d) = app.gateway_as(&u).await;
    let sid = d["sessionId"].as_str().expect("sid").to_owned();
    c.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    c.send(json!({"op": 6, "d": {"token": u.token, "sessionId": sid, "seq": 1}}))
        .await;
    assert_eq!(c.frame().await["op"], 9);
}

async fn member_sees(
    app: &TestApp,
    c: &mut GatewayClient,
    who: &xcord_testkit::TestUser,
    channel: &str,
    text: &str,
) {
    say(app, who, channel, text).await;
    let d = c.dispatch("MESSAGE_CREATE").await;
    assert_eq!(d["content"], text);
}

async fn permission_changes_apply_to_live_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "perm").await;
    let (mut m, _) = app.gateway_as(&r.member).await;
    let (mut o, _) = app.gateway_as(&r.owner).await;
    member_sees(&app, &mut m, &r.owner, &r.channel, "open").await;
    o.dispatch("MESSAGE_CREATE").await;

    // Hide the channel from @everyone: the member hears the change, then nothing more.
    let ow = format!("/channels/{}/permissions/{}", r.channel, r.server);
    let put = app
        .put_as(
            &r.owner.token,
            &ow,
            &json!({"type": "role", "allow": 0, "deny": VIEW_CHANNELS}),
        )
        .await;
    assert!(put.status < 300, "{}", put.text);
    // Only the ids of what it can no longer see: no name, topic or overwrites.
    let gone = m.dispatch_frame("CHANNEL_DELETE").await;
    assert_eq!(
        (gone["op"].clone(), gone["d"].clone()),
        (json!(22), json!({"id": r.channel, "serverId": r.server}))
    );
    m.assert_no_dispatch("CHANNEL_UPDATE", QUIET).await;
    say(&app, &r.owner, &r.channel, "hidden").await;
    o.dispatch("MESSAGE_CREATE").await;
    m.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;

    // A role with an allow overwrite brings it back at once.
    let role = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/roles", r.server),
            &json!({"name": "insiders"}),
        )
        .await;
    let role_id = role.str_at("/id");
    app.put_as(
        &r.owner.token,
        &format!("/channels/{}/permissions/{role_id}", r.channel),
        &json!({"type": "role", "allow": VIEW_CHANNELS, "deny": 0}),
    )
    .await;
    let add = app
        .put_as(
            &r.owner.token,
            &format!(
                "/servers/{}/members/{}/roles/{role_id}",
                r.server, r.member.id
            ),
            &json!({}),
        )
        .await;
    assert!(add.status < 300, "{}", add.text);
    m.dispatch("SERVER_MEMBER_UPDATE").await;
    let back = m.dispatch("CHANNEL_CREATE").await;
    assert_eq!(back["id"], r.channel.as_str());
    assert!(back["name"].is_string(), "the whole channel: {back}");
    member_sees(&app, &mut m, &r.owner, &r.channel, "insiders only").await;

    // Deleting the role takes it away again.
    app.delete_as(
        &r.owner.token,
        &format!("/servers/{}/roles/{role_id}", r.server),
    )
    .await;
    m.dispatch("ROLE_DELETE").await;
    assert_eq!(
        m.dispatch("CHANNEL_DELETE").await,
        json!({"id": r.channel, "serverId": r.server})
    );
    say(&app, &r.owner, &r.channel, "role gone").await;
    m.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    app.delete_as(&r.owner.token, &ow).await;
    assert_eq!(m.dispatch("CHANNEL_CREATE").await["id"], r.channel.as_str());
    member_sees(&app, &mut m, &r.owner, &r.channel, "open again").await;

    // Kicked: the server goes away for the member's live session.
    let kick = app
        .delete_as(
            &r.owner.token,
            &format!("/servers/{}/members/{}", r.server, r.member.id),
        )
        .await;
    assert!(kick.status < 300, "{}", kick.text);
    let gone = m.dispatch("SERVER_DELETE").await;
    assert_eq!(gone["id"], r.server.as_str());
    let f = o.dispatch("SERVER_MEMBER_REMOVE").await;
    assert_eq!(f, json!({"serverId": r.server, "userId": r.member.id}));
    say(&app, &r.owner, &r.channel, "after kick").await;
    m.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;

    // Joining again by invite: the session starts hearing the server at once.
    let code = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/invites", r.server),
            &json!({}),
        )
        .await
        .str_at("/code");
    app.post_as(&r.member.token, &format!("/invites/{code}"), &json!({}))
        .await;
    let joined = m.dispatch("SERVER_CREATE").await;
    assert_eq!(joined["id"], r.server.as_str());
    assert!(joined["channels"].is_array(), "{joined}");
    let add = o.dispatch("SERVER_MEMBER_ADD").await;
    assert_eq!(add["member"]["user"]["id"], r.member.id.as_str());
    member_sees(&app, &mut m, &r.owner, &r.channel, "welcome back").await;

    // A server this node did not hold: a second server joined while connected.
    let other = app
        .post_as(&r.owner.token, "/servers", &json!({"name": "second"}))
        .await;
    let sid = other.str_at("/id");
    let ch2 = other.str_at("/channels/0/id");
    o.dispatch("SERVER_CREATE").await;
    let code = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{sid}/invites"),
            &json!({}),
        )
        .await
        .str_at("/code");
    app.post_as(&r.member.token, &format!("/invites/{code}"), &json!({}))
        .await;
    m.dispatch("SERVER_CREATE").await;
    member_sees(&app, &mut m, &r.owner, &ch2, "second server").await;

    // A deleted channel is announced, then silent.
    let news = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{sid}/channels"),
            &json!({"name": "temp"}),
        )
        .await;
    let news_id = news.str_at("/id");
    assert_eq!(m.dispatch("CHANNEL_CREATE").await["id"], news_id.as_str());
    app.delete_as(&r.owner.token, &format!("/channels/{news_id}"))
        .await;
    assert_eq!(m.dispatch("CHANNEL_DELETE").await["id"], news_id.as_str());

    // Banned: the server goes away at once, and its messages stop.
    let ban = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{sid}/bans"),
            &json!({"userId": r.member.id, "reason": "test"}),
        )
        .await;
    assert!(ban.status < 300, "{}", ban.text);
    assert_eq!(m.dispatch("SERVER_DELETE").await["id"], sid.as_str());
    say(&app, &r.owner, &ch2, "after the ban").await;
    m.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    // Leaving the first server does the same.
    let left = app
        .delete_as(
            &r.member.token,
            &format!("/servers/{}/members/@me", r.server),
        )
        .await;
    assert!(left.status < 300, "{}", left.text);
    assert_eq!(m.dispatch("SERVER_DELETE").await["id"], r.server.as_str());
    say(&app, &r.owner, &r.channel, "after leaving").await;
    m.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
}

async fn a_slow_consumer_is_cut_off_without_slowing_others(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| {
            c.gateway_send_queue = 16;
            c.gateway_replay_events = 100_000;
        })
        .spawn()
        .await;
    let r = room(&app, "slow").await;
    let (mut fast, _) = app.gateway_as(&r.owner).await;
    let (mut slow, connected) =
        GatewayClient::connect_small_buffer(app.addr, &r.member.token).await;
    let session = connected["sessionId"].as_str().expect("sid").to_owned();
    let big = "x".repeat(1900);
    // The slow client reads nothing from here on; kernel buffers fill, then its queue.
    let total = 1500;
    let poster = {
        let app_addr = app.addr;
        let token = r.owner.token.clone();
        let channel = r.channel.clone();
        let client = app.client.clone();
        let big = big.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let res = client
                    .post(format!(
                        "http://{app_addr}/api/v1/channels/{channel}/messages"
                    ))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("{i} {big}")}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(res.status(), 201);
            }
        })
    };
    let reader = tokio::spawn(async move {
        for i in 0..total {
            let d = fast.dispatch("MESSAGE_CREATE").await;
            assert!(
                d["content"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{i} "))),
                "the fast client gets every message in order"
            );
        }
    });
    let gateway = app.gateway.clone().expect("gateway");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while gateway.session_attached(&session) != Some(false) {
        assert!(
            std::time::Instant::now() < deadline && !poster.is_finished(),
            "the slow client was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Now the slow client reads: what the kernel held, then the 4010 close.
    let mut last = 0;
    let mut messages = 0;
    let code = loop {
        match slow.next_within(Duration::from_secs(10)).await {
            Some(Incoming::Frame(f)) => {
                if let Some(s) = f["s"].as_u64() {
                    last = s;
                }
                messages += usize::from(f["t"] == "MESSAGE_CREATE");
            }
            Some(Incoming::Closed(code)) => break code,
            None => panic!("the slow client was never cut off"),
        }
    };
    assert_eq!(code, Some(4010));
    assert!(
        messages < total,
        "it was cut off before the end ({messages})"
    );
    reader.await.expect("the fast client was not held up");
    poster.await.expect("poster");
    // It resumes and gets the rest, gap-free.
    let (mut c, _) = GatewayClient::open(app.addr, "/api/ws").await;
    c.send(json!({"op": 6, "d": {"token": r.member.token, "sessionId": session, "seq": last}}))
        .await;
    let mut expect = last + 1;
    loop {
        let f = c.frame().await;
        assert_eq!(seq(&f), expect, "{f}");
        expect += 1;
        messages += usize::from(f["t"] == "MESSAGE_CREATE");
        if f["t"] == "RESUMED" {
            break;
        }
    }
    assert_eq!(messages, total, "every message, once, across the cut");
}

async fn presence_follows_every_session_of_a_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "pres").await;
    let stranger = app.register("pres_stranger").await;
    let (mut watcher, _) = app.gateway_as(&r.owner).await;
    let (mut s, _) = app.gateway_as(&stranger).await;
    let (first, _) = app.gateway_as(&r.member).await;
    let p = watcher.presence_of(&r.member.id).await;
    assert_eq!(
        p,
        json!({"userId": r.member.id, "status": "online", "customStatus": null})
    );
    let (mut second, connected) = app.gateway_as(&r.member).await;
    let online: Vec<&Value> = connected["presences"]
        .as_array()
        .expect("p")
        .iter()
        .collect();
    assert!(
        online.iter().any(|p| p["userId"] == r.owner.id.as_str()),
        "{connected}"
    );
    second
        .send(json!({"op": 4, "d": {"status": "dnd", "customStatus": "focus"}}))
        .await;
    let mut p = watcher.presence_of(&r.member.id).await;
    while p["status"] == "online" {
        p = watcher.presence_of(&r.member.id).await;
    }
    assert_eq!(
        p,
        json!({"userId": r.member.id, "status": "dnd", "customStatus": "focus"})
    );
    // Closing one of two sessions keeps the user online.
    first.drop_connection().await;
    watcher.assert_no_dispatch("PRESENCE_UPDATE", QUIET).await;
    // Invisible looks offline to others.
    second
        .send(json!({"op": 4, "d": {"status": "invisible"}}))
        .await;
    let p = watcher.presence_of(&r.member.id).await;
    assert_eq!(p["status"], "offline");
    let count = app.get_as(&r.owner.token, "/users/online/count").await;
    assert_eq!(count.body["onlineUserCount"], 2, "owner and stranger only");
    second
        .send(json!({"op": 4, "d": {"status": "online"}}))
        .await;
    assert_eq!(watcher.presence_of(&r.member.id).await["status"], "online");
    second.drop_connection().await;
    let p = watcher.presence_of(&r.member.id).await;
    assert_eq!(
        p,
        json!({"userId": r.member.id, "status": "offline", "customStatus": null})
    );
    // Someone who shares nothing hears none of it.
    while let Some(Incoming::Frame(f)) = s.next_within(QUIET).await {
        assert_ne!(f["d"]["userId"], r.member.id.as_str(), "{f}");
    }
}

async fn typing_expires_and_stops_on_a_message(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let app = TestAppBuilder::new(backend)
        .clock(clock.clone())
        .spawn()
        .await;
    let r = room(&app, "typing").await;
    let (mut o, _) = app.gateway_as(&r.owner).await;
    let (mut m, _) = app.gateway_as(&r.member).await;
    m.send(json!({"op": 5, "d": {"channelId": r.channel}}))
        .await;
    let f = o.dispatch_frame("TYPING_START").await;
    assert_eq!(f["op"], 50);
    assert_eq!(f["d"]["userId"], r.member.id.as_str());
    assert_eq!(f["d"]["channelId"], r.channel.as_str());
    assert!(f["d"]["timestamp"].is_string());
    o.assert_no_dispatch("TYPING_STOP", Duration::from_millis(1_500))
        .await;
    clock.advance_millis(10_500);
    let f = o.dispatch_frame("TYPING_STOP").await;
    assert_eq!(f["op"], 51);
    assert_eq!(f["d"]["userId"], r.member.id.as_str());
    // A message ends typing at once.
    m.send(json!({"op": 5, "d": {"channelId": r.channel}}))
        .await;
    o.dispatch("TYPING_START").await;
    say(&app, &r.member, &r.channel, "done typing").await;
    o.dispatch("MESSAGE_CREATE").await;
    assert_eq!(
        o.dispatch("TYPING_STOP").await["userId"],
        r.member.id.as_str()
    );
    // Typing where one may not send is ignored.
    let outsider = app.register("typing_out").await;
    let (mut x, _) = app.gateway_as(&outsider).await;
    x.send(json!({"op": 5, "d": {"channelId": r.channel}}))
        .await;
    o.assert_no_dispatch("TYPING_START", QUIET).await;
    let _ = clock.now();
}

async fn voice_states_are_stored_and_broadcast(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "voice").await;
    let server = app
        .get_as(&r.owner.token, &format!("/servers/{}", r.server))
        .await;
    let voice = server.body["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["type"] == "voice")
        .and_then(|c| c["id"].as_str())
        .expect("voice channel")
        .to_owned();
    let (mut o, _) = app.gateway_as(&r.owner).await;
    let (mut m, _) = app.gateway_as(&r.member).await;
    m.send(json!({"op": 8, "d": {"serverId": r.server, "channelId": voice, "selfMute": true, "selfDeaf": false}}))
        .await;
    let f = o.dispatch_frame("VOICE_STATE_UPDATE").await;
    assert_eq!(f["op"], 60);
    assert_eq!(f["d"]["userId"], r.member.id.as_str());
    assert_eq!(f["d"]["channelId"], voice.as_str());
    assert_eq!(f["d"]["selfMute"], true);
    // A new session sees who is in voice.
    let (_late, connected) = app.gateway_as(&r.owner).await;
    let states = &connected["servers"][0]["voiceStates"];
    assert_eq!(states[0]["userId"], r.member.id.as_str(), "{connected}");
    // A text channel is not a voice channel.
    m.send(json!({"op": 8, "d": {"serverId": r.server, "channelId": r.channel}}))
        .await;
    o.assert_no_dispatch("VOICE_STATE_UPDATE", QUIET).await;
    // Leaving, then closing the session, clear it.
    m.send(json!({"op": 8, "d": {"serverId": r.server, "channelId": null}}))
        .await;
    assert_eq!(
        o.dispatch("VOICE_STATE_UPDATE").await["channelId"],
        Value::Null
    );
    m.send(json!({"op": 8, "d": {"serverId": r.server, "channelId": voice}}))
        .await;
    o.dispatch("VOICE_STATE_UPDATE").await;
    m.drop_connection().await;
    assert_eq!(
        o.dispatch("VOICE_STATE_UPDATE").await["channelId"],
        Value::Null
    );
}

async fn direct_messages_reach_only_their_recipients(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("dm_a").await;
    let b = app.register("dm_b").await;
    let c = app.register("dm_c").await;
    let (mut ca, _) = app.gateway_as(&a).await;
    let (mut cb, _) = app.gateway_as(&b).await;
    let (mut cc, _) = app.gateway_as(&c).await;
    let dm = app
        .post_as(
            &a.token,
            &format!("/users/{}/dm-channels", a.id),
            &json!({"recipientId": b.id}),
        )
        .await;
    assert!(dm.status < 300, "{}", dm.text);
    let channel = dm.str_at("/id");
    assert_eq!(cb.dispatch("CHANNEL_CREATE").await["id"], channel.as_str());
    assert_eq!(ca.dispatch("CHANNEL_CREATE").await["id"], channel.as_str());
    say(&app, &a, &channel, "psst").await;
    assert_eq!(cb.dispatch("MESSAGE_CREATE").await["content"], "psst");
    assert_eq!(ca.dispatch("MESSAGE_CREATE").await["content"], "psst");
    cc.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    // A session opened later knows the DM from CONNECTED.
    let (mut late, connected) = app.gateway_as(&b).await;
    assert_eq!(connected["dmChannels"][0]["id"], channel.as_str());
    say(&app, &a, &channel, "again").await;
    assert_eq!(late.dispatch("MESSAGE_CREATE").await["content"], "again");
}

async fn shutdown_asks_every_client_to_reconnect(backend: Backend) {
    let app = spawn_app(backend).await;
    let u = app.register("bye").await;
    let (mut c, _) = app.gateway_as(&u).await;
    let (mut idle, _) = GatewayClient::open(app.addr, "/api/ws").await;
    let gateway = app.gateway.clone().expect("gateway");
    wait_until(|| async { gateway.session_count() == 1 }).await;
    let stopping = tokio::spawn(app.stop());
    let f = loop {
        let f = c.frame().await;
        if f["op"] == 7 {
            break f;
        }
    };
    assert_eq!(f["op"], 7);
    assert_eq!(c.closed().await, Some(1012));
    assert_eq!(idle.frame().await["op"], 7);
    assert_eq!(idle.closed().await, Some(1012));
    stopping.await.expect("join").expect("clean stop");
}
