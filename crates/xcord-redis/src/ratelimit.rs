//! Fixed-window rate-limit counters in Redis, shared by every node: one script per request
//! counts and reports the window's remaining time.

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use xcord_core::ratelimit::{Limit, RateDecision, RateLimiter, Tier};

/// KEYS: the counter. ARGV: window in ms. Returns {count, ms left}.
const HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// Rate limits in Redis.
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    hit: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Counters under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            hit: Script::new(HIT),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, tier: Tier, key: &str, limit: Limit) -> anyhow::Result<RateDecision> {
        let mut c = self.conn.clone();
        let window_ms = limit.window_secs.saturating_mul(1000).max(1);
        let (count, left_ms): (u64, u64) = self
            .hit
            .key(format!("{}:rl:{}:{key}", self.prefix, tier.name()))
            .arg(window_ms)
            .invoke_async(&mut c)
            .await?;
        let max = u64::from(limit.max);
        Ok(RateDecision {
            allowed: count <= max,
            limit: limit.max,
            remaining: u32::try_from(max.saturating_sub(count)).unwrap_or(0),
            reset_secs: left_ms.div_ceil(1000).max(1),
        })
    }
}
