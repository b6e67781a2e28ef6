//! One WebSocket connection: HELLO, IDENTIFY or RESUME, then one task that writes what the
//! session's queue holds and reads what the client sends, under a heartbeat deadline.

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
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use xcord_core::Error as CoreError;
use xcord_types::ErrorBody;
use xcord_types::gateway::{
    ClientFrame, Heartbeat, Identify, PresenceSet, Resume, Typing, VoiceStateSet, close, op,
};
use xcord_types::rest::users::Status;

use crate::Gateway;
use crate::session::{Dispatch, Kick, Sequenced, SessionHandle};

/// Largest client frame accepted; client ops are small.
const MAX_CLIENT_FRAME: usize = 16 * 1024;
/// Frames written with one flush at most.
const MAX_BATCH: usize = 64;
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

/// Why the read side ends the connection.
enum End {
    /// Close with a code and reason.
    Close(u16, &'static str),
    /// The peer is gone.
    Gone,
}

struct Connection {
    gw: Arc<Gateway>,
    socket: WebSocket,
    session: Option<Arc<SessionHandle>>,
    generation: u64,
    rx: Option<mpsc::Receiver<Sequenced>>,
    heartbeat_deadline: Instant,
    window_start: Instant,
    frames_in_window: u32,
    /// Until the session identifies, the transport may take this socket back.
    eviction: Option<crate::Eviction>,
}

async fn serve(
    gw: Arc<Gateway>,
    socket: WebSocket,
    token: Option<String>,
    eviction: Option<crate::Eviction>,
) {
    metrics::gauge!("gateway_connections").increment(1.0);
    let interval = Duration::from_millis(gw.settings.heartbeat_ms);
    let mut conn = Connection {
        heartbeat_deadline: Instant::now() + interval * 2,
        window_start: Instant::now(),
        frames_in_window: 0,
        gw,
        socket,
        session: None,
        generation: 0,
        rx: None,
        eviction,
    };
    let end = conn.run(token).await;
    if let End::Close(code, reason) = end {
        conn.close(code, reason).await;
    }
    conn.finish().await;
    metrics::gauge!("gateway_connections").decrement(1.0);
}

impl Connection {
    async fn run(&mut self, token: Option<String>) -> End {
        let hello =
            json!({"op": op::HELLO, "d": {"heartbeatInterval": self.gw.settings.heartbeat_ms}});
        if self.send_text(hello.to_string()).await.is_err() {
            return End::Gone;
        }
        // Identify and resume are boxed: their (large) futures would otherwise be part of
        // every idle connection's task for its whole life.
        if let Some(token) = token
            && let Err(end) = Box::pin(self.identify(Identify {
                token,
                properties: None,
                presence: None,
            }))
            .await
        {
            return end;
        }
        // Made once, not per wake-up: a fresh timer entry and a fresh waiter on the shared
        // shutdown token for every frame would cost 1,000 registrations per message.
        let shutdown = self.gw.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        // The identify deadline shares the heartbeat's timer: no second timer per socket.
        let identify_by = Instant::now() + Duration::from_secs(self.gw.settings.identify_secs);
        let heartbeat = tokio::time::sleep_until(self.heartbeat_deadline);
        tokio::pin!(heartbeat);
        loop {
            let deadline = match self.session {
                None => self.heartbeat_deadline.min(identify_by),
                Some(_) => self.heartbeat_deadline,
            };
            if heartbeat.deadline() != deadline {
                heartbeat.as_mut().reset(deadline);
            }
            let session = self.session.clone();
            let kicked = async {
                match &session {
                    Some(h) => h.kicked.notified().await,
                    None => std::future::pending().await,
                }
            };
            let next_out = async {
                match self.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let evicted = async {
                match (&self.eviction, &self.session) {
                    (Some(e), None) => e.evicted.notified().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    let _ = self.send_text(json!({"op": op::RECONNECT, "d": null}).to_string()).await;
                    return End::Close(close::SERVICE_RESTART, "server restarting");
                }
                // At the connection cap, an unidentified socket is the first to go.
                () = evicted => return End::Gone,
                () = kicked => {
                    if let Some(end) = self.on_kick().await {
                        return end;
                    }
                }
                out = next_out => match out {
                    Some(first) => {
                        if let Err(end) = self.send_batch(first).await {
                            return end;
                        }
                    }
                    // The dispatcher let go of this connection; the kick says why.
                    None => {
                        self.rx = None;
                        if let Some(end) = self.on_kick().await {
                            return end;
                        }
                    }
                },
                msg = self.socket.recv() => {
                    let text = match msg {
                        None => return End::Gone,
                        // A frame over the size limit or breaking the WebSocket framing; if
                        // the peer is simply gone, the close frame goes nowhere.
                        Some(Err(_)) => return End::Close(close::DECODE_ERROR, "invalid frame"),
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                        Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                            Ok(t) => t,
                            Err(_) => return End::Close(close::DECODE_ERROR, "frames are JSON text"),
                        },
                        // Pings and pongs count too: each ping makes the server write a
                        // pong, so an unread ping flood would back up the socket.
                        Some(Ok(_)) => {
                            if let Err(end) = self.count_frame() {
                                return end;
                            }
                            continue;
                        }
                    };
                    if let Err(end) = self.on_frame(&text).await {
                        return end;
                    }
                }
                () = &mut heartbeat => {
                    if self.session.is_none() && Instant::now() >= identify_by {
                        return End::Close(close::NOT_AUTHENTICATED, "identify or resume in time");
                    }
                    return End::Close(close::SESSION_TIMED_OUT, "no heartbeat");
                }
            }
        }
    }

