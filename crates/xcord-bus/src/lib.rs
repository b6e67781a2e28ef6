//! The event bus: domain events leave a use-case only after its transaction committed, and
//! reach every subscriber on every node that cares about their topic.
//!
//! An event is serialized once, when it is published ([`BusEvent::data`] is shared JSON
//! text), so fan-out to thousands of sessions never serializes it again. Delivery is
//! at-most-once: a subscriber that falls more than the bus capacity behind loses the oldest
//! events and is told how many ([`RecvError::Lagged`]); the gateway then falls back to
//! resume-from-database semantics. The in-process bus is [`InProcessBus`]; the Redis bus for
//! several nodes implements the same [`EventBus`] trait.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::broadcast;
use xcord_types::Snowflake;
use xcord_types::events::Event;

/// Where an event belongs: the audience a subscriber selects by.
///
/// Its text form (`s<id>`, `c<id>`, `u<id>`, `g`) travels over Redis and is kept in the
/// gateway's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything about one server (members, roles, channels of it).
    Server(Snowflake),
    /// One channel, including DM channels (messages, typing, pins).
    Channel(Snowflake),
    /// One user (their sessions, relationships, DMs created for them).
    User(Snowflake),
    /// Everyone on every node (e.g. shutdown notices).
    Global,
}

impl Topic {
    /// The text form.
    pub fn to_text(&self) -> String {
        match self {
            Topic::Server(id) => format!("s{id}"),
            Topic::Channel(id) => format!("c{id}"),
            Topic::User(id) => format!("u{id}"),
            Topic::Global => "g".into(),
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        let id = |rest: &str| rest.parse::<i64>().ok().map(Snowflake::from_i64);
        match s.split_at_checked(1)? {
            ("s", rest) => id(rest).map(Topic::Server),
            ("c", rest) => id(rest).map(Topic::Channel),
            ("u", rest) => id(rest).map(Topic::User),
            ("g", "") => Some(Topic::Global),
            _ => None,
        }
    }
}

/// One published event: the typed [`Event`] and its payload serialized once.
///
/// An event published on this node carries its typed form from the start; one that arrived
/// from another node carries its name and JSON text, and is decoded the first time a
/// consumer asks for it ([`BusEvent::event`]), so fan-out of a message to sessions never
/// parses it.
#[derive(Debug)]
pub struct BusEvent {
    /// The audience.
    pub topic: Topic,
    /// The dispatch name, e.g. `MESSAGE_CREATE`.
    pub name: &'static str,
    /// The payload as JSON text, serialized once at publish time.
    pub data: Arc<str>,
    /// The node that published it.
    pub origin_node: u16,
    /// Its id in the gateway's event log (a snowflake), or 0 for an event not logged.
    pub id: i64,
    /// Published late by an outbox relay, not by the use-case that made it: newer changes
    /// may have gone out before it, so what it says is a hint to reload, not the state.
    pub relayed: bool,
    event: OnceLock<Option<Event>>,
}

impl BusEvent {
    /// The same event with its log id.
    #[must_use]
    pub fn with_id(mut self, id: i64) -> Self {
        self.id = id;
        self
    }

    /// The same event, marked as published late by an outbox relay.
    #[must_use]
    pub fn relayed(mut self) -> Self {
        self.relayed = true;
        self
    }

    /// A new event, its payload serialized here (the only time it is).
    pub fn new(topic: Topic, event: Event, origin_node: u16) -> serde_json::Result<Self> {
        let data: Arc<str> = event.payload_json()?.into();
        Ok(Self {
            topic,
            name: event.name(),
            data,
            origin_node,
            id: 0,
            relayed: false,
            event: OnceLock::from(Some(event)),
        })
    }

