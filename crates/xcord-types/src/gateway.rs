//! The WebSocket gateway protocol (SPEC §4, seed 004): op codes, close codes, event names and
//! the payloads clients send.
//!
//! Every frame is JSON text `{"op", "d", "s"?, "t"?}`. Dispatches (server → client events)
//! use the event's own op code, carry `t` (the event name) and `s` (the session's sequence).
//!
//! Client frames decode into a [`ClientCommand`] ([`ClientCommand::from_json`] reads the
//! canonical JSON); the server's frames other than dispatches are a [`ServerFrame`], whose
//! `Serialize` is the canonical JSON. Other encodings of the same protocol map their own
//! frames onto these types.

use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize};

use crate::Snowflake;
use crate::rest::channels::Channel;
use crate::rest::messages::ReadState;
use crate::rest::servers::Server;
use crate::rest::users::{Presence, SelfUser, Status};

/// Op codes.
pub mod op {
    /// Server → client, first frame: `{heartbeatInterval}`.
    pub const HELLO: u8 = 0;
    /// Client → server: `{seq}`.
    pub const HEARTBEAT: u8 = 1;
    /// Server → client: `{}`.
    pub const HEARTBEAT_ACK: u8 = 2;
    /// Client → server: `{token, properties?, presence?}`.
    pub const IDENTIFY: u8 = 3;
    /// Client → server: `{status, customStatus?}`.
    pub const PRESENCE_SET: u8 = 4;
    /// Client → server: `{channelId}`.
    pub const TYPING: u8 = 5;
    /// Client → server: `{token, sessionId, seq}`.
    pub const RESUME: u8 = 6;
    /// Server → client: reconnect (shutdown, rebalancing).
    pub const RECONNECT: u8 = 7;
    /// Client → server: `{serverId, channelId | null, selfMute, selfDeaf}`.
    pub const VOICE_STATE_SET: u8 = 8;
    /// Server → client: `{resumable}`.
    pub const INVALID_SESSION: u8 = 9;
    /// Dispatch `CONNECTED` (and `RESUMED`).
    pub const CONNECTED: u8 = 10;
}

/// Close codes the server uses.
pub mod close {
    /// An op code the server does not know (or one a client may not send).
    pub const UNKNOWN_OPCODE: u16 = 4001;
    /// A frame that is not JSON of the protocol's shape.
    pub const DECODE_ERROR: u16 = 4002;
    /// A client op before IDENTIFY.
    pub const NOT_AUTHENTICATED: u16 = 4003;
    /// A token that is invalid, expired or revoked.
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    /// A second IDENTIFY or RESUME on an identified connection.
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    /// Too many frames.
    pub const RATE_LIMITED: u16 = 4008;
    /// Two heartbeat intervals passed without a heartbeat.
    pub const SESSION_TIMED_OUT: u16 = 4009;
    /// The client read too slowly and its send queue overflowed; it may resume.
    pub const SLOW_CONSUMER: u16 = 4010;
    /// The node is shutting down (after op 7 RECONNECT); standard "service restart".
    pub const SERVICE_RESTART: u16 = 1012;
}

/// The op code of a dispatch named `name`, or `None` for names that are not client events.
pub fn dispatch_op(name: &str) -> Option<u8> {
    Some(match name {
        "CONNECTED" | "RESUMED" => 10,
        "MESSAGE_CREATE" => 11,
        "MESSAGE_UPDATE" => 12,
        "MESSAGE_DELETE" => 13,
        "MESSAGE_REACTION_ADD" => 14,
        "MESSAGE_REACTION_REMOVE" => 15,
        "MESSAGE_ACK" => 16,
        "SCHEDULED_MESSAGE_UPDATE" => 17,
        "CHANNEL_CREATE" => 20,
        "CHANNEL_UPDATE" => 21,
        "CHANNEL_DELETE" => 22,
        "CHANNEL_PINS_UPDATE" => 23,
        "SERVER_MEMBER_ADD" => 30,
        "SERVER_MEMBER_REMOVE" => 31,
        "SERVER_MEMBER_UPDATE" => 32,
        "SERVER_CREATE" => 33,
        "SERVER_UPDATE" => 34,
        "SERVER_DELETE" => 35,
        "ROLE_CREATE" => 36,
        "ROLE_UPDATE" => 37,
        "ROLE_DELETE" => 38,
        "PRESENCE_UPDATE" => 40,
        "USER_UPDATE" => 41,
        "RELATIONSHIP_UPDATE" => 42,
        "TYPING_START" => 50,
        "TYPING_STOP" => 51,
        "VOICE_STATE_UPDATE" => 60,
        "VOICE_SPEAKING" => 61,
        "VOICE_TRACK" => 62,
        "VOICE_SDP" => 63,
        _ => return None,
    })
}

