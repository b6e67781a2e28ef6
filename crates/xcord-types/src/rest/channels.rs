//! Channel bodies (DM channels now; server channels extend the same object).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::users::UserSummary;
use crate::{Snowflake, Timestamp};

/// What a channel is: its `type`.
// The wire and the stored spelling are the same. Every layer holds this enum, so a kind
// nobody handles is a compile error rather than a string that falls through to text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A server text channel.
    Text,
    /// A server voice channel.
    Voice,
    /// A server category that groups other channels.
    Category,
    /// A 1:1 direct-message channel.
    Dm,
    /// A group direct-message channel.
    GroupDm,
}

impl ChannelKind {
    /// Every kind, in declaration order.
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Text,
        ChannelKind::Voice,
        ChannelKind::Category,
        ChannelKind::Dm,
        ChannelKind::GroupDm,
    ];

    /// The wire (and stored) name: `text`, `voice`, `category`, `dm` or `group_dm`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Text => "text",
            ChannelKind::Voice => "voice",
            ChannelKind::Category => "category",
            ChannelKind::Dm => "dm",
            ChannelKind::GroupDm => "group_dm",
        }
    }

    /// The kind named `name` exactly (as [`ChannelKind::as_str`] spells it); `None` for
    /// anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether channels of this kind belong to a server (rather than to their recipients).
    pub const fn is_server_channel(self) -> bool {
        matches!(
            self,
            ChannelKind::Text | ChannelKind::Voice | ChannelKind::Category
        )
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds a server channel can be created as.
// Read from any string, so that another value reaches the use-case, which refuses it with
// the request's other failures in one 422 (`type`, rule `enum`), as it always did, rather
// than the extractor's generic type error for the field alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(from = "String", rename_all = "lowercase")]
pub enum NewChannelKind {
    /// A text channel (the default).
    Text,
    /// A voice channel.
    Voice,
    /// A category.
    Category,
    /// Any other value; never valid, so it is left out of the schema.
    #[serde(skip)]
    Unsupported,
}

impl NewChannelKind {
    /// The channel kind asked for, `None` for a value that is not one of the three.
    pub const fn kind(self) -> Option<ChannelKind> {
        match self {
            NewChannelKind::Text => Some(ChannelKind::Text),
            NewChannelKind::Voice => Some(ChannelKind::Voice),
            NewChannelKind::Category => Some(ChannelKind::Category),
            NewChannelKind::Unsupported => None,
        }
    }
}

impl From<String> for NewChannelKind {
    fn from(name: String) -> Self {
        match ChannelKind::parse(&name) {
            Some(ChannelKind::Text) => NewChannelKind::Text,
            Some(ChannelKind::Voice) => NewChannelKind::Voice,
            Some(ChannelKind::Category) => NewChannelKind::Category,
            Some(ChannelKind::Dm | ChannelKind::GroupDm) | None => NewChannelKind::Unsupported,
        }
    }
}

/// A channel. Fields that do not apply to its type are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    /// Id.
    pub id: Snowflake,
    /// `text`, `voice`, `category`, `dm` or `group_dm`.
    #[serde(rename = "type")]
    pub kind: ChannelKind,
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
    pub kind: Option<NewChannelKind>,
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

impl CreateChannelRequest {
    /// A channel named `name` of `kind` with `topic`, everything else by default.
    pub fn new(name: impl Into<String>, kind: NewChannelKind, topic: Option<String>) -> Self {
        CreateChannelRequest {
            name: name.into(),
            kind: Some(kind),
            parent_id: None,
            topic,
            nsfw: None,
            user_limit: None,
            bitrate: None,
            position: None,
            rate_limit_per_user: None,
            permission_overwrites: None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_wire_names() {
        for (kind, name) in [
            (ChannelKind::Text, "text"),
            (ChannelKind::Voice, "voice"),
            (ChannelKind::Category, "category"),
            (ChannelKind::Dm, "dm"),
            (ChannelKind::GroupDm, "group_dm"),
        ] {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(ChannelKind::parse(name), Some(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(name.into()));
            assert_eq!(
                serde_json::from_value::<ChannelKind>(name.into()).ok(),
                Some(kind)
            );
        }
        for other in ["forum", "Text", "group-dm", ""] {
            assert_eq!(ChannelKind::parse(other), None, "{other}");
            assert!(serde_json::from_value::<ChannelKind>(other.into()).is_err());
        }
    }

    #[test]
    fn a_new_channel_takes_only_server_kinds() {
        let kind_of = |v: serde_json::Value| {
            serde_json::from_value::<CreateChannelRequest>(
                serde_json::json!({"name": "x", "type": v}),
            )
            .map(|r| r.kind.and_then(NewChannelKind::kind))
            .map_err(|e| e.to_string())
        };
        assert_eq!(kind_of("text".into()), Ok(Some(ChannelKind::Text)));
        assert_eq!(kind_of("voice".into()), Ok(Some(ChannelKind::Voice)));
        assert_eq!(kind_of("category".into()), Ok(Some(ChannelKind::Category)));
        for refused in ["dm", "group_dm", "forum", "VOICE"] {
            assert_eq!(kind_of(refused.into()), Ok(None), "{refused}");
        }
        // Not a string at all is still a type error, as before.
        assert!(kind_of(5.into()).is_err());
        assert!(kind_of(serde_json::json!({"text": null})).is_err());
    }
}