    /// An event read back from its parts (from another node, or from the event log); `None`
    /// when no event has this name. The payload is decoded when it is first needed.
    pub fn from_parts(
        topic: Topic,
        name: &str,
        data: impl Into<Arc<str>>,
        origin_node: u16,
    ) -> Option<Self> {
        Some(Self {
            topic,
            name: Event::known_name(name)?,
            data: data.into(),
            origin_node,
            id: 0,
            relayed: false,
            event: OnceLock::new(),
        })
    }

    /// The typed event; `None` (logged once) when its payload does not have the event's
    /// shape, which only a node of another version can publish.
    pub fn event(&self) -> Option<&Event> {
        self.event
            .get_or_init(|| match Event::decode(self.name, &self.data) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "an event from another node cannot be read");
                    None
                }
            })
            .as_ref()
    }

    /// The op code clients receive it with (`None`: between nodes only).
    pub fn op(&self) -> Option<u8> {
        xcord_types::gateway::dispatch_op(self.name)
    }
}

/// Two events are the same when they say the same thing to the same audience (the typed
/// form is read from the payload, so it adds nothing to compare).
impl PartialEq for BusEvent {
    fn eq(&self, other: &Self) -> bool {
        (
            self.topic,
            self.name,
            &self.data,
            self.origin_node,
            self.id,
            self.relayed,
        ) == (
            other.topic,
            other.name,
            &other.data,
            other.origin_node,
            other.id,
            other.relayed,
        )
    }
}

impl Eq for BusEvent {}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The transport (e.g. Redis) could not take the event.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// Why a [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind and this many events were dropped for it.
    #[error("subscriber lagged; {0} events dropped")]
    Lagged(u64),
    /// The bus was shut down.
    #[error("event bus closed")]
    Closed,
}

/// Which topics a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicFilter {
    /// Every event (a node's dispatcher uses this and routes to sessions itself).
    All,
    /// Only these topics.
    Only(HashSet<Topic>),
}

impl TopicFilter {
    /// Whether an event on `topic` passes.
    pub fn admits(&self, topic: &Topic) -> bool {
        match self {
            TopicFilter::All => true,
            TopicFilter::Only(set) => set.contains(topic),
        }
    }
}

/// A stream of events for one subscriber.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<BusEvent>>,
    filter: TopicFilter,
}

impl Subscription {
    /// Wraps a receiver of a node-local broadcast channel; used by bus implementations.
    pub fn new(rx: broadcast::Receiver<Arc<BusEvent>>, filter: TopicFilter) -> Self {
        Self { rx, filter }
    }

    /// The next event whose topic passes the filter.
    pub async fn recv(&mut self) -> Result<Arc<BusEvent>, RecvError> {
        loop {
            match self.rx.recv().await {
                Ok(ev) if self.filter.admits(&ev.topic) => return Ok(ev),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("bus_lagged_events_total").increment(n);
                    return Err(RecvError::Lagged(n));
                }
                Err(broadcast::error::RecvError::Closed) => return Err(RecvError::Closed),
            }
        }
    }

    /// Adds a topic to an `Only` filter (no effect on `All`).
    pub fn add_topic(&mut self, topic: Topic) {
        if let TopicFilter::Only(set) = &mut self.filter {
            set.insert(topic);
        }
    }

    /// Removes a topic from an `Only` filter.
    pub fn remove_topic(&mut self, topic: &Topic) {
        if let TopicFilter::Only(set) = &mut self.filter {
            set.remove(topic);
        }
    }
}

/// Publish after commit; subscribe by topic.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Sends `event` to every subscriber whose filter admits its topic, on every node.
    /// Call only after the transaction that produced the event has committed.
    async fn publish(&self, event: BusEvent) -> Result<(), BusError>;
    /// A new subscription receiving events published from now on.
    fn subscribe(&self, filter: TopicFilter) -> Subscription;
    /// `"in-process"` or `"redis"`, for health output.
    fn kind(&self) -> &'static str;
    /// Whether the transport answers (always, in process).
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// The embedded bus: one bounded broadcast channel inside the process.
///
/// Publishing never waits: a full channel overwrites the oldest event, and subscribers that
/// had not read it see [`RecvError::Lagged`]. A slow subscriber therefore never slows the
/// publisher or anyone else.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    tx: broadcast::Sender<Arc<BusEvent>>,
}

