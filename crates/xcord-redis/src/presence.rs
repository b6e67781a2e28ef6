//! Presence shared by every node. Per user, one hash counts connections per node process
//! (`c:<instance>`) and holds the chosen status; a set lists users others see online.
//! Every change is one Lua script, so concurrent nodes never interleave halfway.
//!
//! A node that dies without closing its connections is noticed by the others: each node
//! refreshes a liveness key every few seconds, and any node that finds another's key gone
//! removes that node's connection counts and announces the users who went offline.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use xcord_bus::{BusEvent, EventBus, Topic};
use xcord_core::presence::PresenceStore;
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::rest::users::{Presence, Status};

use crate::RedisBus;

/// How often a node proves it is alive, and how long the proof lasts.
const LIVENESS_EVERY: Duration = Duration::from_secs(5);
const LIVENESS_TTL_MS: u64 = 20_000;

const LIB: &str = r"
local function total(k)
  local t = 0
  local all = redis.call('HGETALL', k)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'c:' then t = t + tonumber(all[i + 1]) end
  end
  return t
end
local function sync_online(k, online, user)
  local st = redis.call('HGET', k, 'status')
  if st and st ~= 'invisible' and st ~= 'offline' and total(k) > 0 then
    redis.call('SADD', online, user)
  else
    redis.call('SREM', online, user)
  end
end
";

/// KEYS: user hash, online set, instance users set. ARGV: field, status, custom, has custom,
/// user id. Returns 1 for the user's first connection.
const CONNECT: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'custom', ARGV[3]) else redis.call('HDEL', KEYS[1], 'custom') end
redis.call('SADD', KEYS[3], ARGV[5])
sync_online(KEYS[1], KEYS[2], ARGV[5])
if total(KEYS[1]) == 1 then return 1 end
return 0
";

/// KEYS and ARGV as CONNECT (status/custom unused). Returns 1 when it was the last one.
const DISCONNECT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[5])
end
if total(KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[5])
  return 1
end
return 0
";

/// KEYS: user hash, online set. ARGV: status, custom, custom mode (0 keep, 1 set, 2 clear),
/// user id.
const SET_STATUS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'custom', ARGV[2]) end
if ARGV[3] == '2' then redis.call('HDEL', KEYS[1], 'custom') end
sync_online(KEYS[1], KEYS[2], ARGV[4])
return 1
";

/// KEYS: dead instance's users set, online set. ARGV: field, key prefix. Removes the dead
/// node's counts; returns the users left with no connection.
const REAP: &str = r"
local gone = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[2] .. user
  redis.call('HDEL', k, ARGV[1])
  if total(k) == 0 then
    redis.call('DEL', k)
    redis.call('SREM', KEYS[2], user)
    table.insert(gone, user)
  else
    sync_online(k, KEYS[2], user)
  end
end
redis.call('DEL', KEYS[1])
return gone
";

