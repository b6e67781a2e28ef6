//! Voice (SPEC §5) with real WebRTC peers: aiortc processes (`tests/voice/peer.py`) join a
//! voice channel through the canonical signaling, and the tests listen to what they decode.
//!
//! The media tests run on SQLite only: voice keeps no state in the database, and each run
//! costs seconds of real media. The signaling refusals run on both backends.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use xcord_testkit::ws::GatewayClient;
use xcord_testkit::{Backend, Room, TestApp, TestUser, on_both_backends, room, spawn_app};

on_both_backends!(voice_signaling_refuses_what_it_must);

const STEP: Duration = Duration::from_secs(20);

/// One aiortc peer connection in its own process.
pub(crate) struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    pub(crate) fn start() -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/voice/peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "python3 must be installed (with aiortc from PyPI; ./scripts/test installs it)",
            );
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = BufReader::new(child.stdout.take().expect("peer stdout")).lines();
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    pub(crate) async fn ask(&mut self, msg: Value) -> Value {
        let mut line = msg.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the peer");
        let reply = tokio::time::timeout(STEP, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the peer did not answer {msg} in time"))
            .expect("read from the peer")
            .unwrap_or_else(|| panic!("the peer exited on {msg}"));
        let v: Value = serde_json::from_str(&reply).expect("the peer answers JSON");
        assert!(v.get("error").is_none(), "the peer failed {msg}: {v}");
        v
    }

    /// Listens for `ms` and reports decoded frames and the loudest one.
    pub(crate) async fn listen(&mut self, ms: u64) -> Value {
        self.ask(json!({"cmd": "listen", "ms": ms})).await
    }

    pub(crate) async fn close(mut self) {
        let _ = self.ask(json!({"cmd": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// A user in voice: their gateway, their peer and their voice session.
pub(crate) struct Participant {
    pub(crate) user: TestUser,
    pub(crate) gw: GatewayClient,
    pub(crate) peer: Peer,
    pub(crate) session: String,
}

pub(crate) fn voice_channel(server: &Value) -> String {
    server["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["type"] == "voice")
        .and_then(|c| c["id"].as_str())
        .expect("the server has a voice channel")
        .to_owned()
}

/// Joins `channel` with a fresh peer (sending a tone or receive-only).
pub(crate) async fn join(app: &TestApp, user: TestUser, channel: &str, tone: bool) -> Participant {
    let (gw, _) = app.gateway_as(&user).await;
    let mut peer = Peer::start();
    let offer = peer.ask(json!({"cmd": "offer", "tone": tone})).await;
    let res = app
        .post_as(
            &user.token,
            &format!("/channels/{channel}/voice"),
            &json!({"sdp": offer["sdp"]}),
        )
        .await;
    res.expect_status(201, "join voice");
    assert_eq!(res.body["voiceState"]["channelId"], channel);
    assert_eq!(res.body["voiceState"]["userId"], user.id.as_str());
    let answer = res.str_at("/sdp");
    assert!(
        answer.contains("a=candidate:"),
        "the answer carries candidates: {answer}"
    );
    assert!(
        answer.contains("tcptype passive"),
        "ICE-TCP is offered on the same port: {answer}"
    );
    peer.ask(json!({"cmd": "answer", "sdp": answer})).await;
    Participant {
        user,
        gw,
        peer,
        session: res.str_at("/sessionId"),
    }
}

/// Answers the next server offer (VOICE_SDP) of `p`; returns the offer's SDP.
pub(crate) async fn renegotiate(app: &TestApp, p: &mut Participant, channel: &str) -> String {
    let offer = p.gw.dispatch("VOICE_SDP").await;
    assert_eq!(offer["sessionId"], p.session.as_str());
    assert_eq!(offer["channelId"], channel);
    let answer = p
        .peer
        .ask(json!({"cmd": "server_offer", "sdp": offer["sdp"]}))
        .await;
    let res = app
        .post_as(
            &p.user.token,
            &format!("/channels/{channel}/voice/{}/answer", p.session),
            &json!({"sdp": answer["sdp"]}),
        )
        .await;
    res.expect_status(204, "answer the server offer");
    offer["sdp"].as_str().unwrap_or_default().to_owned()
}

/// Waits for a dispatch `name` whose payload matches `pred`, skipping others.
pub(crate) async fn dispatch_where(
    gw: &mut GatewayClient,
    name: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..50 {
        let d = gw.dispatch(name).await;
        if pred(&d) {
            return d;
        }
    }
    panic!("no {name} matching the condition");
}

/// A dispatch name and a condition on its payload.
pub(crate) type Expected<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);

/// Reads dispatches until each `(name, condition)` has been seen once, in any order (events
/// of the media plane and of the signaling travel separate paths).
pub(crate) async fn dispatches_seen(gw: &mut GatewayClient, wanted: &[Expected<'_>]) -> Vec<Value> {
    let mut found: Vec<Option<Value>> = vec![None; wanted.len()];
    for _ in 0..200 {
        if found.iter().all(Option::is_some) {
            break;
        }
        let f = gw.frame().await;
        for (i, (name, pred)) in wanted.iter().enumerate() {
            if found[i].is_none() && f["t"] == *name && pred(&f["d"]) {
                found[i] = Some(f["d"].clone());
                break;
            }
        }
    }
    found
        .into_iter()
        .zip(wanted)
        .map(|(v, (name, _))| v.unwrap_or_else(|| panic!("no {name} as expected")))
        .collect()
}

/// Listens until the tone is heard (up to ~10 s: ICE, DTLS and the jitter buffer settle).
pub(crate) async fn hears_tone(peer: &mut Peer) -> Value {
    listen_until(peer, 10, "the tone", |heard| {
        heard["frames"].as_i64().unwrap_or(0) > 10
            && heard["peak_dbfs"].as_f64().unwrap_or(-200.0) > -30.0
    })
    .await
}

/// Listens a second at a time, up to `tries` times, until what was decoded satisfies `ok`;
/// fails naming `what` otherwise.
pub(crate) async fn listen_until(
    peer: &mut Peer,
    tries: usize,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..tries {
        last = peer.listen(1000).await;
        if ok(&last) {
            return last;
        }
    }
    panic!("{what} never arrived: {last}");
}

/// Waits for a change to settle, then listens and asserts that nothing is decoded.
pub(crate) async fn hears_nothing(peer: &mut Peer, ms: u64, why: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = peer.listen(ms).await;
    assert_eq!(heard["frames"], 0, "{why}: {heard}");
}

/// A room with a third member, and the id of its server's voice channel.
pub(crate) async fn voice_room(app: &TestApp, prefix: &str) -> (Room, TestUser, String) {
    let r = room(app, prefix).await;
    let third = app.register(&format!("{prefix}_third")).await;
    let code = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/invites", r.server),
            &json!({}),
        )
        .await
        .str_at("/code");
    app.post_as(&third.token, &format!("/invites/{code}"), &json!({}))
        .await
        .expect_status(200, "third joins");
    let server = app
        .get_as(&r.owner.token, &format!("/servers/{}", r.server))
        .await;
    let channel = voice_channel(&server.body);
    (r, third, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_hear_each_other_through_the_sfu() {
    let app = spawn_app(Backend::Sqlite).await;
    let (r, third, channel) = voice_room(&app, "vox").await;
    let (mut watcher, _) = app.gateway_as(&third).await;

    // The member sends a tone; the owner (a moderator) only listens.
    let speaker = join(&app, r.member.clone(), &channel, true).await;
    let speaker_id = speaker.user.id.clone();
    let mut owner = join(&app, r.owner.clone(), &channel, false).await;
    renegotiate(&app, &mut owner, &channel).await;
    let heard = hears_tone(&mut owner.peer).await;
    let msid = format!("{speaker_id} audio");
    assert!(
        heard["msids"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == msid.as_str())),
        "the track names its sender: {heard}"
    );
    // Everyone who can see the channel hears of the track and of the speaking.
    let track = dispatch_where(&mut watcher, "VOICE_TRACK", |d| {
        d["userId"] == speaker_id.as_str()
    })
    .await;
    assert_eq!(
        (track["kind"].as_str(), track["state"].as_str()),
        (Some("audio"), Some("added"))
    );
    let speaking = dispatch_where(&mut watcher, "VOICE_SPEAKING", |d| {
        d["userId"] == speaker_id.as_str()
    })
    .await;
    assert_eq!(speaking["speaking"], true);
    assert_eq!(speaking["channelId"], channel.as_str());

    // A third participant joining late hears the tone too.
    let mut late = join(&app, third.clone(), &channel, false).await;
    renegotiate(&app, &mut late, &channel).await;
    hears_tone(&mut late.peer).await;

    // Server mute: the speaker's track is removed from everyone's session.
    app.patch_as(
        &r.owner.token,
        &format!("/servers/{}/members/{speaker_id}", r.server),
        &json!({"mute": true}),
    )
    .await
    .expect_status(200, "server mute");
    renegotiate(&app, &mut owner, &channel).await;
    renegotiate(&app, &mut late, &channel).await;
    let seen = dispatches_seen(
        &mut watcher,
        &[
            ("VOICE_TRACK", &|d: &Value| d["state"] == "removed"),
            ("VOICE_STATE_UPDATE", &|d: &Value| d["mute"] == true),
        ],
    )
    .await;
    assert_eq!(seen[0]["userId"], speaker_id.as_str());
    assert_eq!(seen[0]["kind"], "audio");
    assert_eq!(seen[1]["userId"], speaker_id.as_str());
    hears_nothing(&mut owner.peer, 1500, "a server-muted member is not heard").await;

    // Unmuted, the track comes back.
    app.patch_as(
        &r.owner.token,
        &format!("/servers/{}/members/{speaker_id}", r.server),
        &json!({"mute": false}),
    )
    .await
    .expect_status(200, "server unmute");
    renegotiate(&app, &mut owner, &channel).await;
    renegotiate(&app, &mut late, &channel).await;
    hears_tone(&mut owner.peer).await;
    hears_tone(&mut late.peer).await;

    // A deafened participant receives nothing; the others still hear.
    let res = app
        .patch_as(
            &third.token,
            &format!("/channels/{channel}/voice/{}", late.session),
            &json!({"selfDeaf": true}),
        )
        .await;
    res.expect_status(200, "self deafen");
    assert_eq!(res.body["voiceState"]["selfDeaf"], true);
    hears_nothing(
        &mut late.peer,
        1500,
        "a deafened participant is sent nothing",
    )
    .await;
    hears_tone(&mut owner.peer).await;

    // Who is in the channel; then leaving.
    let list = app
        .get_as(&third.token, &format!("/channels/{channel}/voice"))
        .await;
    list.expect_status(200, "voice states");
    assert_eq!(
        list.body["voiceStates"].as_array().map(Vec::len),
        Some(3),
        "{}",
        list.text
    );
    app.delete_as(
        &third.token,
        &format!("/channels/{channel}/voice/{}", late.session),
    )
    .await
    .expect_status(204, "leave");
    let left = dispatch_where(&mut watcher, "VOICE_STATE_UPDATE", |d| {
        d["userId"] == third.id.as_str() && d["channelId"].is_null()
    })
    .await;
    assert_eq!(left["sessionId"], late.session.as_str());

    // The speaker's last gateway session closes: their voice session ends with it.
    speaker.gw.drop_connection().await;
    dispatch_where(&mut watcher, "VOICE_STATE_UPDATE", |d| {
        d["userId"] == speaker_id.as_str() && d["channelId"].is_null()
    })
    .await;
    let list = app
        .get_as(&third.token, &format!("/channels/{channel}/voice"))
        .await;
    assert_eq!(
        list.body["voiceStates"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );

    for p in [speaker.peer, owner.peer, late.peer] {
        p.close().await;
    }
}

/// Permission changes reach those already in voice at once: losing SPEAK stops their audio
/// being forwarded (and getting it back restores it), losing CONNECT disconnects them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_changes_apply_to_participants_at_once() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = room(&app, "vperm").await;
    let server = app
        .get_as(&r.owner.token, &format!("/servers/{}", r.server))
        .await;
    let channel = voice_channel(&server.body);
    let (mut watcher, _) = app.gateway_as(&r.owner).await;
    let speaker = join(&app, r.member.clone(), &channel, true).await;
    let speaker_id = speaker.user.id.clone();
    let mut owner = join(&app, r.owner.clone(), &channel, false).await;
    renegotiate(&app, &mut owner, &channel).await;
    hears_tone(&mut owner.peer).await;
    // @everyone (the server's id) is denied SPEAK in the channel; the owner keeps it.
    let overwrite = format!("/channels/{channel}/permissions/{}", r.server);
    let speak = 1u64 << 9;
    let connect = 1u64 << 8;
    app.put_as(
        &r.owner.token,
        &overwrite,
        &json!({"targetType": "role", "deny": speak}),
    )
    .await
    .expect_status(204, "deny SPEAK");
    renegotiate(&app, &mut owner, &channel).await;
    dispatch_where(&mut watcher, "VOICE_TRACK", |d| {
        d["userId"] == speaker_id.as_str() && d["state"] == "removed"
    })
    .await;
    hears_nothing(&mut owner.peer, 1500, "without SPEAK nothing is forwarded").await;
    // SPEAK given back: heard again.
    app.put_as(
        &r.owner.token,
        &overwrite,
        &json!({"targetType": "role", "deny": 0}),
    )
    .await
    .expect_status(204, "allow SPEAK again");
    renegotiate(&app, &mut owner, &channel).await;
    hears_tone(&mut owner.peer).await;
    // Without CONNECT the member is taken out of the channel.
    app.put_as(
        &r.owner.token,
        &overwrite,
        &json!({"targetType": "role", "deny": connect}),
    )
    .await
    .expect_status(204, "deny CONNECT");
    dispatch_where(&mut watcher, "VOICE_STATE_UPDATE", |d| {
        d["userId"] == speaker_id.as_str() && d["channelId"].is_null()
    })
    .await;
    let list = app
        .get_as(&r.owner.token, &format!("/channels/{channel}/voice"))
        .await;
    assert_eq!(
        list.body["voiceStates"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );
    for p in [speaker.peer, owner.peer] {
        p.close().await;
    }
}

async fn voice_signaling_refuses_what_it_must(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "vsig").await;
    let server = app
        .get_as(&r.owner.token, &format!("/servers/{}", r.server))
        .await;
    let channel = voice_channel(&server.body);
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    // A text channel is not a voice channel.
    app.post_as(
        &r.owner.token,
        &format!("/channels/{}/voice", r.channel),
        &json!({"sdp": offer}),
    )
    .await
    .assert_error(404, "Not Found");
    // Unparseable SDP: 400; an offer without Opus audio: 422.
    app.post_as(
        &r.owner.token,
        &format!("/channels/{channel}/voice"),
        &json!({"sdp": "not sdp"}),
    )
    .await
    .assert_error(400, "Bad Request");
    let no_audio = format!(
        "{offer}a=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
         a=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
         a=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
    );
    let res = app
        .post_as(
            &r.owner.token,
            &format!("/channels/{channel}/voice"),
            &json!({"sdp": no_audio}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
    assert_eq!(res.body["details"][0]["field"], "sdp");
    // A missing body field is a validation error, not a crash.
    app.post_as(
        &r.owner.token,
        &format!("/channels/{channel}/voice"),
        &json!({}),
    )
    .await
    .assert_error(422, "Validation Error");
    // Without CONNECT (denied to @everyone in the channel): 403, nothing joined.
    let everyone = r.server.clone();
    app.put_as(
        &r.owner.token,
        &format!("/channels/{channel}/permissions/{everyone}"),
        &json!({"targetType": "role", "deny": 256}),
    )
    .await
    .expect_status(204, "deny CONNECT");
    let denied = app
        .post_as(
            &r.member.token,
            &format!("/channels/{channel}/voice"),
            &json!({"sdp": no_audio}),
        )
        .await;
    denied.assert_error(403, "Forbidden");
    let list = app
        .get_as(&r.member.token, &format!("/channels/{channel}/voice"))
        .await;
    list.expect_status(200, "voice states");
    assert_eq!(list.body["voiceStates"], json!([]));
    // Sessions that are not the caller's are unknown.
    app.post_as(
        &r.owner.token,
        &format!("/channels/{channel}/voice/12345/answer"),
        &json!({"sdp": offer}),
    )
    .await
    .assert_error(404, "Not Found");
    app.delete_as(&r.owner.token, &format!("/channels/{channel}/voice/12345"))
        .await
        .assert_error(404, "Not Found");
    // Moving someone who is not in voice: 400.
    app.patch_as(
        &r.owner.token,
        &format!("/servers/{}/members/{}", r.server, r.member.id),
        &json!({"channelId": null}),
    )
    .await
    .assert_error(400, "Bad Request");
    // Server mute without MUTE_MEMBERS: 403.
    app.patch_as(
        &r.member.token,
        &format!("/servers/{}/members/{}", r.server, r.owner.id),
        &json!({"mute": true}),
    )
    .await
    .assert_error(403, "Forbidden");
}
