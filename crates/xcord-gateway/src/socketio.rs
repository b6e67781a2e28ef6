//! Socket.IO v4 at `/socket.io/` for SPEC §7's seed-003 profile, namespaces `/` and
//! `/compat/rtms`. Each socket is one gateway session ([`GatewaySession`], the same state
//! machine as a WebSocket's): it identifies with the socket's token, receives what the
//! dispatcher routes to it — so posts made through any API or node reach it, permissions
//! included — and this module only encodes those events as seed 003's, and turns the
//! socket's events into core use-cases.
//!
//! | seed 003 event | here |
//! | --- | --- |
//! | `join_room {conversationId}` → `joined_room` | the channel must be visible to the user; messages of joined conversations are sent as `message_received` |
//! | `send_message {conversationId, content}` | `Core::post_message` (every side effect); the room receives it as `message_received {message, timestamp}` |
//! | `typing_start` / `typing_stop` | `Core::typing` / `Core::stop_typing`; others in the room get `user_typing` / `user_stopped_typing` |
//! | `user_online` / `user_offline` | PRESENCE_UPDATE turning online or offline |
//! | `error {message}` | a refused event |
//!
//! Automatic messages (SPEC §6) reach their receiver as `message_received` with
//! `isAutomatic: true` whether or not the conversation was joined, as in the seed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xcord_core::auth::AuthContext;
use xcord_core::{Caller, Error};
use xcord_types::compat::rtms;
use xcord_types::rest::messages::{CreateMessageRequest, Message};
use xcord_types::rest::users::Presence;
use xcord_types::{Snowflake, events::Typing};

use crate::Gateway;
use crate::protocol::{FrameBudget, GatewaySession, Outbound};

/// The namespaces served.
pub const NAMESPACES: [&str; 2] = ["/", "/compat/rtms"];

#[derive(Clone)]
struct Io {
    gw: Arc<Gateway>,
}

/// One socket's state: who it is and the conversations it joined.
#[derive(Clone)]
struct Conn {
    ctx: AuthContext,
    /// Identified at the handshake; taken by the socket's pump once connected.
    session: Arc<Mutex<Option<GatewaySession>>>,
    rooms: Arc<Mutex<HashSet<Snowflake>>>,
    /// Events the client may still send this minute.
    budget: Arc<Mutex<FrameBudget>>,
    /// Cancelled when the socket disconnects.
    gone: CancellationToken,
}

impl Conn {
    fn caller(&self) -> &Caller {
        &self.ctx.caller
    }

    fn joined(&self, channel: Snowflake) -> bool {
        self.rooms.lock().is_ok_and(|r| r.contains(&channel))
    }
}

/// A refused connection: the client's `connect_error` carries the message.
#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The routes `/socket.io` and `/socket.io/` (the engine's path, with its query).
pub fn routes<S: Clone + Send + Sync + 'static>(gw: Arc<Gateway>) -> axum::Router<S> {
    let (svc, io) = SocketIo::builder().with_state(Io { gw }).build_svc();
    for ns in NAMESPACES {
        io.ns(ns, on_connect.with(authenticate));
    }
    axum::Router::new()
        .route_service("/socket.io", svc.clone())
        .route_service("/socket.io/", svc)
}

