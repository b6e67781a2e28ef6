//! Scheduled messages (SPEC §6) and automatic messages' planning records (seed 003).

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use super::{sf, sf_opt};
use crate::store::{WriteTx, ids_json};
use crate::{Store, StoreError, StoreResult};

const COLUMNS: &str = "id, channel_id, author_id, content, reply_to, attachment_ids, send_at, \
                       status, message_id, failure_reason, created_at, updated_at";

/// Where a scheduled message is. `Sending` is internal (its job is posting it) and shows as
/// `scheduled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledStatus {
    /// Waiting for its time.
    Scheduled,
    /// Its job is posting it: no longer editable.
    Sending,
    /// Posted.
    Sent,
    /// Could not be posted (see the reason).
    Failed,
    /// Cancelled by its author.
    Cancelled,
}

impl ScheduledStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduledStatus::Scheduled => "scheduled",
            ScheduledStatus::Sending => "sending",
            ScheduledStatus::Sent => "sent",
            ScheduledStatus::Failed => "failed",
            ScheduledStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ScheduledStatus::Scheduled,
            ScheduledStatus::Sending,
            ScheduledStatus::Sent,
            ScheduledStatus::Failed,
            ScheduledStatus::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Still to be posted (scheduled or being posted).
    pub fn is_waiting(self) -> bool {
        matches!(self, ScheduledStatus::Scheduled | ScheduledStatus::Sending)
    }
}

/// A scheduled message row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRecord {
    /// Id.
    pub id: Snowflake,
    /// Where it will be posted.
    pub channel_id: Snowflake,
    /// Who posts it.
    pub author_id: Snowflake,
    /// Text.
    pub content: String,
    /// The message it replies to.
    pub reply_to: Option<Snowflake>,
    /// Uploaded attachments it will carry.
    pub attachment_ids: Vec<Snowflake>,
    /// When.
    pub send_at: Timestamp,
    /// Status.
    pub status: ScheduledStatus,
    /// The posted message, once sent.
    pub message_id: Option<Snowflake>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

fn scheduled_from_row(r: &AnyRow) -> StoreResult<ScheduledRecord> {
    let status: String = r.try_get("status")?;
    let ids: String = r.try_get("attachment_ids")?;
    let ids: Vec<i64> = serde_json::from_str(&ids)
        .map_err(|e| StoreError::Other(sqlx::Error::Decode(Box::new(e))))?;
    Ok(ScheduledRecord {
        id: sf(r.try_get("id")?),
        channel_id: sf(r.try_get("channel_id")?),
        author_id: sf(r.try_get("author_id")?),
        content: r.try_get("content")?,
        reply_to: sf_opt(r.try_get("reply_to")?),
        attachment_ids: ids.into_iter().map(Snowflake::from_i64).collect(),
        send_at: Timestamp::from_millis(r.try_get("send_at")?),
        status: ScheduledStatus::parse(&status).unwrap_or(ScheduledStatus::Failed),
        message_id: sf_opt(r.try_get("message_id")?),
        failure_reason: r.try_get("failure_reason")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
    })
}

/// An automatic message's planning record (seed 003's AutoMessage fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoMessageRecord {
    /// Id.
    pub id: Snowflake,
    /// Who sends it.
    pub sender_id: Snowflake,
    /// Who receives it.
    pub receiver_id: Snowflake,
    /// Text.
    pub content: String,
    /// When it is to be sent.
    pub send_date: Timestamp,
    /// Its job has been handed to a worker.
    pub is_queued: bool,
    /// Delivered.
    pub is_sent: bool,
    /// When it was handed to a worker.
    pub queued_at: Option<Timestamp>,
    /// When it was delivered.
    pub sent_at: Option<Timestamp>,
    /// The DM message, once sent.
    pub message_id: Option<Snowflake>,
    /// Why it could not be delivered.
    pub failure_reason: Option<String>,
    /// The planning run that made it.
    pub planned_at: Timestamp,
}

