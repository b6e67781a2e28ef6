//! Repositories, one module per aggregate: inherent methods on [`crate::Store`] that run the
//! same SQL on SQLite and PostgreSQL. Writes take the unit of work's transaction
//! (`&mut WriteTx`), so a use-case commits its change, audit row and events together.

pub mod audit;
pub mod bans;
pub mod channels;
pub mod gateway;
pub mod invites;
pub mod jobs;
pub mod members;
pub mod messages;
pub mod overwrites;
pub mod relationships;
pub mod roles;
pub mod scheduled;
pub mod servers;
pub mod sessions;
pub mod settings;
pub mod stats;
pub mod users;

use xcord_types::Snowflake;

/// The result of a versioned update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versioned<T> {
    /// Applied; the new row.
    Updated(T),
    /// The `If-Match` version was not the current one; nothing changed.
    Stale,
    /// No such row.
    Missing,
}

fn sf(v: i64) -> Snowflake {
    Snowflake::from_i64(v)
}

fn sf_opt(v: Option<i64>) -> Option<Snowflake> {
    v.map(Snowflake::from_i64)
}
