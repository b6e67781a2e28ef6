//! `/compat/hype/ws`: seed 002's WebSocket (SPEC §7), `{type, data, timestamp}` frames both
//! ways. Like a Socket.IO socket ([`crate::socketio`]), each connection is one canonical
//! gateway session: it receives what the dispatcher routes to its user, and this module
//! encodes it as the seed's frames, only for the channels the socket joined.
//!
//! Identity: `?token=` when given. The seed's published client connects without one and
//! first sends `user_joined {user}`; such a socket is bound to that user only if the user
//! holds a live session whose sign-in came from the same address ([`Core::socket_token_for`]),
//! and it then sees exactly what that session may see. docs/compat.md weighs the trade-off.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use xcord_core::{Caller, Core};
use xcord_types::Snowflake;
use xcord_types::compat::hype;
use xcord_types::events::MessageDeleted;
use xcord_types::rest::messages::Message;

use crate::Gateway;
use crate::protocol::{FrameBudget, GatewaySession, Outbound};

/// Largest frame a client may send.
const MAX_FRAME: usize = 16 * 1024;

/// The route, to be merged into the gateway's.
pub fn routes<S: Clone + Send + Sync + 'static>(gw: Arc<Gateway>) -> Router<S> {
    Router::new()
        .route("/compat/hype/ws", get(upgrade))
        .with_state(gw)
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = query.ok().and_then(|q| q.0.token).filter(|t| !t.is_empty());
    let ip = peer.map(|p| p.0.0.ip().to_string());
    let tracker = gw.connections.clone();
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| tracker.track_future(serve(gw, socket, token, ip)))
        .into_response()
}

/// `{type, data, timestamp}`.
fn frame(core: &Core, kind: &str, data: Value) -> WsMessage {
    let text = json!({"type": kind, "data": data, "timestamp": core.clock.now()}).to_string();
    WsMessage::Text(text.into())
}

fn error_frame(core: &Core, message: &str) -> WsMessage {
    frame(core, "error", json!({"message": message}))
}

/// An id given as a string or a number.
fn id_in(v: &Value) -> Option<Snowflake> {
    match v {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .filter(|id| *id > 0)
    .map(Snowflake::from_i64)
}

/// The user a `user_joined` frame names: `data.user.id`, `data.userId` or `data.id`.
fn named_user(data: &Value) -> Option<Snowflake> {
    id_in(&data["user"]["id"])
        .or_else(|| id_in(&data["userId"]))
        .or_else(|| id_in(&data["id"]))
}

async fn serve(gw: Arc<Gateway>, mut socket: WebSocket, token: Option<String>, ip: Option<String>) {
    let core = gw.core.clone();
    let token = match token {
        Some(t) => Some(t),
        None => bind_by_address(&gw, &mut socket, ip.as_deref()).await,
    };
    let Some(token) = token else {
        let _ = socket
            .send(error_frame(
                &core,
                "Sign in first: no live session of that user from this address",
            ))
            .await;
        let _ = socket.send(WsMessage::Close(None)).await;
        return;
    };
    let caller = match core.authenticate(&token) {
        Ok(ctx) => ctx.caller,
        Err(_) => {
            let _ = socket
                .send(error_frame(&core, "Invalid or expired token"))
                .await;
            let _ = socket.send(WsMessage::Close(None)).await;
            return;
        }
    };
    let mut session = GatewaySession::new(gw.clone(), Instant::now());
    let mut out = Vec::new();
    session.identify_with_token(token, &mut out).await;
    if out.iter().any(|o| matches!(o, Outbound::Close(_))) {
        let _ = socket
            .send(error_frame(&core, "The session could not be opened"))
            .await;
        let _ = socket.send(WsMessage::Close(None)).await;
        return;
    }
    out.clear();
    let mut conn = Conn {
        core: core.clone(),
        caller,
        channels: HashSet::new(),
        people: HashMap::new(),
    };
    let (mut tx, mut rx) = socket.split();
    let mut budget = FrameBudget::new(Instant::now());
    let _ = tx
        .send(frame(&core, "connected", json!({"userId": caller.user_id})))
        .await;
    'run: loop {
        tokio::select! {
            incoming = rx.next() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if !budget.spend(Instant::now(), gw.settings.frames_per_minute) {
                    let _ = tx.send(error_frame(&core, "Too many frames; slow down")).await;
                    let _ = tx.send(WsMessage::Close(None)).await;
                    break;
                }
                if let Some(reply) = conn.on_frame(&text).await
                    && tx.send(reply).await.is_err()
                {
                    break;
                }
            }
            () = session.wait(&mut out) => {
                for item in out.drain(..) {
                    match item {
                        Outbound::Dispatch((_, d)) => {
                            let Ok(v) = serde_json::from_str::<Value>(&d.frame(0)) else {
                                continue;
                            };
                            let name = v["t"].as_str().unwrap_or_default().to_owned();
                            let data = v.get("d").cloned().unwrap_or(Value::Null);
                            if let Some(f) = conn.relay(&name, data).await
                                && tx.send(f).await.is_err()
                            {
                                break 'run;
                            }
                        }
                        Outbound::Close(_) => {
                            let _ = tx.send(WsMessage::Close(None)).await;
                            break 'run;
                        }
                        Outbound::Frame(_) => {}
                    }
                }
            }
        }
    }
    session.finish().await;
}

