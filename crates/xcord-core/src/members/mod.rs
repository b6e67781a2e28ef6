//! Roles, members, moderation (kick, ban), invites, the audit log and the default server.
//!
//! Hierarchy: nobody acts on a member whose highest role is at or above their own, nobody
//! manages a role at or above their own highest role, and the owner outranks everyone.

mod invites;
mod membership;
mod moderation;
mod roles;
