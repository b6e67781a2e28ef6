//! Group commit for new messages. Posts that arrive while the previous ones are being
//! written wait in a queue and are then written together: one transaction, one multi-row
//! INSERT, one channel update per channel, one commit. A lone post is written at once, so
//! batching adds no latency when the server is quiet; under load it turns N commits (an
//! fsync each on PostgreSQL, several thread hops each on SQLite) into one.
//!
//! Messages with attachments take the one-by-one path, as do all of a batch's messages when
//! the batch fails as a whole (so one bad message never fails the others).

use std::collections::{HashMap, HashSet};

use tokio::sync::{mpsc, oneshot};
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

/// Starts the committer of `store` and returns its queue.
pub(crate) fn start(store: Store) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
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
    });
    tx
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
        is_automatic: false,
        edited_at: None,
        deleted_at: None,
        version: 1,
        created_at: m.now,
    }
}

impl Store {
    /// Writes several attachment-free messages in one transaction.
    pub(crate) async fn post_batch(&self, ms: &[&NewMessage]) -> StoreResult<Vec<PostOutcome>> {
        const COLUMNS: usize = 11;
        let mut sql = String::from(
            "INSERT INTO messages (id, channel_id, author_id, content, nonce, reply_to, mention_everyone, mentions, encrypted, \
             encrypted_keys, created_at) VALUES ",
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
                .bind(m.now.as_millis());
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
        for m in ms.iter().filter(|m| inserted.contains(&m.id.get())) {
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
