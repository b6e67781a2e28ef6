//! Domain events: one tagged enum, each variant with its typed payload (SPEC §4 lists them).
//!
//! A use-case publishes an [`Event`] after its transaction commits; every consumer (the
//! gateway's routing index, the core's caches and per-node follower, the revocation list)
//! matches on variants, so a payload whose shape changes is a compile error for each of
//! them. On the wire, in the event log and over Redis an event is its name and its payload
//! as JSON text, serialized once by the publisher ([`Event::payload_json`]) and read back
//! with [`Event::decode`].

use serde::{Deserialize, Serialize};

use crate::gateway::{VoiceSdp, VoiceSpeaking, VoiceState, VoiceTrack};
use crate::rest::channels::Channel;
use crate::rest::messages::Message;
use crate::rest::scheduled::ScheduledMessage;
use crate::rest::servers::{Member, Role, Server};
use crate::rest::users::{Presence, RelationshipKind, SelfUser};
use crate::{Snowflake, Timestamp};

/// MESSAGE_DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted {
    /// The message.
    pub id: Snowflake,
    /// Its channel.
    pub channel_id: Snowflake,
    /// The channel's server (`null` in private channels).
    pub server_id: Option<Snowflake>,
}

/// MESSAGE_REACTION_ADD and MESSAGE_REACTION_REMOVE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionChanged {
    /// The channel.
    pub channel_id: Snowflake,
    /// The message.
    pub message_id: Snowflake,
    /// Who reacted or took the reaction back.
    pub user_id: Snowflake,
    /// The emoji.
    pub emoji: String,
    /// The channel's server (`null` in private channels).
    pub server_id: Option<Snowflake>,
}

/// MESSAGE_ACK, to the reader's own sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAcked {
    /// The channel.
    pub channel_id: Snowflake,
    /// The last message read.
    pub message_id: Snowflake,
    /// The reader.
    pub user_id: Snowflake,
    /// When.
    pub read_at: Timestamp,
}

/// CHANNEL_PINS_UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinsChanged {
    /// The channel.
    pub channel_id: Snowflake,
    /// The channel's server (`null` in private channels).
    pub server_id: Option<Snowflake>,
    /// When the pins last changed.
    pub last_pin_timestamp: Timestamp,
}

/// TYPING_START and TYPING_STOP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    /// Where.
    pub channel_id: Snowflake,
    /// Who.
    pub user_id: Snowflake,
    /// The channel's server (`null` in private channels).
    pub server_id: Option<Snowflake>,
    /// When it started or stopped.
    pub timestamp: Timestamp,
}

/// SERVER_MEMBER_ADD and SERVER_MEMBER_UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberChanged {
    /// The server.
    pub server_id: Snowflake,
    /// The member as it is now.
    pub member: Member,
}

/// SERVER_MEMBER_REMOVE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    /// The server.
    pub server_id: Snowflake,
    /// Who left, was kicked or banned.
    pub user_id: Snowflake,
}

/// SERVER_DELETE: to every member when a server is deleted, to one user when they leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDeleted {
    /// The server.
    pub id: Snowflake,
}

/// ROLE_CREATE and ROLE_UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleChanged {
    /// The server.
    pub server_id: Snowflake,
    /// The role as it is now.
    pub role: Role,
}

/// ROLE_DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDeleted {
    /// The server.
    pub server_id: Snowflake,
    /// The role that is gone.
    pub role_id: Snowflake,
}

/// RELATIONSHIP_UPDATE, to one side of a relationship.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelationshipChanged {
    /// The other user.
    pub user_id: Snowflake,
    /// What they are to the receiver now (`null`: nothing any more).
    #[serde(rename = "type")]
    pub kind: Option<RelationshipKind>,
}

/// An access-token revocation every node applies (never sent to clients): the revoked key
/// (`sid:<auth session>` or a token id) and until when it would have been valid, in ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked(pub String, pub i64);

