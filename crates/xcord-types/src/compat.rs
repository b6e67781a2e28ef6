//! Encodings of the compatibility profiles (SPEC §7) that more than one transport sends:
//! the REST routes and the real-time sockets of a profile show the same objects.

use serde_json::Value;

use crate::Snowflake;

/// An id as the seeds' clients send it, a string or a number; `None` for anything else
/// (another type, not a number, zero or less).
pub fn id_in(v: &Value) -> Option<Snowflake> {
    match v {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .filter(|id| *id > 0)
    .map(Snowflake::from_i64)
}

/// Seed 003's messaging system (`/compat/rtms`).
pub mod rtms {
    use serde_json::{Value, json};

    use crate::Snowflake;
    use crate::rest::messages::Message;

    /// A message as seed 003 shows it: `senderId`, `conversationId`, `messageType` (`text`
    /// or `auto`), and `isRead` (someone other than the sender has read up to it, from the
    /// conversation's read marks: (member, last message read)).
    pub fn message(m: &Message, read_marks: &[(Snowflake, Snowflake)]) -> Value {
        let read = read_marks
            .iter()
            .any(|(user, last)| *user != m.author.id && *last >= m.id);
        json!({
            "id": m.id,
            "conversationId": m.channel_id,
            "senderId": m.author.id,
            "sender": {"id": m.author.id, "username": m.author.username, "avatar": m.author.avatar},
            "content": m.content,
            "messageType": if m.is_automatic { "auto" } else { "text" },
            "isAutomatic": m.is_automatic,
            "isRead": read,
            "createdAt": m.timestamp,
            "updatedAt": m.edited_at.unwrap_or(m.timestamp),
        })
    }
}

/// Seed 002's Hype (`/compat/hype`).
pub mod hype {
    use serde_json::{Value, json};

    use crate::rest::messages::Message;
    use crate::rest::users::Status;

    /// A presence as the seed stores it (`ONLINE`…); invisible shows as `OFFLINE`.
    pub fn upper_status(s: Status) -> &'static str {
        match s {
            Status::Online => "ONLINE",
            Status::Idle => "IDLE",
            Status::Dnd => "DND",
            Status::Offline | Status::Invisible => "OFFLINE",
        }
    }

    /// A producer's id in the voice signaling: `USERID:KIND`. A participant sends at most one
    /// track of each kind (`audio`, `video`, `screen`), so this names it as long as it lives.
    pub fn producer_id(user: crate::Snowflake, kind: &str) -> String {
        format!("{user}:{kind}")
    }

    /// A message as the seed shows it, with its author's display name and presence (upper
    /// case: `ONLINE`, `IDLE`, `DND`, `OFFLINE`), which the message itself does not carry.
    pub fn message(m: &Message, display_name: Option<&str>, status: &str) -> Value {
        let author = m.author.id;
        json!({
            "id": m.id,
            "content": m.content,
            "edited": m.edited,
            "authorId": author,
            "channelId": m.channel_id,
            "author": {
                "id": author,
                "username": m.author.username,
                "displayName": display_name,
                "avatarUrl": m.author.avatar,
                "status": status,
            },
            "reactions": m.reactions.iter().map(|r| json!({
                "id": format!("{}:{}", m.id, r.emoji),
                "emoji": r.emoji,
                "count": r.count,
                "me": r.me,
            })).collect::<Vec<_>>(),
            "attachments": m.attachments.iter().map(|a| json!({
                "id": a.id,
                "filename": a.filename,
                "url": a.url,
                "size": a.size,
                "mimeType": a.content_type,
            })).collect::<Vec<_>>(),
            "replyToId": m.reply_to,
            "createdAt": m.timestamp,
            "updatedAt": m.edited_at.unwrap_or(m.timestamp),
        })
    }
}
