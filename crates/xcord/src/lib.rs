//! The xcord service as a library: configuration, logging, start-up and shutdown. The
//! `xcord` binary is a thin CLI over it, and tests build the same [`Application`].

pub mod config;
pub mod roles;
pub mod secrets;
pub mod startup;
pub mod telemetry;
pub mod transport;

pub use config::{Config, Role};
pub use startup::Application;
