//! Domain errors: what went wrong, in the core's own terms. Nothing here knows about HTTP;
//! each API surface renders these through its own table (the canonical REST one is
//! `xcord_api::error::canonical`), so a second protocol never needs a change here.

use std::fmt;

/// The permission bits [`Error::MissingPermission`] carries.
pub use xcord_permissions::bits;
use xcord_store::StoreError;
use xcord_types::{FieldError, Snowflake};

/// Result of a use-case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a use-case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Does not exist, or the caller may not know that it exists.
    #[error("unknown {0}")]
    NotFound(Entity),
    /// The caller lacks permission bits at `scope`.
    #[error("missing permission {} in {scope}", permission_name(*missing))]
    MissingPermission {
        /// The needed bits the caller does not have (at least one).
        missing: u64,
        /// Where the permissions were computed.
        scope: Scope,
    },
    /// A rule of access that permission bits do not express refuses the caller.
    #[error("denied: {0:?}")]
    Denied(Denial),
    /// The request names something that cannot be done as things stand (acting on oneself,
    /// a second factor that is not set up, a spent link).
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// Well-formed but breaking rules; one entry per failed field rule.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// An `If-Match` version that is no longer the entity's current one; nothing changed.
    #[error("stale version of the {entity}")]
    StaleVersion {
        /// What was being changed.
        entity: Entity,
        /// The version the caller based the change on.
        given: Option<i64>,
    },
    /// Clashes with existing state.
    #[error("conflict: {0:?}")]
    Conflict(Clash),
    /// An upload larger than its limit.
    #[error("{upload:?} larger than {limit_bytes} bytes")]
    TooLarge {
        /// What was uploaded.
        upload: Upload,
        /// The largest accepted size, in bytes.
        limit_bytes: usize,
    },
    /// An upload whose content (sniffed, never the client's word) is not a format it may have.
    #[error("unsupported format for {upload:?}")]
    UnsupportedFormat {
        /// What was uploaded.
        upload: Upload,
    },
    /// No valid credentials.
    #[error("unauthenticated: {0:?}")]
    Unauthenticated(AuthFailure),
    /// Too many requests; try again after this many seconds.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
        /// The budget of the window that is spent.
        limit: u32,
    },
    /// A dependency (database, Redis) is down or saturated; retry later.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure. Logged whole, never shown to a client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// A validation failure with a single failed rule.
    pub fn invalid(field: &str, rule: &str, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, rule, message)])
    }
}

/// The kinds of thing a use-case looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A server (guild).
    Server,
    /// A channel, including DM channels.
    Channel,
    /// A role of a server.
    Role,
    /// A user's membership of a server.
    Member,
    /// A user account.
    User,
    /// A message.
    Message,
    /// An uploaded attachment.
    Attachment,
    /// An invite code.
    Invite,
    /// A ban of a user from a server.
    Ban,
    /// A login session.
    Session,
    /// A friendship, request or block.
    Relationship,
    /// A channel permission overwrite.
    Overwrite,
    /// A stored file.
    File,
    /// A voice session (a join of a voice channel with media).
    VoiceSession,
    /// A transport of a voice session (mediasoup-style signaling).
    VoiceTransport,
    /// A track a voice participant sends (a producer, in mediasoup's words).
    Producer,
    /// A scheduled message.
    ScheduledMessage,
}

impl Entity {
    /// The lower-case noun, e.g. `channel`.
    pub fn noun(self) -> &'static str {
        match self {
            Entity::Server => "server",
            Entity::Channel => "channel",
            Entity::Role => "role",
            Entity::Member => "member",
            Entity::User => "user",
            Entity::Message => "message",
            Entity::Attachment => "attachment",
            Entity::Invite => "invite",
            Entity::Ban => "ban",
            Entity::Session => "session",
            Entity::Relationship => "relationship",
            Entity::Overwrite => "overwrite",
            Entity::File => "file",
            Entity::VoiceSession => "voice session",
            Entity::VoiceTransport => "voice transport",
            Entity::Producer => "producer",
            Entity::ScheduledMessage => "scheduled message",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// Where permissions were computed: server-wide, or in one channel (overwrites applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Server-wide (roles only).
    Server(Snowflake),
    /// In a channel.
    Channel(Snowflake),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Server(id) => write!(f, "server {id}"),
            Scope::Channel(id) => write!(f, "channel {id}"),
        }
    }
}

/// The name of the first permission in `missing` (in the order of [`bits::NAMES`]), or
/// `required` when none of its bits has a name.
pub fn permission_name(missing: u64) -> &'static str {
    bits::NAMES
        .iter()
        .find(|(_, b)| missing & b != 0)
        .map_or("required", |(n, _)| n)
}

