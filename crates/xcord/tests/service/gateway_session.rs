//! The gateway's protocol state machine driven without a socket, on both backends: a
//! `GatewaySession` of a running node's gateway is fed decoded client commands with chosen
//! instants, and what it yields is read as typed frames, dispatches and closes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use xcord_gateway::protocol::{Close, GatewaySession, Outbound};
use xcord_testkit::{Backend, TestApp, on_both_backends, room, say, spawn_app};
use xcord_types::gateway::{ClientCommand, ServerFrame, close};

on_both_backends!(
    identify_queues_connected_as_dispatch_1,
    a_heartbeat_is_acknowledged_and_moves_only_the_heartbeat_deadline,
    unknown_ops_and_bad_payloads_close_with_4001_and_4002,
    a_second_identify_or_resume_closes_with_4005,
    a_resume_from_a_stale_seq_replays_the_gap_with_its_numbers,
    too_many_frames_in_a_minute_close_with_4008,
    no_identify_in_time_closes_with_4003,
);

const WAIT: Duration = Duration::from_secs(10);

fn session(app: &TestApp, now: Instant) -> GatewaySession {
    let gw = app.gateway.clone().expect("the app runs the gateway role");
    GatewaySession::new(gw, now)
}

/// Feeds `frame` (canonical JSON) received at `at`; returns what the session yields.
async fn send_at(s: &mut GatewaySession, at: Instant, frame: &Value) -> Vec<Outbound> {
    let mut out = Vec::new();
    s.on_frame(at, ClientCommand::from_json(&frame.to_string()), &mut out)
        .await;
    out
}

async fn send(s: &mut GatewaySession, frame: &Value) -> Vec<Outbound> {
    send_at(s, Instant::now(), frame).await
}

/// What the session hands over next.
async fn next(s: &mut GatewaySession) -> Vec<Outbound> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.wait(&mut out))
        .await
        .expect("the session hands something over in time");
    out
}

fn closed_with(out: &[Outbound]) -> Option<Close> {
    match out.last() {
        Some(Outbound::Close(c)) => Some(*c),
        _ => None,
    }
}

/// The dispatches in `out`, each as its sequence number and its frame, parsed.
fn dispatches(out: &[Outbound]) -> Vec<(u64, Value)> {
    out.iter()
        .filter_map(|o| match o {
            Outbound::Dispatch((seq, d)) => Some((
                *seq,
                serde_json::from_str(&d.frame(*seq)).expect("a dispatch is JSON"),
            )),
            _ => None,
        })
        .collect()
}

async fn identify_queues_connected_as_dispatch_1(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register("sm_ident").await;
    let mut s = session(&app, Instant::now());
    assert!(!s.identified());
    assert_eq!(
        s.hello(),
        ServerFrame::Hello(xcord_types::gateway::Hello {
            heartbeat_interval: app.config.gateway_heartbeat_ms
        })
    );

    let out = send(&mut s, &json!({"op": 3, "d": {"token": user.token}})).await;
    assert!(out.is_empty(), "CONNECTED goes through the queue: {out:?}");
    assert!(s.identified());
    let session_id = s.session_id().expect("a session id").to_owned();

    let out = next(&mut s).await;
    let got = dispatches(&out);
    let (seq, frame) = got.first().expect("a dispatch");
    assert_eq!(*seq, 1);
    assert_eq!(frame["op"], 10);
    assert_eq!(frame["t"], "CONNECTED");
    assert_eq!(frame["s"], 1);
    assert_eq!(frame["d"]["sessionId"], session_id.as_str());
    assert_eq!(frame["d"]["user"]["id"], user.id.as_str());
    for field in ["servers", "dmChannels", "readStates", "presences"] {
        assert!(frame["d"][field].is_array(), "{field} in {frame}");
    }
    s.finish().await;
}

