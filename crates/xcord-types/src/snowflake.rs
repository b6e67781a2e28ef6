//! Snowflake ids (SPEC §1): 41 bits of milliseconds since [`EPOCH_MS`], 10 bits of node id,
//! 12 bits of per-millisecond sequence. The sign bit stays zero, so an id fits an SQL BIGINT
//! as a positive number and ids sort by creation time.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Timestamp;

/// 2025-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const EPOCH_MS: i64 = 1_735_689_600_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
/// The largest node id, 1023.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
const MAX_MS: u64 = (1 << 41) - 1;

/// A 64-bit, time-ordered id: an integer in storage, a decimal string in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Snowflake(i64);

impl Snowflake {
    /// Wraps a stored id. Storage only holds ids this module produced.
    pub const fn from_i64(v: i64) -> Self {
        Self(v)
    }

    /// The storage form.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// Builds an id from its parts; used to make paging bounds from a time.
    pub fn from_parts(ms_since_unix: i64, node: u16, seq: u16) -> Self {
        let ms = (ms_since_unix - EPOCH_MS).clamp(0, MAX_MS as i64) as u64;
        let raw = (ms << (NODE_BITS + SEQ_BITS))
            | (u64::from(node & MAX_NODE_ID) << SEQ_BITS)
            | (u64::from(seq) & MAX_SEQ);
        Self(raw as i64)
    }

    /// When the id was made.
    pub fn timestamp(self) -> Timestamp {
        Timestamp::from_millis(((self.0 as u64) >> (NODE_BITS + SEQ_BITS)) as i64 + EPOCH_MS)
    }

    /// The node that made the id.
    pub fn node_id(self) -> u16 {
        (((self.0 as u64) >> SEQ_BITS) & u64::from(MAX_NODE_ID)) as u16
    }

    /// The sequence number within its millisecond.
    pub fn sequence(self) -> u16 {
        ((self.0 as u64) & MAX_SEQ) as u16
    }
}

/// Why a string is not a snowflake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSnowflakeError;

impl fmt::Display for ParseSnowflakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a snowflake id (a positive decimal integer below 2^63)")
    }
}

impl std::error::Error for ParseSnowflakeError {}

