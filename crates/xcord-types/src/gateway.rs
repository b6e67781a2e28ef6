//! The WebSocket gateway protocol (SPEC §4, seed 004): op codes, close codes, event names and
//! the payloads clients send.
//!
//! Every frame is JSON text `{"op", "d", "s"?, "t"?}`. Dispatches (server → client events)
//! use the event's own op code, carry `t` (the event name) and `s` (the session's sequence).

use serde::{Deserialize, Serialize};

use crate::Snowflake;
use crate::rest::users::Status;

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
        "VOICE_PRODUCER" => 62,
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

/// A user's voice state (`VOICE_STATE_UPDATE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
