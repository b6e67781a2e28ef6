//! Group commit for new messages. Posts that arrive while the previous ones are being
//! written wait in a queue and are then written together: one transaction, one multi-row
//! INSERT, one channel update per channel, one commit. A lone post is written at once, so
//! batching adds no latency when the server is quiet; under load it turns N commits (an
//! fsync each on PostgreSQL, several thread hops each on SQLite) into one.
//!
//! Messages with attachments take the one-by-one path, as do all of a batch's messages when
//! the batch fails as a whole (so one bad message never fails the others).
//!
//! The committer ends when [`Store::close`] asks it to: it takes no new posts from then on
//! (a post that comes too late is written on its own, or fails with the closing pool),
//! writes every post already queued, and only then lets the pool close. Without the ask it
//! could never end, since it holds a clone of the store that holds its queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use xcord_types::Snowflake;

use crate::repo::messages::{MessageRecord, NewMessage, PostOutcome};
use crate::{Store, StoreResult};

/// Posts written in one transaction at most.
const MAX_BATCH: usize = 64;
/// Posts waiting at most; a full queue makes callers wait for room.
const QUEUE: usize = 4096;

/// One post waiting for the committer.
pub(crate) struct Job {
    pub(crate) message: NewMessage,
    pub(crate) reply: oneshot::Sender<StoreResult<PostOutcome>>,
}

/// The committer of one store, shared by the store's clones: started on first use, ended
/// by [`Committer::stop`].
#[derive(Debug, Default)]
pub(crate) struct Committer {
    queue: OnceLock<mpsc::Sender<Job>>,
    // Taken once by `stop`; no await while it is locked, so a std Mutex is right.
    task: Mutex<Option<JoinHandle<()>>>,
    // `notify_one` keeps the request when the task is busy writing, so it is never lost.
    stop: Arc<Notify>,
}

impl Committer {
    /// The queue, starting the committer task on first use.
    pub(crate) fn queue(&self, store: &Store) -> &mpsc::Sender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>(QUEUE);
            let handle = tokio::spawn(run(store.clone(), rx, self.stop.clone()));
            if let Ok(mut task) = self.task.lock() {
                *task = Some(handle);
            }
            tx
        })
    }

    /// Asks the committer to end and waits until it has written every queued post. Returns
    /// at once when it never started.
    pub(crate) async fn stop(&self) {
        self.stop.notify_one();
        let handle = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle
            && let Err(e) = handle.await
        {
            tracing::warn!(error = %e, "the message committer ended abnormally");
        }
    }
}

/// Takes posts off `rx` and writes them in batches until asked to stop and drained.
async fn run(store: Store, mut rx: mpsc::Receiver<Job>, stop: Arc<Notify>) {
    let mut stopping = false;
    loop {
        let next = tokio::select! {
            biased;
            () = stop.notified(), if !stopping => {
                // Senders now fail and fall back to writing alone; what is buffered stays
                // readable, so the loop goes on until the buffer is empty.
                rx.close();
                stopping = true;
                continue;
            }
            job = rx.recv() => job,
        };
        let Some(first) = next else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        metrics::histogram!("store_post_batch_size").record(batch.len() as f64);
        if batch.len() > 1 {
            let messages: Vec<&NewMessage> = batch.iter().map(|j| &j.message).collect();
            if let Ok(outcomes) = store.post_batch(&messages).await {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
                continue;
            }
        }
        for job in batch {
            let r = store.post_one(&job.message).await;
            let _ = job.reply.send(r);
        }
    }
}

/// The stored form of a new message.
pub(crate) fn created(m: &NewMessage) -> MessageRecord {
    MessageRecord {
        id: m.id,
        channel_id: m.channel_id,
        author_id: m.author_id,
        content: m.content.clone(),
        nonce: m.nonce.clone(),
        reply_to: m.reply_to,
        mention_everyone: m.mention_everyone,
        mentions: m.mentions.clone(),
        encrypted: m.encrypted,
        encrypted_keys: m.encrypted_keys.clone(),
        is_automatic: m.is_automatic,
        edited_at: None,
        deleted_at: None,
        version: 1,
        created_at: m.now,
    }
}

impl Store {
    /// Writes several attachment-free messages in one transaction.
    pub(crate) async fn post_batch(&self, ms: &[&NewMessage]) -> StoreResult<Vec<PostOutcome>> {
        const COLUMNS: usize = 12;
        let mut sql = String::from(
            "INSERT INTO messages (id, channel_id, author_id, content, nonce, reply_to, mention_everyone, mentions, encrypted, \
             encrypted_keys, created_at, is_automatic) VALUES ",
        );
        for i in 0..ms.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..COLUMNS {
                if c > 0 {
                    sql.push(',');
                }
                sql.push('$');
                sql.push_str(&(i * COLUMNS + c + 1).to_string());
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for m in ms {
            q = q
                .bind(m.id.get())
                .bind(m.channel_id.get())
                .bind(m.author_id.get())
                .bind(m.content.clone())
                .bind(m.nonce.clone())
                .bind(m.reply_to.map(Snowflake::get))
                .bind(m.mention_everyone)
                .bind(m.mentions.clone())
                .bind(m.encrypted)
                .bind(m.encrypted_keys.clone())
                .bind(m.now.as_millis())
                .bind(m.is_automatic);
        }
        let mut tx = self.begin_write().await?;
        let inserted: HashSet<i64> = {
            use sqlx::Row as _;
            q.fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?
        };
        let mut latest: HashMap<Snowflake, Snowflake> = HashMap::new();
        let mut events = Vec::new();
        for m in ms.iter().filter(|m| inserted.contains(&m.id.get())) {
            events.extend(m.events.iter().cloned());
            for user in &m.mentioned_users {
                sqlx::query("INSERT INTO message_mentions (message_id, user_id, channel_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(m.id.get())
                    .bind(user.get())
                    .bind(m.channel_id.get())
                    .execute(&mut *tx)
                    .await?;
            }
            let last = latest.entry(m.channel_id).or_insert(m.id);
            *last = (*last).max(m.id);
        }
        for (channel, id) in &latest {
            sqlx::query(
                "UPDATE channels SET last_message_id = $2 WHERE id = $1 AND (last_message_id IS NULL OR last_message_id < $2)",
            )
            .bind(channel.get())
            .bind(id.get())
            .execute(&mut *tx)
            .await?;
        }
        Store::stage_events(&mut tx, &events).await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(ms.len());
        for m in ms {
            out.push(if inserted.contains(&m.id.get()) {
                PostOutcome::Created(created(m))
            } else {
                PostOutcome::Duplicate(self.message_by_nonce(m).await?)
            });
        }
        Ok(out)
    }
}
