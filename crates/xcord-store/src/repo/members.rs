//! Server members and the roles they hold.

use sqlx::Row as _;
use xcord_types::{Snowflake, Timestamp};

use super::sf;
use crate::store::{WriteTx, ids_json};
use crate::{Store, StoreResult};

/// A member with the ids of their roles (not `@everyone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Server.
    pub server_id: Snowflake,
    /// User.
    pub user_id: Snowflake,
    /// Server nickname.
    pub nickname: Option<String>,
    /// Role ids.
    pub roles: Vec<Snowflake>,
    /// Join time.
    pub joined_at: Timestamp,
}

impl Store {
    /// One member with their roles, as `conn` sees it.
    async fn member_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        server: Snowflake,
        user: Snowflake,
    ) -> StoreResult<Option<MemberRecord>> {
        let row = sqlx::query("SELECT user_id, nickname, joined_at FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server.get())
            .bind(user.get())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let one = vec![(
            sf(r.try_get(0)?),
            r.try_get(1)?,
            Timestamp::from_millis(r.try_get(2)?),
        )];
        Ok(self.with_roles(conn, server, one).await?.pop())
    }

    /// Attaches role ids to members in one query.
    async fn with_roles(
        &self,
        conn: &mut sqlx::AnyConnection,
        server: Snowflake,
        rows: Vec<(Snowflake, Option<String>, Timestamp)>,
    ) -> StoreResult<Vec<MemberRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (lo, hi) = (
            rows.iter().map(|r| r.0).min().unwrap_or(rows[0].0),
            rows.iter().map(|r| r.0).max().unwrap_or(rows[0].0),
        );
        let role_rows = sqlx::query(
            "SELECT mr.user_id, mr.role_id FROM member_roles mr JOIN roles r ON r.id = mr.role_id \
             WHERE mr.server_id = $1 AND mr.user_id >= $2 AND mr.user_id <= $3 ORDER BY r.position DESC, r.id",
        )
        .bind(server.get())
        .bind(lo.get())
        .bind(hi.get())
        .fetch_all(&mut *conn)
        .await?;
        let mut by_user: std::collections::HashMap<i64, Vec<Snowflake>> =
            std::collections::HashMap::new();
        for r in role_rows {
            by_user
                .entry(r.try_get(0)?)
                .or_default()
                .push(sf(r.try_get(1)?));
        }
        Ok(rows
            .into_iter()
            .map(|(user_id, nickname, joined_at)| MemberRecord {
                server_id: server,
                roles: by_user.remove(&user_id.get()).unwrap_or_default(),
                user_id,
                nickname,
                joined_at,
            })
            .collect())
    }
}

/// Storage of members.
impl Store {
    /// One member.
    pub async fn member(
        &self,
        server: Snowflake,
        user: Snowflake,
    ) -> StoreResult<Option<MemberRecord>> {
        let mut conn = self.pool().acquire().await?;
        self.member_on(&mut conn, server, user).await
    }

    /// One member as the transaction `tx` sees it.
    pub async fn member_in(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
    ) -> StoreResult<Option<MemberRecord>> {
        self.member_on(tx, server, user).await
    }

    /// Members ordered by user id, after `after`, at most `limit`.
    pub async fn members(
        &self,
        server: Snowflake,
        after: Option<Snowflake>,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        let rows = sqlx::query(
            "SELECT user_id, nickname, joined_at FROM members WHERE server_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
        )
        .bind(server.get())
        .bind(after.map_or(0, Snowflake::get))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let list = rows
            .iter()
            .map(|r| {
                Ok((
                    sf(r.try_get(0)?),
                    r.try_get(1)?,
                    Timestamp::from_millis(r.try_get(2)?),
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let mut conn = self.pool().acquire().await?;
        self.with_roles(&mut conn, server, list).await
    }

    /// Ids of members holding any of these roles, at most `limit`.
    pub async fn members_with_roles(
        &self,
        server: Snowflake,
        roles: &[Snowflake],
        limit: u32,
    ) -> StoreResult<Vec<Snowflake>> {
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT user_id FROM member_roles WHERE server_id = $1 AND role_id IN {} LIMIT $3",
            self.in_ids_at(2)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(server.get())
            .bind(ids_json(roles)?)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(sf(r.try_get(0)?))).collect()
    }

    /// Every `(user, role)` pair of the server's members (not `@everyone`).
    pub async fn member_role_pairs(
        &self,
        server: Snowflake,
    ) -> StoreResult<Vec<(Snowflake, Snowflake)>> {
        let rows = sqlx::query("SELECT user_id, role_id FROM member_roles WHERE server_id = $1")
            .bind(server.get())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((sf(r.try_get(0)?), sf(r.try_get(1)?))))
            .collect()
    }

    /// Ids of every member.
    pub async fn member_ids(&self, server: Snowflake) -> StoreResult<Vec<Snowflake>> {
        let rows = sqlx::query("SELECT user_id FROM members WHERE server_id = $1")
            .bind(server.get())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(sf(r.try_get(0)?))).collect()
    }

    /// Adds a member; false when already one.
    pub async fn add_member(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query("INSERT INTO members (server_id, user_id, joined_at) VALUES ($1, $2, $3) ON CONFLICT (server_id, user_id) DO NOTHING")
            .bind(server.get())
            .bind(user.get())
            .bind(now.as_millis())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if n == 1 {
            sqlx::query("UPDATE servers SET member_count = member_count + 1 WHERE id = $1")
                .bind(server.get())
                .execute(&mut **tx)
                .await?;
        }
        Ok(n == 1)
    }

    /// Removes a member; false when not one.
    pub async fn remove_member(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server.get())
            .bind(user.get())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if n == 1 {
            sqlx::query("UPDATE servers SET member_count = member_count - 1 WHERE id = $1")
                .bind(server.get())
                .execute(&mut **tx)
                .await?;
        }
        Ok(n == 1)
    }

    /// Sets or clears a nickname.
    pub async fn set_nickname(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
        nickname: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE members SET nickname = $3 WHERE server_id = $1 AND user_id = $2")
            .bind(server.get())
            .bind(user.get())
            .bind(nickname.map(str::to_owned))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Gives a role; false when the member already had it.
    pub async fn add_member_role(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
        role: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "INSERT INTO member_roles (server_id, user_id, role_id) VALUES ($1, $2, $3) ON CONFLICT (server_id, user_id, role_id) DO NOTHING",
        )
        .bind(server.get())
        .bind(user.get())
        .bind(role.get())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Takes a role; false when the member did not have it.
    pub async fn remove_member_role(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
        user: Snowflake,
        role: Snowflake,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "DELETE FROM member_roles WHERE server_id = $1 AND user_id = $2 AND role_id = $3",
        )
        .bind(server.get())
        .bind(user.get())
        .bind(role.get())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
