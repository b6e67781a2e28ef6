//! Storage for xcord: one codebase over SQLite (the embedded default) and PostgreSQL.
//!
//! Both backends run through sqlx's `Any` driver with the same `$1`-placeholder SQL; the URL
//! scheme chooses the backend. Each backend has its own embedded migration folder, and the
//! two version lists are kept identical (see [`migrations`]). Repositories, one module per
//! aggregate, live in [`repo`] as inherent methods on [`Store`].

pub mod error;
pub mod migrations;
pub mod repo;
#[cfg(feature = "testing")]
pub mod testing;

mod group_commit;
mod store;

pub use error::StoreError;
pub use repo::Versioned;
pub use repo::audit::AuditRecord;
pub use repo::bans::BanRecord;
pub use repo::channels::{ChannelPatch, ChannelRecord, NewChannel, PrivateChannel};
pub use repo::gateway::{Checkpoint, LoggedEvent, SavedSession};
pub use repo::invites::InviteRecord;
pub use repo::jobs::{JobCount, JobFilter, JobOutcome, JobRecord, JobState, MAX_ATTEMPTS, NewJob};
pub use repo::members::MemberRecord;
pub use repo::messages::{
    AttachmentRecord, MessageRecord, NewMessage, Page, PostOutcome, ReactionCount, ReadStateRecord,
    SearchQuery,
};
pub use repo::overwrites::OverwriteRecord;
pub use repo::relationships::{RelationshipRecord, RelationshipType};
pub use repo::roles::{RolePatch, RoleRecord};
pub use repo::scheduled::{AutoMessageRecord, ScheduledRecord, ScheduledStatus};
pub use repo::servers::{NewServer, ServerPatch, ServerRecord};
pub use repo::sessions::{NewSession, RefreshOutcome, SessionRecord, TokenPurpose};
pub use repo::users::{NewUser, ProfilePatch, UserRecord};
pub use store::{Backend, PoolStats, Store, StoreOptions, WriteTx};

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;