/// A voice session moved by a moderator (`VOICE_MOVED`, between nodes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceMoved {
    /// The voice session.
    pub session_id: String,
    /// The channel it moved from.
    pub from: Snowflake,
    /// The channel it moved to.
    pub to: Snowflake,
    /// The target channel's bitrate in kbps.
    pub bitrate: u32,
}

/// Why an event could not be read back from its name and payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No event has this name (a newer node's, or a corrupt record).
    #[error("unknown event {0:?}")]
    UnknownName(String),
    /// The payload does not have the event's shape.
    #[error("malformed {name} payload: {source}")]
    Payload {
        /// The event.
        name: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident($payload:ty) = $name:literal, $op:expr; )*) => {
        /// Something that happened, with what it concerns.
        #[derive(Debug, Clone)]
        pub enum Event {
            $( $(#[$doc])* $variant($payload), )*
        }

        impl Event {
            /// The dispatch name (`t` on the wire), e.g. `MESSAGE_CREATE`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Event::$variant(_) => $name, )*
                }
            }

            /// The op code clients receive it with, or `None` for an event between nodes only.
            pub fn op(&self) -> Option<u8> {
                match self {
                    $( Event::$variant(_) => $op, )*
                }
            }

            /// The payload as JSON text (the `d` of a dispatch).
            pub fn payload_json(&self) -> serde_json::Result<String> {
                match self {
                    $( Event::$variant(p) => serde_json::to_string(p), )*
                }
            }

            /// The event named `name` with the payload `data` (as [`Event::payload_json`]
            /// wrote it).
            pub fn decode(name: &str, data: &str) -> Result<Self, DecodeError> {
                match name {
                    $( $name => serde_json::from_str::<$payload>(data)
                        .map(Event::$variant)
                        .map_err(|source| DecodeError::Payload { name: $name, source }), )*
                    other => Err(DecodeError::UnknownName(other.to_owned())),
                }
            }

            /// The static form of a known event name.
            pub fn known_name(name: &str) -> Option<&'static str> {
                match name {
                    $( $name => Some($name), )*
                    _ => None,
                }
            }

            /// Every event name with its op code.
            pub const ALL: &'static [(&'static str, Option<u8>)] = &[ $( ($name, $op), )* ];
        }
    };
}

