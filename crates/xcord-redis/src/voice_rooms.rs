//! Which node holds each voice channel's room (SPEC §5, scale mode): one key per room,
//! `{prefix}:voice:room:{channelId}` → `{nodeId} {internalUrl}`, taken with SET NX and
//! a 30 s lifetime that its owner extends every ten seconds while it has media sessions
//! there. Extending and releasing compare the value first (Lua), so a node never extends
//! or deletes a record another node took after its own lapsed.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use xcord_core::voice::{RoomOwner, VoiceRooms};
use xcord_types::Snowflake;

/// How long a room record lives without a refresh.
pub const ROOM_TTL: Duration = Duration::from_secs(30);

/// KEYS: the room key. ARGV: the owner's value, the lifetime in ms. 1 when `ARGV[1]` holds
/// the room afterwards (extended, or taken again after it lapsed), 0 when another does.
const REFRESH: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// KEYS: the room key. ARGV: the owner's value. 1 when it was deleted.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The room directory in Redis.
pub struct RedisVoiceRooms {
    conn: ConnectionManager,
    prefix: String,
    refresh: Script,
    release: Script,
}

impl std::fmt::Debug for RedisVoiceRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVoiceRooms")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn value_of(owner: &RoomOwner) -> String {
    format!("{} {}", owner.node_id, owner.url)
}

fn parse_value(v: &str) -> Option<RoomOwner> {
    let (node, url) = v.split_once(' ')?;
    Some(RoomOwner {
        node_id: node.parse().ok()?,
        url: url.to_owned(),
    })
}

fn ttl_ms() -> u64 {
    u64::try_from(ROOM_TTL.as_millis()).unwrap_or(30_000)
}

impl RedisVoiceRooms {
    /// The directory under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            refresh: Script::new(REFRESH),
            release: Script::new(RELEASE),
        }
    }

    /// Connects to `url` on its own (tests and tools; a node shares its connection).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self::new(client.get_connection_manager().await?, prefix))
    }

    fn key(&self, channel: Snowflake) -> String {
        format!("{}:voice:room:{channel}", self.prefix)
    }

    /// The record's remaining lifetime in ms (`None` without one), for tests.
    pub async fn ttl_ms(&self, channel: Snowflake) -> anyhow::Result<Option<u64>> {
        let mut c = self.conn.clone();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(self.key(channel))
            .query_async(&mut c)
            .await?;
        Ok(u64::try_from(ttl).ok())
    }
}

#[async_trait]
impl VoiceRooms for RedisVoiceRooms {
    async fn owner(&self, channel: Snowflake) -> anyhow::Result<Option<RoomOwner>> {
        let mut c = self.conn.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(self.key(channel))
            .query_async(&mut c)
            .await?;
        Ok(v.as_deref().and_then(parse_value))
    }

    async fn claim(&self, channel: Snowflake, me: &RoomOwner) -> anyhow::Result<RoomOwner> {
        let mut c = self.conn.clone();
        let key = self.key(channel);
        let mine = value_of(me);
        // The holder's record can lapse between the failed SET and the GET: try again, a
        // few times at most.
        for _ in 0..3 {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&mine)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms())
                .query_async(&mut c)
                .await?;
            if set.is_some() {
                return Ok(me.clone());
            }
            let held: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut c).await?;
            match held.as_deref().map(|v| (v, parse_value(v))) {
                Some((_, Some(owner))) => return Ok(owner),
                Some((v, None)) => anyhow::bail!("unreadable voice room record {v:?}"),
                None => continue,
            }
        }
        anyhow::bail!("the voice room record of {channel} keeps changing")
    }

    async fn refresh(&self, channel: Snowflake, me: &RoomOwner) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let held: i64 = self
            .refresh
            .key(self.key(channel))
            .arg(value_of(me))
            .arg(ttl_ms())
            .invoke_async(&mut c)
            .await?;
        Ok(held == 1)
    }

    async fn release(&self, channel: Snowflake, me: &RoomOwner) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let deleted: i64 = self
            .release
            .key(self.key(channel))
            .arg(value_of(me))
            .invoke_async(&mut c)
            .await?;
        Ok(deleted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_url() -> String {
        std::env::var("XCORD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn node(id: u16) -> RoomOwner {
        RoomOwner {
            node_id: id,
            url: format!("http://127.0.0.1:{}", 3000 + id),
        }
    }

    #[test]
    fn records_read_back() {
        let o = node(7);
        assert_eq!(parse_value(&value_of(&o)), Some(o));
        assert_eq!(parse_value("nonsense"), None);
        assert_eq!(parse_value("x http://a"), None);
    }

    #[tokio::test]
    async fn a_room_is_claimed_once_refreshed_by_its_owner_and_released_only_by_it()
    -> anyhow::Result<()> {
        let prefix = format!(
            "xcord-test-rooms-{}",
            hex::encode(rand::random::<[u8; 6]>())
        );
        let rooms = RedisVoiceRooms::connect(&redis_url(), &prefix).await?;
        let (a, b) = (node(1), node(2));
        let channel = Snowflake::from_i64(42);

        assert_eq!(rooms.owner(channel).await?, None);
        assert_eq!(rooms.claim(channel, &a).await?, a, "a free room is taken");
        assert_eq!(rooms.claim(channel, &b).await?, a, "a held room is not");
        assert_eq!(
            rooms.claim(channel, &a).await?,
            a,
            "claiming one's own room"
        );
        assert_eq!(rooms.owner(channel).await?, Some(a.clone()));
        let ttl = rooms.ttl_ms(channel).await?.unwrap_or(0);
        assert!(ttl > 25_000 && ttl <= 30_000, "lives 30 s: {ttl}");

        // Only the owner extends it; another node learns that it does not hold it.
        assert!(!rooms.refresh(channel, &b).await?);
        assert!(rooms.refresh(channel, &a).await?);
        assert_eq!(rooms.owner(channel).await?, Some(a.clone()));

        // Only the owner deletes it.
        assert!(!rooms.release(channel, &b).await?);
        assert_eq!(rooms.owner(channel).await?, Some(a.clone()));
        assert!(rooms.release(channel, &a).await?);
        assert_eq!(rooms.owner(channel).await?, None);
        assert!(!rooms.release(channel, &a).await?, "released once");

        // A lapsed record is taken again by the refresh of a node still serving the room.
        assert!(rooms.refresh(channel, &b).await?);
        assert_eq!(rooms.owner(channel).await?, Some(b.clone()));
        assert!(rooms.release(channel, &b).await?);

        // Keys live under the prefix.
        let other = RedisVoiceRooms::connect(&redis_url(), &format!("{prefix}-other")).await?;
        rooms.claim(channel, &a).await?;
        assert_eq!(other.owner(channel).await?, None);
        rooms.release(channel, &a).await?;
        Ok(())
    }
}
