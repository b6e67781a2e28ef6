//! Voice in scale mode (SPEC §5): a voice channel's room lives on one node, recorded in
//! Redis, and signaling that arrives at any other node is forwarded to it. Three real nodes
//! on one PostgreSQL database and one Redis (its own key prefix per run): A and B run every
//! role, C runs no voice role. aiortc peers as in `voice.rs`.

use std::time::Duration;

use serde_json::json;
use xcord::Role;
use xcord_core::voice::{RoomOwner, VoiceRooms};
use xcord_redis::RedisVoiceRooms;
use xcord_testkit::{Backend, TestApp, TestAppBuilder, TestResponse, wait_until};
use xcord_types::Snowflake;

use crate::voice::{Peer, hears_nothing, hears_tone, join, renegotiate, voice_room};

fn redis_url() -> String {
    std::env::var("XCORD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn node(prefix: &str, node_id: u16, roles: &[Role], join: Option<&TestApp>) -> TestApp {
    let (url, prefix, roles) = (redis_url(), prefix.to_owned(), roles.to_vec());
    let mut b = TestAppBuilder::new(Backend::Postgres).configure(move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
        c.node_id = node_id;
        c.roles = roles;
    });
    if let Some(first) = join {
        b = b.joining(first);
    }
    b.spawn().await
}

fn media_sessions(app: &TestApp) -> usize {
    app.state.core.voice.media_session_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_room_lives_on_one_node_and_every_node_reaches_it() {
    let prefix = format!("xcord-test-vn-{}", hex::encode(rand::random::<[u8; 6]>()));
    let a = node(&prefix, 31, &Role::ALL, None).await;
    let b = node(&prefix, 32, &Role::ALL, Some(&a)).await;
    let c = node(&prefix, 33, &[Role::Api, Role::Gateway], Some(&a)).await;
    let rooms = RedisVoiceRooms::connect(&redis_url(), &prefix)
        .await
        .expect("Redis for the room directory");
    let (r, third, channel) = voice_room(&a, "vnodes").await;
    let channel_id = Snowflake::from_i64(channel.parse().expect("a snowflake"));
    let voice = format!("/channels/{channel}/voice");

    // Nobody holds the room yet, and a node without the voice role cannot start it.
    let mut probe = Peer::start();
    let offer = probe.ask(json!({"cmd": "offer", "tone": false})).await;
    c.post_as(&third.token, &voice, &json!({"sdp": offer["sdp"]}))
        .await
        .assert_error(503, "Service Unavailable");
    assert_eq!(rooms.owner(channel_id).await.expect("directory"), None);

    // The speaker joins through A: A takes the room.
    let speaker = join(&a, r.member.clone(), &channel, true).await;
    let speaker_id = speaker.user.id.clone();
    let owner_a = RoomOwner {
        node_id: 31,
        url: format!("http://{}", a.addr),
    };
    assert_eq!(
        rooms.owner(channel_id).await.expect("directory"),
        Some(owner_a.clone())
    );

    // The listener joins the same channel through B: forwarded to A, whose SFU serves both.
    // The server offer reaches the listener over B's gateway; its answer through B is
    // forwarded too.
    let mut listener = join(&b, r.owner.clone(), &channel, false).await;
    assert_eq!((media_sessions(&a), media_sessions(&b)), (2, 0));
    renegotiate(&b, &mut listener, &channel).await;
    let heard = hears_tone(&mut listener.peer).await;
    assert!(
        heard["msids"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| *x == format!("{speaker_id} audio"))),
        "{heard}"
    );
    // B answers who is in the channel from its mirror.
    let list = b.get_as(&r.owner.token, &voice).await;
    list.expect_status(200, "voice states through B");
    let mut users: Vec<&str> = list.body["voiceStates"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s["userId"].as_str()).collect())
        .unwrap_or_default();
    users.sort_unstable();
    let mut expected = vec![r.owner.id.as_str(), speaker_id.as_str()];
    expected.sort_unstable();
    assert_eq!(users, expected, "{}", list.text);

    // A server mute issued through B: A's SFU stops forwarding the speaker's audio and the
    // listener's session loses the track by renegotiation.
    b.patch_as(
        &r.owner.token,
        &format!("/servers/{}/members/{speaker_id}", r.server),
        &json!({"mute": true}),
    )
    .await
    .expect_status(200, "server mute through B");
    renegotiate(&b, &mut listener, &channel).await;
    hears_nothing(&mut listener.peer, 1200, "muted through B, silent on A").await;

    // A node without the voice role forwards a join to the room's owner; the user's last
    // gateway session (on C) closing ends the media session on A.
    let late = join(&c, third.clone(), &channel, false).await;
    assert_eq!(media_sessions(&a), 3);
    late.gw.drop_connection().await;
    wait_until(|| async { media_sessions(&a) == 2 }).await;

    // A move issued through B: A holds the media and takes the target's room; B's mirror
    // shows the speaker in the new channel.
    let created = b
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/channels", r.server),
            &json!({"name": "stage", "type": "voice"}),
        )
        .await;
    created.expect_status(201, "a second voice channel");
    let stage = created.str_at("/id");
    let stage_id = Snowflake::from_i64(stage.parse().expect("a snowflake"));
    b.patch_as(
        &r.owner.token,
        &format!("/servers/{}/members/{speaker_id}", r.server),
        &json!({"channelId": stage}),
    )
    .await
    .expect_status(200, "move through B");
    wait_until(|| async { rooms.owner(stage_id).await.ok().flatten().as_ref() == Some(&owner_a) })
        .await;
    assert_eq!(media_sessions(&a), 2, "moved, not ended");
    let on_stage = b
        .get_as(&r.owner.token, &format!("/channels/{stage}/voice"))
        .await;
    assert_eq!(
        on_stage.body["voiceStates"][0]["userId"],
        speaker_id.as_str(),
        "{}",
        on_stage.text
    );

    // Leaving through B ends the session on A and empties the first room, whose record
    // goes; the speaker leaving the second through A empties that one.
    b.delete_as(&r.owner.token, &format!("{voice}/{}", listener.session))
        .await
        .expect_status(204, "leave through B");
    wait_until(|| async { media_sessions(&a) == 1 }).await;
    wait_until(|| async { rooms.owner(channel_id).await.ok().flatten().is_none() }).await;
    a.delete_as(
        &r.member.token,
        &format!("/channels/{stage}/voice/{}", speaker.session),
    )
    .await
    .expect_status(204, "leave through A");
    assert_eq!(media_sessions(&a), 0);
    assert_eq!(rooms.owner(stage_id).await.expect("directory"), None);

    // A room whose owner is gone (its record not lapsed yet): forwarding fails fast, 503.
    let dead = RoomOwner {
        node_id: 99,
        url: "http://127.0.0.1:9".into(),
    };
    assert_eq!(rooms.claim(channel_id, &dead).await.expect("claim"), dead);
    let started = std::time::Instant::now();
    b.post_as(&third.token, &voice, &json!({"sdp": offer["sdp"]}))
        .await
        .assert_error(503, "Service Unavailable");
    assert!(started.elapsed() < Duration::from_secs(11));
    rooms.release(channel_id, &dead).await.expect("release");

    for p in [speaker.peer, listener.peer, late.peer, probe] {
        p.close().await;
    }
}

