//! The gateway's event log: every dispatchable event is written to the database before it
//! reaches the bus, so a session whose node stopped can be resumed on any node with the
//! events it missed (SPEC §4, "resume from the database").
//!
//! Publishing does not wait for the write: a node that resumes a session registers it for
//! live events, then reads the log and the events its own dispatcher routed in the last
//! seconds (which the log may not hold yet); an event is in one of them, or arrives live.
//!
//! Writes are batched: one writer task takes whatever is queued and writes it in one
//! transaction, so a busy node pays one transaction per batch, not one per event. At
//! shutdown [`EventLog::flush`] waits until everything queued is written.

use tokio::sync::{mpsc, oneshot};
use xcord_store::{LoggedEvent, Store};

/// Events waiting for the writer; a full queue makes publishers wait (backpressure).
const QUEUE: usize = 4096;
/// Most events written in one transaction.
const BATCH: usize = 512;

enum Entry {
    Event(LoggedEvent),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle publishers write through.
#[derive(Debug, Clone)]
pub struct EventLog {
    tx: mpsc::Sender<Entry>,
}

impl EventLog {
    /// Starts the writer; it ends when the last handle is dropped.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        Self { tx }
    }

    /// Queues `event` for the writer; waits only when the queue is full (backpressure).
    /// A failed write is logged; the event still goes out live, and only a resume through
    /// the log could miss it.
    pub async fn append(&self, event: LoggedEvent) {
        let _ = self.tx.send(Entry::Event(event)).await;
    }

    /// Waits until every event queued so far is written (or its write failed).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Entry::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Entry>) {
    let mut events = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Event(e) => events.push(e),
                Entry::Flush(done) => flushes.push(done),
            }
            if events.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = store.append_events(&events).await {
            tracing::warn!(
                error = format!("{e:#}"),
                events = events.len(),
                "event log write failed"
            );
        }
        events.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
