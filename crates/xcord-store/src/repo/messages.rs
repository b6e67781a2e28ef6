//! Messages and what hangs off them: reactions, pins, attachments, mentions, read states and
//! full-text search. History pages and their extras are loaded in a fixed number of queries
//! whatever the page size: never one query per message.

use std::collections::HashMap;

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use crate::store::ids_json;
use crate::{Backend, Store, StoreError, StoreResult};

/// A message row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Id (time-ordered).
    pub id: Snowflake,
    /// Channel.
    pub channel_id: Snowflake,
    /// Author.
    pub author_id: Snowflake,
    /// Text (or ciphertext when encrypted).
    pub content: String,
    /// Client nonce.
    pub nonce: Option<String>,
    /// The message this replies to.
    pub reply_to: Option<Snowflake>,
    /// @everyone / @here took effect.
    pub mention_everyone: bool,
    /// `{users, roles, channels}` as JSON text.
    pub mentions: String,
    /// E2E payload.
    pub encrypted: bool,
    /// `{userId: key}` as JSON text, stored as sent.
    pub encrypted_keys: Option<String>,
    /// Sent by the automatic-message job.
    pub is_automatic: bool,
    /// Last edit.
    pub edited_at: Option<Timestamp>,
    /// Soft deletion.
    pub deleted_at: Option<Timestamp>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A message to insert.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Pre-allocated id.
    pub id: Snowflake,
    /// Channel.
    pub channel_id: Snowflake,
    /// Author.
    pub author_id: Snowflake,
    /// Text or ciphertext.
    pub content: String,
    /// Client nonce (idempotency key per author and channel).
    pub nonce: Option<String>,
    /// Reply target (checked by the caller).
    pub reply_to: Option<Snowflake>,
    /// @everyone / @here took effect.
    pub mention_everyone: bool,
    /// `{users, roles, channels}` JSON.
    pub mentions: String,
    /// Users to count mentions for.
    pub mentioned_users: Vec<Snowflake>,
    /// E2E payload.
    pub encrypted: bool,
    /// `{userId: key}` JSON.
    pub encrypted_keys: Option<String>,
    /// Attachments uploaded by the author to this channel, to attach.
    pub attachment_ids: Vec<Snowflake>,
    /// Posted by the automatic messages (seed 003), not by the author's hand.
    pub is_automatic: bool,
    /// Creation time.
    pub now: Timestamp,
    /// Its events (MESSAGE_CREATE), written to the log and the outbox in the same
    /// transaction, and only when the message is stored (not for a repeated nonce).
    pub events: Vec<crate::LoggedEvent>,
}

impl NewMessage {
    /// The message as it is stored once posted.
    pub fn record(&self) -> MessageRecord {
        crate::group_commit::created(self)
    }
}

/// What posting led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// Stored.
    Created(MessageRecord),
    /// The nonce was used before by this author here: the first message.
    Duplicate(MessageRecord),
    /// An attachment id was not the author's unattached upload to this channel.
    BadAttachments,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRecord {
    /// Id.
    pub id: Snowflake,
    /// Uploader.
    pub uploader_id: Snowflake,
    /// Channel it was uploaded to.
    pub channel_id: Snowflake,
    /// Message it belongs to, once posted.
    pub message_id: Option<Snowflake>,
    /// Original file name (sanitized).
    pub filename: String,
    /// Sniffed content type.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Image width.
    pub width: Option<i64>,
    /// Image height.
    pub height: Option<i64>,
    /// Where the bytes are.
    pub storage_key: String,
    /// Upload time.
    pub created_at: Timestamp,
}

/// One emoji's reactions on a message, from one viewer's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    /// Emoji.
    pub emoji: String,
    /// Users who reacted.
    pub count: i64,
    /// Whether the viewer is among them.
    pub me: bool,
}

/// What to page by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Older than this id.
    Before(Snowflake),
    /// Newer than this id (the nearest ones).
    After(Snowflake),
    /// Centred on this id, which is included when it exists.
    Around(Snowflake),
}