events! {
    /// A message was posted.
    MessageCreate(Message) = "MESSAGE_CREATE", Some(11);
    /// A message was edited (or its embeds changed).
    MessageUpdate(Message) = "MESSAGE_UPDATE", Some(12);
    /// A message was deleted.
    MessageDelete(MessageDeleted) = "MESSAGE_DELETE", Some(13);
    /// A reaction was added.
    MessageReactionAdd(ReactionChanged) = "MESSAGE_REACTION_ADD", Some(14);
    /// A reaction was removed.
    MessageReactionRemove(ReactionChanged) = "MESSAGE_REACTION_REMOVE", Some(15);
    /// The reader marked a channel read (their own sessions).
    MessageAck(MessageAcked) = "MESSAGE_ACK", Some(16);
    /// One of the receiver's scheduled messages changed (scheduled, edited, sent, failed,
    /// cancelled); the author's sessions only.
    ScheduledMessageUpdate(ScheduledMessage) = "SCHEDULED_MESSAGE_UPDATE", Some(17);
    /// A channel was created (a private one: on its recipients' user topics).
    ChannelCreate(Channel) = "CHANNEL_CREATE", Some(20);
    /// A channel changed (name, position, overwrites, recipients…).
    ChannelUpdate(Channel) = "CHANNEL_UPDATE", Some(21);
    /// A channel was deleted.
    ChannelDelete(Channel) = "CHANNEL_DELETE", Some(22);
    /// A channel's pins changed.
    ChannelPinsUpdate(PinsChanged) = "CHANNEL_PINS_UPDATE", Some(23);
    /// Someone joined a server.
    ServerMemberAdd(MemberChanged) = "SERVER_MEMBER_ADD", Some(30);
    /// Someone left, was kicked or banned.
    ServerMemberRemove(MemberRemoved) = "SERVER_MEMBER_REMOVE", Some(31);
    /// A member's nickname or roles changed.
    ServerMemberUpdate(MemberChanged) = "SERVER_MEMBER_UPDATE", Some(32);
    /// The receiver is in a new server (created or joined), as they see it.
    ServerCreate(Server) = "SERVER_CREATE", Some(33);
    /// A server's settings (or owner) changed.
    ServerUpdate(Server) = "SERVER_UPDATE", Some(34);
    /// A server was deleted, or the receiver left it.
    ServerDelete(ServerDeleted) = "SERVER_DELETE", Some(35);
    /// A role was created.
    RoleCreate(RoleChanged) = "ROLE_CREATE", Some(36);
    /// A role changed.
    RoleUpdate(RoleChanged) = "ROLE_UPDATE", Some(37);
    /// A role was deleted.
    RoleDelete(RoleDeleted) = "ROLE_DELETE", Some(38);
    /// Someone's status as others see it changed.
    PresenceUpdate(Presence) = "PRESENCE_UPDATE", Some(40);
    /// The receiver's own account changed.
    UserUpdate(SelfUser) = "USER_UPDATE", Some(41);
    /// A relationship of the receiver changed.
    RelationshipUpdate(RelationshipChanged) = "RELATIONSHIP_UPDATE", Some(42);
    /// Someone started typing.
    TypingStart(Typing) = "TYPING_START", Some(50);
    /// Someone stopped typing (posted, or 10 s passed).
    TypingStop(Typing) = "TYPING_STOP", Some(51);
    /// Someone joined, moved within, changed or left voice.
    VoiceStateUpdate(VoiceState) = "VOICE_STATE_UPDATE", Some(60);
    /// Someone in a voice channel started or stopped speaking.
    VoiceSpeaking(VoiceSpeaking) = "VOICE_SPEAKING", Some(61);
    /// A participant's track started or stopped being forwarded.
    VoiceTrack(VoiceTrack) = "VOICE_TRACK", Some(62);
    /// A server offer for one voice session (the user's own sessions only).
    VoiceSdp(VoiceSdp) = "VOICE_SDP", Some(63);
    /// Access tokens were revoked (between nodes only).
    TokenRevoked(TokenRevoked) = "TOKEN_REVOKED", None;
    /// A moderator moved a voice session to another channel (between nodes only): the
    /// node holding its media moves it before the states that announce the move arrive.
    VoiceMoved(VoiceMoved) = "VOICE_MOVED", None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dispatched_event_has_the_op_the_protocol_gives_its_name() {
        for (name, op) in Event::ALL {
            assert_eq!(*op, crate::gateway::dispatch_op(name), "{name}");
        }
    }

    #[test]
    fn a_payload_reads_back_as_the_same_event() {
        let ev = Event::RoleDelete(RoleDeleted {
            server_id: Snowflake::from_i64(5),
            role_id: Snowflake::from_i64(6),
        });
        let data = ev.payload_json().expect("serializes");
        assert_eq!(data, r#"{"serverId":"5","roleId":"6"}"#);
        match Event::decode(ev.name(), &data) {
            Ok(Event::RoleDelete(r)) => assert_eq!(r.role_id, Snowflake::from_i64(6)),
            other => panic!("read back as {other:?}"),
        }
    }

    #[test]
    fn unknown_names_and_wrong_shapes_are_refused() {
        assert!(matches!(
            Event::decode("NOT_AN_EVENT", "{}"),
            Err(DecodeError::UnknownName(_))
        ));
        assert!(matches!(
            Event::decode("ROLE_DELETE", r#"{"serverId":"5"}"#),
            Err(DecodeError::Payload {
                name: "ROLE_DELETE",
                ..
            })
        ));
        assert_eq!(Event::known_name("TYPING_STOP"), Some("TYPING_STOP"));
        assert_eq!(Event::known_name("CONNECTED"), None);
    }
}
