//! Repositories, one module per aggregate: inherent methods on [`crate::Store`] that run the
//! same SQL on SQLite and PostgreSQL. Writes take the unit of work's transaction
//! (`&mut WriteTx`), so a use-case commits its change, audit row and events together.

pub mod channels;
pub mod gateway;
pub mod messages;
pub mod relationships;
pub mod servers;
pub mod sessions;
pub mod users;