async fn post(app: &TestApp, token: &str, path: &str, body: serde_json::Value) -> TestResponse {
    let path = format!("/compat/hype/api/voice{path}");
    app.request(reqwest::Method::POST, &path, Some(&body), Some(token))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hype_voice_signaling_reaches_the_room_s_node() {
    let prefix = format!("xcord-test-vh-{}", hex::encode(rand::random::<[u8; 6]>()));
    let a = node(&prefix, 41, &Role::ALL, None).await;
    let b = node(&prefix, 42, &Role::ALL, Some(&a)).await;
    let (r, _, channel) = voice_room(&a, "vhype").await;
    let hype = |path: &str| format!("/compat/hype/api/voice{path}");
    // A canonical speaker takes the room on A.
    let speaker = join(&a, r.member.clone(), &channel, true).await;
    let speaker_id = speaker.user.id.clone();

    // A Hype client talking to B: its transport is opened on A's SFU, and the requests
    // that name no channel are routed by the voice state B mirrors.
    let recv = post(
        &b,
        &r.owner.token,
        "/create-transport",
        json!({"channelId": channel, "direction": "recv"}),
    )
    .await;
    recv.expect_status(200, "a transport through B");
    assert_eq!((media_sessions(&a), media_sessions(&b)), (2, 0));
    let owner = Snowflake::from_i64(r.owner.id.parse().expect("a snowflake"));
    wait_until(|| async { b.state.core.voice_state_of(owner).is_some() }).await;
    let fingerprint = ["AB"; 32].join(":");
    let connected = post(
        &b,
        &r.owner.token,
        "/transport/connect",
        json!({"transportId": recv.str_at("/id"),
            "dtlsParameters": {"fingerprints": [{"algorithm": "sha-256", "value": fingerprint}]}}),
    )
    .await;
    connected.expect_status(200, "connect forwarded to A");
    // The speaker's track is announced once its connection is up (on A, asynchronously).
    let producer = format!("{speaker_id}:audio");
    let listed = hype(&format!("/producers/{channel}/user/{speaker_id}"));
    wait_until(|| async {
        let producers = b
            .request(reqwest::Method::GET, &listed, None, Some(&r.owner.token))
            .await;
        producers.status == 200 && producers.body["producers"][0]["id"] == producer.as_str()
    })
    .await;
    let consumed = post(
        &b,
        &r.owner.token,
        "/consume",
        json!({"transportId": recv.str_at("/id"), "producerId": producer,
            "rtpCapabilities": {"codecs": [{"mimeType": "audio/opus"}]}}),
    )
    .await;
    consumed.expect_status(200, "consume forwarded to A");
    assert_eq!(consumed.body["rtpParameters"]["mid"], "0");

    // Leaving through B ends the transports on A.
    post(&b, &r.owner.token, "/leave", json!({"channelId": channel}))
        .await
        .expect_status(200, "leave through B");
    wait_until(|| async { media_sessions(&a) == 1 }).await;
    let closed = post(
        &a,
        &r.owner.token,
        "/transport/connect",
        json!({"transportId": recv.str_at("/id"), "channelId": channel,
            "dtlsParameters": {"fingerprints": [{"algorithm": "sha-256", "value": fingerprint}]}}),
    )
    .await;
    assert_eq!(closed.status, 404, "{}", closed.text);
    speaker.peer.close().await;
}
