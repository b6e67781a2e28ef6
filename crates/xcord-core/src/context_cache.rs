//! Cached channel contexts: what a caller may do in a channel, computed once and reused by
//! every message request until an event says the inputs changed.
//!
//! Invalidation is by event. Changes made on this node invalidate synchronously in
//! [`Core::publish`](crate::Core::publish), before the event leaves; changes from other
//! nodes arrive over the bus and are applied by a subscriber. A load that raced with an
//! invalidation is not stored (an epoch counter tells). Entries also expire after a few
//! seconds, which bounds staleness should the bus ever drop an invalidation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;
use xcord_bus::{BusEvent, EventBus, RecvError, Topic, TopicFilter};
use xcord_types::Snowflake;

use crate::messages::ChannelContext;

/// How long an entry may be used without an invalidating event.
const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; the map is cleared when it would grow past this.
const MAX_ENTRIES: usize = 200_000;

type Entry = (Instant, Arc<ChannelContext>);

/// Channel contexts by `(channel, user)`.
#[derive(Debug, Default)]
pub struct ContextCache {
    // No await while locked; short critical sections.
    map: Mutex<HashMap<(Snowflake, Snowflake), Entry>>,
    epoch: AtomicU64,
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<Snowflake>,
}

impl ContextCache {
    /// The cached context, if fresh.
    pub fn get(&self, channel: Snowflake, user: Snowflake) -> Option<Arc<ChannelContext>> {
        let map = self.map.lock().ok()?;
        map.get(&(channel, user))
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, c)| c.clone())
    }

    /// The epoch to pass to [`ContextCache::put`] (read before loading).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a context loaded since `epoch`, unless something was invalidated meanwhile.
    pub fn put(&self, epoch: u64, user: Snowflake, ctx: Arc<ChannelContext>) {
        if let Ok(mut map) = self.map.lock()
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert((ctx.channel.id, user), (Instant::now(), ctx));
        }
    }

    fn retain(&self, keep: impl Fn(&(Snowflake, Snowflake), &Entry) -> bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, v| keep(k, v));
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.retain(|_, _| false);
    }

    /// Applies an event: structural changes of a server drop its channels' entries; a
    /// channel's own change drops that channel's.
    pub fn on_event(&self, topic: &Topic, name: &str, data: &str) {
        let structural = name.starts_with("ROLE_")
            || name.starts_with("SERVER_")
            || matches!(name, "CHANNEL_CREATE" | "CHANNEL_UPDATE" | "CHANNEL_DELETE");
        if !structural {
            return;
        }
        match topic {
            Topic::Server(server) => {
                let server = Some(*server);
                self.retain(|_, (_, c)| c.server_id != server);
            }
            Topic::Channel(channel) => self.retain(|(c, _), _| c != channel),
            Topic::User(_) => {
                // A private channel created or changed for this user.
                if let Ok(IdOnly { id: Some(channel) }) = serde_json::from_str(data) {
                    self.retain(|(c, _), _| *c != channel);
                }
            }
            Topic::Global => self.clear(),
        }
    }

    /// Applies other nodes' events for as long as the cache lives.
    pub fn follow(self: &Arc<Self>, bus: &Arc<dyn EventBus>) {
        let mut sub = bus.subscribe(TopicFilter::All);
        let me: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let ev: Arc<BusEvent> = match sub.recv().await {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(_)) => {
                        let Some(me) = me.upgrade() else { return };
                        me.clear();
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Some(me) = me.upgrade() else { return };
                me.on_event(&ev.topic, &ev.name, &ev.data);
            }
        });
    }
}

/// How long a cached self view may be served without an event about its user.
const SELF_TTL: Duration = Duration::from_secs(1);

/// Users' own views (`GET /users/@me`), dropped by any event on the user's topic and
/// otherwise kept for a second: the hottest authenticated read needs no query.
#[derive(Debug, Default)]
pub struct SelfViewCache {
    // No await while locked.
    map: Mutex<HashMap<Snowflake, (Instant, xcord_types::rest::users::SelfUser)>>,
    epoch: AtomicU64,
}

impl SelfViewCache {
    /// The cached view of `user`, if fresh.
    pub fn get(&self, user: Snowflake) -> Option<xcord_types::rest::users::SelfUser> {
        let map = self.map.lock().ok()?;
        map.get(&user)
            .filter(|(at, _)| at.elapsed() < SELF_TTL)
            .map(|(_, v)| v.clone())
    }

    /// The epoch to pass to [`SelfViewCache::put`] (read before loading).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a view loaded since `epoch`, unless an event came meanwhile.
    pub fn put(&self, epoch: u64, user: Snowflake, view: xcord_types::rest::users::SelfUser) {
        if let Ok(mut map) = self.map.lock()
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(user, (Instant::now(), view));
        }
    }

    /// Drops `user`'s view (any event on their topic may have changed it).
    pub fn forget(&self, user: Snowflake) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = self.map.lock() {
            map.remove(&user);
        }
    }
}
