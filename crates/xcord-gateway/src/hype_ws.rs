//! `/compat/hype/ws`: seed 002's WebSocket (SPEC §7), `{type, data, timestamp}` frames both
//! ways. Like a Socket.IO socket ([`crate::socketio`]), each connection is one canonical
//! gateway session: it receives what the dispatcher routes to its user, and this module
//! encodes it as the seed's frames, only for the channels the socket joined.
//!
//! Voice: `voice_state` from the client joins a voice channel without media (or sets its
//! flags; `channelId: null` leaves), the media itself goes through the REST signaling
//! (`/compat/hype/api/voice/*`). VOICE_STATE_UPDATE, VOICE_SPEAKING and VOICE_TRACK of every
//! voice channel the user can see come as `voice_state` (with the channel's participants),
//! `speaking_state`, `new_producer` and `producer_closed`.
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
use xcord_types::Timestamp;
use xcord_types::compat::{hype, id_in};
use xcord_types::events::MessageDeleted;
use xcord_types::gateway::{VoiceSpeaking, VoiceState, VoiceTrack};
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
    let mut conn = Conn {
        core: core.clone(),
        caller,
        gateway_session: session.session_id().unwrap_or_default().to_owned(),
        channels: HashSet::new(),
        people: HashMap::new(),
        voice: HashMap::new(),
        speaking: HashSet::new(),
    };
    out.clear();
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

/// What the seed's frames show of a person.
#[derive(Clone)]
struct Person {
    username: String,
    display: Option<String>,
    avatar: Option<String>,
    status: &'static str,
}

/// One socket's state.
struct Conn {
    core: Arc<Core>,
    caller: Caller,
    /// The canonical gateway session this socket is (a voice state without media set
    /// through it ends with it).
    gateway_session: String,
    /// Channels joined (`join_channel`): chat frames come only for these.
    channels: HashSet<Snowflake>,
    /// Names, avatars and presence of the people shown, read once per socket.
    people: HashMap<Snowflake, Person>,
    /// Where each voice participant seen is, and since when (as this socket saw it).
    voice: HashMap<Snowflake, (Snowflake, Timestamp)>,
    /// Voice participants speaking now.
    speaking: HashSet<Snowflake>,
}