/// A frame from a client, before its payload is decoded by op.
#[derive(Debug, Deserialize)]
pub struct ClientFrame {
    /// The op code.
    pub op: i64,
    /// The payload.
    #[serde(default)]
    pub d: serde_json::Value,
}

/// Op 1.
#[derive(Debug, Default, Deserialize)]
pub struct Heartbeat {
    /// The last sequence the client saw.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// The presence a client asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSet {
    /// online, idle, dnd or invisible.
    pub status: Status,
    /// Status text (`null` clears it; absent keeps it).
    #[serde(default, deserialize_with = "crate::rest::double_option")]
    pub custom_status: Option<Option<String>>,
}

/// Op 3.
#[derive(Debug, Deserialize)]
pub struct Identify {
    /// An access token.
    pub token: String,
    /// Client properties (os, browser, device); informational.
    #[serde(default)]
    pub properties: Option<serde_json::Value>,
    /// The presence to start with.
    #[serde(default)]
    pub presence: Option<PresenceSet>,
}

/// Op 5.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    /// Where the user types.
    pub channel_id: Snowflake,
}

/// Op 6.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// An access token of the session's user.
    pub token: String,
    /// The session to resume.
    pub session_id: String,
    /// The last sequence the client received.
    pub seq: u64,
}

/// Op 8.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceStateSet {
    /// The server of the voice channel.
    pub server_id: Snowflake,
    /// The voice channel to be in, or `null` to leave.
    pub channel_id: Option<Snowflake>,
    /// Muted by themselves.
    #[serde(default)]
    pub self_mute: bool,
    /// Deafened by themselves.
    #[serde(default)]
    pub self_deaf: bool,
}

/// The ops a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOp {
    /// Op 1.
    Heartbeat,
    /// Op 3.
    Identify,
    /// Op 4.
    PresenceSet,
    /// Op 5.
    Typing,
    /// Op 6.
    Resume,
    /// Op 8.
    VoiceStateSet,
}

impl ClientOp {
    /// The op for a code a client sent; `None` for codes clients do not send.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match u8::try_from(code).ok()? {
            op::HEARTBEAT => Self::Heartbeat,
            op::IDENTIFY => Self::Identify,
            op::PRESENCE_SET => Self::PresenceSet,
            op::TYPING => Self::Typing,
            op::RESUME => Self::Resume,
            op::VOICE_STATE_SET => Self::VoiceStateSet,
            _ => return None,
        })
    }

    /// The op code.
    pub fn code(self) -> u8 {
        match self {
            Self::Heartbeat => op::HEARTBEAT,
            Self::Identify => op::IDENTIFY,
            Self::PresenceSet => op::PRESENCE_SET,
            Self::Typing => op::TYPING,
            Self::Resume => op::RESUME,
            Self::VoiceStateSet => op::VOICE_STATE_SET,
        }
    }
}

/// A client frame, decoded by its op.
#[derive(Debug)]
pub enum ClientCommand {
    /// Op 1.
    Heartbeat(Heartbeat),
    /// Op 3.
    Identify(Identify),
    /// Op 4.
    PresenceSet(PresenceSet),
    /// Op 5.
    Typing(Typing),
    /// Op 6.
    Resume(Resume),
    /// Op 8.
    VoiceStateSet(VoiceStateSet),
}

