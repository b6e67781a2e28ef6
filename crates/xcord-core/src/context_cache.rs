//! Caches kept current by events: channel contexts (what a caller may do in a channel) and
//! users' own views (`GET /users/@me`).
//!
//! Invalidation is by event, through one entry point ([`Caches::on_event`]). Changes made
//! on this node invalidate synchronously in [`Core::publish`](crate::Core::publish), before
//! the event leaves; changes from other nodes arrive over the bus and are applied by one
//! subscriber. A load that raced with an invalidation is not stored (an epoch counter
//! tells). Entries also expire after a few seconds, which bounds staleness should the bus
//! ever drop an invalidation.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xcord_bus::Topic;
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::rest::users::SelfUser;

use crate::messages::ChannelContext;

/// How long a channel context may be used without an invalidating event.
const CONTEXT_TTL: Duration = Duration::from_secs(5);
/// How long a self view may be served without an event about its user.
const SELF_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most per cache; a cache is cleared when it would grow past this.
const MAX_ENTRIES: usize = 200_000;

/// A map of values that expire after `ttl` and that events drop.
#[derive(Debug)]
pub struct EventCache<K, V> {
    // No await while locked; short critical sections.
    map: Mutex<HashMap<K, (Instant, V)>>,
    epoch: AtomicU64,
    ttl: Duration,
}

impl<K: Eq + Hash, V: Clone> EventCache<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            ttl,
        }
    }

    /// The cached value, if fresh.
    pub fn get(&self, key: &K) -> Option<V> {
        let map = self.map.lock().ok()?;
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// The epoch to pass to [`EventCache::put`] (read before loading).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a value loaded since `epoch`, unless something was invalidated meanwhile.
    pub fn put(&self, epoch: u64, key: K, value: V) {
        if let Ok(mut map) = self.map.lock()
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, (Instant::now(), value));
        }
    }

    /// Drops one entry.
    fn remove(&self, key: &K) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    /// Drops the entries `keep` refuses.
    fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, (_, v)| keep(k, v));
        }
    }

    fn clear(&self) {
        self.retain(|_, _| false);
    }
}

/// Every event-invalidated cache of the core.
#[derive(Debug)]
pub struct Caches {
    /// Channel contexts by `(channel, user)`.
    pub contexts: EventCache<(Snowflake, Snowflake), Arc<ChannelContext>>,
    /// Users' own views by user.
    pub self_views: EventCache<Snowflake, SelfUser>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            contexts: EventCache::new(CONTEXT_TTL),
            self_views: EventCache::new(SELF_TTL),
        }
    }
}

impl Caches {
    /// Applies an event: structural changes of a server drop its channels' contexts; a
    /// channel's own change drops that channel's; anything on a user's topic drops their
    /// own view.
    pub fn on_event(&self, topic: &Topic, event: &Event) {
        if let Topic::User(u) = topic {
            self.self_views.remove(u);
        }
        // The id a structural change names: its channel, or its server.
        let id = match event {
            Event::ChannelCreate(c) | Event::ChannelUpdate(c) | Event::ChannelDelete(c) => c.id,
            Event::ServerCreate(s) | Event::ServerUpdate(s) => s.id,
            Event::ServerDelete(d) => d.id,
            Event::RoleCreate(r) | Event::RoleUpdate(r) => r.server_id,
            Event::RoleDelete(r) => r.server_id,
            Event::ServerMemberAdd(m) | Event::ServerMemberUpdate(m) => m.server_id,
            Event::ServerMemberRemove(m) => m.server_id,
            _ => return,
        };
        match topic {
            Topic::Server(server) => {
                let server = Some(*server);
                self.contexts.retain(|_, c| c.server_id != server);
            }
            Topic::Channel(channel) => self.contexts.retain(|(c, _), _| c != channel),
            // A private channel created or changed for this user.
            Topic::User(_) => self.contexts.retain(|(c, _), _| *c != id),
            Topic::Global => self.clear(),
        }
    }

    /// Forgets everything (after events were lost).
    pub fn clear(&self) {
        self.contexts.clear();
        self.self_views.clear();
    }
}
