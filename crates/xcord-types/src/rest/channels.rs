//! Channel bodies (DM channels now; server channels extend the same object).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::users::UserSummary;
use crate::{Snowflake, Timestamp};

/// A channel. Fields that do not apply to its type are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    /// Id.
    pub id: Snowflake,
    /// `text`, `voice`, `category`, `dm` or `group_dm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The server, for server channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<Snowflake>,
    /// Name (`null` for a 1:1 DM).
    pub name: Option<String>,
    /// Group DM owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Snowflake>,
    /// Everyone in a private channel, the caller included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<UserSummary>>,
    /// Newest message.
    pub last_message_id: Option<Snowflake>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// `POST /users/{id}/dm-channels`: `recipientId` for a 1:1 DM, or `recipients` (2–9 other
/// users) for a group DM.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateDmRequest {
    /// The other user of a 1:1 DM.
    pub recipient_id: Option<Snowflake>,
    /// The other members of a group DM.
    pub recipients: Option<Vec<Snowflake>>,
    /// Group DM name, ≤ 100 characters.
    pub name: Option<String>,
}

/// `{channels: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    /// The channels.
    pub channels: Vec<Channel>,
}