/// Why a client frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a frame of the protocol at all; the reason goes into the close frame (4002).
    Malformed(&'static str),
    /// An op code clients do not send (4001).
    UnknownOp,
    /// A known op whose payload does not decode. The op is kept: whether the client may
    /// send it at all (4003, 4005) is decided before the payload counts (4002).
    InvalidPayload(ClientOp),
}

impl ClientCommand {
    /// The command's op.
    pub fn op(&self) -> ClientOp {
        match self {
            Self::Heartbeat(_) => ClientOp::Heartbeat,
            Self::Identify(_) => ClientOp::Identify,
            Self::PresenceSet(_) => ClientOp::PresenceSet,
            Self::Typing(_) => ClientOp::Typing,
            Self::Resume(_) => ClientOp::Resume,
            Self::VoiceStateSet(_) => ClientOp::VoiceStateSet,
        }
    }

    /// Decodes a canonical JSON frame `{"op", "d"}`.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        // Text with NUL can be stored by neither backend; REST refuses it with 422.
        if crate::error::has_nul_escape(text.as_bytes()) {
            return Err(DecodeError::Malformed("text may not contain NUL"));
        }
        let frame: ClientFrame = serde_json::from_str(text)
            .map_err(|_| DecodeError::Malformed("not a gateway frame"))?;
        let op = ClientOp::from_code(frame.op).ok_or(DecodeError::UnknownOp)?;
        Self::from_payload(op, frame.d).map_err(|()| DecodeError::InvalidPayload(op))
    }

    /// Decodes the payload `d` of a frame of `op`.
    fn from_payload(op: ClientOp, d: serde_json::Value) -> Result<Self, ()> {
        fn decode<T: serde::de::DeserializeOwned>(d: serde_json::Value) -> Result<T, ()> {
            serde_json::from_value(d).map_err(|_| ())
        }
        Ok(match op {
            // `{seq}` as SPEC'd; Discord-style clients send the bare number or null.
            ClientOp::Heartbeat => Self::Heartbeat(match d {
                serde_json::Value::Null => Heartbeat { seq: None },
                serde_json::Value::Object(_) => decode(d)?,
                d => Heartbeat {
                    seq: Some(d.as_u64().ok_or(())?),
                },
            }),
            ClientOp::Identify => Self::Identify(decode(d)?),
            ClientOp::PresenceSet => Self::PresenceSet(decode(d)?),
            ClientOp::Typing => Self::Typing(decode(d)?),
            ClientOp::Resume => Self::Resume(decode(d)?),
            ClientOp::VoiceStateSet => Self::VoiceStateSet(decode(d)?),
        })
    }
}

/// Op 0 HELLO's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// Milliseconds between heartbeats; two missed intervals close the connection (4009).
    pub heartbeat_interval: u64,
}

/// Op 9 INVALID_SESSION's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InvalidSession {
    /// Whether the client may RESUME (always `false` today: it identifies anew).
    pub resumable: bool,
}

/// A frame the server sends that is not a dispatch: `{"op", "d"}`. Dispatches are rendered
/// once per event for all their recipients (the gateway's `Dispatch`), never per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFrame {
    /// Op 0, the first frame.
    Hello(Hello),
    /// Op 2, `d: {}`.
    HeartbeatAck,
    /// Op 7, `d: null`: reconnect (the node is going away).
    Reconnect,
    /// Op 9.
    InvalidSession(InvalidSession),
}

impl ServerFrame {
    /// The frame's op code.
    pub fn op(&self) -> u8 {
        match self {
            Self::Hello(_) => op::HELLO,
            Self::HeartbeatAck => op::HEARTBEAT_ACK,
            Self::Reconnect => op::RECONNECT,
            Self::InvalidSession(_) => op::INVALID_SESSION,
        }
    }
}

