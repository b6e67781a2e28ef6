//! The WebSocket transport of the gateway: the upgrade, then one task per socket that
//! decodes the client's text frames into its [`GatewaySession`], writes what the session
//! yields as canonical JSON (dispatches batched, one flush per batch), keeps the session's
//! timer, and performs the close handshake. The protocol itself is in [`crate::protocol`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{
    Query, State, rejection::QueryRejection, ws::rejection::WebSocketUpgradeRejection,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt as _;
use serde::Deserialize;
use tokio::time::Instant;
use xcord_types::ErrorBody;
use xcord_types::gateway::{ClientCommand, ServerFrame};

use crate::Gateway;
use crate::protocol::{Close, GatewaySession, Outbound};

/// Largest client frame accepted; client ops are small.
const MAX_CLIENT_FRAME: usize = 16 * 1024;
/// Frames written with one flush at most.
const MAX_BATCH: usize = crate::protocol::MAX_BATCH;
/// Bytes tungstenite gathers before writing to the socket within a batch.
const WRITE_BUFFER: usize = 16 * 1024;
/// How long a closing connection waits for the client's close reply.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);
/// How long a connection may take to write one frame before it counts as stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `?token=…` identifies at once (seed 004); `encoding` and `v` are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    token: Option<String>,
}

fn error_response(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: error.into(),
            message: message.into(),
            details: None,
        }),
    )
        .into_response()
}

/// `GET /api/ws` and `GET /gateway`.
pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<ConnectQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    eviction: Option<axum::Extension<crate::Eviction>>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "This endpoint speaks WebSocket: send a GET with `Upgrade: websocket`.",
            );
        }
    };
    if gw.shutdown.is_cancelled() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "This node is shutting down; connect again.",
        );
    }
    let token = query.ok().and_then(|q| q.0.token).filter(|t| !t.is_empty());
    let tracker = gw.connections.clone();
    ws.read_buffer_size(2048)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| {
            tracker.track_future(serve(gw, socket, token, eviction.map(|e| e.0)))
        })
}

/// Why the connection ends.
enum End {
    /// Close with a code and reason.
    Close(Close),
    /// The peer is gone.
    Gone,
}

struct Connection {
    socket: WebSocket,
    session: GatewaySession,
    /// What the session gave to send; kept to reuse its allocation.
    outbox: Vec<Outbound>,
    /// Until the session identifies, the HTTP transport may take this socket back.
    eviction: Option<crate::Eviction>,
}

async fn serve(
    gw: Arc<Gateway>,
    socket: WebSocket,
    token: Option<String>,
    eviction: Option<crate::Eviction>,
) {
    metrics::gauge!("gateway_connections").increment(1.0);
    let mut session = GatewaySession::new(gw, Instant::now());
    if let Some(e) = &eviction {
        // The connection holds a session from then on: the transport no longer evicts it.
        let protect = e.protect.clone();
        session.on_attach(move || protect());
    }
    let mut conn = Connection {
        socket,
        session,
        outbox: Vec::new(),
        eviction,
    };
    let end = conn.run(token).await;
    if let End::Close(c) = end {
        conn.close(c).await;
    }
    conn.session.finish().await;
    metrics::gauge!("gateway_connections").decrement(1.0);
}

/// The canonical JSON of a frame.
fn encode(frame: &ServerFrame) -> serde_json::Result<String> {
    serde_json::to_string(frame)
}

