//! Server (guild) bodies: servers, roles, members, invites, bans, the audit log, stats.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::channels::Channel;
use super::double_option;
use crate::{Snowflake, Timestamp};

/// A server. `channels` and `roles` are present on `GET /servers/{id}` (channels the caller
/// can see) and on create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// Id (also the `@everyone` role's id).
    pub id: Snowflake,
    /// Name.
    pub name: String,
    /// Icon.
    #[schema(required = true)]
    pub icon: Option<String>,
    /// Banner.
    #[schema(required = true)]
    pub banner: Option<String>,
    /// Description.
    #[schema(required = true)]
    pub description: Option<String>,
    /// Owner.
    pub owner_id: Snowflake,
    /// Vanity invite code.
    #[schema(required = true)]
    pub vanity_url: Option<String>,
    /// Members.
    pub member_count: i64,
    /// Channels the caller can see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    /// Roles, lowest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// Optimistic-concurrency version (`If-Match`).
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// `POST /servers`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateServerRequest {
    /// 2–100 characters.
    #[schema(min_length = 2, max_length = 100)]
    pub name: String,
    /// Icon as base64 or a data URL (≤ 5 MB decoded).
    pub icon: Option<String>,
}

/// `PATCH /servers/{id}`: only the given fields change; `null` clears a nullable one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateServerRequest {
    /// 2–100 characters.
    pub name: Option<String>,
    /// Icon, or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub icon: Option<Option<String>>,
    /// Banner, or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub banner: Option<Option<String>>,
    /// ≤ 500 characters, or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// 3–32 of `[a-z0-9-]`, or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub vanity_url: Option<Option<String>>,
    /// Transfer ownership to this member (owner only).
    pub owner_id: Option<Snowflake>,
}

/// `{servers: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerList {
    /// The caller's servers.
    pub servers: Vec<Server>,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Id.
    pub id: Snowflake,
    /// Server.
    pub server_id: Snowflake,
    /// Name.
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
    /// 0 for `@everyone`; higher outranks lower.
    pub position: i64,
    /// Permission bits (see docs/permissions.md).
    pub permissions: u64,
    /// Can be @mentioned.
    pub mentionable: bool,
    /// Shown apart in member lists.
    pub hoisted: bool,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// `POST /servers/{id}/roles` and `PATCH …/roles/{roleId}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRequest {
    /// 1–100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// `#rrggbb`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    /// Permission bits.
    pub permissions: Option<u64>,
    /// Can be @mentioned.
    pub mentionable: Option<bool>,
    /// Shown apart.
    pub hoisted: Option<bool>,
    /// Position (≥ 1, below the caller's highest role).
    #[schema(minimum = 1, maximum = 100_000)]
    pub position: Option<i64>,
}

/// `{roles: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleList {
    /// Roles, lowest first.
    pub roles: Vec<Role>,
}

/// The user part of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberUser {
    /// Id.
    pub id: Snowflake,
    /// Username.
    pub username: String,
    /// Avatar URL.
    #[schema(required = true)]
    pub avatar: Option<String>,
}

/// A member of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Who.
    pub user: MemberUser,
    /// Server nickname.
    #[schema(required = true)]
    pub nickname: Option<String>,
    /// Role ids (not `@everyone`), highest first.
    pub roles: Vec<Snowflake>,
    /// Join time.
    pub joined_at: Timestamp,
}

/// `{members: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    /// Members by user id.
    pub members: Vec<Member>,
}

/// `GET /servers/{id}/members` paging.
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberQuery {
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Members with a user id above this one.
    pub after: Option<Snowflake>,
}

/// `PATCH /servers/{id}/members/{userId}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateMemberRequest {
    /// 1–32 characters, or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub nickname: Option<Option<String>>,
    /// The complete new set of role ids.
    pub roles: Option<Vec<Snowflake>>,
    /// Server mute in voice (MUTE_MEMBERS).
    pub mute: Option<bool>,
    /// Server deafen in voice (DEAFEN_MEMBERS).
    pub deaf: Option<bool>,
    /// Move to this voice channel (MOVE_MEMBERS), or `null` to disconnect from voice.
    #[serde(default, deserialize_with = "double_option", rename = "channelId")]
    #[schema(value_type = Option<String>)]
    pub channel_id: Option<Option<Snowflake>>,
}

/// `{reason?}` for kicks.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ReasonRequest {
    /// Recorded in the audit log, ≤ 512 characters.
    #[schema(max_length = 512)]
    pub reason: Option<String>,
}

/// `POST /servers/{id}/bans`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BanRequest {
    /// Who.
    pub user_id: Snowflake,
    /// Why (≤ 512 characters).
    #[schema(max_length = 512)]
    pub reason: Option<String>,
    /// Delete their messages of this many days, 0–7.
    #[schema(minimum = 0, maximum = 7)]
    pub delete_message_days: Option<i64>,
}

/// A ban.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    /// The banned user.
    pub user: MemberUser,
    /// Why.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// `{bans: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BanList {
    /// Bans, oldest first.
    pub bans: Vec<Ban>,
}

/// `POST /servers/{id}/invites`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateInviteRequest {
    /// Seconds it lasts, 0 (never expires) to 604800; default 86400.
    #[schema(minimum = 0, maximum = 604_800)]
    pub max_age_seconds: Option<i64>,
    /// Uses allowed, 0 (unlimited) to 100; default 0.
    #[schema(minimum = 0, maximum = 100)]
    pub max_uses: Option<i64>,
    /// A channel of the server to land in (default: the first text channel).
    pub channel_id: Option<Snowflake>,
}

/// The server an invite leads to, as a preview.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteServer {
    /// Id.
    pub id: Snowflake,
    /// Name.
    pub name: String,
    /// Icon.
    #[schema(required = true)]
    pub icon: Option<String>,
    /// Description.
    #[schema(required = true)]
    pub description: Option<String>,
    /// Members.
    pub member_count: i64,
}

/// An invite.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    /// The code (`/invites/{code}`).
    pub code: String,
    /// Server.
    pub server_id: Snowflake,
    /// Channel.
    #[schema(required = true)]
    pub channel_id: Option<Snowflake>,
    /// Creator.
    #[schema(required = true)]
    pub inviter_id: Option<Snowflake>,
    /// 0: never expires.
    pub max_age_seconds: i64,
    /// 0: unlimited.
    pub max_uses: i64,
    /// Times used.
    pub uses: i64,
    /// When it stops working.
    #[schema(required = true)]
    pub expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// The server, in short.
    pub server: InviteServer,
}

/// `{invites: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteList {
    /// Invites, newest first.
    pub invites: Vec<Invite>,
}

/// One audit-log entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Id.
    pub id: Snowflake,
    /// snake_case action, e.g. `member_kick`.
    pub action: String,
    /// Who acted.
    pub actor_id: Snowflake,
    /// What was acted on.
    #[schema(required = true)]
    pub target_id: Option<Snowflake>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changes: Option<serde_json::Value>,
    /// When.
    pub created_at: Timestamp,
}

/// `{entries: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// `GET /servers/{id}/audit-log` query.
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Entries older than this id.
    pub before: Option<Snowflake>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor_id: Option<Snowflake>,
}

/// Messages on one day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Messages posted that day.
    pub count: i64,
}

/// `GET /servers/{id}/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    /// Members.
    pub member_count: i64,
    /// Members online now.
    pub online_count: i64,
    /// Channels.
    pub channel_count: i64,
    /// The last 30 days, oldest first, days without messages included.
    pub messages_per_day: Vec<DayCount>,
}