impl Serialize for ServerFrame {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// Serializes as `{}`.
        #[derive(Serialize)]
        struct Empty {}
        let mut frame = serializer.serialize_struct("ServerFrame", 2)?;
        frame.serialize_field("op", &self.op())?;
        match self {
            Self::Hello(d) => frame.serialize_field("d", d)?,
            Self::HeartbeatAck => frame.serialize_field("d", &Empty {})?,
            Self::Reconnect => frame.serialize_field("d", &())?,
            Self::InvalidSession(d) => frame.serialize_field("d", d)?,
        }
        frame.end()
    }
}

/// Dispatch `CONNECTED` (op 10): what a new session starts from.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connected<'a> {
    /// The id to RESUME with.
    pub session_id: &'a str,
    /// The user.
    pub user: SelfUser,
    /// Their servers, each with the channels and roles they see.
    pub servers: Vec<ConnectedServer>,
    /// Their DM and group DM channels.
    pub dm_channels: &'a [Channel],
    /// Their read states.
    pub read_states: &'a [ReadState],
    /// Presences of online users they share something with.
    pub presences: &'a [Presence],
}

impl Connected<'_> {
    /// The dispatch's `t`.
    pub const NAME: &'static str = "CONNECTED";
}

/// A server in `CONNECTED`: the server object and who is in its voice channels.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedServer {
    /// The server as the user sees it (with `channels` and `roles`).
    #[serde(flatten)]
    pub server: Server,
    /// Voice states in the server.
    pub voice_states: Vec<VoiceState>,
}

/// Dispatch `RESUMED` (op 10), after the replayed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resumed<'a> {
    /// The session resumed.
    pub session_id: &'a str,
    /// How many events were replayed before this frame.
    pub replayed: usize,
}

impl Resumed<'_> {
    /// The dispatch's `t`.
    pub const NAME: &'static str = "RESUMED";
}

/// A user's voice state (`VOICE_STATE_UPDATE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceState {
    /// Server.
    pub server_id: Snowflake,
    /// Voice channel, `null` after leaving.
    pub channel_id: Option<Snowflake>,
    /// User.
    pub user_id: Snowflake,
    /// The gateway session holding the state.
    pub session_id: String,
    /// Muted by themselves.
    pub self_mute: bool,
    /// Deafened by themselves.
    pub self_deaf: bool,
    /// Sending their camera.
    #[serde(default)]
    pub self_video: bool,
    /// Sharing their screen.
    #[serde(default)]
    pub self_stream: bool,
    /// Muted by a moderator (MUTE_MEMBERS): their audio is not forwarded.
    #[serde(default)]
    pub mute: bool,
    /// Deafened by a moderator (DEAFEN_MEMBERS): nothing is forwarded to them.
    #[serde(default)]
    pub deaf: bool,
}

/// `VOICE_SPEAKING` (op 61): someone in a voice channel started or stopped speaking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceSpeaking {
    /// Server.
    pub server_id: Snowflake,
    /// Voice channel.
    pub channel_id: Snowflake,
    /// Who.
    pub user_id: Snowflake,
    /// Speaking now.
    pub speaking: bool,
}

/// `VOICE_TRACK` (op 62): a participant's track started or stopped being forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceTrack {
    /// Server.
    pub server_id: Snowflake,
    /// Voice channel.
    pub channel_id: Snowflake,
    /// Whose track.
    pub user_id: Snowflake,
    /// `audio`, `video` or `screen`.
    pub kind: String,
    /// `added` or `removed`.
    pub state: String,
}