const AUTO_COLUMNS: &str = "id, sender_id, receiver_id, content, send_date, is_queued, is_sent, \
                            queued_at, sent_at, message_id, failure_reason, planned_at";

/// Storage of scheduled and automatic messages.
impl Store {
    /// Stores a new scheduled message in the caller's transaction.
    pub async fn insert_scheduled(&self, tx: &mut WriteTx, s: &ScheduledRecord) -> StoreResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO scheduled_messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(s.id.get())
        .bind(s.channel_id.get())
        .bind(s.author_id.get())
        .bind(s.content.clone())
        .bind(s.reply_to.map(|r| r.get()))
        .bind(ids_json(&s.attachment_ids)?)
        .bind(s.send_at.as_millis())
        .bind(s.status.as_str())
        .bind(s.message_id.map(|m| m.get()))
        .bind(s.failure_reason.clone())
        .bind(s.created_at.as_millis())
        .bind(s.updated_at.as_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A scheduled message by id.
    pub async fn scheduled(&self, id: Snowflake) -> StoreResult<Option<ScheduledRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM scheduled_messages WHERE id = $1"
        )))
        .bind(id.get())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(scheduled_from_row).transpose()
    }

    /// An author's waiting scheduled messages in a channel, soonest first.
    pub async fn scheduled_waiting_in(
        &self,
        author: Snowflake,
        channel: Snowflake,
    ) -> StoreResult<Vec<ScheduledRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM scheduled_messages WHERE author_id = $1 AND channel_id = $2 \
             AND status IN ('scheduled', 'sending') ORDER BY send_at, id"
        )))
        .bind(author.get())
        .bind(channel.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(scheduled_from_row).collect()
    }

    /// An author's scheduled messages, newest first; only `statuses` when given. At most 1,000.
    pub async fn scheduled_of(
        &self,
        author: Snowflake,
        statuses: Option<&[ScheduledStatus]>,
    ) -> StoreResult<Vec<ScheduledRecord>> {
        let filter = match statuses {
            Some(list) => {
                let names: Vec<String> = list.iter().map(|s| format!("'{}'", s.as_str())).collect();
                format!(" AND status IN ({})", names.join(", "))
            }
            None => String::new(),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM scheduled_messages WHERE author_id = $1{filter} ORDER BY id DESC LIMIT 1000"
        )))
        .bind(author.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(scheduled_from_row).collect()
    }

    /// How many scheduled messages an author has waiting (read in the transaction that
    /// adds one, so the limit holds against concurrent requests on the single writer).
    pub async fn scheduled_waiting_count(
        &self,
        tx: &mut WriteTx,
        author: Snowflake,
    ) -> StoreResult<i64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM scheduled_messages WHERE author_id = $1 AND status IN ('scheduled', 'sending')",
        )
        .bind(author.get())
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        Ok(n)
    }

    /// Changes a scheduled message that is still `scheduled`; false otherwise.
    pub async fn update_scheduled(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
        content: &str,
        send_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE scheduled_messages SET content = $2, send_at = $3, updated_at = $4 \
             WHERE id = $1 AND status = 'scheduled'",
        )
        .bind(id.get())
        .bind(content.to_owned())
        .bind(send_at.as_millis())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Moves a scheduled message from one of `from` to `to`, with its message or failure;
    /// false when it was in none of `from`.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_scheduled_status(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
        from: &[ScheduledStatus],
        to: ScheduledStatus,
        message_id: Option<Snowflake>,
        failure_reason: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let names: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE scheduled_messages SET status = $2, message_id = COALESCE($3, message_id), \
             failure_reason = $4, updated_at = $5 WHERE id = $1 AND status IN ({})",
            names.join(", ")
        )))
        .bind(id.get())
        .bind(to.as_str())
        .bind(message_id.map(|m| m.get()))
        .bind(failure_reason.map(str::to_owned))
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Claims a cron tick for this node; false when another node already planned it.
    pub async fn claim_cron_tick(
        &self,
        tx: &mut WriteTx,
        name: &str,
        tick: Timestamp,
        node: u16,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "INSERT INTO cron_ticks (name, tick_at, node_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(tick.as_millis())
        .bind(i64::from(node))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Users who take part in automatic messages: every account that is not a guest.
    pub async fn auto_message_candidates(&self) -> StoreResult<Vec<Snowflake>> {
        let rows = sqlx::query("SELECT id FROM users WHERE NOT is_guest ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(sf(r.try_get::<i64, _>(0)?)))
            .collect()
    }

    /// Stores an automatic message's planning record in the caller's transaction.
    pub async fn insert_auto_message(
        &self,
        tx: &mut WriteTx,
        a: &AutoMessageRecord,
    ) -> StoreResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO auto_messages ({AUTO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(a.id.get())
        .bind(a.sender_id.get())
        .bind(a.receiver_id.get())
        .bind(a.content.clone())
        .bind(a.send_date.as_millis())
        .bind(a.is_queued)
        .bind(a.is_sent)
        .bind(a.queued_at.map(|t| t.as_millis()))
        .bind(a.sent_at.map(|t| t.as_millis()))
        .bind(a.message_id.map(|m| m.get()))
        .bind(a.failure_reason.clone())
        .bind(a.planned_at.as_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// An automatic message's record.
    pub async fn auto_message(&self, id: Snowflake) -> StoreResult<Option<AutoMessageRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUTO_COLUMNS} FROM auto_messages WHERE id = $1"
        )))
        .bind(id.get())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(|r| self.auto_from_row(r)).transpose()
    }

    /// Automatic messages planned at or after `since`, oldest first (at most 10,000).
    pub async fn auto_messages_since(
        &self,
        since: Timestamp,
    ) -> StoreResult<Vec<AutoMessageRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUTO_COLUMNS} FROM auto_messages WHERE planned_at >= $1 ORDER BY id LIMIT 10000"
        )))
        .bind(since.as_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| self.auto_from_row(r)).collect()
    }

    /// Marks an automatic message handed to a worker (seed 003's `isQueued`).
    pub async fn mark_auto_queued(&self, id: Snowflake, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE auto_messages SET is_queued = TRUE, queued_at = COALESCE(queued_at, $2) WHERE id = $1",
        )
        .bind(id.get())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the outcome of an automatic message: sent with its message, or a failure.
    pub async fn finish_auto_message(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
        message_id: Option<Snowflake>,
        failure_reason: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE auto_messages SET is_sent = $2, sent_at = $3, message_id = $4, failure_reason = $5 WHERE id = $1",
        )
        .bind(id.get())
        .bind(message_id.is_some())
        .bind(message_id.map(|_| now.as_millis()))
        .bind(message_id.map(|m| m.get()))
        .bind(failure_reason.map(str::to_owned))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    fn auto_from_row(&self, r: &AnyRow) -> StoreResult<AutoMessageRecord> {
        Ok(AutoMessageRecord {
            id: sf(r.try_get("id")?),
            sender_id: sf(r.try_get("sender_id")?),
            receiver_id: sf(r.try_get("receiver_id")?),
            content: r.try_get("content")?,
            send_date: Timestamp::from_millis(r.try_get("send_date")?),
            is_queued: self.flag(r, "is_queued")?,
            is_sent: self.flag(r, "is_sent")?,
            queued_at: r
                .try_get::<Option<i64>, _>("queued_at")?
                .map(Timestamp::from_millis),
            sent_at: r
                .try_get::<Option<i64>, _>("sent_at")?
                .map(Timestamp::from_millis),
            message_id: sf_opt(r.try_get("message_id")?),
            failure_reason: r.try_get("failure_reason")?,
            planned_at: Timestamp::from_millis(r.try_get("planned_at")?),
        })
    }
}
