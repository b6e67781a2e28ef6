//! REST request and response bodies (SPEC §3), camelCase on the wire.

pub mod auth;
pub mod channels;
pub mod messages;
pub mod scheduled;
pub mod servers;
pub mod users;
pub mod voice;

use serde::{Deserialize, Deserializer};

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value
/// (`Some(Some(v))`), so a PATCH can tell "leave alone" from "clear".
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
