//! The event bus over Redis pub/sub. A node delivers its own events to its subscribers at
//! once and publishes them to one Redis channel; its one subscriber connection delivers the
//! other nodes' events. At-most-once: events published while a node's subscriber is
//! reconnecting are lost to it (clients recover through resume or a fresh IDENTIFY).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use xcord_bus::{BusError, BusEvent, EventBus, Subscription, Topic, TopicFilter};

/// The Redis event bus of one node.
pub struct RedisBus {
    conn: ConnectionManager,
    channel: String,
    instance: String,
    tx: broadcast::Sender<Arc<BusEvent>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `instance \t topic \t node \t id \t flags \t name \t data`: the payload is carried as is,
/// never parsed. `flags` is `r` for an event an outbox relay published late, else empty.
/// Frames of the previous build, without the flags field, are still read (no event name is
/// empty or `r`, so the two forms cannot be confused).
fn encode(instance: &str, ev: &BusEvent) -> String {
    let topic = ev.topic.to_text();
    let mut s = String::with_capacity(ev.data.len() + ev.name.len() + topic.len() + 40);
    s.push_str(instance);
    s.push('\t');
    s.push_str(&topic);
    s.push('\t');
    s.push_str(&ev.origin_node.to_string());
    s.push('\t');
    s.push_str(&ev.id.to_string());
    s.push('\t');
    if ev.relayed {
        s.push('r');
    }
    s.push('\t');
    s.push_str(ev.name);
    s.push('\t');
    s.push_str(&ev.data);
    s
}

fn decode(s: &str) -> Option<(&str, BusEvent)> {
    let mut parts = s.splitn(5, '\t');
    let instance = parts.next()?;
    let topic = Topic::parse(parts.next()?)?;
    let node = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let (relayed, rest) = match rest.split_once('\t')? {
        ("", rest) => (false, rest),
        ("r", rest) => (true, rest),
        // The previous build's frame: the name comes right after the id.
        _ => (false, rest),
    };
    let (name, data) = rest.split_once('\t')?;
    // A name this node does not know (a newer node's event) is not routed.
    let ev = BusEvent::from_parts(topic, name, data, node)?.with_id(id);
    Some((instance, if relayed { ev.relayed() } else { ev }))
}

impl RedisBus {
    /// Subscribes (waiting until Redis confirms) and starts the subscriber task.
    pub async fn connect(
        client: redis::Client,
        conn: ConnectionManager,
        prefix: &str,
        instance: &str,
        capacity: usize,
    ) -> anyhow::Result<Self> {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let channel = format!("{prefix}:events");
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(subscriber(
            client,
            channel.clone(),
            instance.to_owned(),
            tx.clone(),
            stop.clone(),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("Redis did not confirm the event subscription"))?
            .map_err(|_| anyhow::anyhow!("the Redis subscriber stopped"))?;
        Ok(Self {
            conn,
            channel,
            instance: instance.to_owned(),
            tx,
            stop,
        })
    }
}

async fn subscriber(
    client: redis::Client,
    channel: String,
    instance: String,
    tx: broadcast::Sender<Arc<BusEvent>>,
    stop: CancellationToken,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "Redis subscriber cannot connect; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::warn!(error = %e, "Redis subscribe failed; retrying");
            continue;
        }
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        let mut stream = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => return,
                m = stream.next() => m,
            };
            let Some(msg) = msg else {
                tracing::warn!("Redis subscription dropped; reconnecting");
                break;
            };
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            match decode(&payload) {
                Some((from, ev)) if from != instance => {
                    metrics::counter!("bus_events_received_total").increment(1);
                    let _ = tx.send(Arc::new(ev));
                }
                Some(_) => {}
                None => tracing::warn!("undecodable event on the Redis bus"),
            }
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: BusEvent) -> Result<(), BusError> {
        metrics::counter!("bus_events_published_total").increment(1);
        let wire = encode(&self.instance, &event);
        // Local subscribers first: this node's clients never wait on Redis.
        let _ = self.tx.send(Arc::new(event));
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(wire)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }

    fn subscribe(&self, filter: TopicFilter) -> Subscription {
        Subscription::new(self.tx.subscribe(), filter)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcord_types::Snowflake;

    #[test]
    fn events_survive_the_wire_encoding() {
        for (topic, relayed) in [
            (Topic::Server(Snowflake::from_i64(1)), false),
            (Topic::Channel(Snowflake::from_i64(22)), true),
            (Topic::User(Snowflake::from_i64(333)), false),
            (Topic::Global, false),
        ] {
            let ev = BusEvent::from_parts(topic, "MESSAGE_CREATE", r#"{"a":"b\tc"}"#, 7)
                .expect("a known name")
                .with_id(42);
            let ev = if relayed { ev.relayed() } else { ev };
            let wire = encode("abc", &ev);
            let (from, back) = decode(&wire).expect("decodes");
            assert_eq!(from, "abc");
            assert_eq!(
                (
                    back.topic,
                    back.name,
                    &*back.data,
                    back.origin_node,
                    back.id,
                    back.relayed
                ),
                (
                    ev.topic,
                    ev.name,
                    &*ev.data,
                    ev.origin_node,
                    ev.id,
                    ev.relayed
                )
            );
        }
        assert!(decode("x\tq1\t0\t1\t\tN\t{}").is_none());
        assert!(decode("x\ts1\t0\tnot-an-id\t\tN\t{}").is_none());
        assert!(decode("x\ts1\t0\t1\tq\tMESSAGE_CREATE\t{}").is_none());
        // A frame of the previous build (no flags field) still reads.
        let (_, old) = decode("x\ts1\t3\t9\tROLE_DELETE\t{\"a\":1}").expect("old frame");
        assert_eq!(
            (old.name, &*old.data, old.id, old.relayed),
            ("ROLE_DELETE", "{\"a\":1}", 9, false)
        );
        assert!(decode("garbage").is_none());
        assert!(decode("x\ts1\t0\t1\t\tNOT_AN_EVENT\t{}").is_none());
    }
}
