//! Wire types shared by every xcord crate: snowflake ids, timestamps and the error body.
//!
//! Nothing in here does I/O; it is serde and plain data so that clients and the
//! server agree on one definition.

pub mod compat;
pub mod error;
pub mod events;
pub mod gateway;
pub mod rest;
pub mod snowflake;
pub mod timestamp;

pub use error::{ErrorBody, FieldError, RetryAfter};
pub use snowflake::{Snowflake, SnowflakeGenerator};
pub use timestamp::Timestamp;