/// Rules of access beyond permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Only the server owner may do this.
    NotOwner(OwnerAction),
    /// The target is the server owner, on whom nobody acts.
    TargetIsOwner,
    /// The target member's highest role is at or above the caller's.
    TargetOutranks,
    /// The role is at or above the caller's highest role.
    RoleOutranks,
    /// A role can only be given permissions its editor has.
    GrantExceedsOwn,
    /// An overwrite can only allow or deny permissions its editor has.
    OverwriteExceedsOwn,
    /// Only a message's author edits it.
    NotAuthor,
    /// Only the user themself may do this.
    NotSelf(SelfAction),
    /// The caller is banned from the server.
    Banned,
    /// A block between the two users stops direct messages.
    Blocked,
    /// A block between the two users stops friend requests.
    FriendRequestBlocked,
    /// The recipient takes direct messages from friends only.
    DmsFriendsOnly,
    /// The recipient takes no direct messages.
    DmsClosed,
    /// Presence is shown only to users who share a server, a DM or a friendship.
    NoSharedContext,
    /// Direct message channels do not support this.
    DirectChannel(DirectChannelAction),
    /// Login is refused until the e-mail address is verified.
    EmailUnverified,
    /// The current password given to confirm a change is wrong.
    WrongPassword,
    /// A signed file link whose signature is wrong or whose time is up.
    InvalidSignedLink,
}

/// What only the server owner may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerAction {
    /// Transfer the server to another member.
    TransferServer,
    /// Delete the server.
    DeleteServer,
}

/// What only the user themself may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfAction {
    /// Change a profile.
    EditProfile,
    /// List DM channels.
    ListDmChannels,
    /// Open a DM channel.
    OpenDmChannel,
    /// Act on a voice session (its transports, tracks, leaving).
    UseVoice,
}

/// What direct message channels do not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectChannelAction {
    /// Editing the channel itself.
    Edit,
    /// Deleting the channel.
    Delete,
    /// Bulk-deleting messages.
    BulkDelete,
}

/// Requests that cannot be carried out as things stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A second-factor code that does not verify (when enabling or disabling 2FA).
    WrongTwoFactorCode,
    /// An e-mail verification token that is unknown, spent or expired.
    InvalidVerificationToken,
    /// A password reset token that is unknown, spent or expired.
    InvalidResetToken,
    /// The account has no e-mail address (a guest).
    NoEmailAddress,
    /// Two-factor setup was not started.
    TwoFactorNotStarted,
    /// Two-factor authentication is not enabled.
    TwoFactorNotEnabled,
    /// The `@everyone` role always exists.
    EveryoneRoleUndeletable,
    /// The owner cannot leave their server.
    OwnerCannotLeave,
    /// Members leave; they do not kick themselves.
    KickSelf,
    /// Nobody bans themselves.
    BanSelf,
    /// An SDP offer or answer that cannot be parsed or used.
    InvalidSdp,
    /// The member is not connected to voice (to be moved or disconnected).
    NotInVoice,
}

/// What a request clashes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    /// The username is taken.
    UsernameTaken,
    /// An account has this e-mail address.
    EmailTaken,
    /// The e-mail address is verified already.
    EmailAlreadyVerified,
    /// Two-factor authentication is on already.
    TwoFactorAlreadyEnabled,
    /// The vanity URL is taken.
    VanityUrlTaken,
    /// A unique constraint no use-case anticipated.
    AlreadyExists,
    /// The voice channel is at its user limit.
    VoiceChannelFull,
    /// A server offer for the voice session waits for its answer.
    VoiceOfferPending,
    /// No server offer for the voice session waits for an answer.
    NoVoiceOfferPending,
    /// The scheduled message was sent, failed, was cancelled or is being sent.
    ScheduledNotWaiting,
}

/// What is being uploaded, for size and format limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// A profile image or a decoded server icon.
    Image,
    /// A server icon as base64 text, before decoding.
    ServerIcon,
    /// A message attachment.
    Attachment,
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token was presented.
    TokenMissing,
    /// A call that needs a caller reached a place without one.
    Anonymous,
    /// The token is malformed, forged or not an access token.
    InvalidToken,
    /// The token has expired.
    TokenExpired,
    /// The token's session was ended.
    TokenRevoked,
    /// Unknown login or wrong password (indistinguishable on purpose).
    WrongCredentials,
    /// The second-factor login ticket is unknown, spent or expired.
    InvalidLoginTicket,
    /// The second-factor code of a login does not verify.
    WrongTwoFactorCode,
    /// A refresh token presented twice: the session is revoked.
    RefreshTokenReused,
    /// The refresh token is unknown, revoked or expired.
    InvalidRefreshToken,
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // A use-case that expects a conflict maps it to a precise clash itself; one
            // that reaches here unexpected still is the client's clash, not a server fault.
            StoreError::Conflict(_) => Error::Conflict(Clash::AlreadyExists),
            StoreError::Unavailable(_) => Error::Unavailable(anyhow::Error::new(e)),
            StoreError::Integrity(_) | StoreError::Other(_) => {
                Error::Internal(anyhow::Error::new(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_named_missing_bit_is_reported() {
        assert_eq!(permission_name(bits::MANAGE_CHANNELS), "MANAGE_CHANNELS");
        assert_eq!(
            permission_name(bits::SEND_MESSAGES | bits::ATTACH_FILES),
            "SEND_MESSAGES"
        );
        assert_eq!(permission_name(1 << 63), "required");
    }
}
