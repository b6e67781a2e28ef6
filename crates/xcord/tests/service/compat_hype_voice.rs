//! Seed 002's voice (SPEC §7): the mediasoup-style signaling of `/compat/hype/api/voice/*`
//! and the socket's voice frames, driven by a real mediasoup-client 3.x (npm, bundled with
//! esbuild) in headless Chromium with a fake microphone (`tests/compat/hype_voice.html`),
//! against the same SFU and voice states as the canonical signaling: a Hype client hears a
//! canonical participant (aiortc) and the other way round, and a second Hype client on the
//! seed document's paths hears both. The bad paths are checked over plain HTTP.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};
use xcord_testkit::{Backend, TestApp, TestResponse, TestUser, spawn_app, wait_until};

use crate::voice::{dispatches_seen, join, voice_room};
use crate::voice_browser::{Browser, audible, peer_hears, renegotiate_until, track_of};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// mediasoup-client bundled into `dir` as the global `mediasoupClient`; its `file://` URL.
fn bundle(dir: &Path) -> String {
    let tools = workspace().join(".test-tools/node_modules");
    let out = dir.join("mediasoup-client.js");
    let status = std::process::Command::new(tools.join(".bin/esbuild"))
        .arg(tools.join("mediasoup-client/lib/index.js"))
        .args([
            "--bundle",
            "--format=iife",
            "--global-name=mediasoupClient",
            "--platform=browser",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out.display()))
        .status()
        .expect("esbuild and mediasoup-client in .test-tools (./scripts/test installs them)");
    assert!(status.success(), "esbuild failed");
    format!("file://{}", out.display())
}

/// A Hype voice client for `user` in `channel`; `paths`: `client` or `seed`.
fn hype_client(
    app: &TestApp,
    bundle: &str,
    user: &TestUser,
    channel: &str,
    paths: &str,
) -> Browser {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/hype_voice.html");
    Browser::open_url(format!(
        "file://{page}#bundle={bundle}&api={}&token={}&user={}&channel={channel}&paths={paths}",
        app.url("/compat/hype"),
        user.token,
        user.id
    ))
}