/// `VOICE_SDP` (op 63): a server offer for the receiver's own voice session; answer it with
/// `POST /channels/{channelId}/voice/{sessionId}/answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceSdp {
    /// Voice channel.
    pub channel_id: Snowflake,
    /// The voice session.
    pub session_id: String,
    /// The SDP offer.
    pub sdp: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004_codes_are_fixed() {
        for (name, code) in [
            ("CONNECTED", 10),
            ("MESSAGE_CREATE", 11),
            ("MESSAGE_UPDATE", 12),
            ("MESSAGE_DELETE", 13),
            ("CHANNEL_CREATE", 20),
            ("CHANNEL_UPDATE", 21),
            ("CHANNEL_DELETE", 22),
            ("SERVER_MEMBER_ADD", 30),
            ("SERVER_MEMBER_REMOVE", 31),
            ("PRESENCE_UPDATE", 40),
            ("TYPING_START", 50),
        ] {
            assert_eq!(dispatch_op(name), Some(code), "{name}");
        }
        assert_eq!(dispatch_op("SOMETHING_INTERNAL"), None);
    }

    #[test]
    fn server_frames_are_the_canonical_json() {
        let text = |f: ServerFrame| serde_json::to_string(&f).expect("serializable");
        assert_eq!(
            text(ServerFrame::Hello(Hello {
                heartbeat_interval: 41_250
            })),
            r#"{"op":0,"d":{"heartbeatInterval":41250}}"#
        );
        assert_eq!(text(ServerFrame::HeartbeatAck), r#"{"op":2,"d":{}}"#);
        assert_eq!(text(ServerFrame::Reconnect), r#"{"op":7,"d":null}"#);
        assert_eq!(
            text(ServerFrame::InvalidSession(InvalidSession {
                resumable: false
            })),
            r#"{"op":9,"d":{"resumable":false}}"#
        );
        let resumed = Resumed {
            session_id: "ab",
            replayed: 3,
        };
        assert_eq!(
            serde_json::to_string(&resumed).expect("serializable"),
            r#"{"sessionId":"ab","replayed":3}"#
        );
    }

    #[test]
    fn client_frames_decode_by_op_and_keep_the_op_of_a_bad_payload() {
        let seq = |text: &str| match ClientCommand::from_json(text) {
            Ok(ClientCommand::Heartbeat(h)) => Ok(h.seq),
            Ok(other) => panic!("not a heartbeat: {other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(seq(r#"{"op":1,"d":{"seq":4}}"#), Ok(Some(4)));
        assert_eq!(seq(r#"{"op":1,"d":7}"#), Ok(Some(7)));
        assert_eq!(seq(r#"{"op":1,"d":null}"#), Ok(None));
        assert_eq!(seq(r#"{"op":1}"#), Ok(None));
        assert_eq!(
            seq(r#"{"op":1,"d":"x"}"#),
            Err(DecodeError::InvalidPayload(ClientOp::Heartbeat))
        );
        assert!(matches!(
            ClientCommand::from_json(r#"{"op":3,"d":{"token":"t"}}"#),
            Ok(ClientCommand::Identify(Identify { ref token, .. })) if token == "t"
        ));
        assert_eq!(
            ClientCommand::from_json(r#"{"op":3,"d":{}}"#).err(),
            Some(DecodeError::InvalidPayload(ClientOp::Identify))
        );
        for server_only in [0, 2, 7, 9, 10, 99, -1, 300] {
            assert_eq!(
                ClientCommand::from_json(&format!(r#"{{"op":{server_only},"d":null}}"#)).err(),
                Some(DecodeError::UnknownOp),
                "{server_only}"
            );
        }
        assert_eq!(
            ClientCommand::from_json("nope").err(),
            Some(DecodeError::Malformed("not a gateway frame"))
        );
        assert_eq!(
            ClientCommand::from_json(r#"{"op":5,"d":{"channelId":"1\u0000"}}"#).err(),
            Some(DecodeError::Malformed("text may not contain NUL"))
        );
    }

    #[test]
    fn custom_status_absent_null_and_set_differ() {
        let p: PresenceSet = serde_json::from_str(r#"{"status":"idle"}"#).expect("absent");
        assert_eq!(p.custom_status, None);
        let p: PresenceSet =
            serde_json::from_str(r#"{"status":"dnd","customStatus":null}"#).expect("null");
        assert_eq!(p.custom_status, Some(None));
        let p: PresenceSet =
            serde_json::from_str(r#"{"status":"online","customStatus":"hi"}"#).expect("set");
        assert_eq!(p.custom_status, Some(Some("hi".into())));
        assert!(serde_json::from_str::<PresenceSet>(r#"{"status":"sleepy"}"#).is_err());
    }
}
