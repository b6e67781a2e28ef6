//! Server bans: banning (with removal and message clean-up), unbanning, lookup.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use super::{sf, sf_opt};
use crate::store::WriteTx;
use crate::{Store, StoreResult};

/// A ban row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    /// Banned user.
    pub user_id: Snowflake,
    /// Why.
    pub reason: Option<String>,
    /// Who banned.
    pub banned_by: Option<Snowflake>,
    /// When.
    pub created_at: Timestamp,
}

/// Storage of bans.
impl Store {
    /// Bans `user`, removes them if a member, and soft-deletes their messages in the server
    /// since `delete_messages_since`; all in one transaction. Returns whether they were a member.
    #[allow(clippy::too_many_arguments)]
    pub async fn ban(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
        reason: Option<&str>,
        by: Snowflake,
        delete_messages_since: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        sqlx::query(
            "INSERT INTO bans (server_id, user_id, reason, banned_by, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (server_id, user_id) DO UPDATE SET reason = excluded.reason, banned_by = excluded.banned_by",
        )
        .bind(server.get())
        .bind(user.get())
        .bind(reason.map(str::to_owned))
        .bind(by.get())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?;
        let was_member = sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server.get())
            .bind(user.get())
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1;
        if was_member {
            sqlx::query("UPDATE servers SET member_count = member_count - 1 WHERE id = $1")
                .bind(server.get())
                .execute(&mut **tx)
                .await?;
        }
        if let Some(since) = delete_messages_since {
            sqlx::query(
                "UPDATE messages SET deleted_at = $3 WHERE author_id = $2 AND deleted_at IS NULL AND created_at >= $4 \
                 AND channel_id IN (SELECT id FROM channels WHERE server_id = $1)",
            )
            .bind(server.get())
            .bind(user.get())
            .bind(now.as_millis())
            .bind(since.as_millis())
            .execute(&mut **tx)
            .await?;
        }
        Ok(was_member)
    }

    /// Lifts a ban; false when there was none.
    pub async fn unban(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM bans WHERE server_id = $1 AND user_id = $2")
            .bind(server.get())
            .bind(user.get())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// The ban of `user`, if any.
    pub async fn ban_of(
        &self,
        server: Snowflake,
        user: Snowflake,
    ) -> StoreResult<Option<BanRecord>> {
        let row = sqlx::query("SELECT user_id, reason, banned_by, created_at FROM bans WHERE server_id = $1 AND user_id = $2")
            .bind(server.get())
            .bind(user.get())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(ban_from_row).transpose()
    }

    /// Bans of a server, oldest first.
    pub async fn bans(&self, server: Snowflake) -> StoreResult<Vec<BanRecord>> {
        let rows = sqlx::query("SELECT user_id, reason, banned_by, created_at FROM bans WHERE server_id = $1 ORDER BY created_at, user_id")
            .bind(server.get())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(ban_from_row).collect()
    }
}

fn ban_from_row(r: &AnyRow) -> StoreResult<BanRecord> {
    Ok(BanRecord {
        user_id: sf(r.try_get(0)?),
        reason: r.try_get(1)?,
        banned_by: sf_opt(r.try_get(2)?),
        created_at: Timestamp::from_millis(r.try_get(3)?),
    })
}