/// The handshake's `auth.token`, else `Authorization: Bearer …`.
fn token_of(s: &SocketRef, auth: &Result<Value, impl std::fmt::Debug>) -> Option<String> {
    if let Ok(v) = auth
        && let Some(t) = v.get("token").and_then(Value::as_str)
        && !t.is_empty()
    {
        return Some(t.trim_start_matches("Bearer ").to_owned());
    }
    let header = s
        .req_parts()
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Authenticates the handshake and identifies its gateway session before the client hears
/// it is connected, so that what it sends next finds the socket ready.
async fn authenticate(
    s: SocketRef,
    State(io): State<Io>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refused> {
    let token = token_of(&s, &auth).ok_or(Refused("Authentication token required"))?;
    let ctx = io
        .gw
        .core
        .authenticate(&token)
        .map_err(|_| Refused("Invalid or expired token"))?;
    let mut session = GatewaySession::new(io.gw.clone(), Instant::now());
    let mut out = Vec::new();
    session.identify_with_token(token, &mut out).await;
    if out.iter().any(|o| matches!(o, Outbound::Close(_))) {
        return Err(Refused("The session could not be opened"));
    }
    s.extensions.insert(Conn {
        ctx,
        session: Arc::new(Mutex::new(Some(session))),
        rooms: Arc::default(),
        budget: Arc::new(Mutex::new(FrameBudget::new(Instant::now()))),
        gone: CancellationToken::new(),
    });
    Ok(())
}

async fn on_connect(s: SocketRef, State(io): State<Io>, Extension(conn): Extension<Conn>) {
    let Some(session) = conn.session.lock().ok().and_then(|mut g| g.take()) else {
        return;
    };
    for (name, what) in [
        ("join_room", ClientEvent::JoinRoom),
        ("leave_room", ClientEvent::LeaveRoom),
        ("send_message", ClientEvent::SendMessage),
        ("typing_start", ClientEvent::TypingStart),
        ("typing_stop", ClientEvent::TypingStop),
    ] {
        listen(&s, name, what);
    }
    {
        let gone = conn.gone.clone();
        s.on_disconnect(async move || gone.cancel());
    }
    // Gone before the handler was in place: the pump must not hold the session.
    if !s.connected() {
        conn.gone.cancel();
    }
    io.gw.connections.spawn(pump(io.clone(), s, conn, session));
}

fn emit(s: &SocketRef, event: &'static str, data: &Value) {
    if let Err(e) = s.emit(event, data) {
        tracing::debug!(error = %e, event, "a Socket.IO event could not be sent");
    }
}

/// What a refused event tells the client; internal failures say nothing of their cause.
fn refusal(e: &Error) -> String {
    match e {
        Error::NotFound(_) => "Conversation not found".into(),
        Error::MissingPermission { .. } | Error::Denied(_) => {
            "You cannot do this in this conversation".into()
        }
        Error::Validation(fields) => fields
            .first()
            .map(|f| format!("Invalid {}: {}", f.field, f.message))
            .unwrap_or_else(|| "Invalid data".into()),
        Error::RateLimited {
            retry_after_secs, ..
        } => format!("Too many requests; retry in {retry_after_secs} s"),
        Error::Unauthenticated(_) => "Authentication required".into(),
        _ => "The request could not be completed".into(),
    }
}

/// `{conversationId}` as a string or a number.
fn conversation_of(data: &Result<Value, impl std::fmt::Debug>) -> Option<Snowflake> {
    xcord_types::compat::id_in(data.as_ref().ok()?.get("conversationId")?)
}

fn refuse(s: &SocketRef, message: impl Into<String>) {
    emit(s, "error", &json!({"message": message.into()}));
}

/// Spends one event of the socket's budget (the gateway's frames per minute); past it the
/// client is told and disconnected, and the event is not acted on.
fn within_budget(s: &SocketRef, io: &Io, conn: &Conn) -> bool {
    let ok = conn
        .budget
        .lock()
        .is_ok_and(|mut b| b.spend(Instant::now(), io.gw.settings.frames_per_minute));
    if !ok {
        refuse(s, "Too many events; slow down");
        let _ = s.clone().disconnect();
    }
    ok
}

/// The client events of seed 003's socket; each names a conversation.
#[derive(Debug, Clone, Copy)]
enum ClientEvent {
    JoinRoom,
    LeaveRoom,
    SendMessage,
    TypingStart,
    TypingStop,
}

/// Listens for `name` on the socket.
fn listen(s: &SocketRef, name: &'static str, what: ClientEvent) {
    s.on(
        name,
        async move |s: SocketRef,
                    State(io): State<Io>,
                    Extension(conn): Extension<Conn>,
                    TryData(data): TryData<Value>| {
            on_event(s, io, conn, data, what).await;
        },
    );
}

/// One client event, within the socket's budget, for the conversation it names.
async fn on_event(
    s: SocketRef,
    io: Io,
    conn: Conn,
    data: Result<Value, impl std::fmt::Debug>,
    what: ClientEvent,
) {
    if !within_budget(&s, &io, &conn) {
        return;
    }
    let Some(id) = conversation_of(&data) else {
        return refuse(&s, "conversationId is required");
    };
    let (core, caller) = (&io.gw.core, conn.caller());
    let done = match what {
        ClientEvent::JoinRoom => core.get_channel(caller, id).await.map(|_| {
            if let Ok(mut rooms) = conn.rooms.lock() {
                rooms.insert(id);
            }
            emit(&s, "joined_room", &json!({"conversationId": id}));
        }),
        ClientEvent::LeaveRoom => {
            if let Ok(mut rooms) = conn.rooms.lock() {
                rooms.remove(&id);
            }
            emit(&s, "left_room", &json!({"conversationId": id}));
            Ok(())
        }
        ClientEvent::SendMessage => {
            let content = data
                .as_ref()
                .ok()
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str);
            let Some(content) = content else {
                return refuse(&s, "content is required");
            };
            let req = CreateMessageRequest {
                content: Some(content.to_owned()),
                ..Default::default()
            };
            core.post_message(caller, id, req).await.map(|_| ())
        }
        ClientEvent::TypingStart => core.typing(caller, id).await,
        ClientEvent::TypingStop => core.stop_typing(caller, id).await,
    };
    if let Err(e) = done {
        refuse(&s, refusal(&e));
    }
}

/// Names seen by one socket (typing and presence events carry only ids).
#[derive(Default)]
struct Names(HashMap<Snowflake, String>);

impl Names {
    async fn of(&mut self, gw: &Gateway, id: Snowflake) -> String {
        if let Some(n) = self.0.get(&id) {
            return n.clone();
        }
        let name = gw
            .core
            .public_profile(id)
            .await
            .map(|u| u.username)
            .unwrap_or_default();
        self.0.insert(id, name.clone());
        name
    }
}

/// Feeds the socket what its session receives, until either ends.
async fn pump(io: Io, s: SocketRef, conn: Conn, mut session: GatewaySession) {
    let mut out = Vec::new();
    let mut names = Names::default();
    // Who this socket has seen online, so that only changes are announced.
    let mut online: HashSet<Snowflake> = HashSet::new();
    'run: loop {
        tokio::select! {
            () = conn.gone.cancelled() => break,
            () = session.wait(&mut out) => {}
        }
        for item in out.drain(..) {
            match item {
                Outbound::Dispatch((_, d)) => {
                    let frame = d.frame(0);
                    let Ok(v) = serde_json::from_str::<Value>(&frame) else {
                        continue;
                    };
                    let name = v["t"].as_str().unwrap_or_default();
                    let data = v.get("d").cloned().unwrap_or(Value::Null);
                    relay(&io, &s, &conn, &mut names, &mut online, name, data).await;
                }
                Outbound::Close(_) => {
                    let _ = s.clone().disconnect();
                    break 'run;
                }
                Outbound::Frame(_) => {}
            }
        }
    }
    session.finish().await;
}

