//! Storage for xcord: one codebase over SQLite (the embedded default) and PostgreSQL.
//!
//! Both backends run through sqlx's `Any` driver with the same `$1`-placeholder SQL; the URL
//! scheme chooses the backend. Each backend has its own embedded migration folder, and the
//! two version lists are kept identical (see [`migrations`]). Repository traits per aggregate
//! live in [`repo`]; [`Store`] implements all of them.

pub mod error;
pub mod migrations;
pub mod repo;
#[cfg(feature = "testing")]
pub mod testing;

mod group_commit;
mod store;

pub use error::StoreError;
pub use repo::channels::{ChannelRecord, ChannelRepository, PrivateChannel};
pub use repo::gateway::{Checkpoint, LoggedEvent, SavedSession};
pub use repo::messages::{
    AttachmentRecord, MessageRecord, MessageRepository, NewMessage, Page, PostOutcome,
    ReactionCount, ReadStateRecord, SearchQuery,
};
pub use repo::relationships::{RelationshipRecord, RelationshipRepository, RelationshipType};
pub use repo::servers::{
    AuditRecord, BanRecord, ChannelPatch, InviteRecord, MemberRecord, NewChannel, NewServer,
    OverwriteRecord, RolePatch, RoleRecord, ServerPatch, ServerRecord, ServerRepository, Versioned,
};
pub use repo::sessions::{
    NewSession, RefreshOutcome, SessionRecord, SessionRepository, TokenPurpose,
};
pub use repo::users::{NewUser, ProfilePatch, UserRecord, UserRepository};
pub use store::{Backend, PoolStats, Store, StoreOptions, WriteTx};

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;
