//! Scheduled messages (SPEC §6).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Snowflake, Timestamp};

/// A message to be posted later by its author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledMessage {
    /// Id.
    pub id: Snowflake,
    /// Where it will be posted.
    pub channel_id: Snowflake,
    /// Its author (the caller).
    pub author_id: Snowflake,
    /// Text.
    pub content: String,
    /// When it is posted (RFC 3339).
    pub send_at: Timestamp,
    /// `scheduled`, `sent`, `failed` or `cancelled`.
    pub status: String,
    /// The posted message, once sent.
    #[schema(required = true)]
    pub message_id: Option<Snowflake>,
    /// Why it could not be posted.
    #[schema(required = true)]
    pub failure_reason: Option<String>,
    /// The message it will reply to.
    #[schema(required = true)]
    pub reply_to: Option<Snowflake>,
    /// Uploads it will carry.
    pub attachment_ids: Vec<Snowflake>,
    /// When it was scheduled.
    pub created_at: Timestamp,
}

/// `POST /channels/{id}/scheduled-messages`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateScheduledRequest {
    /// 1–2000 characters (may be empty with attachments).
    pub content: Option<String>,
    /// RFC 3339, in the future, at most 120 days ahead.
    pub send_at: Option<String>,
    /// A live message of the same channel.
    pub reply_to: Option<Snowflake>,
    /// Uploads from `POST /channels/{id}/attachments` (at most 10).
    #[schema(max_items = 10)]
    pub attachment_ids: Option<Vec<Snowflake>>,
}

/// `PATCH /channels/{id}/scheduled-messages/{scheduledId}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditScheduledRequest {
    /// New text, 1–2000 characters.
    pub content: Option<String>,
    /// New time: RFC 3339, in the future, at most 120 days ahead.
    pub send_at: Option<String>,
}

/// A list of scheduled messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledMessageList {
    /// The caller's, soonest first (a channel's) or newest first (`@me`).
    pub scheduled_messages: Vec<ScheduledMessage>,
}

/// `GET /users/@me/scheduled-messages?status=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduledQuery {
    /// Only `scheduled`, `sent`, `failed` or `cancelled`.
    pub status: Option<String>,
}
