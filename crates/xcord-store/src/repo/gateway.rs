//! The gateway's durable side: the log of dispatched events, the checkpoints of stopped
//! dispatchers, and the sessions a stopped node left to be resumed elsewhere.

use sqlx::Row as _;
use xcord_types::Snowflake;

use crate::{Store, StoreResult};

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Snowflake id (time-ordered).
    pub id: i64,
    /// The bus topic, as `s<id>`, `c<id>`, `u<id>` or `g`.
    pub topic: String,
    /// Dispatch name.
    pub name: String,
    /// JSON payload, shared with the published event rather than copied.
    pub data: std::sync::Arc<str>,
}

/// A session a stopped node left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    /// The id clients resume with.
    pub id: String,
    /// Its user.
    pub user_id: Snowflake,
    /// The auth session its tokens belong to.
    pub auth_session_id: Snowflake,
    /// When the identifying token expired.
    pub auth_expires_at: i64,
    /// The last sequence number it handed out.
    pub seq: i64,
    /// `[[seq, frame], …]`: frames the client may not have received, as sent.
    pub frames: String,
    /// The checkpoint of the dispatcher that served it.
    pub checkpoint_id: i64,
    /// When it can no longer be resumed (ms since the epoch).
    pub expires_at: i64,
}

/// What a stopped dispatcher had routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Id.
    pub id: i64,
    /// The newest event id it routed.
    pub high_water: i64,
    /// JSON array of the ids it routed in the last moments before it stopped.
    pub seen: String,
    /// When it was written (ms).
    pub created_at: i64,
}

impl Store {
    /// Appends events to the log in one transaction.
    pub async fn append_events(&self, events: &[LoggedEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        if self.backend() == crate::Backend::Postgres {
            // The log serves resumes within minutes; a crash loses live sessions anyway, so
            // its commits need not wait for the disk (the state changes they describe
            // were committed durably by their own transactions).
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await?;
        }
        // Multi-row inserts, bounded so no statement exceeds SQLite's parameter limit.
        for chunk in events.chunks(200) {
            let mut sql =
                String::from("INSERT INTO gateway_events (id, topic, name, data) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let n = i * 4;
                sql.push_str(&format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
            }
            sql.push_str(" ON CONFLICT (id) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.id)
                    .bind(e.topic.clone())
                    .bind(e.name.clone())
                    .bind(&*e.data);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Logged events with an id above `after`, oldest first, at most `limit`.
    pub async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT id, topic, name, data FROM gateway_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LoggedEvent {
                    id: r.try_get("id")?,
                    topic: r.try_get("topic")?,
                    name: r.try_get("name")?,
                    data: r.try_get::<String, _>("data")?.into(),
                })
            })
            .collect()
    }

    /// Forgets events below `before` (a snowflake bound), sessions expired at `now`, and
    /// checkpoints no session refers to any more. Events go in batches, each its own short
    /// transaction, so other writers never wait long behind the pruning.
    pub async fn prune_gateway_log(&self, before: i64, now: i64) -> StoreResult<()> {
        const BATCH: i64 = 5_000;
        for _ in 0..1_000 {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(
                "DELETE FROM gateway_events WHERE id IN \
                 (SELECT id FROM gateway_events WHERE id < $1 ORDER BY id LIMIT $2)",
            )
            .bind(before)
            .bind(BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if n < BATCH as u64 {
                break;
            }
        }
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM gateway_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM gateway_checkpoints WHERE created_at < $1 \
             AND id NOT IN (SELECT checkpoint_id FROM gateway_sessions)",
        )
        .bind(now - 3_600_000)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Keeps a stopped dispatcher's checkpoint and the sessions it leaves, together.
    pub async fn save_gateway_sessions(
        &self,
        checkpoint: &Checkpoint,
        sessions: &[SavedSession],
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO gateway_checkpoints (id, high_water, seen, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(checkpoint.id)
        .bind(checkpoint.high_water)
        .bind(checkpoint.seen.clone())
        .bind(checkpoint.created_at)
        .execute(&mut *tx)
        .await?;
        for s in sessions {
            sqlx::query(
                "INSERT INTO gateway_sessions (id, user_id, auth_session_id, auth_expires_at, seq, frames, checkpoint_id, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(s.id.clone())
            .bind(s.user_id.get())
            .bind(s.auth_session_id.get())
            .bind(s.auth_expires_at)
            .bind(s.seq)
            .bind(s.frames.clone())
            .bind(s.checkpoint_id)
            .bind(s.expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The saved session `id` of `user`, if any (a foreign or unknown id is `None` and
    /// leaves the row alone).
    pub async fn saved_session(
        &self,
        id: &str,
        user: Snowflake,
    ) -> StoreResult<Option<(SavedSession, Checkpoint)>> {
        let row = sqlx::query(
            "SELECT s.id, s.user_id, s.auth_session_id, s.auth_expires_at, s.seq, s.frames, s.checkpoint_id, s.expires_at, \
                    c.high_water, c.seen, c.created_at \
             FROM gateway_sessions s JOIN gateway_checkpoints c ON c.id = s.checkpoint_id \
             WHERE s.id = $1 AND s.user_id = $2",
        )
        .bind(id.to_owned())
        .bind(user.get())
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let checkpoint_id: i64 = r.try_get("checkpoint_id")?;
        Ok(Some((
            SavedSession {
                id: r.try_get("id")?,
                user_id: Snowflake::from_i64(r.try_get("user_id")?),
                auth_session_id: Snowflake::from_i64(r.try_get("auth_session_id")?),
                auth_expires_at: r.try_get("auth_expires_at")?,
                seq: r.try_get("seq")?,
                frames: r.try_get("frames")?,
                checkpoint_id,
                expires_at: r.try_get("expires_at")?,
            },
            Checkpoint {
                id: checkpoint_id,
                high_water: r.try_get("high_water")?,
                seen: r.try_get("seen")?,
                created_at: r.try_get("created_at")?,
            },
        )))
    }

    /// Takes the saved session `id` of `user` away so that only one node resumes it;
    /// false when another node took it first.
    pub async fn claim_saved_session(&self, id: &str, user: Snowflake) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM gateway_sessions WHERE id = $1 AND user_id = $2")
            .bind(id.to_owned())
            .bind(user.get())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}
