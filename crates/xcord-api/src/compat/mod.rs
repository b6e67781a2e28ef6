//! Compatibility profiles (SPEC §7): other systems' APIs over the canonical core.

pub mod rtms;