    /// What a kick means for this connection; `None` when it was meant for another one.
    async fn on_kick(&mut self) -> Option<End> {
        let h = self.session.as_ref()?;
        match h.kick_for(self.generation) {
            Kick::None => None,
            Kick::Close(code) => Some(End::Close(code, kick_reason(code))),
            Kick::Invalidate(code) => {
                let _ = self.invalid_session().await;
                Some(End::Close(code, kick_reason(code)))
            }
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text.into()))).await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Writes `first` and whatever else is already queued (up to a bound) with one flush:
    /// under load a busy connection takes many frames per write instead of one each.
    async fn send_batch(&mut self, first: Sequenced) -> Result<(), End> {
        let mut batch = Vec::with_capacity(8);
        batch.push(Message::Text(first.1.frame(first.0).into()));
        if let Some(rx) = self.rx.as_mut() {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok((seq, d)) => batch.push(Message::Text(d.frame(seq).into())),
                    Err(_) => break,
                }
            }
        }
        self.write_frames(batch).await
    }

    /// Writes `frames` with one flush, giving up when the session is taken away meanwhile
    /// (a stuck socket must not keep a kicked connection alive) or the socket takes no
    /// data for too long.
    async fn write_frames(&mut self, frames: Vec<Message>) -> Result<(), End> {
        let Some(h) = self.session.clone() else {
            return Err(End::Gone);
        };
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
                Err(_) => Err(End::Close(close::SLOW_CONSUMER, "send queue overflow")),
            },
            () = h.kicked.notified() => match h.kick_for(self.generation) {
                Kick::None => Ok(()),
                Kick::Close(code) | Kick::Invalidate(code) => Err(End::Close(code, kick_reason(code))),
            },
        }
    }

    async fn invalid_session(&mut self) -> Result<(), End> {
        self.send_text(json!({"op": op::INVALID_SESSION, "d": {"resumable": false}}).to_string())
            .await
    }

    fn count_frame(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(60) {
            self.window_start = now;
            self.frames_in_window = 0;
        }
        self.frames_in_window += 1;
        if self.frames_in_window > self.gw.settings.frames_per_minute {
            return Err(End::Close(close::RATE_LIMITED, "too many frames"));
        }
        Ok(())
    }

    async fn on_frame(&mut self, text: &str) -> Result<(), End> {
        self.count_frame()?;
        // Text with NUL can be stored by neither backend; REST refuses it with 422.
        if xcord_types::error::has_nul_escape(text.as_bytes()) {
            return Err(End::Close(close::DECODE_ERROR, "text may not contain NUL"));
        }
        let frame: ClientFrame = serde_json::from_str(text)
            .map_err(|_| End::Close(close::DECODE_ERROR, "not a gateway frame"))?;
        let identified = self.session.is_some();
        match u8::try_from(frame.op).unwrap_or(u8::MAX) {
            op::HEARTBEAT => {
                // `{seq}` as SPEC'd; Discord-style clients send the bare number or null.
                if frame.d.is_object() {
                    let _: Heartbeat = decode(frame.d.clone())?;
                } else if !(frame.d.is_null() || frame.d.is_u64()) {
                    return Err(End::Close(close::DECODE_ERROR, "invalid payload"));
                }
                if let (Some(h), Some(seq)) = (&self.session, heartbeat_seq(&frame.d)) {
                    h.acknowledge(seq);
                }
                self.heartbeat_deadline =
                    Instant::now() + Duration::from_millis(self.gw.settings.heartbeat_ms) * 2;
                self.send_text(r#"{"op":2,"d":{}}"#.to_owned()).await
            }
            op::IDENTIFY if identified => Err(End::Close(
                close::ALREADY_AUTHENTICATED,
                "already identified",
            )),
            op::IDENTIFY => Box::pin(self.identify(decode(frame.d)?)).await,
            op::RESUME if identified => Err(End::Close(
                close::ALREADY_AUTHENTICATED,
                "already identified",
            )),
            op::RESUME => Box::pin(self.resume(decode(frame.d)?)).await,
            op::PRESENCE_SET | op::TYPING | op::VOICE_STATE_SET if !identified => {
                Err(End::Close(close::NOT_AUTHENTICATED, "identify first"))
            }
            op::PRESENCE_SET => {
                let mut p: PresenceSet = decode(frame.d)?;
                if p.status == Status::Offline {
                    p.status = Status::Invisible;
                }
                let caller = self.caller()?;
                log_refusal(self.gw.core.gateway_presence_set(&caller, p).await);
                Ok(())
            }
            op::TYPING => {
                let t: Typing = decode(frame.d)?;
                let caller = self.caller()?;
                log_refusal(self.gw.core.typing(&caller, t.channel_id).await);
                Ok(())
            }
            op::VOICE_STATE_SET => {
                let v: VoiceStateSet = decode(frame.d)?;
                let caller = self.caller()?;
                let sid = self
                    .session
                    .as_ref()
                    .map(|h| h.id.clone())
                    .ok_or(End::Gone)?;
                log_refusal(self.gw.core.set_voice_state(&caller, &sid, v).await);
                Ok(())
            }
            _ => Err(End::Close(close::UNKNOWN_OPCODE, "unknown op code")),
        }
    }

    /// The connection holds a session now: the transport no longer evicts it.
    fn vouch(&mut self) {
        if let Some(e) = self.eviction.take() {
            (e.protect)();
        }
    }

    fn caller(&self) -> Result<xcord_core::Caller, End> {
        self.session
            .as_ref()
            .map(|h| h.caller)
            .ok_or(End::Close(close::NOT_AUTHENTICATED, "identify first"))
    }

    async fn identify(&mut self, req: Identify) -> Result<(), End> {
        let core = self.gw.core.clone();
        let caller = core
            .authenticate(bare_token(&req.token))
            .map_err(|_| End::Close(close::AUTHENTICATION_FAILED, "authentication failed"))?
            .caller;
        let since = self.gw.index.lock().map_or(0, |i| i.generation());
        let state = core.connected_state(&caller).await.map_err(|e| match e {
            CoreError::NotFound(_) | CoreError::Unauthenticated(_) => {
                End::Close(close::AUTHENTICATION_FAILED, "authentication failed")
            }
            e => {
                tracing::error!(error = format!("{e:#}"), "cannot load a gateway session");
                End::Close(1011, "internal error")
            }
        })?;
        let id: Arc<str> = hex::encode(rand::random::<[u8; 16]>()).into();
        let servers: Vec<serde_json::Value> = state
            .servers
            .iter()
            .map(|snap| {
                let mut v = serde_json::to_value(snap.view_for(caller.user_id))
                    .unwrap_or(serde_json::Value::Null);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "voiceStates".into(),
                        json!(core.voice.of_server(snap.server.id)),
                    );
                }
                v
            })
            .collect();
        let payload = json!({
            "sessionId": &*id,
            "user": xcord_core::Core::self_user(&state.user),
            "servers": servers,
            "dmChannels": state.private_channels,
            "readStates": state.read_states.read_states,
            "presences": state.presences,
        });
        let (tx, rx) = mpsc::channel(self.gw.settings.send_queue);
        let handle = Arc::new(SessionHandle::new(
            id,
            caller,
            tx,
            self.gw.settings.replay_limit,
        ));
        let connected = Arc::new(Dispatch::new(
            op::CONNECTED,
            "CONNECTED",
            &payload.to_string(),
        ));
        // First in the queue, so CONNECTED is s = 1 before any event. It is not kept for
        // replay: a client that resumes has it already.
        let stale = self
            .gw
            .register(&handle, &state, since, |h, _| h.push_unkept(&connected))
            .ok_or(End::Close(1011, "internal error"))?;
        refresh_stale(&self.gw.clone(), stale).await;
        self.generation = handle.generation();
        self.session = Some(handle);
        self.vouch();
        self.rx = Some(rx);
        metrics::counter!("gateway_identifies_total").increment(1);
        log_refusal(core.gateway_connected(&caller, req.presence).await);
        Ok(())
    }

    async fn resume(&mut self, req: Resume) -> Result<(), End> {
        let core = self.gw.core.clone();
        let caller = core
            .authenticate(bare_token(&req.token))
            .map_err(|_| End::Close(close::AUTHENTICATION_FAILED, "authentication failed"))?
            .caller;
        let handle = self
            .gw
            .index
            .lock()
            .ok()
            .and_then(|i| i.session(&req.session_id));
        let Some(handle) = handle else {
            // Not held here: a session left by a node that stopped, if any.
            return Box::pin(self.resume_saved(req, caller)).await;
        };
        if handle.user != caller.user_id {
            // Someone else's session: refused, and left exactly as it was.
            return self.invalid_session().await;
        }
        let (tx, rx) = mpsc::channel(self.gw.settings.send_queue);
        let session_id = handle.id.clone();
        let resumed = handle.resume(req.seq, tx, |replayed| {
            let d = json!({"sessionId": &*session_id, "replayed": replayed});
            Arc::new(Dispatch::new(op::CONNECTED, "RESUMED", &d.to_string()))
        });
        let Ok((missed, (rseq, rd), generation)) = resumed else {
            return self.invalid_session().await;
        };
        let mut frames = missed;
        frames.push((rseq, rd));
        self.resumed(handle, generation, rx, &frames, &caller).await
    }

    /// The session is this connection's now: the replayed frames and RESUMED go out (in
    /// batches, each under the send timeout, as live frames do), then live events follow.
    async fn resumed(
        &mut self,
        handle: Arc<SessionHandle>,
        generation: u64,
        rx: mpsc::Receiver<Sequenced>,
        frames: &[Sequenced],
        caller: &xcord_core::Caller,
    ) -> Result<(), End> {
        self.generation = generation;
        self.session = Some(handle);
        self.vouch();
        self.rx = Some(rx);
        for chunk in frames.chunks(MAX_BATCH) {
            let batch = chunk
                .iter()
                .map(|(seq, d)| Message::Text(d.frame(*seq).into()))
                .collect();
            self.write_frames(batch).await?;
        }
        metrics::counter!("gateway_resumes_total").increment(1);
        log_refusal(self.gw.core.gateway_connected(caller, None).await);
        Ok(())
    }

    /// RESUME of a session this node does not hold: one a stopped node saved. It is taken
    /// (so no other node resumes it too), registered for live events, and caught up from
    /// the event log with what its old node never routed; then everything goes out in
    /// order, numbered after what the client already has.
    async fn resume_saved(&mut self, req: Resume, caller: xcord_core::Caller) -> Result<(), End> {
        let core = self.gw.core.clone();
        let found = match core
            .store
            .saved_session(&req.session_id, caller.user_id)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot look up a saved session");
                None
            }
        };
        let Some((saved, checkpoint)) = found else {
            return self.invalid_session().await;
        };
        let gw = self.gw.clone();
        let Ok(_turn) = gw.catch_ups.acquire().await else {
            return self.invalid_session().await;
        };
        let kept = saved_frames(&saved.frames);
        let seq = u64::try_from(saved.seq).unwrap_or(0);
        let first_kept = kept.first().map_or(seq + 1, |(s, _)| *s);
        if saved.expires_at < core.clock.now().as_millis()
            || req.seq > seq
            || req.seq + 1 < first_kept
            || !core
                .store
                .claim_saved_session(&saved.id, caller.user_id)
                .await
                .unwrap_or(false)
        {
            return self.invalid_session().await;
        }
        let since = self.gw.index.lock().map_or(0, |i| i.generation());
        let state = core.connected_state(&caller).await.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "cannot load a resumed session");
            End::Close(1011, "internal error")
        })?;
        let (tx, rx) = mpsc::channel(self.gw.settings.send_queue);
        let id: Arc<str> = saved.id.into();
        let handle = Arc::new(SessionHandle::taken_over(
            id.clone(),
            caller,
            tx,
            self.gw.settings.replay_limit,
            seq,
            kept,
        ));
        // Registered before the log is read: an event routed here before then is in the log
        // or among the recently routed; a later one arrives live and waits in the session
        // until the replay is numbered.
        // What this node routed before the registration, taken in the same instant: the log
        // may not hold the newest of it yet.
        let mut recent = Vec::new();
        let stale = self
            .gw
            .register(&handle, &state, since, |_, index| {
                recent = index.recently_routed();
            })
            .ok_or(End::Close(1011, "internal error"))?;
        refresh_stale(&self.gw.clone(), stale).await;
        let missed = match crate::catch_up::missed_events(&core, &checkpoint, &state, recent).await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot read the event log");
                None
            }
        };
        let Some(missed) = missed else {
            if let Ok(mut index) = self.gw.index.lock() {
                index.remove_session(&id);
            }
            return self.invalid_session().await;
        };
        let Some(frames) = handle.release(req.seq, missed, |replayed| {
            let d = json!({"sessionId": &*id, "replayed": replayed});
            Arc::new(Dispatch::new(op::CONNECTED, "RESUMED", &d.to_string()))
        }) else {
            if let Ok(mut index) = self.gw.index.lock() {
                index.remove_session(&id);
            }
            return self.invalid_session().await;
        };
        let generation = handle.generation();
        self.resumed(handle, generation, rx, &frames, &caller).await
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
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

    /// The connection is over: the session waits for a resume, the user may go offline.
    async fn finish(&mut self) {
        let Some(h) = self.session.take() else {
            return;
        };
        h.detach(self.generation);
        let core = &self.gw.core;
        core.drop_voice_state(h.user, &h.id).await;
        log_refusal(core.gateway_disconnected(h.user).await);
    }
}

