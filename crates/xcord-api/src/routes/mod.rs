//! Route handlers, grouped by resource.

pub mod auth;
pub mod cdn;
pub mod messages;
pub mod pages;
pub mod scheduled;
pub mod servers;
pub mod users;
pub mod voice;