/// Waits for the first frame, `user_joined {user}`, and binds the socket to that user if
/// the rule allows; the token to identify with.
async fn bind_by_address(gw: &Gateway, socket: &mut WebSocket, ip: Option<&str>) -> Option<String> {
    let ip = ip?;
    let wait = Duration::from_secs(gw.settings.identify_secs);
    let first = tokio::time::timeout(wait, socket.recv())
        .await
        .ok()??
        .ok()?;
    let WsMessage::Text(text) = first else {
        return None;
    };
    let v: Value = serde_json::from_str(&text).ok()?;
    if v["type"] != "user_joined" {
        return None;
    }
    let user = named_user(&v["data"])?;
    gw.core.socket_token_for(user, ip).await.ok()
}

/// One socket's state.
struct Conn {
    core: Arc<Core>,
    caller: Caller,
    /// Channels joined (`join_channel`): chat frames come only for these.
    channels: HashSet<Snowflake>,
    /// Display names and presence of authors, read once per socket.
    people: HashMap<Snowflake, (Option<String>, &'static str)>,
}

impl Conn {
    /// A frame from the client; what to answer, if anything.
    async fn on_frame(&mut self, text: &str) -> Option<WsMessage> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Some(error_frame(&self.core, "Frames are JSON: {type, data}"));
        };
        let data = &v["data"];
        match v["type"].as_str().unwrap_or_default() {
            // Already bound; a repeat names nobody new.
            "user_joined" => None,
            "join_channel" => {
                let Some(id) = id_in(&data["channelId"]) else {
                    return Some(error_frame(&self.core, "channelId is required"));
                };
                match self.core.get_channel(&self.caller, id).await {
                    Ok(_) => {
                        self.channels.insert(id);
                        Some(frame(
                            &self.core,
                            "channel_joined",
                            json!({"channelId": id}),
                        ))
                    }
                    Err(_) => Some(error_frame(&self.core, "Channel not found")),
                }
            }
            "leave_channel" => {
                if let Some(id) = id_in(&data["channelId"]) {
                    self.channels.remove(&id);
                }
                None
            }
            "typing" => {
                let id = id_in(&data["channelId"])?;
                match self.core.typing(&self.caller, id).await {
                    Ok(()) => None,
                    Err(_) => Some(error_frame(&self.core, "You cannot type in this channel")),
                }
            }
            other => Some(error_frame(
                &self.core,
                &format!("Unsupported frame type {other:?}"),
            )),
        }
    }

    async fn person(&mut self, id: Snowflake) -> (Option<String>, &'static str) {
        if let Some(p) = self.people.get(&id) {
            return p.clone();
        }
        let p = match self.core.directory_entry(id).await {
            Ok(e) => (e.user.display_name, hype::upper_status(e.status)),
            Err(_) => (None, "OFFLINE"),
        };
        self.people.insert(id, p.clone());
        p
    }

    /// A gateway event as the seed's frame, for joined channels only.
    async fn relay(&mut self, name: &str, data: Value) -> Option<WsMessage> {
        match name {
            "MESSAGE_CREATE" | "MESSAGE_UPDATE" => {
                let m: Message = serde_json::from_value(data).ok()?;
                if !self.channels.contains(&m.channel_id) {
                    return None;
                }
                let (display, status) = self.person(m.author.id).await;
                let kind = if name == "MESSAGE_CREATE" {
                    "new_message"
                } else {
                    "message_edited"
                };
                Some(frame(
                    &self.core,
                    kind,
                    hype::message(&m, display.as_deref(), status),
                ))
            }
            "MESSAGE_DELETE" => {
                let d: MessageDeleted = serde_json::from_value(data).ok()?;
                self.channels.contains(&d.channel_id).then(|| {
                    frame(
                        &self.core,
                        "message_deleted",
                        json!({"messageId": d.id, "channelId": d.channel_id}),
                    )
                })
            }
            "TYPING_START" => {
                let t: xcord_types::events::Typing = serde_json::from_value(data).ok()?;
                (t.user_id != self.caller.user_id && self.channels.contains(&t.channel_id)).then(
                    || {
                        frame(
                            &self.core,
                            "typing",
                            json!({"channelId": t.channel_id, "userId": t.user_id}),
                        )
                    },
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_joined_names_its_user_in_any_of_the_seed_shapes() {
        let id = Some(Snowflake::from_i64(42));
        assert_eq!(named_user(&json!({"user": {"id": "42"}})), id);
        assert_eq!(named_user(&json!({"userId": 42})), id);
        assert_eq!(named_user(&json!({"id": "42"})), id);
        assert_eq!(named_user(&json!({"user": {"id": "x"}})), None);
        assert_eq!(named_user(&json!({})), None);
    }
}
