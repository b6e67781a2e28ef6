//! xcord's use-cases. A use-case validates its input, authorizes the caller, persists in one
//! transaction and publishes its events after commit. It never sees HTTP types; each API
//! surface maps the domain [`Error`] to its wire form through its own table.

pub mod auth;
pub mod auto_messages;
pub mod channels;
pub mod clock;
pub mod context_cache;
pub mod crypto;
pub mod error;
pub mod event_log;
pub mod mail;
pub mod media;
pub mod members;
pub mod mentions;
pub mod messages;
pub mod node;
pub mod password;
pub mod presence;
pub mod ratelimit;
pub mod realtime;
pub mod revocation;
pub mod scheduled;
pub mod servers;
pub mod social;
pub mod storage;
pub mod token;
pub mod unit_of_work;
pub mod users;
pub mod validate;
pub mod voice;

mod core;

pub use crate::core::{ClientInfo, Core, CoreDeps, CoreSettings};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{
    AuthFailure, Clash, Denial, DirectChannelAction, Entity, Error, OwnerAction, Refusal, Result,
    Scope, SelfAction, Upload,
};
pub use node::NodeTask;
pub use token::Caller;
