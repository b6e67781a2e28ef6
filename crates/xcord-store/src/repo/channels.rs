//! Channels: server channels (text, voice, category) and private ones (dm, group_dm).

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::rest::channels::{ChannelKind, MAX_POSITION};
use xcord_types::{Snowflake, Timestamp};

use crate::store::WriteTx;
use crate::{OverwriteRecord, Store, StoreError, StoreResult, Versioned};

/// A channel row. Private channels have no server and list their members in
/// `channel_recipients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Snowflake id.
    pub id: Snowflake,
    /// The server, for server channels.
    pub server_id: Option<Snowflake>,
    /// Text, voice, category, DM or group DM.
    pub kind: ChannelKind,
    /// Name (server channels and named group DMs).
    pub name: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Sort position within the server.
    pub position: i64,
    /// Parent category.
    pub parent_id: Option<Snowflake>,
    /// Age-restricted.
    pub nsfw: bool,
    /// Voice: most participants.
    pub user_limit: Option<i64>,
    /// Voice: bitrate in kbps.
    pub bitrate: Option<i64>,
    /// Slowmode seconds.
    pub rate_limit_per_user: i64,
    /// Group DM owner.
    pub owner_id: Option<Snowflake>,
    /// Group DM icon.
    pub icon: Option<String>,
    /// Newest message.
    pub last_message_id: Option<Snowflake>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A private channel with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateChannel {
    /// The channel.
    pub channel: ChannelRecord,
    /// Everyone in it, in the order they were added.
    pub recipients: Vec<Snowflake>,
}

macro_rules! channel_select {
    ($tail:literal) => {
        concat!(
            "SELECT c.id, c.server_id, c.type, c.name, c.topic, c.position, c.parent_id, c.nsfw, c.user_limit, ",
            "c.bitrate, c.rate_limit_per_user, c.owner_id, c.icon, c.last_message_id, c.version, c.created_at, ",
            "c.updated_at FROM channels c ",
            $tail
        )
    };
}

fn id_opt(v: Option<i64>) -> Option<Snowflake> {
    v.map(Snowflake::from_i64)
}

/// The kind stored in a channel row's `type`. A name this version does not know is a
/// corrupt (or newer) row and fails the read: treating it as some other kind would compute
/// the wrong permissions for it.
pub(crate) fn kind_from_row(row: &AnyRow) -> StoreResult<ChannelKind> {
    let name: String = row.try_get("type")?;
    ChannelKind::parse(&name).ok_or_else(|| {
        StoreError::Other(sqlx::Error::ColumnDecode {
            index: "type".into(),
            source: format!("unknown channel kind {name:?}").into(),
        })
    })
}

/// The key that makes a 1:1 DM unique: both user ids, lower first.
pub fn dm_key(a: Snowflake, b: Snowflake) -> String {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

impl Store {
    pub(crate) fn channel_from_row(&self, row: &AnyRow) -> StoreResult<ChannelRecord> {
        Ok(ChannelRecord {
            id: Snowflake::from_i64(row.try_get("id")?),
            server_id: id_opt(row.try_get("server_id")?),
            kind: kind_from_row(row)?,
            name: row.try_get("name")?,
            topic: row.try_get("topic")?,
            position: row.try_get("position")?,
            parent_id: id_opt(row.try_get("parent_id")?),
            nsfw: self.flag(row, "nsfw")?,
            user_limit: row.try_get("user_limit")?,
            bitrate: row.try_get("bitrate")?,
            rate_limit_per_user: row.try_get("rate_limit_per_user")?,
            owner_id: id_opt(row.try_get("owner_id")?),
            icon: row.try_get("icon")?,
            last_message_id: id_opt(row.try_get("last_message_id")?),
            version: row.try_get("version")?,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        })
    }

    async fn dm_by_key(&self, key: &str) -> StoreResult<Option<PrivateChannel>> {
        let row = sqlx::query("SELECT id FROM channels WHERE dm_key = $1")
            .bind(key.to_owned())
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => {
                self.private_channel(Snowflake::from_i64(r.try_get(0)?))
                    .await
            }
            None => Ok(None),
        }
    }

    /// A private channel with its recipients as `conn` (a transaction, or a connection of
    /// the pool) sees it.
    async fn private_channel_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: Snowflake,
    ) -> StoreResult<Option<PrivateChannel>> {
        let Some(channel) = self.channel_in(conn, id).await? else {
            return Ok(None);
        };
        let recipients = self.recipients_in(conn, id).await?;
        Ok(Some(PrivateChannel {
            channel,
            recipients,
        }))
    }

    async fn private_channel(&self, id: Snowflake) -> StoreResult<Option<PrivateChannel>> {
        self.private_channel_in(&mut *self.pool().acquire().await?, id)
            .await
    }
}