impl FromStr for Snowflake {
    type Err = ParseSnowflakeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only plain digits: no sign, no whitespace, no leading '+', bounded length.
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseSnowflakeError);
        }
        s.parse::<i64>().map(Self).map_err(|_| ParseSnowflakeError)
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Snowflake {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Snowflake {
    /// Accepts the canonical string and, leniently, a JSON integer.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Snowflake;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snowflake id string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Snowflake, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Snowflake, E> {
                i64::try_from(v)
                    .map(Snowflake)
                    .map_err(|_| E::custom(ParseSnowflakeError))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Snowflake, E> {
                if v < 0 {
                    return Err(E::custom(ParseSnowflakeError));
                }
                Ok(Snowflake(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for Snowflake {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{1,19}$"))
            .description(Some("Snowflake id, a decimal string"))
            .examples([serde_json::json!("301234567890123456")])
            .into()
    }
}

impl utoipa::ToSchema for Snowflake {}

/// Makes unique, increasing snowflakes for one node without locks.
///
/// The state packs the last millisecond and sequence into one atomic word. When 4096 ids
/// have been handed out within one millisecond, or the clock steps backwards, the generator
/// borrows the next millisecond instead of waiting, so it never blocks and never repeats;
/// the wall clock catches up within a few milliseconds.
#[derive(Debug)]
pub struct SnowflakeGenerator {
    node: u16,
    /// `(ms since EPOCH) << 12 | seq` of the last id handed out.
    state: AtomicU64,
}

impl SnowflakeGenerator {
    /// A generator for `node` (0–1023; larger values are masked).
    pub fn new(node: u16) -> Self {
        Self {
            node: node & MAX_NODE_ID,
            state: AtomicU64::new(0),
        }
    }

    /// The next id, at the current wall-clock time.
    pub fn next_id(&self) -> Snowflake {
        self.next_at(Timestamp::now().as_millis())
    }

    /// The next id as if the clock read `now_ms` (Unix milliseconds).
    pub fn next_at(&self, now_ms: i64) -> Snowflake {
        let now = (now_ms - EPOCH_MS).clamp(0, MAX_MS as i64) as u64;
        let mut prev = self.state.load(Ordering::Relaxed);
        loop {
            let (prev_ms, prev_seq) = (prev >> SEQ_BITS, prev & MAX_SEQ);
            let next = if now > prev_ms {
                now << SEQ_BITS
            } else if prev_seq < MAX_SEQ {
                prev + 1
            } else {
                (prev_ms + 1) << SEQ_BITS
            };
            match self
                .state
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let ms = next >> SEQ_BITS;
                    let raw = (ms << (NODE_BITS + SEQ_BITS))
                        | (u64::from(self.node) << SEQ_BITS)
                        | (next & MAX_SEQ);
                    return Snowflake(raw as i64);
                }
                Err(actual) => prev = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_round_trip() {
        let id = Snowflake::from_parts(EPOCH_MS + 1234, 77, 9);
        assert_eq!(id.timestamp().as_millis(), EPOCH_MS + 1234);
        assert_eq!(id.node_id(), 77);
        assert_eq!(id.sequence(), 9);
    }

    #[test]
    fn json_is_a_string_and_integers_are_accepted() {
        let id = Snowflake::from_i64(301_234_567_890_123_456);
        assert_eq!(
            serde_json::to_string(&id).ok().as_deref(),
            Some("\"301234567890123456\"")
        );
        assert_eq!(
            serde_json::from_str::<Snowflake>("\"42\"").ok(),
            Some(Snowflake(42))
        );
        assert_eq!(
            serde_json::from_str::<Snowflake>("42").ok(),
            Some(Snowflake(42))
        );
        for bad in [
            "\"-1\"",
            "-1",
            "\" 1\"",
            "\"+1\"",
            "\"1e3\"",
            "\"\"",
            "\"99999999999999999999\"",
            "1.5",
            "null",
        ] {
            assert!(
                serde_json::from_str::<Snowflake>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn sequence_exhaustion_borrows_the_next_millisecond() {
        let g = SnowflakeGenerator::new(1);
        let t = EPOCH_MS + 10_000;
        let ids: Vec<_> = (0..5000).map(|_| g.next_at(t)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids[4095].timestamp().as_millis(), t);
        assert_eq!(ids[4096].timestamp().as_millis(), t + 1);
        assert_eq!(ids[4096].sequence(), 0);
    }

    #[test]
    fn concurrent_generation_never_repeats() {
        let g = std::sync::Arc::new(SnowflakeGenerator::new(3));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..20_000).map(|_| g.next_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for h in handles {
            let ids = h.join().unwrap_or_default();
            assert_eq!(ids.len(), 20_000);
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "per-thread order");
            for id in ids {
                assert!(all.insert(id), "duplicate id {id}");
            }
        }
    }

    proptest! {
        /// Whatever the clock does (forwards, backwards, standing still), ids strictly increase
        /// and carry the node id.
        #[test]
        fn ids_strictly_increase_under_any_clock(
            node in 0u16..=MAX_NODE_ID,
            steps in proptest::collection::vec(-50i64..50, 1..400),
        ) {
            let g = SnowflakeGenerator::new(node);
            let mut now = EPOCH_MS + 1_000_000;
            let mut last = None;
            for step in steps {
                now += step;
                let id = g.next_at(now);
                prop_assert_eq!(id.node_id(), node);
                prop_assert!(id.get() > 0);
                if let Some(prev) = last {
                    prop_assert!(id > prev);
                }
                last = Some(id);
            }
        }

        #[test]
        fn string_form_round_trips(raw in 0i64..i64::MAX) {
            let id = Snowflake::from_i64(raw);
            prop_assert_eq!(id.to_string().parse::<Snowflake>(), Ok(id));
        }
    }
}
