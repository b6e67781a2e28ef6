//! Socket.IO for the seed-003 profile (SPEC §7), driven by real third-party clients:
//! socket.io-client 4 (Node) and python-socketio, over polling and WebSocket, on the
//! namespaces `/` and `/compat/rtms`, on one node and across two nodes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use xcord_testkit::{Backend, TestApp, TestUser, spawn_app};

/// Which client library.
#[derive(Debug, Clone, Copy)]
enum Lib {
    Node,
    Python,
}

/// How the token travels.
#[derive(Debug, Clone, Copy)]
enum Token {
    Auth,
    Header,
    None,
}

/// A client process: commands in on its standard input, events out on its standard output.
struct Sio {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read while looking for another, in order.
    seen: Vec<Value>,
    /// The library and transport, for failure messages.
    name: String,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const WAIT: Duration = Duration::from_secs(10);

impl Sio {
    async fn open(lib: Lib, url: &str, token: Token, secret: &str, transport: &str) -> Self {
        let mode = match token {
            Token::Auth => "auth",
            Token::Header => "header",
            Token::None => "none",
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
        let mut cmd = match lib {
            Lib::Node => {
                let mut c = Command::new("node");
                c.arg(script.join("sio_client.js"))
                    .env("NODE_PATH", workspace().join(".test-tools/node_modules"));
                c
            }
            Lib::Python => {
                let mut c = Command::new("python3");
                c.arg(script.join("sio_client.py"));
                c
            }
        };
        let mut child = cmd
            .args([url, mode, secret, transport])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{lib:?} must be installed with its Socket.IO client (./scripts/test installs them): {e}")
            });
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("no pipes to the {lib:?} client");
        };
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
            name: format!("{lib:?} over {transport} at {url}"),
        }
    }

    /// Opens a client and waits until it is connected.
    async fn connect(lib: Lib, url: &str, token: Token, secret: &str, transport: &str) -> Self {
        let mut c = Self::open(lib, url, token, secret, transport).await;
        let first = c.next_any().await;
        assert_eq!(
            first["event"], "connect",
            "{lib:?} over {transport}: {first}"
        );
        assert_eq!(first["data"]["transport"], transport, "{first}");
        c
    }

    async fn next_any(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: no event within {WAIT:?}; seen {:?}",
                    self.name, self.seen
                )
            })
            .unwrap_or_else(|e| panic!("client output: {e}"))
            .unwrap_or_else(|| panic!("the client exited; seen {:?}", self.seen));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The data of the next `event`, skipping (and keeping) others.
    async fn event(&mut self, event: &str) -> Value {
        if let Some(i) = self.seen.iter().position(|e| e["event"] == event) {
            return self.seen.remove(i)["data"].clone();
        }
        loop {
            let e = self.next_any().await;
            if e["event"] == event {
                return e["data"].clone();
            }
            self.seen.push(e);
        }
    }

    /// Fails if `event` arrives within `quiet`.
    async fn none(&mut self, event: &str, quiet: Duration) {
        assert!(
            !self.seen.iter().any(|e| e["event"] == event),
            "unexpected {event}: {:?}",
            self.seen
        );
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout_at(deadline, self.lines.next_line()).await
        {
            let e: Value = serde_json::from_str(&line).unwrap_or_default();
            assert_ne!(e["event"], event, "unexpected {e}");
            self.seen.push(e);
        }
    }

    async fn emit(&mut self, event: &str, data: Value) {
        let line = format!("{}\n", json!({"emit": event, "data": data}));
        self.stdin
            .write_all(line.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("client input: {e}"));
    }

    async fn close(mut self) {
        let _ = self.stdin.write_all(b"{\"close\": true}\n").await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// Two users with a DM conversation between them.
async fn pair(app: &TestApp, a: &str, b: &str) -> (TestUser, TestUser, String) {
    let ann = app.register(a).await;
    let bob = app.register(b).await;
    let res = app
        .post_as(
            &ann.token,
            &format!("/users/{}/dm-channels", ann.id),
            &json!({"recipientId": bob.id}),
        )
        .await;
    assert!(res.status == 200 || res.status == 201, "{}", res.text);
    let conv = res.str_at("/id");
    (ann, bob, conv)
}

/// Ann and Bob chat through two clients: joining, messages both ways (also one posted
/// canonically), typing, and Bob going offline.
async fn chat(app: &TestApp, ann_client: (Lib, &str, &str), bob_client: (Lib, &str, &str)) {
    let tag = format!("{:?}{}", ann_client.0, ann_client.2).to_lowercase();
    let (ann, bob, conv) = pair(app, &format!("ann_{tag}"), &format!("bob_{tag}")).await;
    let url = |ns: &str| app.url(ns);
    let (lib, ns, transport) = ann_client;
    let mut a = Sio::connect(lib, &url(ns), Token::Auth, &ann.token, transport).await;
    let (lib, ns, transport) = bob_client;
    let mut b = Sio::connect(lib, &url(ns), Token::Header, &bob.token, transport).await;

    for c in [&mut a, &mut b] {
        c.emit("join_room", json!({"conversationId": conv})).await;
        assert_eq!(
            c.event("joined_room").await["conversationId"],
            conv.as_str()
        );
    }
    a.emit(
        "send_message",
        json!({"conversationId": conv, "content": "hello over socket.io"}),
    )
    .await;
    for c in [&mut a, &mut b] {
        let got = c.event("message_received").await;
        assert_eq!(got["message"]["content"], "hello over socket.io", "{got}");
        assert_eq!(got["message"]["senderId"], ann.id.as_str());
        assert_eq!(got["message"]["conversationId"], conv.as_str());
        assert!(got["timestamp"].is_string(), "{got}");
    }
    // The post is canonical history.
    let history = app
        .get_as(&bob.token, &format!("/channels/{conv}/messages"))
        .await;
    assert_eq!(
        history.body["messages"][0]["content"],
        "hello over socket.io"
    );

    // A message posted through the canonical API reaches the room.
    let posted = app
        .post_as(
            &bob.token,
            &format!("/channels/{conv}/messages"),
            &json!({"content": "posted over REST"}),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    assert_eq!(
        a.event("message_received").await["message"]["content"],
        "posted over REST"
    );

    // Typing: the other side hears it, the typist does not.
    b.emit("typing_start", json!({"conversationId": conv}))
        .await;
    let typing = a.event("user_typing").await;
    assert_eq!(typing["userId"], bob.id.as_str());
    assert_eq!(typing["username"], format!("bob_{tag}"));
    assert_eq!(typing["conversationId"], conv.as_str());
    b.emit("typing_stop", json!({"conversationId": conv})).await;
    let stopped = a.event("user_stopped_typing").await;
    assert_eq!(stopped["userId"], bob.id.as_str());
    b.none("user_typing", Duration::from_millis(300)).await;

    // Refusals come back as `error`, and nothing is posted.
    b.emit("send_message", json!({"conversationId": conv}))
        .await;
    assert!(b.event("error").await["message"].is_string());
    b.emit("join_room", json!({"conversationId": "123456789"}))
        .await;
    assert_eq!(b.event("error").await["message"], "Conversation not found");

    // Bob leaves: Ann sees him go offline.
    b.close().await;
    let offline = a.event("user_offline").await;
    assert_eq!(offline["userId"], bob.id.as_str());
    assert_eq!(offline["username"], format!("bob_{tag}"));
    a.close().await;
    let history = app
        .get_as(&ann.token, &format!("/channels/{conv}/messages"))
        .await;
    assert_eq!(history.body["messages"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn node_and_python_clients_chat_over_websocket_and_polling() {
    let app = spawn_app(Backend::Sqlite).await;
    chat(
        &app,
        (Lib::Node, "/compat/rtms", "websocket"),
        (Lib::Python, "/", "polling"),
    )
    .await;
    chat(
        &app,
        (Lib::Python, "/compat/rtms", "websocket"),
        (Lib::Node, "/", "polling"),
    )
    .await;
}

#[tokio::test]
async fn sockets_without_a_valid_token_are_refused_and_strangers_cannot_join() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_ann, _bob, conv) = pair(&app, "ann_refused", "bob_refused").await;
    // python-socketio is checked over WebSocket here: over polling, a refused client
    // sometimes reports the refusal only after 25 s (python-engineio drops its CLOSE packet
    // when a PONG is still being posted, and its pending poll waits for the next ping; see
    // docs/compat.md). Its polling path is covered by the chat test.
    for (lib, transport) in [(Lib::Node, "polling"), (Lib::Python, "websocket")] {
        for (token, secret) in [(Token::None, ""), (Token::Auth, "not.a.token")] {
            let mut c = Sio::open(lib, &app.url("/compat/rtms"), token, secret, transport).await;
            let first = c.next_any().await;
            assert_eq!(
                first["event"], "connect_error",
                "{lib:?} {token:?}: {first}"
            );
        }
    }
    let carol = app.register("carol_refused").await;
    let mut c = Sio::connect(
        Lib::Node,
        &app.url("/"),
        Token::Auth,
        &carol.token,
        "websocket",
    )
    .await;
    c.emit("join_room", json!({"conversationId": conv})).await;
    assert_eq!(c.event("error").await["message"], "Conversation not found");
    c.emit(
        "send_message",
        json!({"conversationId": conv, "content": "intruding"}),
    )
    .await;
    assert!(c.event("error").await["message"].is_string());
    c.none("message_received", Duration::from_millis(300)).await;
    // A flood of events (over the gateway's 120 a minute) is told and disconnected.
    for _ in 0..121 {
        c.emit("leave_room", json!({"conversationId": conv})).await;
    }
    let mut told = false;
    for _ in 0..130 {
        let e = c.next_any().await;
        if e["event"] == "error" {
            assert!(
                e["data"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Too many")),
                "{e}"
            );
            told = true;
        }
        if e["event"] == "disconnect" {
            break;
        }
    }
    assert!(told, "no error before the disconnect");
    c.close().await;
}

#[tokio::test]
async fn clients_on_two_nodes_see_each_other() {
    let prefix = format!("xcord-test-{}", super::multinode::rand_suffix());
    let a = super::multinode::node(&prefix, 1, None).await;
    let b = super::multinode::node(&prefix, 2, Some(&a)).await;
    let (ann, bob, conv) = pair(&a, "ann_nodes", "bob_nodes").await;
    let mut on_a = Sio::connect(
        Lib::Python,
        &a.url("/compat/rtms"),
        Token::Auth,
        &ann.token,
        "websocket",
    )
    .await;
    let mut on_b = Sio::connect(
        Lib::Node,
        &b.url("/compat/rtms"),
        Token::Auth,
        &bob.token,
        "websocket",
    )
    .await;
    for c in [&mut on_a, &mut on_b] {
        c.emit("join_room", json!({"conversationId": conv})).await;
        c.event("joined_room").await;
    }
    on_b.emit(
        "send_message",
        json!({"conversationId": conv, "content": "from node B"}),
    )
    .await;
    // Both are in the room: each sees the message, its sender too.
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(
            c.event("message_received").await["message"]["content"],
            "from node B"
        );
    }
    on_a.emit("typing_start", json!({"conversationId": conv}))
        .await;
    assert_eq!(on_b.event("user_typing").await["userId"], ann.id.as_str());
    on_a.emit(
        "send_message",
        json!({"conversationId": conv, "content": "from node A"}),
    )
    .await;
    assert_eq!(
        on_b.event("message_received").await["message"]["content"],
        "from node A"
    );
    on_b.close().await;
    assert_eq!(on_a.event("user_offline").await["userId"], bob.id.as_str());
    on_a.close().await;
}

#[tokio::test]
async fn automatic_messages_reach_their_receiver_marked() {
    use std::sync::Arc;
    use xcord_core::{Clock as _, ManualClock};
    let clock = Arc::new(ManualClock::new(xcord_types::Timestamp::now()));
    let app = xcord_testkit::TestAppBuilder::new(Backend::Sqlite)
        .clock(clock.clone())
        .spawn()
        .await;
    let core = app.state.core.clone();
    let users = [
        app.register("auto_sio_a").await,
        app.register("auto_sio_b").await,
    ];
    let tick = clock.now();
    let pool = vec!["an automatic hello".to_owned()];
    let plan = core
        .plan_auto_messages(tick, 60, &pool)
        .await
        .expect("planned")
        .expect("this node planned the tick");
    assert_eq!(plan.planned, 1);
    let record = core.store.auto_messages_since(tick).await.expect("records")[0].clone();
    let receiver = users
        .iter()
        .find(|u| u.id == record.receiver_id.to_string())
        .expect("a receiver");
    let sender = users
        .iter()
        .find(|u| u.id == record.sender_id.to_string())
        .expect("a sender");
    // Neither joined any conversation: seed 003 sends automatic messages to the user.
    let mut to = Sio::connect(
        Lib::Node,
        &app.url("/compat/rtms"),
        Token::Auth,
        &receiver.token,
        "websocket",
    )
    .await;
    let mut from = Sio::connect(
        Lib::Python,
        &app.url("/"),
        Token::Auth,
        &sender.token,
        "polling",
    )
    .await;
    clock.advance_millis(61_000);
    let got = to.event("message_received").await;
    assert_eq!(got["isAutomatic"], true, "{got}");
    assert_eq!(got["message"]["messageType"], "auto", "{got}");
    assert_eq!(got["message"]["content"], "an automatic hello");
    assert_eq!(got["message"]["senderId"], sender.id.as_str());
    // The sender is not its receiver.
    from.none("message_received", Duration::from_millis(300))
        .await;
    to.close().await;
    from.close().await;
}