/// Encodes one gateway event as seed 003's, if it has an equivalent this socket should see.
async fn relay(
    io: &Io,
    s: &SocketRef,
    conn: &Conn,
    names: &mut Names,
    online: &mut HashSet<Snowflake>,
    name: &str,
    data: Value,
) {
    let me = conn.caller().user_id;
    let now = io.gw.core.clock.now();
    match name {
        "MESSAGE_CREATE" => {
            let Ok(m) = serde_json::from_value::<Message>(data) else {
                return;
            };
            names.0.insert(m.author.id, m.author.username.clone());
            // Automatic messages go to their receiver as in seed 003 (to the user's own
            // room); the others to sockets that joined the conversation.
            let automatic = m.is_automatic && m.author.id != me;
            if automatic || conn.joined(m.channel_id) {
                let mut body = json!({"message": rtms::message(&m, &[]), "timestamp": now});
                if m.is_automatic {
                    body["isAutomatic"] = json!(true);
                }
                emit(s, "message_received", &body);
            }
        }
        "TYPING_START" | "TYPING_STOP" => {
            let Ok(t) = serde_json::from_value::<Typing>(data) else {
                return;
            };
            if t.user_id == me || !conn.joined(t.channel_id) {
                return;
            }
            if name == "TYPING_START" {
                let username = names.of(&io.gw, t.user_id).await;
                emit(
                    s,
                    "user_typing",
                    &json!({"userId": t.user_id, "username": username, "conversationId": t.channel_id}),
                );
            } else {
                emit(
                    s,
                    "user_stopped_typing",
                    &json!({"userId": t.user_id, "conversationId": t.channel_id}),
                );
            }
        }
        "PRESENCE_UPDATE" => {
            let Ok(p) = serde_json::from_value::<Presence>(data) else {
                return;
            };
            if p.user_id == me {
                return;
            }
            let is_online = p.status != xcord_types::rest::users::Status::Offline;
            let event = match (is_online, online.contains(&p.user_id)) {
                (true, false) => {
                    online.insert(p.user_id);
                    "user_online"
                }
                (false, true) => {
                    online.remove(&p.user_id);
                    "user_offline"
                }
                // Offline and never seen online: a first report, announced too.
                (false, false) => "user_offline",
                (true, true) => return,
            };
            let username = names.of(&io.gw, p.user_id).await;
            emit(
                s,
                event,
                &json!({"userId": p.user_id, "username": username, "timestamp": now}),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_come_as_strings_or_numbers() {
        let ok = |v: Value| conversation_of(&Ok::<_, ()>(v));
        assert_eq!(
            ok(json!({"conversationId": "42"})),
            Some(Snowflake::from_i64(42))
        );
        assert_eq!(
            ok(json!({"conversationId": 42})),
            Some(Snowflake::from_i64(42))
        );
        assert_eq!(ok(json!({"conversationId": "x"})), None);
        assert_eq!(ok(json!({"conversationId": -1})), None);
        assert_eq!(ok(json!({})), None);
        assert_eq!(conversation_of(&Err::<Value, _>("not json")), None);
    }

    #[test]
    fn refusals_do_not_leak_internal_causes() {
        let internal = Error::Unavailable(anyhow::anyhow!("connection refused at 10.0.0.5"));
        assert_eq!(refusal(&internal), "The request could not be completed");
        let not_found = Error::NotFound(xcord_core::Entity::Channel);
        assert_eq!(refusal(&not_found), "Conversation not found");
    }
}