fn frame_of(kind: &'static str, pred: impl Fn(&Value) -> bool) -> impl Fn(&Value) -> bool {
    move |f: &Value| f["type"] == kind && pred(&f["data"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mediasoup_client_and_canonical_participants_hear_each_other() {
    let app = spawn_app(Backend::Sqlite).await;
    let (r, third, channel) = voice_room(&app, "hvoice").await;
    let (mut watcher, _) = app.gateway_as(&third).await;
    let dir = tempfile::tempdir().expect("a directory for the bundle");
    let bundle = bundle(dir.path());
    let member = r.member.id.clone();
    let member_producer = format!("{member}:audio");
    let owner_producer = format!("{}:audio", r.owner.id);

    // A Hype client on the published client's paths joins first: its microphone becomes a
    // producer, announced to the channel like any track.
    let mut first = hype_client(&app, &bundle, &r.member, &channel, "client");
    first.report("joined", |_| true).await;
    let added = track_of(&member, "audio", "added");
    dispatches_seen(&mut watcher, &[("VOICE_TRACK", &added)]).await;

    // A canonical participant (aiortc, playing a tone) joins and hears the Hype client…
    let mut owner = join(&app, r.owner.clone(), &channel, true).await;
    let member_msid = format!("{member} audio");
    renegotiate_until(
        &app,
        &mut owner,
        &channel,
        std::slice::from_ref(&member_msid),
    )
    .await;
    peer_hears(&mut owner, &member_msid).await;
    // …and the Hype client, told by its socket of the new producer, hears the tone.
    first
        .report(
            "frame",
            frame_of("new_producer", |d| {
                d["producerId"] == owner_producer.as_str() && d["kind"] == "audio"
            }),
        )
        .await;
    let stats = first
        .report("stats", |s| audible(&s["received"][&owner_producer]))
        .await;
    assert_eq!(stats["recvState"], "connected", "{stats}");

    // A second Hype client, on the seed document's paths, joins last: it finds both
    // producers through the channel's participants and hears both.
    let mut second = hype_client(&app, &bundle, &third, &channel, "seed");
    second.report("joined", |_| true).await;
    second
        .report("stats", |s| {
            audible(&s["received"][&owner_producer]) && audible(&s["received"][&member_producer])
        })
        .await;
    // The first is told who joined, with the channel's three participants.
    let third_id = third.id.clone();
    let told = first
        .report(
            "frame",
            frame_of("voice_state", |d| {
                d["type"] == "user_joined" && d["userId"] == third_id.as_str()
            }),
        )
        .await;
    let mut present: Vec<&str> = told["data"]["participants"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["userId"].as_str()).collect())
        .unwrap_or_default();
    present.sort_unstable();
    let mut everyone = vec![member.as_str(), r.owner.id.as_str(), third.id.as_str()];
    everyone.sort_unstable();
    assert_eq!(present, everyone, "{told}");
    // The first's fake microphone beeps: the SFU reads its audio level and says it speaks.
    let member_id = member.clone();
    second
        .report(
            "frame",
            frame_of("speaking_state", |d| {
                d["userId"] == member_id.as_str() && d["speaking"] == true
            }),
        )
        .await;

    // The first closes: its producer is closed for the others, and it leaves the channel
    // (its socket was its last gateway session).
    first.close().await;
    second
        .report(
            "frame",
            frame_of("producer_closed", |d| {
                d["producerId"] == member_producer.as_str()
            }),
        )
        .await;
    let removed = track_of(&member, "audio", "removed");
    let left = |d: &Value| d["userId"] == member.as_str() && d["channelId"].is_null();
    dispatches_seen(
        &mut watcher,
        &[("VOICE_TRACK", &removed), ("VOICE_STATE_UPDATE", &left)],
    )
    .await;

    second.close().await;
    owner.peer.close().await;
}

async fn voice_call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> TestResponse {
    app.request(
        method,
        &format!("/compat/hype/api/voice{path}"),
        body,
        token,
    )
    .await
}

#[track_caller]
fn assert_failure(res: &TestResponse, status: u16) {
    assert_eq!(res.status, status, "{}", res.text);
    assert_eq!(res.body["success"], false, "{}", res.text);
    assert!(res.body["error"].is_string(), "{}", res.text);
}

const FINGERPRINT: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

fn dtls(value: &str) -> Value {
    json!({"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": value}]})
}

fn opus_parameters(mid: &str, ssrc: u32) -> Value {
    json!({
        "mid": mid,
        "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
            "channels": 2, "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": "test"},
    })
}

