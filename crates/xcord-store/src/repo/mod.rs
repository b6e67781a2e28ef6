//! Repository traits, one per aggregate, each implemented by [`crate::Store`].
//!
//! Use-cases depend on the traits so that a test or a later backend can stand in, while the
//! one implementation runs the same SQL on SQLite and PostgreSQL.

pub mod channels;
pub mod gateway;
pub mod messages;
pub mod relationships;
pub mod servers;
pub mod sessions;
pub mod users;