/// A read state with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStateRecord {
    /// Channel.
    pub channel_id: Snowflake,
    /// Last message read.
    pub last_read_message_id: Snowflake,
    /// Others' live messages after it.
    pub unread_count: i64,
    /// Those that mention the user (directly or with @everyone/@here).
    pub mention_count: i64,
}

/// What to search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Words; every one must appear.
    pub text: String,
    /// Channels the caller may read (already filtered); the search looks only here.
    pub channels: Vec<Snowflake>,
    /// Only by this author.
    pub author: Option<Snowflake>,
    /// Older than.
    pub before: Option<Snowflake>,
    /// Newer than.
    pub after: Option<Snowflake>,
    /// Most results.
    pub limit: u32,
}

macro_rules! message_select {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, m.channel_id, m.author_id, m.content, m.nonce, m.reply_to, m.mention_everyone, m.mentions, ",
            "m.encrypted, m.encrypted_keys, m.is_automatic, m.edited_at, m.deleted_at, m.version, m.created_at FROM messages m ",
            $tail
        )
    };
}

impl Store {
    fn message_from_row(&self, r: &AnyRow) -> StoreResult<MessageRecord> {
        Ok(MessageRecord {
            id: Snowflake::from_i64(r.try_get("id")?),
            channel_id: Snowflake::from_i64(r.try_get("channel_id")?),
            author_id: Snowflake::from_i64(r.try_get("author_id")?),
            content: r.try_get("content")?,
            nonce: r.try_get("nonce")?,
            reply_to: r
                .try_get::<Option<i64>, _>("reply_to")?
                .map(Snowflake::from_i64),
            mention_everyone: self.flag(r, "mention_everyone")?,
            mentions: r.try_get("mentions")?,
            encrypted: self.flag(r, "encrypted")?,
            encrypted_keys: r.try_get("encrypted_keys")?,
            is_automatic: self.flag(r, "is_automatic")?,
            edited_at: r
                .try_get::<Option<i64>, _>("edited_at")?
                .map(Timestamp::from_millis),
            deleted_at: r
                .try_get::<Option<i64>, _>("deleted_at")?
                .map(Timestamp::from_millis),
            version: r.try_get("version")?,
            created_at: Timestamp::from_millis(r.try_get("created_at")?),
        })
    }

    fn messages_from_rows(&self, rows: &[AnyRow]) -> StoreResult<Vec<MessageRecord>> {
        rows.iter().map(|r| self.message_from_row(r)).collect()
    }

    /// `x IN …` for ids bound with `ids_json` in parameter `$1`.
    fn in_ids(&self) -> String {
        self.in_ids_at(1)
    }

    async fn message_by_id(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(message_select!("WHERE m.id = $1"))
            .bind(id.get())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| self.message_from_row(&r)).transpose()
    }
}

fn attachment_from_row(r: &AnyRow) -> StoreResult<AttachmentRecord> {
    Ok(AttachmentRecord {
        id: Snowflake::from_i64(r.try_get("id")?),
        uploader_id: Snowflake::from_i64(r.try_get("uploader_id")?),
        channel_id: Snowflake::from_i64(r.try_get("channel_id")?),
        message_id: r
            .try_get::<Option<i64>, _>("message_id")?
            .map(Snowflake::from_i64),
        filename: r.try_get("filename")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        storage_key: r.try_get("storage_key")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
    })
}

const ATTACHMENT_COLUMNS: &str = "SELECT id, uploader_id, channel_id, message_id, filename, content_type, size, width, height, storage_key, created_at FROM attachments ";

