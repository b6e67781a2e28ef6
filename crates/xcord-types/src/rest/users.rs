//! User bodies: profiles, settings, search, presence, relationships, keys.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::double_option;
use crate::{Snowflake, Timestamp};

/// The signed-in user, with private fields (`GET /users/@me`, `/auth/me`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfUser {
    /// Id.
    pub id: Snowflake,
    /// Username.
    pub username: String,
    /// Four digits.
    pub discriminator: String,
    /// Name shown instead of the username.
    #[schema(required = true)]
    pub display_name: Option<String>,
    /// E-mail (`null` for guests).
    #[schema(required = true)]
    pub email: Option<String>,
    /// Whether the e-mail was confirmed.
    pub email_verified: bool,
    /// Avatar URL (`/cdn/…`).
    #[schema(required = true)]
    pub avatar: Option<String>,
    /// Banner URL (`/cdn/…`).
    #[schema(required = true)]
    pub banner: Option<String>,
    /// Profile text.
    #[schema(required = true)]
    pub bio: Option<String>,
    /// Status text.
    #[schema(required = true)]
    pub custom_status: Option<String>,
    /// Chosen presence: online, idle, dnd or invisible.
    pub status: String,
    /// Guest account.
    pub is_guest: bool,
    /// Two-factor authentication on.
    pub two_factor_enabled: bool,
    /// Sign-up time.
    pub created_at: Timestamp,
}

/// Another user's public profile (`GET /users/{id}`): never an e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    /// Id.
    pub id: Snowflake,
    /// Username.
    pub username: String,
    /// Four digits.
    pub discriminator: String,
    /// Name shown instead of the username.
    #[schema(required = true)]
    pub display_name: Option<String>,
    /// Avatar URL.
    #[schema(required = true)]
    pub avatar: Option<String>,
    /// Banner URL.
    #[schema(required = true)]
    pub banner: Option<String>,
    /// Profile text.
    #[schema(required = true)]
    pub bio: Option<String>,
    /// Status text.
    #[schema(required = true)]
    pub custom_status: Option<String>,
    /// Guest account.
    pub is_guest: bool,
    /// Sign-up time.
    pub created_at: Timestamp,
}

/// The short form of a user, in lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    /// Id.
    pub id: Snowflake,
    /// Username.
    pub username: String,
    /// Four digits.
    pub discriminator: String,
    /// Avatar URL.
    #[schema(required = true)]
    pub avatar: Option<String>,
    /// Name shown instead of the username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `PATCH /users/@me`. Absent fields are left alone; `null` clears a nullable one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSelfRequest {
    /// New username.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_.-]+$")]
    pub username: Option<String>,
    /// New display name (1–32), or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 32)]
    pub display_name: Option<Option<String>>,
    /// ≤ 190 characters, or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 190)]
    pub bio: Option<Option<String>>,
    /// ≤ 128 characters, or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub custom_status: Option<Option<String>>,
    /// New e-mail (needs `currentPassword`, or upgrades a guest together with `newPassword`).
    pub email: Option<String>,
    /// New password (needs `currentPassword`, except for a guest's first password).
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: Option<String>,
    /// The current password, for e-mail and password changes.
    pub current_password: Option<String>,
}

/// Notification settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSettings {
    /// E-mail notifications.
    pub email: bool,
    /// Push notifications.
    pub push: bool,
    /// Only notify on mentions.
    pub mention_only: bool,
}

/// Who may send direct messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AllowDms {
    /// Anyone.
    Everyone,
    /// Friends only.
    Friends,
    /// Nobody new.
    None,
}

/// Privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivacySettings {
    /// Whether others see this user online.
    pub show_online_status: bool,
    /// Who may open DMs.
    #[serde(rename = "allowDMs")]
    pub allow_dms: AllowDms,
}

/// Light or dark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Dark.
    Dark,
    /// Light.
    Light,
}

/// `GET /users/@me/settings` (seed 000 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Theme.
    pub theme: Theme,
    /// Language tag, e.g. `en`, `tr`, `pt-BR`.
    pub language: String,
    /// Notifications.
    pub notifications: NotificationSettings,
    /// Privacy.
    pub privacy: PrivacySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            theme: Theme::Dark,
            language: "en".into(),
            notifications: NotificationSettings {
                email: true,
                push: true,
                mention_only: false,
            },
            privacy: PrivacySettings {
                show_online_status: true,
                allow_dms: AllowDms::Everyone,
            },
        }
    }
}

