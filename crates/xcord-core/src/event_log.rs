//! The gateway's event log: every dispatchable event is written to the database before it
//! reaches the bus, so a session whose node stopped can be resumed on any node with the
//! events it missed (SPEC §4, "resume from the database").
//!
//! Writing first is what makes the resume gap-free: a node that resumes a session registers
//! it for live events and then reads the log; an event is either in the log by then, or it
//! was published after and reaches the session live.
//!
//! Writes are batched: publishers hand their event to one writer task and wait for the
//! commit of the batch it went into, so a busy node pays one transaction per batch, not one
//! per event.

use tokio::sync::{mpsc, oneshot};
use xcord_store::{LoggedEvent, Store};

/// Events waiting for the writer; a full queue makes publishers wait (backpressure).
const QUEUE: usize = 4096;
/// Most events written in one transaction.
const BATCH: usize = 512;

type Entry = (LoggedEvent, oneshot::Sender<()>);

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

    /// Writes `event` and returns once it is committed (or failed: a failure is logged and
    /// the event still goes out live; only a resume through another node can miss it).
    pub async fn append(&self, event: LoggedEvent) {
        let (done, committed) = oneshot::channel();
        if self.tx.send((event, done)).await.is_ok() {
            let _ = committed.await;
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Entry>) {
    let mut events = Vec::with_capacity(BATCH);
    let mut waiting = Vec::with_capacity(BATCH);
    while let Some((first_event, first_done)) = rx.recv().await {
        events.push(first_event);
        waiting.push(first_done);
        while events.len() < BATCH {
            match rx.try_recv() {
                Ok((e, done)) => {
                    events.push(e);
                    waiting.push(done);
                }
                Err(_) => break,
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
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