impl Store {
    /// Writes one message in its own transaction.
    pub(crate) async fn post_one(&self, m: &NewMessage) -> StoreResult<PostOutcome> {
        let now = m.now.as_millis();
        let mut tx = self.begin_write().await?;
        // A repeated nonce hits the unique (channel, author, nonce) index and inserts nothing.
        let inserted = sqlx::query(
            "INSERT INTO messages (id, channel_id, author_id, content, nonce, reply_to, mention_everyone, mentions, encrypted, \
             encrypted_keys, created_at, is_automatic) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
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
        .bind(now)
        .bind(m.is_automatic)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(PostOutcome::Duplicate(self.message_by_nonce(m).await?));
        }
        if !m.attachment_ids.is_empty() {
            let sql = format!(
                "UPDATE attachments SET message_id = $2 WHERE id IN {} AND uploader_id = $3 AND channel_id = $4 AND message_id IS NULL",
                self.in_ids()
            );
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids_json(&m.attachment_ids)?)
                .bind(m.id.get())
                .bind(m.author_id.get())
                .bind(m.channel_id.get())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n != m.attachment_ids.len() as u64 {
                tx.rollback().await?;
                return Ok(PostOutcome::BadAttachments);
            }
        }
        for user in &m.mentioned_users {
            sqlx::query("INSERT INTO message_mentions (message_id, user_id, channel_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(m.id.get())
                .bind(user.get())
                .bind(m.channel_id.get())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE channels SET last_message_id = $2 WHERE id = $1")
            .bind(m.channel_id.get())
            .bind(m.id.get())
            .execute(&mut *tx)
            .await?;
        Store::stage_events(&mut tx, &m.events).await?;
        tx.commit().await?;
        Ok(PostOutcome::Created(crate::group_commit::created(m)))
    }

    /// The message an author already posted here with this nonce.
    pub(crate) async fn message_by_nonce(&self, m: &NewMessage) -> StoreResult<MessageRecord> {
        let row = sqlx::query(message_select!(
            "WHERE m.channel_id = $1 AND m.author_id = $2 AND m.nonce = $3"
        ))
        .bind(m.channel_id.get())
        .bind(m.author_id.get())
        .bind(m.nonce.clone())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::Other(sqlx::Error::RowNotFound))?;
        self.message_from_row(&row)
    }
}

/// Storage of messages.
impl Store {
    /// Posts in one transaction: the message (or the earlier one with the same nonce), its
    /// attachments, its mention rows and the channel's last message id.
    pub async fn post_message(&self, m: &NewMessage) -> StoreResult<PostOutcome> {
        if !m.attachment_ids.is_empty() {
            return self.post_one(m).await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = crate::group_commit::Job {
            message: m.clone(),
            reply,
        };
        if self.post_queue().send(job).await.is_err() {
            // The committer is gone (the store is closing, or its runtime ended): write
            // directly.
            return self.post_one(m).await;
        }
        match answer.await {
            Ok(r) => r,
            Err(_) => self.post_one(m).await,
        }
    }

    /// When `author` last posted in `channel`, looking only at messages with ids above
    /// `since` (for slowmode across nodes).
    pub async fn last_post_since(
        &self,
        channel: Snowflake,
        author: Snowflake,
        since: Snowflake,
    ) -> StoreResult<Option<Timestamp>> {
        let row = sqlx::query(
            "SELECT MAX(created_at) FROM messages WHERE channel_id = $1 AND id > $2 AND author_id = $3",
        )
        .bind(channel.get())
        .bind(since.get())
        .bind(author.get())
        .fetch_one(self.pool())
        .await?;
        let t: Option<i64> = row.try_get(0)?;
        Ok(t.map(Timestamp::from_millis))
    }

    /// A live message of a channel.
    pub async fn message(
        &self,
        channel: Snowflake,
        id: Snowflake,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(message_select!(
            "WHERE m.id = $1 AND m.channel_id = $2 AND m.deleted_at IS NULL"
        ))
        .bind(id.get())
        .bind(channel.get())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| self.message_from_row(&r)).transpose()
    }

