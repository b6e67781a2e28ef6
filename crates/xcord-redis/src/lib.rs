//! Multi-node mode (SPEC §1 scale mode): several `xcord` nodes on one PostgreSQL share
//! Redis for event fan-out ([`RedisBus`]), presence ([`RedisPresence`]) and rate-limit
//! counters ([`RedisRateLimiter`]), and which node holds each voice room
//! ([`RedisVoiceRooms`]).
//!
//! Each node holds exactly two Redis connections, whatever its socket count: a multiplexed
//! one for commands and publishes, and one subscriber. Keys live under a prefix
//! (`XCORD_REDIS_PREFIX`) so that several deployments, or test runs, can share a server.

mod bus;
mod presence;
mod ratelimit;
mod voice_rooms;

pub use bus::RedisBus;
pub use presence::RedisPresence;
pub use ratelimit::RedisRateLimiter;
pub use voice_rooms::{ROOM_TTL, RedisVoiceRooms};

use std::sync::Arc;

use anyhow::Context as _;
use redis::aio::ConnectionManager;

/// Everything a node needs from Redis, sharing one command connection.
pub struct RedisServices {
    /// The event bus.
    pub bus: Arc<RedisBus>,
    /// Presence shared by every node.
    pub presence: Arc<RedisPresence>,
    /// Rate-limit counters shared by every node.
    pub limiter: Arc<RedisRateLimiter>,
    /// The voice room directory.
    pub voice_rooms: Arc<RedisVoiceRooms>,
}

/// Connects to `url`, subscribes to the event channel and starts presence housekeeping.
/// `node_id` marks this node's events; `prefix` namespaces every key and channel.
pub async fn connect(url: &str, prefix: &str, node_id: u16) -> anyhow::Result<RedisServices> {
    let client = redis::Client::open(url).context("XCORD_REDIS_URL is not a Redis URL")?;
    let conn: ConnectionManager = client
        .get_connection_manager()
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))?;
    // One id per process: tells a node's own events apart when they come back from Redis,
    // even if two nodes were given the same XCORD_NODE_ID.
    let instance = hex::encode(rand::random::<[u8; 8]>());
    let bus = Arc::new(RedisBus::connect(client, conn.clone(), prefix, &instance, 16_384).await?);
    let presence = Arc::new(RedisPresence::new(
        conn.clone(),
        prefix,
        &instance,
        bus.clone(),
        node_id,
    ));
    presence.start_housekeeping();
    let limiter = Arc::new(RedisRateLimiter::new(conn.clone(), prefix));
    let voice_rooms = Arc::new(RedisVoiceRooms::new(conn, prefix));
    Ok(RedisServices {
        bus,
        presence,
        limiter,
        voice_rooms,
    })
}