impl InProcessBus {
    /// A bus holding up to `capacity` events for its slowest subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(16_384)
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: BusEvent) -> Result<(), BusError> {
        metrics::counter!("bus_events_published_total").increment(1);
        // An error only means nobody is subscribed right now, which is not a failure.
        let _ = self.tx.send(Arc::new(event));
        Ok(())
    }

    fn subscribe(&self, filter: TopicFilter) -> Subscription {
        Subscription::new(self.tx.subscribe(), filter)
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(topic: Topic, n: u32) -> BusEvent {
        // Never decoded here: the bus carries the payload as it is.
        BusEvent::from_parts(
            topic,
            "TYPING_START",
            serde_json::json!({ "n": n }).to_string(),
            0,
        )
        .expect("a known name")
    }

    async fn next(sub: &mut Subscription) -> Result<Arc<BusEvent>, RecvError> {
        tokio::time::timeout(Duration::from_secs(1), sub.recv())
            .await
            .unwrap_or(Err(RecvError::Closed))
    }

    #[tokio::test]
    async fn subscribers_get_only_their_topics_in_order() {
        let bus = InProcessBus::new(64);
        let chan = Topic::Channel(Snowflake::from_i64(7));
        let other = Topic::Channel(Snowflake::from_i64(8));
        let mut only = bus.subscribe(TopicFilter::Only([chan].into()));
        let mut all = bus.subscribe(TopicFilter::All);
        for n in 0..3 {
            bus.publish(ev(other, 100 + n)).await.ok();
            bus.publish(ev(chan, n)).await.ok();
        }
        for n in 0..3 {
            let got = next(&mut only).await.expect("event");
            assert_eq!((got.topic, &*got.data), (chan, &*format!("{{\"n\":{n}}}")));
        }
        let mut seen = 0;
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), all.recv()).await {
            seen += 1;
        }
        assert_eq!(seen, 6);
    }

    #[tokio::test]
    async fn events_before_subscribing_are_not_delivered() {
        let bus = InProcessBus::new(8);
        bus.publish(ev(Topic::Global, 1)).await.ok();
        let mut sub = bus.subscribe(TopicFilter::All);
        bus.publish(ev(Topic::Global, 2)).await.ok();
        assert_eq!(&*next(&mut sub).await.expect("event").data, "{\"n\":2}");
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_blocking_the_publisher() {
        let bus = InProcessBus::new(4);
        let mut slow = bus.subscribe(TopicFilter::All);
        for n in 0..10 {
            // Never blocks even though nobody reads.
            tokio::time::timeout(
                Duration::from_millis(100),
                bus.publish(ev(Topic::Global, n)),
            )
            .await
            .expect("publish must not wait")
            .expect("publish");
        }
        assert_eq!(next(&mut slow).await, Err(RecvError::Lagged(6)));
        // After the lag it continues with the oldest event still held.
        assert_eq!(&*next(&mut slow).await.expect("event").data, "{\"n\":6}");
    }

    #[tokio::test]
    async fn topics_can_be_added_and_removed_on_a_live_subscription() {
        let bus = InProcessBus::new(16);
        let a = Topic::Server(Snowflake::from_i64(1));
        let mut sub = bus.subscribe(TopicFilter::Only(HashSet::new()));
        sub.add_topic(a);
        bus.publish(ev(a, 1)).await.ok();
        assert_eq!(next(&mut sub).await.map(|e| e.topic), Ok(a));
        sub.remove_topic(&a);
        bus.publish(ev(a, 2)).await.ok();
        bus.publish(ev(Topic::Global, 3)).await.ok();
        let r = tokio::time::timeout(Duration::from_millis(50), sub.recv()).await;
        assert!(r.is_err(), "removed topic still delivered: {r:?}");
    }
}
