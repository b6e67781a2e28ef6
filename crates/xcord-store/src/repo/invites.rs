//! Server invites: creation, lookup, counted uses, deletion.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use super::{sf, sf_opt};
use crate::store::WriteTx;
use crate::{Store, StoreResult};

/// An invite row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    /// Code.
    pub code: String,
    /// Server.
    pub server_id: Snowflake,
    /// Channel it points at.
    pub channel_id: Option<Snowflake>,
    /// Creator.
    pub inviter_id: Option<Snowflake>,
    /// 0: never expires.
    pub max_age_seconds: i64,
    /// 0: unlimited.
    pub max_uses: i64,
    /// Times used.
    pub uses: i64,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}

macro_rules! invite_select {
    ($tail:literal) => {
        concat!(
            "SELECT code, server_id, channel_id, inviter_id, max_age_seconds, max_uses, uses, expires_at, created_at ",
            "FROM invites ",
            $tail
        )
    };
}

fn invite_from_row(r: &AnyRow) -> StoreResult<InviteRecord> {
    Ok(InviteRecord {
        code: r.try_get("code")?,
        server_id: sf(r.try_get("server_id")?),
        channel_id: sf_opt(r.try_get("channel_id")?),
        inviter_id: sf_opt(r.try_get("inviter_id")?),
        max_age_seconds: r.try_get("max_age_seconds")?,
        max_uses: r.try_get("max_uses")?,
        uses: r.try_get("uses")?,
        expires_at: r
            .try_get::<Option<i64>, _>("expires_at")?
            .map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
    })
}

/// Storage of invites.
impl Store {
    /// Creates an invite.
    pub async fn create_invite(
        &self,
        tx: &mut crate::WriteTx,
        i: &InviteRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO invites (code, server_id, channel_id, inviter_id, max_age_seconds, max_uses, uses, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
        )
        .bind(i.code.clone())
        .bind(i.server_id.get())
        .bind(i.channel_id.map(Snowflake::get))
        .bind(i.inviter_id.map(Snowflake::get))
        .bind(i.max_age_seconds)
        .bind(i.max_uses)
        .bind(i.expires_at.map(Timestamp::as_millis))
        .bind(i.created_at.as_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// An invite by code (exact).
    pub async fn invite(&self, code: &str) -> StoreResult<Option<InviteRecord>> {
        let row = sqlx::query(invite_select!("WHERE code = $1"))
            .bind(code.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    /// Invites of a server, newest first.
    pub async fn invites(&self, server: Snowflake) -> StoreResult<Vec<InviteRecord>> {
        let rows = sqlx::query(invite_select!(
            "WHERE server_id = $1 ORDER BY created_at DESC, code"
        ))
        .bind(server.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(invite_from_row).collect()
    }

    /// Counts one use if the invite is still valid at `now`; `None` when it is not.
    pub async fn use_invite(
        &self,
        tx: &mut WriteTx,
        code: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        // One conditional UPDATE: two joins racing for the last use cannot both get it.
        let n = sqlx::query(
            "UPDATE invites SET uses = uses + 1 WHERE code = $1 AND (max_uses = 0 OR uses < max_uses) \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(code.to_owned())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Deletes an invite.
    pub async fn delete_invite(&self, tx: &mut crate::WriteTx, code: &str) -> StoreResult<bool> {
        Ok(sqlx::query("DELETE FROM invites WHERE code = $1")
            .bind(code.to_owned())
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1)
    }
}