fn flag(data: &Value, names: &[&str]) -> bool {
    names.iter().any(|n| data[*n].as_bool() == Some(true))
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
            "voice_state" => {
                let channel = id_in(&data["channelId"]);
                if channel.is_none() && !data["channelId"].is_null() {
                    return Some(error_frame(&self.core, "channelId must be an id or null"));
                }
                let muted = flag(data, &["muted", "isMuted", "selfMute"]);
                let deafened = flag(data, &["deafened", "isDeafened", "selfDeaf"]);
                match self
                    .core
                    .set_voice_presence(
                        &self.caller,
                        &self.gateway_session,
                        channel,
                        muted,
                        deafened,
                    )
                    .await
                {
                    Ok(()) => None,
                    Err(_) => Some(error_frame(
                        &self.core,
                        "You cannot join this voice channel",
                    )),
                }
            }
            // Speaking is detected by the SFU from the audio level of what is sent, and
            // announced to everyone as `speaking_state`; a client's own claim adds nothing.
            "speaking_state" => None,
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

    async fn person(&mut self, id: Snowflake) -> Person {
        if let Some(p) = self.people.get(&id) {
            return p.clone();
        }
        let p = match self.core.directory_entry(id).await {
            Ok(e) => Person {
                username: e.user.username,
                display: e.user.display_name,
                avatar: e.user.avatar,
                status: hype::upper_status(e.status),
            },
            Err(_) => Person {
                username: String::new(),
                display: None,
                avatar: None,
                status: "OFFLINE",
            },
        };
        self.people.insert(id, p.clone());
        p
    }

    /// Who is in voice in the user's servers as the socket opens (its session's CONNECTED
    /// lists them), so that their leaving is told too (its event names no channel).
    fn remember_voice(&mut self, connected: &Value) {
        let now = self.core.clock.now();
        let servers = connected["servers"].as_array().into_iter().flatten();
        for state in servers
            .filter_map(|s| s["voiceStates"].as_array())
            .flatten()
        {
            if let (Some(user), Some(channel)) =
                (id_in(&state["userId"]), id_in(&state["channelId"]))
            {
                self.voice.insert(user, (channel, now));
            }
        }
    }

    /// `voice_state {type, channelId, userId, participants, muted, deafened}` for a change of
    /// `state`'s user; the participants are the channel's now.
    async fn voice_frame(&mut self, state: VoiceState) -> Option<WsMessage> {
        let user = state.user_id;
        let before = self.voice.get(&user).map(|(c, _)| *c);
        let (kind, channel) = match (state.channel_id, before) {
            (Some(now), Some(was)) if now == was => ("user_updated", now),
            (Some(now), _) => {
                self.voice.insert(user, (now, self.core.clock.now()));
                ("user_joined", now)
            }
            (None, Some(was)) => {
                self.voice.remove(&user);
                self.speaking.remove(&user);
                ("user_left", was)
            }
            (None, None) => return None,
        };
        // A move is a leave of the old channel, then this join.
        let states = self
            .core
            .channel_voice_states(&self.caller, channel)
            .await
            .unwrap_or_default();
        let mut participants = Vec::with_capacity(states.len());
        for s in states {
            let p = self.person(s.user_id).await;
            let since = match self.voice.get(&s.user_id) {
                Some((c, at)) if *c == channel => *at,
                _ => {
                    let now = self.core.clock.now();
                    self.voice.insert(s.user_id, (channel, now));
                    now
                }
            };
            participants.push(json!({
                "userId": s.user_id,
                "username": p.username,
                "displayName": p.display,
                "avatarUrl": p.avatar,
                "channelId": channel,
                "muted": s.self_mute || s.mute,
                "deafened": s.self_deaf || s.deaf,
                "speaking": self.speaking.contains(&s.user_id),
                "joinedAt": since,
            }));
        }
        let muted = state.self_mute || state.mute;
        let deafened = state.self_deaf || state.deaf;
        Some(frame(
            &self.core,
            "voice_state",
            json!({
                "type": kind,
                "channelId": channel,
                "userId": user,
                "participants": participants,
                "muted": muted,
                "deafened": deafened,
                "isMuted": muted,
                "isDeafened": deafened,
            }),
        ))
    }

    /// A gateway event as the seed's frame, for joined channels only.
    async fn relay(&mut self, name: &str, data: Value) -> Option<WsMessage> {
        match name {
            "MESSAGE_CREATE" | "MESSAGE_UPDATE" => {
                let m: Message = serde_json::from_value(data).ok()?;
                if !self.channels.contains(&m.channel_id) {
                    return None;
                }
                let p = self.person(m.author.id).await;
                let kind = if name == "MESSAGE_CREATE" {
                    "new_message"
                } else {
                    "message_edited"
                };
                Some(frame(
                    &self.core,
                    kind,
                    hype::message(&m, p.display.as_deref(), p.status),
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
            "CONNECTED" => {
                self.remember_voice(&data);
                None
            }
            "VOICE_STATE_UPDATE" => {
                let state: VoiceState = serde_json::from_value(data).ok()?;
                self.voice_frame(state).await
            }
            "VOICE_SPEAKING" => {
                let s: VoiceSpeaking = serde_json::from_value(data).ok()?;
                if s.speaking {
                    self.speaking.insert(s.user_id);
                } else {
                    self.speaking.remove(&s.user_id);
                }
                Some(frame(
                    &self.core,
                    "speaking_state",
                    json!({"channelId": s.channel_id, "userId": s.user_id,
                        "speaking": s.speaking, "isSpeaking": s.speaking}),
                ))
            }
            "VOICE_TRACK" => {
                let t: VoiceTrack = serde_json::from_value(data).ok()?;
                let kind = if t.state == "added" {
                    "new_producer"
                } else {
                    "producer_closed"
                };
                Some(frame(
                    &self.core,
                    kind,
                    json!({
                        "producerId": hype::producer_id(t.user_id, &t.kind),
                        "userId": t.user_id,
                        "kind": t.kind,
                        "channelId": t.channel_id,
                    }),
                ))
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