    /// A live message by id alone, wherever it was posted.
    pub async fn live_message(&self, id: Snowflake) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(message_select!("WHERE m.id = $1 AND m.deleted_at IS NULL"))
            .bind(id.get())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| self.message_from_row(&r)).transpose()
    }

    /// Live messages of `channel`, newest first, skipping the `offset` newest (offset
    /// paging, for clients that ask for page numbers), with the count of all live ones.
    pub async fn history_offset(
        &self,
        channel: Snowflake,
        offset: u64,
        limit: u32,
    ) -> StoreResult<(Vec<MessageRecord>, i64)> {
        let rows = sqlx::query(message_select!(
            "WHERE m.channel_id = $1 AND m.deleted_at IS NULL ORDER BY m.id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(channel.get())
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        let total = self.message_count(channel).await?;
        Ok((self.messages_from_rows(&rows)?, total))
    }

    /// How many live messages `channel` holds.
    pub async fn message_count(&self, channel: Snowflake) -> StoreResult<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM messages WHERE channel_id = $1 AND deleted_at IS NULL",
        )
        .bind(channel.get())
        .fetch_one(self.pool())
        .await?
        .try_get(0)?)
    }

    /// How far each member of `channel` has read: (user, last read message id).
    pub async fn channel_read_marks(
        &self,
        channel: Snowflake,
    ) -> StoreResult<Vec<(Snowflake, Snowflake)>> {
        let rows = sqlx::query(
            "SELECT user_id, last_read_message_id FROM read_states WHERE channel_id = $1",
        )
        .bind(channel.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Snowflake::from_i64(r.try_get(0)?),
                    Snowflake::from_i64(r.try_get(1)?),
                ))
            })
            .collect()
    }

    /// Live messages, newest first, exact at the edges (no gaps, no repeats).
    pub async fn history(
        &self,
        channel: Snowflake,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<MessageRecord>> {
        let limit = i64::from(limit);
        let older = |below: i64, n: i64| {
            sqlx::query(message_select!(
                "WHERE m.channel_id = $1 AND m.id < $2 AND m.deleted_at IS NULL ORDER BY m.id DESC LIMIT $3"
            ))
            .bind(channel.get())
            .bind(below)
            .bind(n)
        };
        let newer = |from: i64, n: i64| {
            sqlx::query(message_select!(
                "WHERE m.channel_id = $1 AND m.id >= $2 AND m.deleted_at IS NULL ORDER BY m.id ASC LIMIT $3"
            ))
            .bind(channel.get())
            .bind(from)
            .bind(n)
        };
        let out = match page {
            Page::Latest => {
                self.messages_from_rows(&older(i64::MAX, limit).fetch_all(self.pool()).await?)?
            }
            Page::Before(id) => {
                self.messages_from_rows(&older(id.get(), limit).fetch_all(self.pool()).await?)?
            }
            Page::After(id) => {
                let mut v = self.messages_from_rows(
                    &newer(id.get().saturating_add(1), limit)
                        .fetch_all(self.pool())
                        .await?,
                )?;
                v.reverse();
                v
            }
            Page::Around(id) => {
                // The centre and the newer half, then fill up with older ones.
                let up = (limit + 1) / 2;
                let mut v =
                    self.messages_from_rows(&newer(id.get(), up).fetch_all(self.pool()).await?)?;
                v.reverse();
                let rest = limit - v.len() as i64;
                if rest > 0 {
                    v.extend(self.messages_from_rows(
                        &older(id.get(), rest).fetch_all(self.pool()).await?,
                    )?);
                }
                v
            }
        };
        Ok(out)
    }

    /// Replaces the content (and mention rows); sets `edited_at` and bumps `version`,
    /// only while the version is `expected_version` when one is given.
    #[allow(clippy::too_many_arguments)]
    pub async fn edit_message(
        &self,
        tx: &mut crate::WriteTx,
        m: &MessageRecord,
        content: &str,
        mentions: &str,
        mention_everyone: bool,
        mentioned_users: &[Snowflake],
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<crate::Versioned<MessageRecord>> {
        let n = sqlx::query(
            "UPDATE messages SET content = $2, mentions = $3, mention_everyone = $4, edited_at = $5, version = version + 1 \
             WHERE id = $1 AND deleted_at IS NULL AND ($6 < 0 OR version = $6)",
        )
        .bind(m.id.get())
        .bind(content.to_owned())
        .bind(mentions.to_owned())
        .bind(mention_everyone)
        .bind(now.as_millis())
        .bind(expected_version.unwrap_or(-1))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query("DELETE FROM message_mentions WHERE message_id = $1")
                .bind(m.id.get())
                .execute(&mut **tx)
                .await?;
            for user in mentioned_users {
                sqlx::query("INSERT INTO message_mentions (message_id, user_id, channel_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(m.id.get())
                    .bind(user.get())
                    .bind(m.channel_id.get())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        let now_row = self.message_by_id(tx, m.id).await?;
        Ok(match now_row {
            Some(row) if n == 1 => crate::Versioned::Updated(row),
            // Still there and not deleted: the version was not the expected one.
            Some(row) if row.deleted_at.is_none() => crate::Versioned::Stale,
            _ => crate::Versioned::Missing,
        })
    }

    /// Soft-deletes messages of a channel; returns the ids that were live.
    pub async fn delete_messages(
        &self,
        tx: &mut crate::WriteTx,
        channel: Snowflake,
        ids: &[Snowflake],
        now: Timestamp,
    ) -> StoreResult<Vec<Snowflake>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE messages SET deleted_at = $2 WHERE id IN {} AND channel_id = $3 AND deleted_at IS NULL RETURNING id",
            self.in_ids()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids_json(ids)?)
            .bind(now.as_millis())
            .bind(channel.get())
            .fetch_all(&mut **tx)
            .await?;
        let deleted: Vec<Snowflake> = rows
            .iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect::<StoreResult<_>>()?;
        if !deleted.is_empty() {
            let sql = format!("DELETE FROM pins WHERE message_id IN {}", self.in_ids());
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids_json(&deleted)?)
                .execute(&mut **tx)
                .await?;
        }
        Ok(deleted)
    }

    /// Reaction counts for these messages from `viewer`'s side, in first-reacted order.
    pub async fn reactions_for(
        &self,
        ids: &[Snowflake],
        viewer: Snowflake,
    ) -> StoreResult<HashMap<Snowflake, Vec<ReactionCount>>> {
        let mut out: HashMap<Snowflake, Vec<ReactionCount>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT message_id, emoji, COUNT(*) AS n, MAX(CASE WHEN user_id = $2 THEN 1 ELSE 0 END) AS me, MIN(created_at) AS first \
             FROM reactions WHERE message_id IN {} GROUP BY message_id, emoji ORDER BY message_id, first, emoji",
            self.in_ids()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids_json(ids)?)
            .bind(viewer.get())
            .fetch_all(self.pool())
            .await?;
        for r in rows {
            out.entry(Snowflake::from_i64(r.try_get(0)?))
                .or_default()
                .push(ReactionCount {
                    emoji: r.try_get(1)?,
                    count: r.try_get(2)?,
                    me: r.try_get::<i64, _>(3)? == 1,
                });
        }
        Ok(out)
    }

    /// Adds a reaction; false when it was there.
    pub async fn add_reaction(
        &self,
        tx: &mut crate::WriteTx,
        message: Snowflake,
        emoji: &str,
        user: Snowflake,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query("INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(message.get())
            .bind(emoji.to_owned())
            .bind(user.get())
            .bind(now.as_millis())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Removes a reaction; false when it was not there.
    pub async fn remove_reaction(
        &self,
        tx: &mut crate::WriteTx,
        message: Snowflake,
        emoji: &str,
        user: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
        )
        .bind(message.get())
        .bind(emoji.to_owned())
        .bind(user.get())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Whether any reaction with this emoji exists on the message.
    pub async fn reaction_exists(&self, message: Snowflake, emoji: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM reactions WHERE message_id = $1 AND emoji = $2 LIMIT 1")
                .bind(message.get())
                .bind(emoji.to_owned())
                .fetch_optional(self.pool())
                .await?
                .is_some(),
        )
    }

    /// Who reacted with `emoji`, in order, after `after`.
    pub async fn reaction_users(
        &self,
        message: Snowflake,
        emoji: &str,
        after: Option<Snowflake>,
        limit: u32,
    ) -> StoreResult<Vec<Snowflake>> {
        let rows = sqlx::query(
            "SELECT user_id FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id > $3 ORDER BY user_id LIMIT $4",
        )
        .bind(message.get())
        .bind(emoji.to_owned())
        .bind(after.map_or(0, Snowflake::get))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect()
    }

    /// Pins a message; false when it was pinned.
    pub async fn pin(
        &self,
        tx: &mut crate::WriteTx,
        channel: Snowflake,
        message: Snowflake,
        by: Snowflake,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query("INSERT INTO pins (channel_id, message_id, pinned_by, pinned_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(channel.get())
            .bind(message.get())
            .bind(by.get())
            .bind(now.as_millis())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Unpins; false when it was not pinned.
    pub async fn unpin(
        &self,
        tx: &mut crate::WriteTx,
        channel: Snowflake,
        message: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM pins WHERE channel_id = $1 AND message_id = $2")
            .bind(channel.get())
            .bind(message.get())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Pinned live messages, newest pin first.
    pub async fn pins(&self, channel: Snowflake) -> StoreResult<Vec<MessageRecord>> {
        let rows = sqlx::query(message_select!(
            "JOIN pins p ON p.message_id = m.id WHERE p.channel_id = $1 AND m.deleted_at IS NULL ORDER BY p.pinned_at DESC, m.id DESC"
        ))
        .bind(channel.get())
        .fetch_all(self.pool())
        .await?;
        self.messages_from_rows(&rows)
    }

    /// How many live messages of `channel` are pinned, as the transaction `tx` sees it.
    /// On PostgreSQL the channel row is locked first, so two pins racing for the last
    /// place are counted one after the other (SQLite has one writer anyway).
    pub async fn pin_count_in(
        &self,
        tx: &mut crate::WriteTx,
        channel: Snowflake,
    ) -> StoreResult<i64> {
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT id FROM channels WHERE id = $1 FOR UPDATE")
                .bind(channel.get())
                .fetch_optional(&mut **tx)
                .await?;
        }
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM pins p JOIN messages m ON m.id = p.message_id \
             WHERE p.channel_id = $1 AND m.deleted_at IS NULL",
        )
        .bind(channel.get())
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        Ok(n)
    }

    /// Which of these messages are pinned.
    pub async fn pinned_among(&self, ids: &[Snowflake]) -> StoreResult<Vec<Snowflake>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT message_id FROM pins WHERE message_id IN {}",
            self.in_ids()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids_json(ids)?)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect()
    }

    /// Stores an upload's metadata.
    pub async fn create_attachment(&self, a: &AttachmentRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO attachments (id, uploader_id, channel_id, filename, content_type, size, width, height, storage_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(a.id.get())
        .bind(a.uploader_id.get())
        .bind(a.channel_id.get())
        .bind(a.filename.clone())
        .bind(a.content_type.clone())
        .bind(a.size)
        .bind(a.width)
        .bind(a.height)
        .bind(a.storage_key.clone())
        .bind(a.created_at.as_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An attachment.
    pub async fn attachment(&self, id: Snowflake) -> StoreResult<Option<AttachmentRecord>> {
        let sql = format!("{ATTACHMENT_COLUMNS}WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.get())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(attachment_from_row).transpose()
    }

    /// Attachments of these messages.
    pub async fn attachments_for(
        &self,
        ids: &[Snowflake],
    ) -> StoreResult<HashMap<Snowflake, Vec<AttachmentRecord>>> {
        let mut out: HashMap<Snowflake, Vec<AttachmentRecord>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "{ATTACHMENT_COLUMNS}WHERE message_id IN {} ORDER BY id",
            self.in_ids()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids_json(ids)?)
            .fetch_all(self.pool())
            .await?;
        for r in rows {
            let a = attachment_from_row(&r)?;
            if let Some(m) = a.message_id {
                out.entry(m).or_default().push(a);
            }
        }
        Ok(out)
    }

    /// Storage keys of the attachments uploaded to these channels.
    pub async fn attachment_keys(&self, channels: &[Snowflake]) -> StoreResult<Vec<String>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT storage_key FROM attachments WHERE channel_id IN {}",
            self.in_ids_at(1)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids_json(channels)?)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Sets the read marker of `user` in `channel`.
    pub async fn ack(
        &self,
        tx: &mut crate::WriteTx,
        user: Snowflake,
        channel: Snowflake,
        message: Snowflake,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO read_states (user_id, channel_id, last_read_message_id, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, channel_id) DO UPDATE SET last_read_message_id = excluded.last_read_message_id, updated_at = excluded.updated_at",
        )
        .bind(user.get())
        .bind(channel.get())
        .bind(message.get())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The user's read states with unread and mention counts.
    pub async fn read_states(&self, user: Snowflake) -> StoreResult<Vec<ReadStateRecord>> {
        // One query for every channel: counts come from the (channel, id) index.
        let rows = sqlx::query(
            "SELECT rs.channel_id, rs.last_read_message_id, \
               (SELECT COUNT(*) FROM messages m WHERE m.channel_id = rs.channel_id AND m.id > rs.last_read_message_id \
                  AND m.deleted_at IS NULL AND m.author_id <> $1) AS unread, \
               (SELECT COUNT(*) FROM messages m WHERE m.channel_id = rs.channel_id AND m.id > rs.last_read_message_id \
                  AND m.deleted_at IS NULL AND m.author_id <> $1 AND (m.mention_everyone = $2 OR EXISTS \
                  (SELECT 1 FROM message_mentions mm WHERE mm.message_id = m.id AND mm.user_id = $1))) AS mentions \
             FROM read_states rs WHERE rs.user_id = $1 ORDER BY rs.channel_id",
        )
        .bind(user.get())
        .bind(true)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReadStateRecord {
                    channel_id: Snowflake::from_i64(r.try_get(0)?),
                    last_read_message_id: Snowflake::from_i64(r.try_get(1)?),
                    unread_count: r.try_get(2)?,
                    mention_count: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Full-text search, newest first.
    pub async fn search(&self, q: &SearchQuery) -> StoreResult<Vec<MessageRecord>> {
        if q.channels.is_empty() {
            return Ok(Vec::new());
        }
        let words: Vec<String> = q
            .text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .take(16)
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let channels = self.in_ids_at(2);
        let filters = "AND ($3 = 0 OR m.author_id = $3) AND m.id < $4 AND m.id > $5 AND m.deleted_at IS NULL AND m.encrypted = $6 \
                       ORDER BY m.id DESC LIMIT $7";
        let (sql, text) = match self.backend() {
            // Each word quoted: FTS5 operators in user input are taken literally.
            Backend::Sqlite => (
                format!(
                    "SELECT m.id, m.channel_id, m.author_id, m.content, m.nonce, m.reply_to, m.mention_everyone, m.mentions, \
                     m.encrypted, m.encrypted_keys, m.is_automatic, m.edited_at, m.deleted_at, m.version, m.created_at \
                     FROM messages_fts f JOIN messages m ON m.id = f.rowid WHERE messages_fts MATCH $1 \
                     AND m.channel_id IN {channels} {filters}"
                ),
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Backend::Postgres => (
                format!(
                    "SELECT m.id, m.channel_id, m.author_id, m.content, m.nonce, m.reply_to, m.mention_everyone, m.mentions, \
                     m.encrypted, m.encrypted_keys, m.is_automatic, m.edited_at, m.deleted_at, m.version, m.created_at \
                     FROM messages m WHERE m.search @@ plainto_tsquery('simple', $1) \
                     AND m.channel_id IN {channels} {filters}"
                ),
                words.join(" "),
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(text)
            .bind(ids_json(&q.channels)?)
            .bind(q.author.map_or(0, Snowflake::get))
            .bind(q.before.map_or(i64::MAX, Snowflake::get))
            .bind(q.after.map_or(0, Snowflake::get))
            .bind(false)
            .bind(i64::from(q.limit))
            .fetch_all(self.pool())
            .await?;
        self.messages_from_rows(&rows)
    }
}
