//! A use-case's write as one unit (STYLE 12): its state changes, its audit row and its
//! events commit in one transaction, or none of them do.
//!
//! Events are written to the log with an outbox marker inside the transaction
//! ([`UnitOfWork::emit`]); after the commit they are published from memory and their
//! markers removed in the background. Should the node die between the commit and the
//! publish, or the bus refuse the event, the marker stays and a relay on any node
//! ([`Core::relay_unpublished`]) publishes it a few seconds late; a resume reads it from the
//! log either way. Receivers drop an event id they already routed, so a late copy of an
//! event that did go out is harmless.

use xcord_bus::{BusEvent, Topic};
use xcord_store::{AuditRecord, LoggedEvent, Store, WriteTx};
use xcord_types::Snowflake;
use xcord_types::events::Event;

use crate::{Core, Error, Result};

/// Markers younger than this belong to a publisher that may still be at work.
const RELAY_AFTER_MS: i64 = 3_000;
/// Most events one relay round takes.
const RELAY_BATCH: i64 = 500;
/// A marker whose event this node cannot read (a newer node's) is left to the nodes that
/// can for this long, then dropped so that it never holds up the relay.
const UNREADABLE_FOR_MS: i64 = 300_000;

/// An open write transaction with the events it will publish once committed.
pub struct UnitOfWork<'c> {
    core: &'c Core,
    tx: WriteTx,
    staged: Vec<BusEvent>,
}

impl std::fmt::Debug for UnitOfWork<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Opens a unit of work (the write transaction of one use-case).
    pub async fn begin(&self) -> Result<UnitOfWork<'_>> {
        Ok(UnitOfWork {
            core: self,
            tx: self.store.begin_write().await?,
            staged: Vec::new(),
        })
    }

    /// An event of a change committed by other means than a [`UnitOfWork`] (the group
    /// commit of messages): its id and payload, for the store to write with the change
    /// ([`logged_event`]) and for [`Core::publish_committed`] after.
    pub(crate) fn prepare_event(&self, topic: Topic, event: Event) -> Result<BusEvent> {
        debug_assert!(event.op().is_some(), "{} is not dispatched", event.name());
        let ev = BusEvent::new(topic, event, self.settings.node_id)
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("serializing an event")))?;
        Ok(ev.with_id(self.ids.next_id().get()))
    }

    /// Publishes events whose transaction committed with their outbox markers, then
    /// removes the markers of those the bus took.
    pub(crate) async fn publish_committed(&self, events: Vec<BusEvent>) {
        let mut published = Vec::with_capacity(events.len());
        for ev in events {
            let id = ev.id;
            // When the bus refuses it, the marker stays and the relay publishes it later.
            if self.publish_outboxed(ev).await {
                published.push(id);
            }
        }
        self.event_log.published(published).await;
    }

    /// Publishes one event of the outbox; whether the bus took it.
    async fn publish_outboxed(&self, ev: BusEvent) -> bool {
        // This node's own changes invalidate cached permissions before anyone hears.
        if let Some(event) = ev.event() {
            self.caches.on_event(&ev.topic, event);
        }
        match self.bus.publish(ev).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "an outbox event was not published");
                false
            }
        }
    }

    /// Publishes events whose publisher did not get to it (see the module docs); run by
    /// every node's housekeeping. Returns how many went out.
    pub async fn relay_unpublished(&self) -> Result<usize> {
        let now = self.clock.now().as_millis();
        let before = Snowflake::from_parts(now - RELAY_AFTER_MS, 0, 0).get();
        let Some((claim, claimed, events)) =
            self.store.claim_unpublished(before, RELAY_BATCH).await?
        else {
            return Ok(0);
        };
        let give_up = Snowflake::from_parts(now - UNREADABLE_FOR_MS, 0, 0).get();
        // Markers whose event is gone (pruned from the log) have nothing left to publish.
        let found: std::collections::HashSet<i64> = events.iter().map(|e| e.id).collect();
        let mut done: Vec<i64> = claimed
            .into_iter()
            .filter(|id| !found.contains(id))
            .collect();
        // The markers stay held until the events went out: a relay that fails (or a node
        // that dies) in between leaves them for the next round, on any node.
        let mut published = 0;
        for e in events {
            let node = Snowflake::from_i64(e.id).node_id();
            let id = e.id;
            let Some(ev) = Topic::parse(&e.topic)
                .and_then(|topic| BusEvent::from_parts(topic, &e.name, e.data, node))
            else {
                // Only a newer node writes what this one cannot read; it is that node's to
                // relay, until it is so old that nobody will.
                tracing::warn!(event = e.name, "an outbox event this node cannot read");
                if id < give_up {
                    done.push(id);
                }
                continue;
            };
            if self.publish_outboxed(ev.with_id(id).relayed()).await {
                done.push(id);
                published += 1;
            }
        }
        self.store.release_claim(claim, &done).await?;
        let n = published;
        if n > 0 {
            tracing::info!(events = n, "published events their publisher left behind");
        }
        Ok(n)
    }
}

impl UnitOfWork<'_> {
    /// The transaction, for repository calls.
    pub fn tx(&mut self) -> &mut WriteTx {
        &mut self.tx
    }

    /// Writes the audit row of this unit's change, with it.
    pub async fn audit(&mut self, e: &AuditRecord) -> Result<()> {
        Store::audit_in(&mut self.tx, e).await?;
        Ok(())
    }

    /// Adds `event` to what this unit publishes when it commits. Only events a client
    /// receives (with an op code) belong here.
    pub fn emit(&mut self, topic: Topic, event: Event) -> Result<()> {
        self.staged.push(self.core.prepare_event(topic, event)?);
        Ok(())
    }

    /// Commits like [`UnitOfWork::commit`] and then publishes nothing: what a node that
    /// dies right after its commit leaves behind. For tests of the relay.
    #[doc(hidden)]
    pub async fn commit_unpublished(mut self) -> Result<()> {
        let logged = self.logged();
        Store::stage_events(&mut self.tx, &logged).await?;
        self.tx.commit().await?;
        Ok(())
    }

    fn logged(&self) -> Vec<LoggedEvent> {
        self.staged.iter().map(logged_event).collect()
    }

    /// Writes the events to the log and the outbox, commits, then publishes them. An error
    /// before the commit leaves nothing behind; after it, nothing can fail the use-case.
    pub async fn commit(mut self) -> Result<()> {
        let logged = self.logged();
        Store::stage_events(&mut self.tx, &logged).await?;
        self.tx.commit().await?;
        self.core.publish_committed(self.staged).await;
        Ok(())
    }
}

/// How an event is written to the log and the outbox.
pub(crate) fn logged_event(ev: &BusEvent) -> LoggedEvent {
    LoggedEvent {
        id: ev.id,
        topic: ev.topic.to_text(),
        name: ev.name.to_owned(),
        data: ev.data.clone(),
    }
}