async fn a_heartbeat_is_acknowledged_and_moves_only_the_heartbeat_deadline(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register("sm_beat").await;
    let interval = Duration::from_millis(app.config.gateway_heartbeat_ms);
    let identify = Duration::from_secs(app.config.gateway_identify_secs);
    assert!(
        identify < interval * 2,
        "the test needs the identify deadline first"
    );
    let t0 = Instant::now();
    let mut s = session(&app, t0);
    assert_eq!(s.deadline(), t0 + identify);

    // Before IDENTIFY: acknowledged, but the identify deadline stays.
    let out = send_at(&mut s, t0 + identify / 2, &json!({"op": 1, "d": null})).await;
    assert!(
        matches!(out.as_slice(), [Outbound::Frame(ServerFrame::HeartbeatAck)]),
        "{out:?}"
    );
    assert_eq!(s.deadline(), t0 + identify);

    send(&mut s, &json!({"op": 3, "d": {"token": user.token}})).await;
    assert!(s.identified());
    let beat = t0 + Duration::from_secs(30);
    // Every shape of heartbeat is taken: `{seq}`, a bare number, nothing.
    for d in [json!({"seq": 1}), json!(1), Value::Null] {
        let out = send_at(&mut s, beat, &json!({"op": 1, "d": d})).await;
        assert!(
            matches!(out.as_slice(), [Outbound::Frame(ServerFrame::HeartbeatAck)]),
            "{d}: {out:?}"
        );
    }
    assert_eq!(s.deadline(), beat + interval * 2);
    assert_eq!(
        s.expired(beat + interval * 2 - Duration::from_millis(1)),
        None
    );
    assert_eq!(
        s.expired(beat + interval * 2).map(|c| c.code),
        Some(close::SESSION_TIMED_OUT)
    );

    let out = send_at(&mut s, beat, &json!({"op": 1, "d": "soon"})).await;
    assert_eq!(closed_with(&out).map(|c| c.code), Some(close::DECODE_ERROR));
    s.finish().await;
}

async fn unknown_ops_and_bad_payloads_close_with_4001_and_4002(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = Instant::now();

    // Server-only and unknown op codes.
    for op in [0, 2, 10, 42] {
        let mut s = session(&app, now);
        let out = send(&mut s, &json!({"op": op, "d": {}})).await;
        assert_eq!(
            closed_with(&out).map(|c| c.code),
            Some(close::UNKNOWN_OPCODE),
            "op {op}"
        );
    }

    let mut s = session(&app, now);
    let out = send(&mut s, &json!({"op": 3, "d": {"token": 5}})).await;
    assert_eq!(
        closed_with(&out),
        Some(Close::new(close::DECODE_ERROR, "invalid payload"))
    );

    let mut s = session(&app, now);
    let mut out = Vec::new();
    s.on_frame(now, ClientCommand::from_json("{op: 1}"), &mut out)
        .await;
    assert_eq!(
        closed_with(&out),
        Some(Close::new(close::DECODE_ERROR, "not a gateway frame"))
    );

    // An op sent before IDENTIFY is refused for that, whatever its payload.
    let mut s = session(&app, now);
    let out = send(&mut s, &json!({"op": 5, "d": {"channelId": []}})).await;
    assert_eq!(
        closed_with(&out).map(|c| c.code),
        Some(close::NOT_AUTHENTICATED)
    );

    // A bad token.
    let mut s = session(&app, now);
    let out = send(&mut s, &json!({"op": 3, "d": {"token": "nope"}})).await;
    assert_eq!(
        closed_with(&out).map(|c| c.code),
        Some(close::AUTHENTICATION_FAILED)
    );
    assert!(!s.identified());
}

async fn a_second_identify_or_resume_closes_with_4005(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register("sm_twice").await;
    for second in [
        json!({"op": 3, "d": {"token": user.token}}),
        // Refused for being sent at all, before its payload is looked at.
        json!({"op": 3, "d": {}}),
        json!({"op": 6, "d": {"token": user.token, "sessionId": "x", "seq": 0}}),
    ] {
        let mut s = session(&app, Instant::now());
        let out = send(&mut s, &json!({"op": 3, "d": {"token": user.token}})).await;
        assert!(out.is_empty(), "{out:?}");
        let first = s.session_id().map(str::to_owned);
        let out = send(&mut s, &second).await;
        assert_eq!(
            closed_with(&out),
            Some(Close::new(
                close::ALREADY_AUTHENTICATED,
                "already identified"
            )),
            "{second}"
        );
        assert_eq!(s.session_id().map(str::to_owned), first);
        s.finish().await;
    }
}

