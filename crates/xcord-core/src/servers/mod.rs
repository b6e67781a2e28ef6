//! Servers: what a caller is in one and may do there, its life (create, update, delete),
//! wire forms, icons, audit rows and statistics. Every decision about what a caller may do
//! goes through `xcord_permissions`; roles, members, invites and moderation live in
//! [`crate::members`], channels in [`crate::channels`].

mod access;
mod audit;
mod default;
mod icons;
mod lifecycle;
mod stats;
mod wire;

pub use access::{ServerAccess, require_bits, stale_error};
pub(crate) use wire::overwrite_to_wire;
pub use wire::{channel_kind, channel_to_wire, role_to_wire, to_overwrites};