/// Reloads servers that changed between an identify's load and its registration, until
/// a reload is not overtaken by another change (a few rounds at most).
async fn refresh_stale(gw: &Gateway, mut stale: Vec<xcord_types::Snowflake>) {
    for _ in 0..5 {
        if stale.is_empty() {
            return;
        }
        let since = gw.index.lock().map_or(0, |i| i.generation());
        let mut snaps = Vec::new();
        for id in &stale {
            match gw.core.server_snapshot(*id).await {
                Ok(Some(s)) => snaps.push(s),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot reload a server");
                    return;
                }
            }
        }
        let Ok(mut index) = gw.index.lock() else {
            return;
        };
        let ids: Vec<_> = snaps.iter().map(|s| s.server.id).collect();
        let again = index.changed_since(since, &ids);
        for s in snaps.iter().filter(|s| !again.contains(&s.server.id)) {
            if index.holds_server(s.server.id) {
                index.refresh_server(s);
            }
        }
        stale = again;
    }
}

/// The sequence number in a heartbeat: `{seq}` or a bare number.
fn heartbeat_seq(d: &serde_json::Value) -> Option<u64> {
    d.get("seq")
        .and_then(serde_json::Value::as_u64)
        .or(d.as_u64())
}

/// Frames saved as `[[seq, eventId, head], …]` by a stopping node.
fn saved_frames(text: &str) -> Vec<Sequenced> {
    serde_json::from_str::<Vec<(u64, i64, String)>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(|(seq, event, head)| (seq, Arc::new(Dispatch::from_head(&head, event))))
        .collect()
}

/// The token without a `Bearer ` prefix some clients copy from their HTTP header.
fn bare_token(t: &str) -> &str {
    let t = t.trim();
    t.strip_prefix("Bearer ").unwrap_or(t).trim()
}

fn kick_reason(code: u16) -> &'static str {
    match code {
        close::SLOW_CONSUMER => "send queue overflow",
        1000 => "session resumed elsewhere",
        _ => "session closed",
    }
}

fn decode<T: serde::de::DeserializeOwned>(d: serde_json::Value) -> Result<T, End> {
    serde_json::from_value(d).map_err(|_| End::Close(close::DECODE_ERROR, "invalid payload"))
}

/// Client requests the core refuses (no permission, unknown channel) are dropped, as
/// Discord does; only unexpected failures are logged above debug.
fn log_refusal<T>(r: xcord_core::Result<T>) {
    match r {
        Ok(_) => {}
        Err(e @ (CoreError::Internal(_) | CoreError::Unavailable(_))) => {
            tracing::warn!(error = format!("{e:#}"), "gateway request failed");
        }
        Err(e) => tracing::debug!(error = %e, "gateway request refused"),
    }
}
