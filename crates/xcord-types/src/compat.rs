//! Encodings of the compatibility profiles (SPEC §7) that more than one transport sends:
//! the REST routes and the real-time sockets of a profile show the same objects.

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