async fn a_resume_from_a_stale_seq_replays_the_gap_with_its_numbers(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "sm_resume").await;
    let mut a = session(&app, Instant::now());
    send(&mut a, &json!({"op": 3, "d": {"token": r.member.token}})).await;
    let session_id = a.session_id().expect("identified").to_owned();
    for text in ["one", "two", "three"] {
        say(&app, &r.owner, &r.channel, text).await;
    }
    // Read the session's dispatches as a client would until the three messages came.
    let mut seen: Vec<(u64, Value)> = Vec::new();
    while seen
        .iter()
        .filter(|(_, f)| f["t"] == "MESSAGE_CREATE")
        .count()
        < 3
    {
        seen.extend(dispatches(&next(&mut a).await));
    }
    let numbers: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    let one = seen
        .iter()
        .find(|(_, f)| f["d"]["content"] == "one")
        .map(|(s, _)| *s)
        .expect("message one");
    // The client saw up to "one"; the connection ends.
    a.finish().await;

    let mut b = session(&app, Instant::now());
    let out = send(
        &mut b,
        &json!({"op": 6, "d": {"token": r.member.token, "sessionId": session_id, "seq": one}}),
    )
    .await;
    assert_eq!(closed_with(&out), None, "{out:?}");
    assert!(b.identified());
    let replay = dispatches(&out);
    let (last_seq, last) = replay.last().expect("RESUMED").clone();
    assert_eq!(
        (last["op"].clone(), last["t"].clone()),
        (json!(10), json!("RESUMED"))
    );
    assert_eq!(last["d"]["sessionId"], session_id.as_str());
    let missed = &replay[..replay.len() - 1];
    assert_eq!(last["d"]["replayed"], missed.len());
    // Everything after "one", in order, with the numbers it first had (and whatever the
    // detached session took since, such as the user's own presence going offline).
    let expected: Vec<(u64, Value)> = seen.iter().filter(|(s, _)| *s > one).cloned().collect();
    assert_eq!(&missed[..expected.len()], expected.as_slice());
    let numbers: Vec<u64> = replay.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        numbers,
        (one + 1..=one + replay.len() as u64).collect::<Vec<_>>()
    );
    let contents: Vec<&Value> = missed
        .iter()
        .filter(|(_, f)| f["t"] == "MESSAGE_CREATE")
        .map(|(_, f)| &f["d"]["content"])
        .collect();
    assert_eq!(contents, [&json!("two"), &json!("three")]);

    // Live again, numbered after RESUMED.
    say(&app, &r.owner, &r.channel, "four").await;
    let mut live = Vec::new();
    while !live
        .iter()
        .any(|(_, f): &(u64, Value)| f["d"]["content"] == "four")
    {
        live.extend(dispatches(&next(&mut b).await));
    }
    assert_eq!(live.first().map(|(s, _)| *s), Some(last_seq + 1));

    // A seq the session never reached cannot be resumed: op 9, and the connection stays.
    b.finish().await;
    let mut c = session(&app, Instant::now());
    let out = send(
        &mut c,
        &json!({"op": 6, "d": {"token": r.member.token, "sessionId": session_id, "seq": 999}}),
    )
    .await;
    assert!(
        matches!(
            out.as_slice(),
            [Outbound::Frame(ServerFrame::InvalidSession(i))] if !i.resumable
        ),
        "{out:?}"
    );
    assert!(!c.identified());
}

async fn too_many_frames_in_a_minute_close_with_4008(backend: Backend) {
    let app = spawn_app(backend).await;
    let t0 = Instant::now();
    let mut s = session(&app, t0);
    let beat = json!({"op": 1, "d": null});
    // 120 a minute (the default); the window starts again after a minute.
    for _ in 0..120 {
        let out = send_at(&mut s, t0, &beat).await;
        assert_eq!(closed_with(&out), None);
    }
    let later = t0 + Duration::from_secs(60);
    for _ in 0..120 {
        let out = send_at(&mut s, later, &beat).await;
        assert_eq!(closed_with(&out), None);
    }
    // Transport-level frames (pings) count too.
    assert_eq!(
        s.count_frame(later).map_err(|c| c.code),
        Err(close::RATE_LIMITED)
    );
    let mut s = session(&app, t0);
    for _ in 0..120 {
        send_at(&mut s, t0, &beat).await;
    }
    let out = send_at(&mut s, t0 + Duration::from_secs(59), &beat).await;
    assert_eq!(
        closed_with(&out),
        Some(Close::new(close::RATE_LIMITED, "too many frames"))
    );
}

async fn no_identify_in_time_closes_with_4003(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register("sm_late").await;
    let identify = Duration::from_secs(app.config.gateway_identify_secs);
    let t0 = Instant::now();
    let s = session(&app, t0);
    assert_eq!(s.deadline(), t0 + identify);
    assert_eq!(s.expired(t0 + identify - Duration::from_millis(1)), None);
    assert_eq!(
        s.expired(t0 + identify),
        Some(Close::new(
            close::NOT_AUTHENTICATED,
            "identify or resume in time"
        ))
    );

    // Identified in time: only the heartbeat deadline is left.
    let mut s = session(&app, t0);
    send(&mut s, &json!({"op": 3, "d": {"token": user.token}})).await;
    let interval = Duration::from_millis(app.config.gateway_heartbeat_ms);
    assert_eq!(s.deadline(), t0 + interval * 2);
    assert_eq!(s.expired(t0 + identify), None);
    s.finish().await;
}
