//! Access tokens refused before they expire: whole sessions (`sid:…`) after logout, reuse or
//! a password reset, and single tokens (`jti:…`). Checked on every authenticated request
//! from memory; persisted so a restart keeps them; entries die when every token they could
//! match has expired.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use xcord_bus::{BusEvent, EventBus, Topic};

use xcord_store::{Store, StoreResult};
use xcord_types::events::{Event, TokenRevoked};
use xcord_types::{Snowflake, Timestamp};

/// The in-memory revocation list. In scale mode every node keeps its own copy, told of
/// other nodes' revocations through the bus (`TOKEN_REVOKED` on the global topic).
#[derive(Default)]
pub struct Revocations {
    // Read on every request, written on logout: a read-mostly lock with no await inside.
    keys: RwLock<HashMap<String, i64>>,
    bus: Option<(Arc<dyn EventBus>, u16)>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

fn sid_key(sid: Snowflake) -> String {
    format!("sid:{sid}")
}

fn jti_key(jti: &str) -> String {
    format!("jti:{jti}")
}

impl Revocations {
    /// Loads the revocations still in force.
    pub async fn load(store: &Store, now: Timestamp) -> StoreResult<Self> {
        let rows = store.revoked_since(now).await?;
        let map = rows.into_iter().map(|(k, t)| (k, t.as_millis())).collect();
        Ok(Self {
            keys: RwLock::new(map),
            bus: None,
        })
    }

    /// Announces this node's revocations to the other nodes on `bus` (theirs arrive
    /// through [`Revocations::apply_event`]).
    pub fn announce_over(mut self, bus: Arc<dyn EventBus>, node: u16) -> Self {
        self.bus = Some((bus, node));
        self
    }

    /// Applies a revocation announced by any node.
    pub fn apply_event(&self, ev: &Event) {
        if let Event::TokenRevoked(TokenRevoked(key, until)) = ev {
            self.remember(
                key.clone(),
                Timestamp::from_millis(*until),
                Timestamp::from_millis(0),
            );
        }
    }

    async fn announce(&self, key: &str, until: Timestamp) {
        let revoked = Event::TokenRevoked(TokenRevoked(key.to_owned(), until.as_millis()));
        if let Some((bus, node)) = &self.bus
            && let Ok(ev) = BusEvent::new(Topic::Global, revoked, *node)
            && let Err(e) = bus.publish(ev).await
        {
            tracing::warn!(error = %e, "a revocation did not reach the other nodes");
        }
    }

    /// Whether a token of session `sid` with id `jti` is refused at `now`.
    pub fn is_revoked(&self, sid: Snowflake, jti: &str, now: Timestamp) -> bool {
        let Ok(map) = self.keys.read() else {
            // A poisoned lock means a writer panicked; refusing is the safe answer.
            return true;
        };
        let live = |k: &str| map.get(k).is_some_and(|&t| t > now.as_millis());
        live(&sid_key(sid)) || live(&jti_key(jti))
    }

    fn remember(&self, key: String, until: Timestamp, now: Timestamp) {
        if let Ok(mut map) = self.keys.write() {
            if map.len() > 10_000 {
                map.retain(|_, t| *t > now.as_millis());
            }
            let slot = map.entry(key).or_insert(0);
            *slot = (*slot).max(until.as_millis());
        }
    }

    /// Refuses every access token of session `sid` until `until` (the latest expiry any of
    /// them can have), in memory and in the database.
    pub async fn revoke_session(
        &self,
        store: &Store,
        sid: Snowflake,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let key = sid_key(sid);
        store.add_revoked(&key, until).await?;
        self.remember(key.clone(), until, now);
        self.announce(&key, until).await;
        Ok(())
    }

    /// Refuses one access token until it expires.
    pub async fn revoke_token(
        &self,
        store: &Store,
        jti: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let key = jti_key(jti);
        store.add_revoked(&key, until).await?;
        self.remember(key.clone(), until, now);
        self.announce(&key, until).await;
        Ok(())
    }
}