/// Storage of channels.
impl Store {
    /// A channel by id.
    pub async fn channel(&self, id: Snowflake) -> StoreResult<Option<ChannelRecord>> {
        self.channel_in(&mut *self.pool().acquire().await?, id)
            .await
    }

    /// A channel as `conn` (a transaction, or a connection of the pool) sees it.
    pub async fn channel_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: Snowflake,
    ) -> StoreResult<Option<ChannelRecord>> {
        let row = sqlx::query(channel_select!("WHERE c.id = $1"))
            .bind(id.get())
            .fetch_optional(conn)
            .await?;
        row.map(|r| self.channel_from_row(&r)).transpose()
    }

    /// Creates the 1:1 DM between `a` and `b`, or returns the existing one; the flag is true
    /// when it was created. Atomic under concurrency (unique `dm_key`).
    pub async fn create_or_get_dm(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        a: Snowflake,
        b: Snowflake,
        now: Timestamp,
    ) -> StoreResult<(PrivateChannel, bool)> {
        let key = dm_key(a, b);
        if let Some(pc) = self.dm_by_key(&key).await? {
            return Ok((pc, false));
        }
        let inserted = sqlx::query(
            "INSERT INTO channels (id, type, dm_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (dm_key) DO NOTHING",
        )
        .bind(id.get())
        .bind(ChannelKind::Dm.as_str())
        .bind(key.clone())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            for user in [a, b] {
                sqlx::query("INSERT INTO channel_recipients (channel_id, user_id, added_at) VALUES ($1, $2, $3)")
                    .bind(id.get())
                    .bind(user.get())
                    .bind(now.as_millis())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        // When the insert lost a race, the winner's channel is the one to return.
        let row = sqlx::query("SELECT id FROM channels WHERE dm_key = $1")
            .bind(key.clone())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))?;
        let pc = self
            .private_channel_in(tx, Snowflake::from_i64(row.try_get(0)?))
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))?;
        Ok((pc, inserted == 1))
    }

    /// Creates a group DM owned by `owner` with `members` (owner included).
    pub async fn create_group_dm(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        owner: Snowflake,
        members: &[Snowflake],
        name: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<PrivateChannel> {
        sqlx::query(
            "INSERT INTO channels (id, type, name, owner_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.get())
        .bind(ChannelKind::GroupDm.as_str())
        .bind(name.map(str::to_owned))
        .bind(owner.get())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?;
        for (i, user) in members.iter().enumerate() {
            // Distinct added_at values keep the members in the order given.
            sqlx::query("INSERT INTO channel_recipients (channel_id, user_id, added_at) VALUES ($1, $2, $3)")
                .bind(id.get())
                .bind(user.get())
                .bind(now.as_millis() + i as i64)
                .execute(&mut **tx)
                .await?;
        }
        self.private_channel_in(tx, id)
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))
    }

    /// Private channels `user` is in, newest activity first.
    pub async fn private_channels_of(&self, user: Snowflake) -> StoreResult<Vec<PrivateChannel>> {
        let rows = sqlx::query(channel_select!(
            "JOIN channel_recipients me ON me.channel_id = c.id AND me.user_id = $1 \
             ORDER BY COALESCE(c.last_message_id, c.id) DESC"
        ))
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        let channels: Vec<ChannelRecord> = rows
            .iter()
            .map(|r| self.channel_from_row(r))
            .collect::<StoreResult<_>>()?;
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        // All members of all these channels in one query.
        let members = sqlx::query(
            "SELECT r.channel_id, r.user_id FROM channel_recipients r \
             JOIN channel_recipients me ON me.channel_id = r.channel_id AND me.user_id = $1 \
             ORDER BY r.channel_id, r.added_at, r.user_id",
        )
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        let mut by_channel: std::collections::HashMap<i64, Vec<Snowflake>> =
            std::collections::HashMap::new();
        for m in members {
            by_channel
                .entry(m.try_get(0)?)
                .or_default()
                .push(Snowflake::from_i64(m.try_get(1)?));
        }
        Ok(channels
            .into_iter()
            .map(|channel| {
                let recipients = by_channel.remove(&channel.id.get()).unwrap_or_default();
                PrivateChannel {
                    channel,
                    recipients,
                }
            })
            .collect())
    }

    /// Members of a private channel.
    pub async fn recipients(&self, channel: Snowflake) -> StoreResult<Vec<Snowflake>> {
        self.recipients_in(&mut *self.pool().acquire().await?, channel)
            .await
    }

    /// Members of a private channel as `conn` sees them.
    async fn recipients_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        channel: Snowflake,
    ) -> StoreResult<Vec<Snowflake>> {
        let rows = sqlx::query("SELECT user_id FROM channel_recipients WHERE channel_id = $1 ORDER BY added_at, user_id")
            .bind(channel.get())
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect()
    }
}

