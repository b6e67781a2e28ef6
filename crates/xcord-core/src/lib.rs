//! xcord's use-cases. A use-case validates its input, authorizes the caller, persists in one
//! transaction and publishes its events after commit. It never sees HTTP types; the API layer
//! maps [`Error`] to a status code through one table.

pub mod clock;
pub mod error;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
