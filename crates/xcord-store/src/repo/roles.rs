//! A server's roles: creation, update (with the moves a new position causes), deletion.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use super::sf;
use crate::store::WriteTx;
use crate::{Store, StoreError, StoreResult, Versioned};

/// A role row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// Id (`@everyone` has the server's id).
    pub id: Snowflake,
    /// Server.
    pub server_id: Snowflake,
    /// Name.
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
    /// 0 for `@everyone`; higher outranks lower.
    pub position: i64,
    /// Permission bits.
    pub permissions: i64,
    /// Can be @mentioned.
    pub mentionable: bool,
    /// Shown apart in member lists.
    pub hoisted: bool,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Changes to a role.
#[derive(Debug, Clone, Default)]
pub struct RolePatch {
    /// Name.
    pub name: Option<String>,
    /// Color.
    pub color: Option<String>,
    /// Permissions.
    pub permissions: Option<i64>,
    /// Mentionable.
    pub mentionable: Option<bool>,
    /// Hoisted.
    pub hoisted: Option<bool>,
    /// New position (≥ 1); others shift to make room.
    pub position: Option<i64>,
}

macro_rules! role_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, server_id, name, color, position, permissions, mentionable, hoisted, version, created_at ",
            "FROM roles ",
            $tail
        )
    };
}

impl Store {
    pub(super) fn role_from_row(&self, r: &AnyRow) -> StoreResult<RoleRecord> {
        Ok(RoleRecord {
            id: sf(r.try_get("id")?),
            server_id: sf(r.try_get("server_id")?),
            name: r.try_get("name")?,
            color: r.try_get("color")?,
            position: r.try_get("position")?,
            permissions: r.try_get("permissions")?,
            mentionable: self.flag(r, "mentionable")?,
            hoisted: self.flag(r, "hoisted")?,
            version: r.try_get("version")?,
            created_at: Timestamp::from_millis(r.try_get("created_at")?),
        })
    }

    /// One role as the transaction `tx` sees it.
    async fn role_in(&self, tx: &mut WriteTx, id: Snowflake) -> StoreResult<Option<RoleRecord>> {
        let row = sqlx::query(role_select!("WHERE id = $1"))
            .bind(id.get())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| self.role_from_row(&r)).transpose()
    }
}

/// Storage of roles.
impl Store {
    /// Roles of a server, lowest position first.
    pub async fn roles(&self, server: Snowflake) -> StoreResult<Vec<RoleRecord>> {
        self.roles_in(&mut *self.pool().acquire().await?, server)
            .await
    }

    /// Roles of a server as `conn` (a transaction, or a connection of the pool) sees them.
    pub async fn roles_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        server: Snowflake,
    ) -> StoreResult<Vec<RoleRecord>> {
        let rows = sqlx::query(role_select!("WHERE server_id = $1 ORDER BY position, id"))
            .bind(server.get())
            .fetch_all(conn)
            .await?;
        rows.iter().map(|r| self.role_from_row(r)).collect()
    }

    /// Creates a role at position 1 (just above `@everyone`), moving the others up, then
    /// to its asked position, inside the caller's transaction.
    pub async fn create_role(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
        server: Snowflake,
        p: &RolePatch,
        now: Timestamp,
    ) -> StoreResult<RoleRecord> {
        sqlx::query(
            "UPDATE roles SET position = position + 1 WHERE server_id = $1 AND position >= 1",
        )
        .bind(server.get())
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO roles (id, server_id, name, color, position, permissions, mentionable, hoisted, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $8)",
        )
        .bind(id.get())
        .bind(server.get())
        .bind(p.name.clone().unwrap_or_else(|| "new role".into()))
        .bind(p.color.clone().unwrap_or_else(|| "#000000".into()))
        .bind(p.permissions.unwrap_or(0))
        .bind(p.mentionable.unwrap_or(false))
        .bind(p.hoisted.unwrap_or(false))
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?;
        if let Some(pos) = p.position.filter(|&pos| pos != 1) {
            let moved = RolePatch {
                position: Some(pos),
                ..RolePatch::default()
            };
            if let Versioned::Updated(r) = self.update_role(tx, id, &moved, None, now).await? {
                return Ok(r);
            }
        }
        self.role_in(tx, id)
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))
    }

    /// Applies `patch` (moving other roles when the position changes) inside the caller's
    /// transaction.
    pub async fn update_role(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
        p: &RolePatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Versioned<RoleRecord>> {
        let Some(current) = self.role_in(tx, id).await? else {
            return Ok(Versioned::Missing);
        };
        let n = sqlx::query(
            "UPDATE roles SET name = COALESCE($2, name), color = COALESCE($3, color), permissions = COALESCE($4, permissions), \
               mentionable = CASE WHEN $5 THEN $6 ELSE mentionable END, hoisted = CASE WHEN $7 THEN $8 ELSE hoisted END, \
               version = version + 1, updated_at = $9 WHERE id = $1 AND ($10 < 0 OR version = $10)",
        )
        .bind(id.get())
        .bind(p.name.clone())
        .bind(p.color.clone())
        .bind(p.permissions)
        .bind(p.mentionable.is_some())
        .bind(p.mentionable.unwrap_or(false))
        .bind(p.hoisted.is_some())
        .bind(p.hoisted.unwrap_or(false))
        .bind(now.as_millis())
        .bind(expected_version.unwrap_or(-1))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(Versioned::Stale);
        }
        if let Some(target) = p
            .position
            .filter(|&t| t != current.position && current.position > 0)
        {
            let server = current.server_id.get();
            let max: i64 =
                sqlx::query("SELECT COALESCE(MAX(position), 0) FROM roles WHERE server_id = $1")
                    .bind(server)
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get(0)?;
            let target = target.clamp(1, max.max(1));
            // Close the gap left behind, open one at the target, then move in.
            sqlx::query(
                "UPDATE roles SET position = position - 1 WHERE server_id = $1 AND position > $2",
            )
            .bind(server)
            .bind(current.position)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE roles SET position = position + 1 WHERE server_id = $1 AND position >= $2 AND id <> $3")
                .bind(server)
                .bind(target)
                .bind(id.get())
                .execute(&mut **tx)
                .await?;
            sqlx::query("UPDATE roles SET position = $2 WHERE id = $1")
                .bind(id.get())
                .bind(target)
                .execute(&mut **tx)
                .await?;
        }
        Ok(self
            .role_in(tx, id)
            .await?
            .map_or(Versioned::Missing, Versioned::Updated))
    }

    /// Deletes a role (never `@everyone`: callers check) inside the caller's transaction.
    pub async fn delete_role(&self, tx: &mut WriteTx, id: Snowflake) -> StoreResult<bool> {
        let Some(role) = self.role_in(tx, id).await? else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(id.get())
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "DELETE FROM permission_overwrites WHERE target_id = $1 AND target_type = 'role'",
        )
        .bind(id.get())
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE roles SET position = position - 1 WHERE server_id = $1 AND position > $2",
        )
        .bind(role.server_id.get())
        .bind(role.position)
        .execute(&mut **tx)
        .await?;
        Ok(true)
    }
}
