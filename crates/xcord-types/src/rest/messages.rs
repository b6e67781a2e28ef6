//! Message bodies: messages, attachments, reactions, history and search queries, read states.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Snowflake, Timestamp};

/// The author of a message, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageAuthor {
    /// Id.
    pub id: Snowflake,
    /// Username.
    pub username: String,
    /// Avatar URL.
    #[schema(required = true)]
    pub avatar: Option<String>,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Id (give it in `attachmentIds` when posting).
    pub id: Snowflake,
    /// A signed link, valid for 24 hours, that needs no Authorization header.
    pub url: String,
    /// File name.
    pub filename: String,
    /// Bytes.
    pub size: i64,
    /// Type judged from the bytes.
    pub content_type: String,
    /// Image width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Image height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
}

/// One emoji's reactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    /// Emoji.
    pub emoji: String,
    /// How many reacted.
    pub count: i64,
    /// Whether the caller did.
    pub me: bool,
}

/// What a message mentions, after checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Mentions {
    /// Users (members of the server, or of the DM).
    #[serde(default)]
    pub users: Vec<Snowflake>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<Snowflake>,
    /// Channels.
    #[serde(default)]
    pub channels: Vec<Snowflake>,
    /// `@everyone` / `@here` took effect (needs MENTION_EVERYONE).
    #[serde(default)]
    pub everyone: bool,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Id (time-ordered).
    pub id: Snowflake,
    /// Channel.
    pub channel_id: Snowflake,
    /// Server, for server channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<Snowflake>,
    /// Author.
    pub author: MessageAuthor,
    /// Text, or the ciphertext of an encrypted message as sent.
    pub content: String,
    /// When it was posted.
    pub timestamp: Timestamp,
    /// Whether it was edited.
    pub edited: bool,
    /// Last edit.
    #[schema(required = true)]
    pub edited_at: Option<Timestamp>,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// Link previews: always empty, links are not unfurled yet.
    #[schema(value_type = Vec<Object>)]
    pub embeds: Vec<serde_json::Value>,
    /// Reactions.
    pub reactions: Vec<Reaction>,
    /// Mentions.
    pub mentions: Mentions,
    /// The message replied to.
    #[schema(required = true)]
    pub reply_to: Option<Snowflake>,
    /// Pinned.
    pub pinned: bool,
    /// The client's nonce, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// End-to-end encrypted: `content` is ciphertext.
    pub encrypted: bool,
    /// Per-recipient keys of an encrypted message, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_keys: Option<BTreeMap<String, String>>,
    /// Sent by the automatic-message job.
    pub is_automatic: bool,
    /// Optimistic-concurrency version.
    pub version: i64,
}

/// `{messages: [...]}` (history, pins, search).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// Newest first.
    pub messages: Vec<Message>,
}

/// `POST /channels/{id}/messages`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateMessageRequest {
    /// 1–2000 characters (may be empty with attachments; ciphertext up to 8192).
    pub content: Option<String>,
    /// Idempotency key: the same nonce from the same author here returns the first message.
    #[schema(min_length = 1, max_length = 64)]
    pub nonce: Option<String>,
    /// A live message of the same channel.
    pub reply_to: Option<Snowflake>,
    /// Uploads from `POST /channels/{id}/attachments` (at most 10).
    #[schema(max_items = 10)]
    pub attachment_ids: Option<Vec<Snowflake>>,
    /// End-to-end encrypted (DM channels only).
    pub encrypted: Option<bool>,
    /// `{userId: key}` for an encrypted message.
    pub encrypted_keys: Option<BTreeMap<String, String>>,
}

/// `PATCH /channels/{id}/messages/{messageId}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EditMessageRequest {
    /// New text, 1–2000 characters.
    #[schema(min_length = 1, max_length = 2000)]
    pub content: String,
}

/// `POST /channels/{id}/messages/bulk-delete`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkDeleteRequest {
    /// 2–100 message ids.
    #[schema(min_items = 2, max_items = 100)]
    pub message_ids: Vec<Snowflake>,
}

/// `GET /channels/{id}/messages` paging (at most one of before, after, around).
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Older than this id.
    pub before: Option<Snowflake>,
    /// Newer than this id.
    pub after: Option<Snowflake>,
    /// Centred on this id.
    pub around: Option<Snowflake>,
}

/// `GET …/reactions/{emoji}` paging.
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReactionUsersQuery {
    /// 1–100, default 25.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Users with a higher id than this.
    pub after: Option<Snowflake>,
}

/// Search filters.
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SearchParams {
    /// Words that must all appear.
    #[param(required = true, min_length = 1, max_length = 200)]
    pub q: Option<String>,
    /// Only this author.
    pub author_id: Option<Snowflake>,
    /// Only this channel (server search).
    pub channel_id: Option<Snowflake>,
    /// Older than this message id.
    pub before: Option<Snowflake>,
    /// Newer than this message id.
    pub after: Option<Snowflake>,
    /// 1–100, default 25.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A channel's read state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    /// Channel.
    pub channel_id: Snowflake,
    /// Last message read.
    pub last_read_message_id: Snowflake,
    /// Others' messages after it.
    pub unread_count: i64,
    /// Those mentioning the user.
    pub mention_count: i64,
}

/// `{readStates: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadStateList {
    /// Per channel.
    pub read_states: Vec<ReadState>,
}

/// A multipart upload (`POST /channels/{id}/attachments`, `/users/@me/avatar`, `/banner`):
/// the first part that carries a file name, or is named `file` (or, for profile images,
/// `avatar`, `banner` or `image`), is the file.
#[derive(Debug, Clone, ToSchema)]
pub struct FileUpload {
    /// The file's bytes.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}