/// Presence in Redis.
pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    instance: String,
    bus: Weak<RedisBus>,
    node_id: u16,
    connect: Script,
    disconnect: Script,
    set_status: Script,
    reap: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    /// Presence under `prefix`, counting this process's connections as `instance`.
    pub fn new(
        conn: ConnectionManager,
        prefix: &str,
        instance: &str,
        bus: Arc<RedisBus>,
        node_id: u16,
    ) -> Self {
        let script = |body: &str| Script::new(&format!("{LIB}{body}"));
        Self {
            conn,
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
            bus: Arc::downgrade(&bus),
            node_id,
            connect: script(CONNECT),
            disconnect: script(DISCONNECT),
            set_status: script(SET_STATUS),
            reap: script(REAP),
        }
    }

    fn user_key(&self, user: Snowflake) -> String {
        format!("{}:presence:u:{user}", self.prefix)
    }

    fn online_key(&self) -> String {
        format!("{}:presence:online", self.prefix)
    }

    fn instance_users_key(&self, instance: &str) -> String {
        format!("{}:presence:i:{instance}", self.prefix)
    }

    fn field(&self) -> String {
        format!("c:{}", self.instance)
    }

    /// Starts the liveness refresh and the reaping of dead nodes; stops with the bus.
    pub fn start_housekeeping(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVENESS_EVERY);
            loop {
                tick.tick().await;
                let Some(p) = me.upgrade() else { return };
                if p.bus.upgrade().is_none() {
                    return;
                }
                if let Err(e) = p.housekeeping().await {
                    tracing::warn!(error = %e, "presence housekeeping failed");
                }
            }
        });
    }

    async fn housekeeping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let nodes = format!("{}:presence:nodes", self.prefix);
        let alive = |i: &str| format!("{}:presence:alive:{i}", self.prefix);
        redis::pipe()
            .cmd("SET")
            .arg(alive(&self.instance))
            .arg(1)
            .arg("PX")
            .arg(LIVENESS_TTL_MS)
            .ignore()
            .cmd("SADD")
            .arg(&nodes)
            .arg(&self.instance)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&nodes)
            .query_async(&mut c)
            .await?;
        for other in members.iter().filter(|m| **m != self.instance) {
            let exists: bool = redis::cmd("EXISTS")
                .arg(alive(other))
                .query_async(&mut c)
                .await?;
            if exists {
                continue;
            }
            let gone: Vec<String> = self
                .reap
                .key(self.instance_users_key(other))
                .key(self.online_key())
                .arg(format!("c:{other}"))
                .arg(format!("{}:presence:u:", self.prefix))
                .invoke_async(&mut c)
                .await?;
            let _: () = redis::cmd("SREM")
                .arg(&nodes)
                .arg(other)
                .query_async(&mut c)
                .await?;
            tracing::info!(node = %other, users = gone.len(), "reaped the presence of a dead node");
            if let Some(bus) = self.bus.upgrade() {
                for user in gone {
                    let Ok(id) = user.parse::<i64>() else {
                        continue;
                    };
                    let offline = Event::PresenceUpdate(Presence {
                        user_id: Snowflake::from_i64(id),
                        status: Status::Offline,
                        custom_status: None,
                    });
                    let Ok(ev) =
                        BusEvent::new(Topic::User(Snowflake::from_i64(id)), offline, self.node_id)
                    else {
                        continue;
                    };
                    let _ = bus.publish(ev).await;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn connect(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<String>,
    ) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let first: i64 = self
            .connect
            .key(self.user_key(user))
            .key(self.online_key())
            .key(self.instance_users_key(&self.instance))
            .arg(self.field())
            .arg(status.as_str())
            .arg(custom_status.as_deref().unwrap_or(""))
            .arg(if custom_status.is_some() { "1" } else { "0" })
            .arg(user.to_string())
            .invoke_async(&mut c)
            .await?;
        Ok(first == 1)
    }

    async fn disconnect(&self, user: Snowflake) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let last: i64 = self
            .disconnect
            .key(self.user_key(user))
            .key(self.online_key())
            .key(self.instance_users_key(&self.instance))
            .arg(self.field())
            .arg("")
            .arg("")
            .arg("0")
            .arg(user.to_string())
            .invoke_async(&mut c)
            .await?;
        Ok(last == 1)
    }

    async fn set_status(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<Option<String>>,
    ) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let (text, mode) = match &custom_status {
            None => ("", "0"),
            Some(Some(t)) => (t.as_str(), "1"),
            Some(None) => ("", "2"),
        };
        let _: i64 = self
            .set_status
            .key(self.user_key(user))
            .key(self.online_key())
            .arg(status.as_str())
            .arg(text)
            .arg(mode)
            .arg(user.to_string())
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    async fn visible_status(&self, user: Snowflake) -> anyhow::Result<(Status, Option<String>)> {
        let mut c = self.conn.clone();
        let (status, custom): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.user_key(user))
            .arg("status")
            .arg("custom")
            .query_async(&mut c)
            .await?;
        Ok(match status.as_deref().and_then(Status::parse) {
            Some(s @ (Status::Online | Status::Idle | Status::Dnd)) => (s, custom),
            _ => (Status::Offline, None),
        })
    }

    async fn online_count(&self) -> anyhow::Result<u64> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("SCARD")
            .arg(self.online_key())
            .query_async(&mut c)
            .await?)
    }

    async fn online_among(&self, users: &[Snowflake]) -> anyhow::Result<Vec<Snowflake>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for the candidates, not the whole online set.
        let mut c = self.conn.clone();
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(self.online_key())
            .arg(users.iter().map(|u| u.get()).collect::<Vec<_>>())
            .query_async(&mut c)
            .await?;
        Ok(users
            .iter()
            .zip(flags)
            .filter_map(|(u, on)| on.then_some(*u))
            .collect())
    }

    async fn online_users(&self) -> anyhow::Result<Vec<Snowflake>> {
        let mut c = self.conn.clone();
        let ids: Vec<i64> = redis::cmd("SMEMBERS")
            .arg(self.online_key())
            .query_async(&mut c)
            .await?;
        Ok(ids.into_iter().map(Snowflake::from_i64).collect())
    }
}
