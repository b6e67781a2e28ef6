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
    #[schema(required = true)]
    pub name: Option<String>,
    /// Topic (server text channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Sort position within the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Parent category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Snowflake>,
    /// Age-restricted (server channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsfw: Option<bool>,
    /// Voice: most participants (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_limit: Option<i64>,
    /// Voice: bitrate in kbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<i64>,
    /// Slowmode: seconds between a member's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_user: Option<i64>,
    /// Overwrites (server channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_overwrites: Option<Vec<PermissionOverwrite>>,
    /// Group DM owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Snowflake>,
    /// Everyone in a private channel, the caller included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<UserSummary>>,
    /// Newest message.
    #[schema(required = true)]
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
    #[schema(max_length = 100)]
    pub name: Option<String>,
}

/// `{channels: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    /// The channels.
    pub channels: Vec<Channel>,
}

/// A channel's permission overwrite for a role or a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionOverwrite {
    /// Role id (the server id for `@everyone`) or user id.
    pub id: Snowflake,
    /// `role` or `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Granted bits.
    pub allow: u64,
    /// Taken bits.
    pub deny: u64,
}

/// Highest position a channel or role may take (SPEC §3: 0–100000).
pub const MAX_POSITION: i64 = 100_000;

/// `POST /servers/{id}/channels`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateChannelRequest {
    /// 1–100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `text` (default), `voice` or `category`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|voice|category)$")]
    pub kind: Option<String>,
    /// A category of the same server.
    pub parent_id: Option<Snowflake>,
    /// ≤ 1024 characters (text).
    #[schema(max_length = 1024)]
    pub topic: Option<String>,
    /// Age-restricted.
    pub nsfw: Option<bool>,
    /// Voice: 0–99 (0: no limit).
    #[schema(minimum = 0, maximum = 99)]
    pub user_limit: Option<i64>,
    /// Voice: 8–384 kbps (default 64).
    #[schema(minimum = 8, maximum = 384)]
    pub bitrate: Option<i64>,
    /// Position (default: after the last).
    #[schema(minimum = 0, maximum = 100_000)]
    pub position: Option<i64>,
    /// Slowmode seconds, 0–21600.
    #[schema(minimum = 0, maximum = 21_600)]
    pub rate_limit_per_user: Option<i64>,
    /// Overwrites the channel starts with, so a private channel is private from its
    /// first moment (needs MANAGE_ROLES; at most 100).
    pub permission_overwrites: Option<Vec<PermissionOverwrite>>,
}

/// `PATCH /channels/{id}`: only the given fields change; `null` clears a nullable one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateChannelRequest {
    /// Name.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Topic, or `null`.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>, max_length = 1024)]
    pub topic: Option<Option<String>>,
    /// Age-restricted.
    pub nsfw: Option<bool>,
    /// Position.
    #[schema(minimum = 0, maximum = 100_000)]
    pub position: Option<i64>,
    /// Category, or `null` for none.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<Snowflake>>,
    /// Voice limit, or `null`.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 99)]
    pub user_limit: Option<Option<i64>>,
    /// Voice bitrate.
    #[schema(minimum = 8, maximum = 384)]
    pub bitrate: Option<i64>,
    /// Slowmode seconds.
    #[schema(minimum = 0, maximum = 21_600)]
    pub rate_limit_per_user: Option<i64>,
}

/// `PUT /channels/{id}/permissions/{targetId}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutOverwriteRequest {
    /// `role` or `user` (`member` accepted; `type` accepted for `targetType`).
    #[serde(alias = "type")]
    #[schema(pattern = "^(role|user|member)$")]
    pub target_type: String,
    /// Granted bits.
    #[serde(default)]
    pub allow: u64,
    /// Taken bits.
    #[serde(default)]
    pub deny: u64,
}
