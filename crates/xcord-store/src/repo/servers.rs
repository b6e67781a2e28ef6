//! Servers (guilds) themselves: creation with their defaults, lookup, update, deletion.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::rest::channels::ChannelKind;
use xcord_types::{Snowflake, Timestamp};

use super::sf;
use crate::{Store, StoreError, StoreResult, Versioned};

/// A server row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// Id (also the `@everyone` role's id).
    pub id: Snowflake,
    /// Name, 2–100 characters.
    pub name: String,
    /// Icon (data URL or file key).
    pub icon: Option<String>,
    /// Banner.
    pub banner: Option<String>,
    /// Description, ≤ 500 characters.
    pub description: Option<String>,
    /// Owner.
    pub owner_id: Snowflake,
    /// Vanity invite code.
    pub vanity_url: Option<String>,
    /// Members.
    pub member_count: i64,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A new server with its defaults.
#[derive(Debug, Clone)]
pub struct NewServer {
    /// Id.
    pub id: Snowflake,
    /// Name.
    pub name: String,
    /// Icon.
    pub icon: Option<String>,
    /// Owner (becomes the first member).
    pub owner_id: Snowflake,
    /// `@everyone` permissions.
    pub everyone_permissions: i64,
    /// Id for the `general` text channel.
    pub text_channel_id: Snowflake,
    /// Id for the `General` voice channel.
    pub voice_channel_id: Snowflake,
    /// Creation time.
    pub now: Timestamp,
}

/// Changes to a server; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ServerPatch {
    /// Name.
    pub name: Option<String>,
    /// Icon, or cleared.
    pub icon: Option<Option<String>>,
    /// Banner, or cleared.
    pub banner: Option<Option<String>>,
    /// Description, or cleared.
    pub description: Option<Option<String>>,
    /// Vanity code, or cleared.
    pub vanity_url: Option<Option<String>>,
    /// New owner.
    pub owner_id: Option<Snowflake>,
}

macro_rules! server_select {
    ($tail:literal) => {
        concat!(
            "SELECT s.id, s.name, s.icon, s.banner, s.description, s.owner_id, s.vanity_url, s.member_count, ",
            "s.version, s.created_at FROM servers s ",
            $tail
        )
    };
}

fn server_from_row(r: &AnyRow) -> StoreResult<ServerRecord> {
    Ok(ServerRecord {
        id: sf(r.try_get("id")?),
        name: r.try_get("name")?,
        icon: r.try_get("icon")?,
        banner: r.try_get("banner")?,
        description: r.try_get("description")?,
        owner_id: sf(r.try_get("owner_id")?),
        vanity_url: r.try_get("vanity_url")?,
        member_count: r.try_get("member_count")?,
        version: r.try_get("version")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
    })
}

impl Store {
    /// A server as `conn` (a transaction, or a connection of the pool) sees it.
    async fn server_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: Snowflake,
    ) -> StoreResult<Option<ServerRecord>> {
        let row = sqlx::query(server_select!("WHERE s.id = $1"))
            .bind(id.get())
            .fetch_optional(conn)
            .await?;
        row.as_ref().map(server_from_row).transpose()
    }
}

/// Storage of servers.
impl Store {
    /// Creates a server with `@everyone`, `general`, `General` and its owner as member.
    pub async fn create_server(
        &self,
        tx: &mut crate::WriteTx,
        s: &NewServer,
    ) -> StoreResult<ServerRecord> {
        let now = s.now.as_millis();
        sqlx::query("INSERT INTO servers (id, name, icon, owner_id, member_count, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)")
            .bind(s.id.get())
            .bind(s.name.clone())
            .bind(s.icon.clone())
            .bind(s.owner_id.get())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO roles (id, server_id, name, position, permissions, created_at, updated_at) VALUES ($1, $1, '@everyone', 0, $2, $3, $3)")
            .bind(s.id.get())
            .bind(s.everyone_permissions)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO members (server_id, user_id, joined_at) VALUES ($1, $2, $3)")
            .bind(s.id.get())
            .bind(s.owner_id.get())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        for (id, kind, name, pos, bitrate) in [
            (s.text_channel_id, ChannelKind::Text, "general", 0, None),
            (
                s.voice_channel_id,
                ChannelKind::Voice,
                "General",
                1,
                Some(64_i64),
            ),
        ] {
            sqlx::query(
                "INSERT INTO channels (id, server_id, type, name, position, bitrate, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(id.get())
            .bind(s.id.get())
            .bind(kind.as_str())
            .bind(name)
            .bind(pos)
            .bind(bitrate)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        self.server_in(tx, s.id)
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))
    }

    /// A server.
    pub async fn server(&self, id: Snowflake) -> StoreResult<Option<ServerRecord>> {
        self.server_in(&mut *self.pool().acquire().await?, id).await
    }

    /// The server whose vanity code this is (any case).
    pub async fn server_by_vanity(&self, code: &str) -> StoreResult<Option<ServerRecord>> {
        let row = sqlx::query(server_select!("WHERE lower(s.vanity_url) = lower($1)"))
            .bind(code.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(server_from_row).transpose()
    }

    /// Servers `user` is a member of, oldest membership first.
    pub async fn servers_of(&self, user: Snowflake) -> StoreResult<Vec<ServerRecord>> {
        let rows = sqlx::query(server_select!(
            "JOIN members m ON m.server_id = s.id WHERE m.user_id = $1 ORDER BY m.joined_at, s.id"
        ))
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Applies `patch` if `expected_version` (when given) is current.
    pub async fn update_server(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        p: &ServerPatch,
        expected_version: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Versioned<ServerRecord>> {
        let opt = |v: &Option<Option<String>>| (v.is_some(), v.clone().flatten());
        let (icon_set, icon) = opt(&p.icon);
        let (banner_set, banner) = opt(&p.banner);
        let (desc_set, desc) = opt(&p.description);
        let (vanity_set, vanity) = opt(&p.vanity_url);
        let n = sqlx::query(
            "UPDATE servers SET name = COALESCE($2, name), \
               icon = CASE WHEN $3 THEN $4 ELSE icon END, \
               banner = CASE WHEN $5 THEN $6 ELSE banner END, \
               description = CASE WHEN $7 THEN $8 ELSE description END, \
               vanity_url = CASE WHEN $9 THEN $10 ELSE vanity_url END, \
               owner_id = COALESCE($11, owner_id), \
               version = version + 1, updated_at = $12 \
             WHERE id = $1 AND ($13 < 0 OR version = $13)",
        )
        .bind(id.get())
        .bind(p.name.clone())
        .bind(icon_set)
        .bind(icon)
        .bind(banner_set)
        .bind(banner)
        .bind(desc_set)
        .bind(desc)
        .bind(vanity_set)
        .bind(vanity)
        .bind(p.owner_id.map(Snowflake::get))
        .bind(now.as_millis())
        .bind(expected_version.unwrap_or(-1))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        match (n, self.server_in(tx, id).await?) {
            (1, Some(s)) => Ok(Versioned::Updated(s)),
            (_, Some(_)) => Ok(Versioned::Stale),
            (_, None) => Ok(Versioned::Missing),
        }
    }

    /// Deletes a server and everything in it.
    pub async fn delete_server(&self, tx: &mut crate::WriteTx, id: Snowflake) -> StoreResult<bool> {
        Ok(sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id.get())
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1)
    }
}