#[tokio::test]
async fn the_voice_signaling_refuses_what_it_cannot_use() {
    let app = spawn_app(Backend::Sqlite).await;
    let (r, _, channel) = voice_room(&app, "hvbad").await;
    let (owner, member) = (&r.owner.token, &r.member.token);
    let post = |path: &'static str, body: Value, token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move { voice_call(app, Method::POST, path, Some(&body), Some(&token)).await }
    };

    // Capabilities are the same for everyone and need no sign-in.
    for path in [
        "/rtp-capabilities".to_owned(),
        format!("/rtp-capabilities/{channel}"),
    ] {
        let caps = voice_call(&app, Method::GET, &path, None, None).await;
        assert_eq!(caps.status, 200, "{}", caps.text);
        let codecs = &caps.body["rtpCapabilities"]["codecs"];
        assert_eq!(codecs[0]["mimeType"], "audio/opus", "{}", caps.text);
        assert_eq!(codecs[0]["preferredPayloadType"], 111);
    }

    // Opening a transport: signed in, a direction, one's own user id, a voice channel.
    let open = json!({"channelId": channel, "direction": "send"});
    let res = voice_call(&app, Method::POST, "/create-transport", Some(&open), None).await;
    assert_failure(&res, 401);
    assert_failure(
        &post("/create-transport", json!({"channelId": channel}), owner).await,
        400,
    );
    assert_failure(
        &post(
            "/create-transport",
            json!({"channelId": channel, "direction": "sideways"}),
            owner,
        )
        .await,
        400,
    );
    assert_failure(
        &post(
            "/create-transport",
            json!({"channelId": channel, "direction": "send", "userId": r.member.id}),
            owner,
        )
        .await,
        403,
    );
    let server = app.get_as(owner, &format!("/servers/{}", r.server)).await;
    let text_channel = server.body["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "text"))
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .expect("a text channel");
    assert_failure(
        &post(
            "/create-transport",
            json!({"channelId": text_channel, "direction": "send"}),
            owner,
        )
        .await,
        404,
    );
    // Not in voice and no channel named: the seed path cannot tell which channel.
    assert_failure(&post("/transport/send", json!({}), owner).await, 400);

    // A transport joins the channel (the canonical list shows it) and its parameters are
    // mediasoup's: ICE-lite, the SFU's address over UDP and TCP, a SHA-256 fingerprint.
    let send = post("/create-transport", open.clone(), owner).await;
    assert_eq!(send.status, 200, "{}", send.text);
    assert_eq!(send.body["iceParameters"]["iceLite"], true);
    assert_eq!(send.body["iceCandidates"][0]["protocol"], "udp");
    assert_eq!(send.body["iceCandidates"][1]["tcpType"], "passive");
    assert_eq!(
        send.body["dtlsParameters"]["fingerprints"][0]["algorithm"],
        "sha-256"
    );
    let send_id = send.str_at("/id");
    let states = app
        .get_as(owner, &format!("/channels/{channel}/voice"))
        .await;
    assert_eq!(
        states.body["voiceStates"][0]["userId"],
        r.owner.id.as_str(),
        "{}",
        states.text
    );

    // Connecting: the caller's own transport, a fingerprint that parses, once.
    let connect = |transport: &str, value: &str| json!({"transportId": transport, "dtlsParameters": dtls(value)});
    assert_failure(
        &post("/connect-transport", connect(&send_id, FINGERPRINT), member).await,
        404,
    );
    assert_failure(
        &post("/connect-transport", connect("12345", FINGERPRINT), owner).await,
        404,
    );
    assert_failure(
        &post("/connect-transport", connect(&send_id, "not hex"), owner).await,
        400,
    );
    // A hash the DTLS stack cannot check the certificate with is refused, not accepted to
    // fail the handshake later.
    let sha512 = json!({"transportId": send_id, "dtlsParameters":
        {"fingerprints": [{"algorithm": "sha-512", "value": FINGERPRINT}]}});
    assert_failure(&post("/connect-transport", sha512, owner).await, 400);
    let ok = post("/transport/connect", connect(&send_id, FINGERPRINT), owner).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_failure(
        &post("/connect-transport", connect(&send_id, FINGERPRINT), owner).await,
        400,
    );

    // Producing: a known kind, its codec, a mid and an SSRC, on a sending transport.
    let produce = |kind: &str, params: Value| json!({"transportId": send_id, "kind": kind, "rtpParameters": params});
    // Someone else's transport is not there for them.
    assert_failure(
        &post(
            "/produce",
            produce("audio", opus_parameters("0", 1)),
            member,
        )
        .await,
        404,
    );
    assert_failure(
        &post(
            "/produce",
            produce("hologram", opus_parameters("0", 1)),
            owner,
        )
        .await,
        400,
    );
    assert_failure(
        &post("/produce", produce("video", opus_parameters("0", 1)), owner).await,
        400,
    );
    assert_failure(
        &post("/produce", produce("audio", json!({"mid": "0"})), owner).await,
        400,
    );
    assert_failure(
        &post(
            "/produce",
            produce("audio", opus_parameters("a b", 1)),
            owner,
        )
        .await,
        400,
    );
    let made = post(
        "/produce",
        produce("audio", opus_parameters("0", 4242)),
        owner,
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text);
    let producer = made.str_at("/id");
    assert_eq!(producer, format!("{}:audio", r.owner.id));
    assert_failure(
        &post(
            "/produce",
            produce("audio", opus_parameters("1", 4343)),
            owner,
        )
        .await,
        400,
    );
    // The track is announced (VOICE_TRACK) as the SFU reports it, a moment later.
    let listed = format!("/producers/{channel}/user/{}", r.owner.id);
    wait_until(|| async {
        let res = voice_call(&app, Method::GET, &listed, None, Some(member)).await;
        res.status == 200 && res.body["producers"][0]["id"] == producer.as_str()
    })
    .await;
    // Not a member of the server: the channel is not there for them.
    let stranger = app.register("hvbad_stranger").await;
    let hidden = voice_call(
        &app,
        Method::GET,
        &format!("/producers/{channel}/user/{}", r.owner.id),
        None,
        Some(&stranger.token),
    )
    .await;
    assert_failure(&hidden, 404);

    // Consuming: from one's own receiving transport, a producer of one's channel, a codec
    // the client can decode.
    let member_recv = post(
        "/create-transport",
        json!({"channelId": channel, "direction": "recv"}),
        member,
    )
    .await;
    let recv_id = member_recv.str_at("/id");
    let consume = |transport: &str, producer: &str, caps: Value| json!({"transportId": transport, "producerId": producer, "rtpCapabilities": caps});
    let opus_caps = json!({"codecs": [
        {"mimeType": "audio/opus", "kind": "audio"},
        {"mimeType": "video/VP8", "kind": "video"},
    ]});
    // (A transport's direction is checked by the SFU's own tests.)
    assert_failure(
        &post(
            "/consume",
            consume(&recv_id, "nobody:audio", opus_caps.clone()),
            member,
        )
        .await,
        404,
    );
    assert_failure(
        &post(
            "/consume",
            consume(
                &recv_id,
                &format!("{}:video", r.owner.id),
                opus_caps.clone(),
            ),
            member,
        )
        .await,
        404,
    );
    assert_failure(
        &post(
            "/consume",
            consume(
                &recv_id,
                &producer,
                json!({"codecs": [{"mimeType": "audio/PCMU"}]}),
            ),
            member,
        )
        .await,
        400,
    );
    // Not on someone else's transport, and not one's own track back.
    assert_failure(
        &post(
            "/consume",
            consume(&recv_id, &producer, opus_caps.clone()),
            owner,
        )
        .await,
        404,
    );
    let own_recv = post(
        "/create-transport",
        json!({"channelId": channel, "direction": "recv"}),
        owner,
    )
    .await;
    assert_failure(
        &post(
            "/consume",
            consume(&own_recv.str_at("/id"), &producer, opus_caps.clone()),
            owner,
        )
        .await,
        404,
    );
    // The same SSRC twice is refused (a second kind would never carry media).
    let mut camera = opus_parameters("1", 4242);
    camera["codecs"] = json!([{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}]);
    assert_failure(
        &post("/produce", produce("video", camera), owner).await,
        400,
    );
    let consumed = post(
        "/consume",
        consume(&recv_id, &producer, opus_caps.clone()),
        member,
    )
    .await;
    assert_eq!(consumed.status, 200, "{}", consumed.text);
    assert_eq!(consumed.body["kind"], "audio");
    assert_eq!(consumed.body["producerPaused"], false);
    assert_eq!(consumed.body["rtpParameters"]["mid"], "0");
    assert_eq!(
        consumed.body["rtpParameters"]["codecs"][0]["payloadType"],
        111
    );
    assert!(consumed.body["rtpParameters"]["encodings"][0]["ssrc"].is_u64());

    // Closing: only one's own producer, and only once.
    let res = voice_call(
        &app,
        Method::DELETE,
        &format!("/produce/{producer}"),
        None,
        Some(member),
    )
    .await;
    assert_failure(&res, 404);
    let res = voice_call(
        &app,
        Method::DELETE,
        &format!("/produce/{producer}"),
        None,
        Some(owner),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let res = voice_call(
        &app,
        Method::DELETE,
        &format!("/produce/{producer}"),
        None,
        Some(owner),
    )
    .await;
    assert_failure(&res, 404);

    // A second sending transport replaces the first; leaving closes them all.
    let again = post("/transport/send", json!({"channelId": channel}), owner).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_failure(
        &post("/connect-transport", connect(&send_id, FINGERPRINT), owner).await,
        404,
    );
    let res = post("/leave", json!({"channelId": channel}), owner).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_failure(
        &post(
            "/connect-transport",
            connect(&again.str_at("/id"), FINGERPRINT),
            owner,
        )
        .await,
        404,
    );
    let states = app
        .get_as(owner, &format!("/channels/{channel}/voice"))
        .await;
    assert!(
        states.body["voiceStates"]
            .as_array()
            .is_some_and(|s| s.iter().all(|v| v["userId"] != r.owner.id.as_str())),
        "{}",
        states.text
    );
}