impl Connection {
    async fn run(&mut self, token: Option<String>) -> End {
        let hello = self.session.hello();
        if self.send_frame(&hello).await.is_err() {
            return End::Gone;
        }
        if let Some(token) = token {
            self.session
                .identify_with_token(token, &mut self.outbox)
                .await;
            if let Err(end) = self.flush().await {
                return end;
            }
        }
        // One timer for the session's deadlines, made once and moved as they change.
        let timer = tokio::time::sleep_until(self.session.deadline());
        tokio::pin!(timer);
        loop {
            let deadline = self.session.deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let identified = self.session.identified();
            let evicted = async {
                match &self.eviction {
                    Some(e) if !identified => e.evicted.notified().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                // Shutdown, a kick, or dispatches queued: all in the outbox now.
                () = self.session.wait(&mut self.outbox) => {}
                // At the connection cap, an unidentified socket is the first to go.
                () = evicted => return End::Gone,
                msg = self.socket.recv() => {
                    let now = Instant::now();
                    match msg {
                        None => return End::Gone,
                        // A frame over the size limit or breaking the WebSocket framing; if
                        // the peer is simply gone, the close frame goes nowhere.
                        Some(Err(_)) => return End::Close(Close::undecodable("invalid frame")),
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(Message::Text(t))) => {
                            let frame = ClientCommand::from_json(t.as_str());
                            self.session.on_frame(now, frame, &mut self.outbox).await;
                        }
                        Some(Ok(Message::Binary(b))) => match std::str::from_utf8(&b) {
                            Ok(t) => {
                                let frame = ClientCommand::from_json(t);
                                self.session.on_frame(now, frame, &mut self.outbox).await;
                            }
                            Err(_) => {
                                return End::Close(Close::undecodable("frames are JSON text"));
                            }
                        },
                        // Pings and pongs: nothing for the session but the rate limit.
                        Some(Ok(_)) => {
                            if let Err(c) = self.session.count_frame(now) {
                                return End::Close(c);
                            }
                        }
                    }
                }
                () = &mut timer => {
                    if let Some(c) = self.session.expired(Instant::now()) {
                        return End::Close(c);
                    }
                }
            }
            if let Err(end) = self.flush().await {
                return end;
            }
        }
    }

    /// Writes what the session gave, in order: consecutive dispatches in batches (one
    /// flush each), other frames one by one; a close ends the connection.
    async fn flush(&mut self) -> Result<(), End> {
        let mut outbox = std::mem::take(&mut self.outbox);
        let written = self.write_out(&mut outbox).await;
        outbox.clear();
        self.outbox = outbox;
        written
    }

    async fn write_out(&mut self, outbox: &mut Vec<Outbound>) -> Result<(), End> {
        let mut batch = Vec::new();
        let mut items = outbox.drain(..);
        while let Some(item) = items.next() {
            if let Outbound::Dispatch((seq, d)) = item {
                batch.push(Message::Text(d.frame(seq).into()));
                if batch.len() >= MAX_BATCH {
                    self.write_frames(std::mem::take(&mut batch)).await?;
                }
                continue;
            }
            if !batch.is_empty() {
                self.write_frames(std::mem::take(&mut batch)).await?;
            }
            match item {
                Outbound::Frame(frame) => {
                    if let Err(end) = self.send_frame(&frame).await {
                        // A session that was closing anyway (op 7, op 9 before a close)
                        // still tries its close.
                        return Err(items
                            .find_map(|o| match o {
                                Outbound::Close(c) => Some(End::Close(c)),
                                _ => None,
                            })
                            .unwrap_or(end));
                    }
                }
                Outbound::Close(c) => return Err(End::Close(c)),
                Outbound::Dispatch(_) => {}
            }
        }
        if !batch.is_empty() {
            self.write_frames(batch).await?;
        }
        Ok(())
    }

    async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), End> {
        let text = encode(frame).map_err(|e| {
            tracing::error!(error = %e, "cannot encode a gateway frame");
            End::Close(Close::INTERNAL)
        })?;
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text.into()))).await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Writes `frames` with one flush, giving up when the session is taken away meanwhile
    /// (a stuck socket must not keep a kicked connection alive) or the socket takes no
    /// data for too long.
    async fn write_frames(&mut self, frames: Vec<Message>) -> Result<(), End> {
        let socket = &mut self.socket;
        let write = async move {
            for m in frames {
                socket.feed(m).await?;
            }
            socket.flush().await
        };
        tokio::select! {
            r = tokio::time::timeout(SEND_TIMEOUT, write) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Gone),
                Err(_) => Err(End::Close(Close::SLOW_CONSUMER)),
            },
            c = self.session.taken_away() => Err(End::Close(c)),
        }
    }

    async fn close(&mut self, c: Close) {
        let frame = Message::Close(Some(CloseFrame {
            code: c.code,
            reason: c.reason.into(),
        }));
        // A client that stopped reading gets a few seconds to take the close frame.
        if tokio::time::timeout(Duration::from_secs(5), self.socket.send(frame))
            .await
            .is_ok()
        {
            // Let the client's close reply arrive so the TCP close is clean. What a client
            // still sends meanwhile is read and dropped: closing with unread data would
            // reset the connection, and the client could lose the close frame with it.
            let _ = tokio::time::timeout(CLOSE_DRAIN, async {
                while let Some(Ok(m)) = self.socket.recv().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}