/// Partial notification settings.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPatch {
    /// E-mail notifications.
    pub email: Option<bool>,
    /// Push notifications.
    pub push: Option<bool>,
    /// Only notify on mentions.
    pub mention_only: Option<bool>,
}

/// Partial privacy settings.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivacyPatch {
    /// Whether others see this user online.
    pub show_online_status: Option<bool>,
    /// Who may open DMs.
    #[serde(rename = "allowDMs")]
    pub allow_dms: Option<AllowDms>,
}

/// `PATCH /users/@me/settings`: only the given fields change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsPatch {
    /// Theme.
    pub theme: Option<Theme>,
    /// Language tag.
    #[schema(min_length = 2, max_length = 16, pattern = "^[A-Za-z0-9-]+$")]
    pub language: Option<String>,
    /// Notifications.
    pub notifications: Option<NotificationPatch>,
    /// Privacy.
    pub privacy: Option<PrivacyPatch>,
}

/// `GET /users/search` query.
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserSearchQuery {
    /// Username prefix, 1–32 characters.
    #[param(min_length = 1, max_length = 32)]
    pub q: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// `{users: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    /// The users.
    pub users: Vec<UserSummary>,
}

/// A presence status a user can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Online.
    Online,
    /// Away.
    Idle,
    /// Do not disturb.
    Dnd,
    /// Online but shown offline.
    Invisible,
    /// Not connected (as seen by others).
    Offline,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Dnd => "dnd",
            Status::Invisible => "invisible",
            Status::Offline => "offline",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "online" => Status::Online,
            "idle" => Status::Idle,
            "dnd" => Status::Dnd,
            "invisible" => Status::Invisible,
            "offline" => Status::Offline,
            _ => return None,
        })
    }
}

/// `PUT /users/@me/status`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequest {
    /// online, idle, dnd or invisible.
    pub status: Status,
    /// ≤ 128 characters; `null` clears; absent leaves it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub custom_status: Option<Option<String>>,
}

/// A user's presence as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// Whose.
    pub user_id: Snowflake,
    /// online, idle, dnd or offline (invisible shows as offline).
    pub status: Status,
    /// Status text.
    #[schema(required = true)]
    pub custom_status: Option<String>,
}

/// `GET /users/online/count`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineCount {
    /// Users with at least one live gateway connection and not invisible.
    pub online_user_count: u64,
    /// When counted.
    pub timestamp: Timestamp,
}

/// `GET /users/online/list`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnlineList {
    /// Online users the caller shares a server, DM or friendship with.
    pub users: Vec<OnlineUser>,
}

/// One entry of the online list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser {
    /// The user.
    #[serde(flatten)]
    pub user: UserSummary,
    /// online, idle or dnd.
    pub status: Status,
    /// Status text.
    #[schema(required = true)]
    pub custom_status: Option<String>,
}

/// A relationship kind on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipKind {
    /// Mutual friends.
    Friend,
    /// The caller asked.
    PendingOutgoing,
    /// The other asked.
    PendingIncoming,
    /// The caller blocks them.
    Blocked,
}

/// One relationship of the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    /// The other user.
    pub user_id: Snowflake,
    /// What the caller has with them.
    #[serde(rename = "type")]
    pub kind: RelationshipKind,
    /// The other user in short.
    pub user: UserSummary,
    /// Since when.
    pub since: Timestamp,
}

/// `{relationships: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RelationshipList {
    /// The caller's relationships.
    pub relationships: Vec<Relationship>,
}

/// What `PUT /users/@me/relationships/{userId}` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelationshipAction {
    /// Send or accept a friend request (the default).
    Friend,
    /// Block.
    Block,
}

/// `PUT /users/@me/relationships/{userId}` body (optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RelationshipRequest {
    /// `friend` (default) or `block`.
    #[serde(rename = "type")]
    pub kind: Option<RelationshipAction>,
}

/// `PUT /users/@me/keys`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyRequest {
    /// The public key (PEM, JWK or base64), ≤ 8192 characters; stored as given.
    #[schema(min_length = 1, max_length = 8192)]
    pub public_key: String,
}

/// A user's E2E public key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKey {
    /// Whose.
    pub user_id: Snowflake,
    /// The key, or `null` when none is published.
    #[schema(required = true)]
    pub public_key: Option<String>,
}

/// `POST /users/@me/avatar`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvatarResponse {
    /// Where the new avatar is served.
    pub avatar_url: String,
}

/// `POST /users/@me/banner`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BannerResponse {
    /// Where the new banner is served.
    pub banner_url: String,
}
