//! The gateway's durable side: the log of dispatched events, the checkpoints of stopped
//! dispatchers, and the sessions a stopped node left to be resumed elsewhere.

use sqlx::Row as _;
use xcord_types::Snowflake;

use crate::store::WriteTx;
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

fn logged_from_row(r: &sqlx::any::AnyRow) -> StoreResult<LoggedEvent> {
    Ok(LoggedEvent {
        id: r.try_get("id")?,
        topic: r.try_get("topic")?,
        name: r.try_get("name")?,
        data: r.try_get::<String, _>("data")?.into(),
    })
}

/// Multi-row inserts into the log, bounded so no statement exceeds SQLite's parameter limit.
async fn insert_events(tx: &mut WriteTx, events: &[LoggedEvent]) -> StoreResult<()> {
    for chunk in events.chunks(200) {
        let mut sql = String::from("INSERT INTO gateway_events (id, topic, name, data) VALUES ");
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
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Writes the events of a state change into its transaction `tx`: to the log, and to
    /// the outbox until [`Store::write_log_batch`] says they went out.
    pub async fn stage_events(tx: &mut WriteTx, events: &[LoggedEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        insert_events(tx, events).await?;
        for chunk in events.chunks(500) {
            let mut sql = String::from("INSERT INTO event_outbox (event_id) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${})", i + 1));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q.bind(e.id);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Appends ephemeral events to the log and forgets the outbox markers of events that
    /// were published, in one transaction.
    pub async fn write_log_batch(
        &self,
        events: &[LoggedEvent],
        published: &[i64],
    ) -> StoreResult<()> {
        if events.is_empty() && published.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        if self.backend() == crate::Backend::Postgres {
            // The log serves resumes within minutes, and a marker that survives a crash
            // only makes its event go out twice, which receivers drop by id: no need to
            // wait for the disk.
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await?;
        }
        insert_events(&mut tx, events).await?;
        self.delete_markers(&mut tx, published).await?;
        tx.commit().await
    }

    /// Claims up to `limit` events whose markers are older than `before` (a snowflake
    /// bound: their publisher had time enough), for a relay to publish. The claim is a
    /// transaction that holds the markers (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
    /// several nodes' relays share the work); [`Store::release_claim`] removes the markers of
    /// the events that went out and commits. `None` when there is nothing to relay.
    pub async fn claim_unpublished(
        &self,
        before: i64,
        limit: i64,
    ) -> StoreResult<Option<(WriteTx, Vec<i64>, Vec<LoggedEvent>)>> {
        // Almost always there is nothing: find out without taking the writer's turn.
        let waiting = sqlx::query("SELECT event_id FROM event_outbox WHERE event_id < $1 LIMIT 1")
            .bind(before)
            .fetch_optional(self.pool())
            .await?;
        if waiting.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let lock = match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            // One writer at a time: the transaction already excludes other relays.
            crate::Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT event_id FROM event_outbox WHERE event_id < $1 ORDER BY event_id LIMIT $2{lock}"
        );
        let ids: Vec<Snowflake> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0).map(Snowflake::from_i64))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let sql = format!(
            "SELECT id, topic, name, data FROM gateway_events WHERE id IN {} ORDER BY id",
            self.in_ids_at(1)
        );
        let events = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::store::ids_json(&ids)?)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(logged_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some((tx, ids.iter().map(|i| i.get()).collect(), events)))
    }

    /// Ends a claim: the markers of `done` go, the others stay for a later round.
    pub async fn release_claim(&self, mut tx: WriteTx, done: &[i64]) -> StoreResult<()> {
        self.delete_markers(&mut tx, done).await?;
        tx.commit().await
    }

    /// Removes the outbox markers of `ids`, in bounded statements.
    async fn delete_markers(&self, tx: &mut WriteTx, ids: &[i64]) -> StoreResult<()> {
        for chunk in ids.chunks(1000) {
            let ids: Vec<Snowflake> = chunk.iter().copied().map(Snowflake::from_i64).collect();
            let sql = format!(
                "DELETE FROM event_outbox WHERE event_id IN {}",
                self.in_ids_at(1)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(crate::store::ids_json(&ids)?)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
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
        rows.iter().map(logged_from_row).collect()
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
        // An event pruned unpublished (the bus was down for the whole window) is past
        // helping anyone; its marker would only hold up the relay.
        sqlx::query("DELETE FROM event_outbox WHERE event_id < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
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
