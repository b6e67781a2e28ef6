//! The writer of the gateway's event log for events of no stored change (typing, presence,
//! voice states), and of the removal of published events' outbox markers. The events of
//! stored changes are written in their change's own transaction (`unit_of_work`). The log
//! lets a session whose node stopped be resumed on any node with the events it missed
//! (SPEC §4, "resume from the database").
//!
//! Publishing does not wait for the write: a node that resumes a session registers it for
//! live events, then reads the log and the events its own dispatcher routed in the last
//! seconds (which the log may not hold yet); an event is in one of them, or arrives live.
//!
//! Writes are batched: one writer task takes whatever is queued and writes it in one
//! transaction, so a busy node pays one transaction per batch, not one per event. At
//! shutdown [`EventLog::close`] waits until everything queued is written and the writer
//! has ended; events published after that still go out live but are not logged.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use xcord_store::{LoggedEvent, Store};

/// Events waiting for the writer; a full queue makes publishers wait (backpressure).
const QUEUE: usize = 4096;
/// Most events (and outbox markers) written in one transaction.
const BATCH: usize = 512;
/// How long the writer waits for more before it writes a batch that holds no flush: under
/// load it writes a few transactions a second rather than one per wake-up, leaving
/// SQLite's single writer to the use-cases. Markers are only relayed after seconds, and a
/// resume adds what its node routed lately, so the lag is harmless.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

enum Entry {
    Event(LoggedEvent),
    /// Outbox markers of events that went out.
    Published(Vec<i64>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
    /// Ends the writer once everything queued before it is written.
    Close,
}

/// The handle publishers write through.
#[derive(Debug, Clone)]
pub struct EventLog {
    tx: mpsc::Sender<Entry>,
    // Taken once by `close`; no await while it is locked, so a std Mutex is right.
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl EventLog {
    /// Starts the writer. It ends after [`EventLog::close`], or when the last handle is
    /// dropped.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_batches(store, rx));
        Self {
            tx,
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Queues `event` for the writer; waits only when the queue is full (backpressure).
    /// A failed write is logged; the event still goes out live, and only a resume through
    /// the log could miss it.
    pub async fn append(&self, event: LoggedEvent) {
        let _ = self.tx.send(Entry::Event(event)).await;
    }

    /// Queues the removal of the outbox markers of events that were published.
    pub async fn published(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            let _ = self.tx.send(Entry::Published(ids)).await;
        }
    }

    /// Waits until every event queued so far is written (or its write failed).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Entry::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Writes every event queued so far, then ends the writer and waits for it; used at
    /// shutdown, before the database closes. Later appends are dropped (they are still
    /// published live). A second call returns at once.
    pub async fn close(&self) {
        let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        // A send error means the writer is already gone; awaiting it is all that is left.
        let _ = self.tx.send(Entry::Close).await;
        if let Err(e) = writer.await {
            tracing::warn!(error = %e, "the event log writer ended abnormally");
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Entry>) {
    let mut events = Vec::with_capacity(BATCH);
    let mut published = Vec::new();
    let mut flushes = Vec::new();
    let mut closing = false;
    while !closing && let Some(first) = rx.recv().await {
        let until = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Event(e) => events.push(e),
                Entry::Published(ids) => published.extend(ids),
                Entry::Flush(done) => flushes.push(done),
                // Nothing queued after it is taken: this batch is the last.
                Entry::Close => closing = true,
            }
            if events.len() + published.len() < BATCH && !closing {
                next = match rx.try_recv() {
                    Ok(e) => Some(e),
                    // Someone waits for this batch: write it now.
                    Err(_) if !flushes.is_empty() => None,
                    Err(_) => tokio::time::timeout_at(until, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
            }
        }
        // A failed write is logged: an event still went out live (only a resume through
        // the log could miss it), and a marker left behind only lets a relay publish its
        // event again, which receivers drop by id.
        if let Err(e) = store.write_log_batch(&events, &published).await {
            tracing::warn!(
                error = format!("{e:#}"),
                events = events.len(),
                markers = published.len(),
                "event log write failed"
            );
        }
        events.clear();
        published.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xcord_store::testing::TestDatabase;
    use xcord_store::{Backend, StoreOptions};

    use super::*;

    fn event(id: i64) -> LoggedEvent {
        LoggedEvent {
            id,
            topic: "g".into(),
            name: "MESSAGE_CREATE".into(),
            data: "{}".into(),
        }
    }

    /// At shutdown the last events reach the log (a resume elsewhere needs them), the
    /// writer ends, and nothing published afterwards can hang on it.
    #[tokio::test]
    async fn closing_writes_what_was_queued_and_ends_the_writer() -> anyhow::Result<()> {
        let db = TestDatabase::new(Backend::Sqlite).await?;
        let store = Store::connect(db.url(), &StoreOptions::default()).await?;
        store.migrate().await?;
        let log = EventLog::start(store.clone());
        for id in 1..=1_000 {
            log.append(event(id)).await;
        }
        tokio::time::timeout(Duration::from_secs(30), log.close()).await?;
        assert_eq!(store.events_after(0, 5_000).await?.len(), 1_000);
        // Once closed: another close returns at once, a late event is dropped at once.
        tokio::time::timeout(Duration::from_secs(1), log.close()).await?;
        tokio::time::timeout(Duration::from_secs(1), log.append(event(1_001))).await?;
        tokio::time::timeout(Duration::from_secs(1), log.flush()).await?;
        assert_eq!(store.events_after(0, 5_000).await?.len(), 1_000);
        store.close().await;
        Ok(())
    }
}