/// A new server channel.
#[derive(Debug, Clone)]
pub struct NewChannel {
    /// Id.
    pub id: Snowflake,
    /// Server.
    pub server_id: Snowflake,
    /// Text, voice or category.
    pub kind: ChannelKind,
    /// Name.
    pub name: String,
    /// Topic.
    pub topic: Option<String>,
    /// Position (`None`: after the last).
    pub position: Option<i64>,
    /// Category.
    pub parent_id: Option<Snowflake>,
    /// Age-restricted.
    pub nsfw: bool,
    /// Voice participant limit.
    pub user_limit: Option<i64>,
    /// Voice bitrate.
    pub bitrate: Option<i64>,
    /// Slowmode seconds.
    pub rate_limit_per_user: i64,
    /// Overwrites it starts with.
    pub overwrites: Vec<OverwriteRecord>,
    /// Creation time.
    pub now: Timestamp,
}

/// Changes to a channel.
#[derive(Debug, Clone, Default)]
pub struct ChannelPatch {
    /// Name.
    pub name: Option<String>,
    /// Topic, or cleared.
    pub topic: Option<Option<String>>,
    /// Age-restricted.
    pub nsfw: Option<bool>,
    /// Position.
    pub position: Option<i64>,
    /// Category, or none.
    pub parent_id: Option<Option<Snowflake>>,
    /// Voice limit, or none.
    pub user_limit: Option<Option<i64>>,
    /// Voice bitrate.
    pub bitrate: Option<i64>,
    /// Slowmode seconds.
    pub rate_limit_per_user: Option<i64>,
}

/// Storage of server channels.
impl Store {
    /// Channels of a server, by position then id.
    pub async fn server_channels(&self, server: Snowflake) -> StoreResult<Vec<ChannelRecord>> {
        self.server_channels_in(&mut *self.pool().acquire().await?, server)
            .await
    }

