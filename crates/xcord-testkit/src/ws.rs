//! A real WebSocket client for gateway tests.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the client read next.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A JSON frame.
    Frame(Value),
    /// The server closed with this code.
    Closed(Option<u16>),
}

/// A gateway connection.
pub struct GatewayClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `s` of the last dispatch read.
    pub last_seq: u64,
    /// The session id from CONNECTED.
    pub session_id: Option<String>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl GatewayClient {
    /// Opens `ws://ADDR{path}` and reads HELLO; returns the client and HELLO.
    pub async fn open(addr: SocketAddr, path: &str) -> (Self, Value) {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        let mut c = Self {
            ws,
            last_seq: 0,
            session_id: None,
        };
        let hello = c.frame().await;
        assert_eq!(hello["op"], 0, "first frame must be HELLO: {hello}");
        (c, hello)
    }

    /// As [`GatewayClient::connect`] over a socket with a tiny receive buffer, so that a
    /// client that stops reading backs up into the server's queue quickly.
    pub async fn connect_small_buffer(addr: SocketAddr, token: &str) -> (Self, Value) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        sock.set_recv_buffer_size(4096)
            .unwrap_or_else(|e| panic!("SO_RCVBUF: {e}"));
        let tcp = sock
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let (ws, _) = tokio_tungstenite::client_async(
            format!("ws://{addr}/api/ws"),
            MaybeTlsStream::Plain(tcp),
        )
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
        let mut c = Self {
            ws,
            last_seq: 0,
            session_id: None,
        };
        c.frame().await;
        c.send(json!({"op": 3, "d": {"token": token}})).await;
        let connected = c.dispatch("CONNECTED").await;
        (c, connected)
    }

    /// Opens `/api/ws`, identifies with `token` and returns the client and CONNECTED's `d`.
    pub async fn connect(addr: SocketAddr, token: &str) -> (Self, Value) {
        let (mut c, _) = Self::open(addr, "/api/ws").await;
        c.send(json!({"op": 3, "d": {"token": token, "properties": {"os": "test"}}}))
            .await;
        let connected = c.dispatch("CONNECTED").await;
        (c, connected)
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    /// The next frame or close, or `None` when nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Incoming> {
        loop {
            let msg = match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Incoming::Closed(None)),
                Ok(Some(Err(_))) => return Some(Incoming::Closed(None)),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("not JSON: {t}: {e}"));
                    if let Some(s) = v["s"].as_u64() {
                        self.last_seq = s;
                    }
                    if v["t"] == "CONNECTED" || v["t"] == "RESUMED" {
                        self.session_id = v["d"]["sessionId"].as_str().map(str::to_owned);
                    }
                    return Some(Incoming::Frame(v));
                }
                Message::Close(f) => {
                    return Some(Incoming::Closed(f.map(|f| u16::from(f.code))));
                }
                _ => continue,
            }
        }
    }

    /// The next frame; panics on close or timeout.
    pub async fn frame(&mut self) -> Value {
        match self.next_within(WAIT).await {
            Some(Incoming::Frame(v)) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads until the dispatch `name` and returns the whole frame (`op`, `t`, `s`, `d`).
    pub async fn dispatch_frame(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Incoming::Frame(v)) if v["t"] == name => return v,
                Some(Incoming::Frame(_)) => continue,
                other => panic!("expected {name}, got {other:?}"),
            }
        }
    }

    /// Reads until the dispatch `name` and returns its `d`.
    pub async fn dispatch(&mut self, name: &str) -> Value {
        self.dispatch_frame(name).await["d"].take()
    }

    /// Reads until a PRESENCE_UPDATE about `user` and returns its `d`.
    pub async fn presence_of(&mut self, user: &str) -> Value {
        loop {
            let p = self.dispatch("PRESENCE_UPDATE").await;
            if p["userId"] == user {
                return p;
            }
        }
    }

    /// Asserts that no dispatch named `name` arrives within `wait` (other frames are read
    /// and dropped).
    pub async fn assert_no_dispatch(&mut self, name: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_within(left).await {
                None => return,
                Some(Incoming::Frame(v)) if v["t"] == name => {
                    panic!("unexpected {name}: {v}")
                }
                Some(Incoming::Frame(_)) => continue,
                Some(Incoming::Closed(c)) => panic!("closed ({c:?}) while waiting"),
            }
        }
    }

    /// Reads until the server closes and returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Incoming::Closed(code)) => return code,
                Some(Incoming::Frame(_)) => continue,
                None => panic!("the server did not close the connection"),
            }
        }
    }

    /// Sends a heartbeat and reads until its ACK.
    pub async fn heartbeat(&mut self) {
        self.send(json!({"op": 1, "d": {"seq": self.last_seq}}))
            .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Incoming::Frame(v)) if v["op"] == 2 => return,
                Some(Incoming::Frame(_)) => continue,
                other => panic!("expected HEARTBEAT_ACK, got {other:?}"),
            }
        }
    }

    /// Closes the connection from the client side (as a dropped network would).
    pub async fn drop_connection(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Away,
                reason: "bye".into(),
            }))
            .await;
    }

    /// The underlying stream, for tests that must stop reading.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }
}
