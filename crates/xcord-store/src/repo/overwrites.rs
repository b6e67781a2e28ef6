//! Permission overwrites of server channels, per role or member.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::Snowflake;

use super::sf;
use crate::store::WriteTx;
use crate::{Store, StoreResult};

/// A channel's overwrite for one role or member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverwriteRecord {
    /// Channel.
    pub channel_id: Snowflake,
    /// Role or user id.
    pub target_id: Snowflake,
    /// `role` or `user`.
    pub target_type: String,
    /// Granted bits.
    pub allow: i64,
    /// Taken bits.
    pub deny: i64,
}

/// Storage of overwrites.
impl Store {
    /// Overwrites of one channel.
    pub async fn overwrites(&self, channel: Snowflake) -> StoreResult<Vec<OverwriteRecord>> {
        self.overwrites_in(&mut *self.pool().acquire().await?, channel)
            .await
    }

    /// Overwrites of one channel as `conn` (a transaction, or a connection of the pool)
    /// sees them.
    pub async fn overwrites_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        channel: Snowflake,
    ) -> StoreResult<Vec<OverwriteRecord>> {
        let rows = sqlx::query("SELECT channel_id, target_id, target_type, allow, deny FROM permission_overwrites WHERE channel_id = $1 ORDER BY target_id")
            .bind(channel.get())
            .fetch_all(conn)
            .await?;
        rows.iter().map(overwrite_from_row).collect()
    }

    /// Overwrites of every channel of a server.
    pub async fn server_overwrites(&self, server: Snowflake) -> StoreResult<Vec<OverwriteRecord>> {
        let rows = sqlx::query(
            "SELECT o.channel_id, o.target_id, o.target_type, o.allow, o.deny FROM permission_overwrites o \
             JOIN channels c ON c.id = o.channel_id WHERE c.server_id = $1 ORDER BY o.channel_id, o.target_id",
        )
        .bind(server.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(overwrite_from_row).collect()
    }

    /// Creates or replaces an overwrite; true when it existed.
    pub async fn put_overwrite(&self, tx: &mut WriteTx, o: &OverwriteRecord) -> StoreResult<bool> {
        let existed = sqlx::query(
            "SELECT 1 FROM permission_overwrites WHERE channel_id = $1 AND target_id = $2",
        )
        .bind(o.channel_id.get())
        .bind(o.target_id.get())
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
        sqlx::query(
            "INSERT INTO permission_overwrites (channel_id, target_id, target_type, allow, deny) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel_id, target_id) DO UPDATE SET target_type = excluded.target_type, allow = excluded.allow, deny = excluded.deny",
        )
        .bind(o.channel_id.get())
        .bind(o.target_id.get())
        .bind(o.target_type.clone())
        .bind(o.allow)
        .bind(o.deny)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE channels SET version = version + 1 WHERE id = $1")
            .bind(o.channel_id.get())
            .execute(&mut **tx)
            .await?;
        Ok(existed)
    }

    /// Deletes an overwrite; false when there was none.
    pub async fn delete_overwrite(
        &self,
        tx: &mut WriteTx,
        channel: Snowflake,
        target: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "DELETE FROM permission_overwrites WHERE channel_id = $1 AND target_id = $2",
        )
        .bind(channel.get())
        .bind(target.get())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query("UPDATE channels SET version = version + 1 WHERE id = $1")
                .bind(channel.get())
                .execute(&mut **tx)
                .await?;
        }
        Ok(n == 1)
    }
}

fn overwrite_from_row(r: &AnyRow) -> StoreResult<OverwriteRecord> {
    Ok(OverwriteRecord {
        channel_id: sf(r.try_get(0)?),
        target_id: sf(r.try_get(1)?),
        target_type: r.try_get(2)?,
        allow: r.try_get(3)?,
        deny: r.try_get(4)?,
    })
}