    /// Channels of a server as `conn` (a transaction, or a connection of the pool) sees
    /// them.
    pub async fn server_channels_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        server: Snowflake,
    ) -> StoreResult<Vec<ChannelRecord>> {
        let rows = sqlx::query(
            "SELECT id, server_id, type, name, topic, position, parent_id, nsfw, user_limit, bitrate, rate_limit_per_user, \
             owner_id, icon, last_message_id, version, created_at, updated_at FROM channels WHERE server_id = $1 ORDER BY position, id",
        )
        .bind(server.get())
        .fetch_all(conn)
        .await?;
        rows.iter().map(|r| self.channel_from_row(r)).collect()
    }

    /// Creates a server channel with its overwrites.
    pub async fn create_channel(
        &self,
        tx: &mut WriteTx,
        c: &NewChannel,
    ) -> StoreResult<ChannelRecord> {
        let position = match c.position {
            Some(p) => p,
            None => {
                let last: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(position), -1) FROM channels WHERE server_id = $1",
                )
                .bind(c.server_id.get())
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                // After the last, but never past the highest position allowed (and never
                // an overflow, whatever an older row holds).
                last.saturating_add(1).clamp(0, MAX_POSITION)
            }
        };
        sqlx::query(
            "INSERT INTO channels (id, server_id, type, name, topic, position, parent_id, nsfw, user_limit, bitrate, \
             rate_limit_per_user, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        )
        .bind(c.id.get())
        .bind(c.server_id.get())
        .bind(c.kind.as_str())
        .bind(c.name.clone())
        .bind(c.topic.clone())
        .bind(position)
        .bind(c.parent_id.map(Snowflake::get))
        .bind(c.nsfw)
        .bind(c.user_limit)
        .bind(c.bitrate)
        .bind(c.rate_limit_per_user)
        .bind(c.now.as_millis())
        .execute(&mut **tx)
        .await?;
        // The channel and its overwrites are one change.
        for o in &c.overwrites {
            sqlx::query(
                "INSERT INTO permission_overwrites (channel_id, target_id, target_type, allow, deny) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(c.id.get())
            .bind(o.target_id.get())
            .bind(o.target_type.clone())
            .bind(o.allow)
            .bind(o.deny)
            .execute(&mut **tx)
            .await?;
        }
        self.channel_in(tx, c.id)
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))
    }

    /// Applies `patch` if `expected_version` (when given) is current.
    pub async fn update_channel(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
        p: &ChannelPatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Versioned<ChannelRecord>> {
        let (topic_set, topic) = (p.topic.is_some(), p.topic.clone().flatten());
        let (parent_set, parent) = (
            p.parent_id.is_some(),
            p.parent_id.flatten().map(Snowflake::get),
        );
        let (limit_set, limit) = (p.user_limit.is_some(), p.user_limit.flatten());
        let n = sqlx::query(
            "UPDATE channels SET name = COALESCE($2, name), topic = CASE WHEN $3 THEN $4 ELSE topic END, \
               nsfw = CASE WHEN $5 THEN $6 ELSE nsfw END, position = COALESCE($7, position), \
               parent_id = CASE WHEN $8 THEN $9 ELSE parent_id END, user_limit = CASE WHEN $10 THEN $11 ELSE user_limit END, \
               bitrate = COALESCE($12, bitrate), rate_limit_per_user = COALESCE($13, rate_limit_per_user), \
               version = version + 1, updated_at = $14 WHERE id = $1 AND ($15 < 0 OR version = $15)",
        )
        .bind(id.get())
        .bind(p.name.clone())
        .bind(topic_set)
        .bind(topic)
        .bind(p.nsfw.is_some())
        .bind(p.nsfw.unwrap_or(false))
        .bind(p.position)
        .bind(parent_set)
        .bind(parent)
        .bind(limit_set)
        .bind(limit)
        .bind(p.bitrate)
        .bind(p.rate_limit_per_user)
        .bind(now.as_millis())
        .bind(expected_version.unwrap_or(-1))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        match (n, self.channel_in(tx, id).await?) {
            (1, Some(c)) => Ok(Versioned::Updated(c)),
            (_, Some(_)) => Ok(Versioned::Stale),
            (_, None) => Ok(Versioned::Missing),
        }
    }

    /// Deletes a channel (its messages go with it).
    pub async fn delete_channel(&self, tx: &mut WriteTx, id: Snowflake) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM channels WHERE id = $1")
            .bind(id.get())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}
