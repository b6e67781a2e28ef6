//! A server's audit log.

use sqlx::Row as _;
use xcord_types::{Snowflake, Timestamp};

use super::{sf, sf_opt};
use crate::store::WriteTx;
use crate::{Store, StoreResult};

/// An audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Id.
    pub id: Snowflake,
    /// Server.
    pub server_id: Snowflake,
    /// Who acted.
    pub actor_id: Snowflake,
    /// `member_kick`, `role_update`, …
    pub action: String,
    /// What was acted on.
    pub target_id: Option<Snowflake>,
    /// Why.
    pub reason: Option<String>,
    /// JSON of what changed.
    pub changes: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// Storage of the audit log.
impl Store {
    /// Appends to the audit log.
    pub async fn add_audit(&self, e: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_audit(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries newest first, before `before`, optionally of one action or actor.
    pub async fn audit_log(
        &self,
        server: Snowflake,
        before: Option<Snowflake>,
        action: Option<&str>,
        actor: Option<Snowflake>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, server_id, actor_id, action, target_id, reason, changes, created_at FROM audit_log \
             WHERE server_id = $1 AND id < $2 AND ($3 = '' OR action = $3) AND ($4 = 0 OR actor_id = $4) ORDER BY id DESC LIMIT $5",
        )
        .bind(server.get())
        .bind(before.map_or(i64::MAX, Snowflake::get))
        .bind(action.unwrap_or("").to_owned())
        .bind(actor.map_or(0, Snowflake::get))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: sf(r.try_get("id")?),
                    server_id: sf(r.try_get("server_id")?),
                    actor_id: sf(r.try_get("actor_id")?),
                    action: r.try_get("action")?,
                    target_id: sf_opt(r.try_get("target_id")?),
                    reason: r.try_get("reason")?,
                    changes: r.try_get("changes")?,
                    created_at: Timestamp::from_millis(r.try_get("created_at")?),
                })
            })
            .collect()
    }
}

/// Writes an audit row inside the transaction of the change it records.
impl Store {
    /// Writes an audit row inside the caller's transaction (with the change it records).
    pub async fn audit_in(tx: &mut WriteTx, e: &AuditRecord) -> StoreResult<()> {
        insert_audit(tx, e).await
    }
}

async fn insert_audit(tx: &mut crate::store::WriteTx, e: &AuditRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, server_id, actor_id, action, target_id, reason, changes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.id.get())
    .bind(e.server_id.get())
    .bind(e.actor_id.get())
    .bind(e.action.clone())
    .bind(e.target_id.map(Snowflake::get))
    .bind(e.reason.clone())
    .bind(e.changes.clone())
    .bind(e.created_at.as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
