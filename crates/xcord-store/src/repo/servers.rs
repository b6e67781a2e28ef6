//! Servers (guilds) and what hangs off them: roles, members, server channels and their
//! permission overwrites, invites, bans, the audit log and statistics.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::rest::channels::{ChannelKind, MAX_POSITION};
use xcord_types::{Snowflake, Timestamp};

use crate::store::{WriteTx, ids_json};
use crate::{ChannelRecord, Store, StoreError, StoreResult};

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

/// The result of a versioned update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versioned<T> {
    /// Applied; the new row.
    Updated(T),
    /// The `If-Match` version was not the current one; nothing changed.
    Stale,
    /// No such row.
    Missing,
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

macro_rules! role_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, server_id, name, color, position, permissions, mentionable, hoisted, version, created_at ",
            "FROM roles ",
            $tail
        )
    };
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

fn sf(v: i64) -> Snowflake {
    Snowflake::from_i64(v)
}

fn sf_opt(v: Option<i64>) -> Option<Snowflake> {
    v.map(Snowflake::from_i64)
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

impl Store {
    /// A server's roles and channels as the transaction `tx` sees them (a server just
    /// created, for the event that announces it).
    pub async fn roles_and_channels_in(
        &self,
        tx: &mut WriteTx,
        server: Snowflake,
    ) -> StoreResult<(Vec<RoleRecord>, Vec<ChannelRecord>)> {
        let rows = sqlx::query(role_select!("WHERE server_id = $1 ORDER BY position, id"))
            .bind(server.get())
            .fetch_all(&mut **tx)
            .await?;
        let roles = rows
            .iter()
            .map(|r| self.role_from_row(r))
            .collect::<StoreResult<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT id, server_id, type, name, topic, position, parent_id, nsfw, user_limit, bitrate, rate_limit_per_user, \
             owner_id, icon, last_message_id, version, created_at, updated_at FROM channels WHERE server_id = $1 ORDER BY position, id",
        )
        .bind(server.get())
        .fetch_all(&mut **tx)
        .await?;
        let channels = rows
            .iter()
            .map(|r| self.channel_from_row(r))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((roles, channels))
    }

    /// A server as the transaction `tx` sees it.
    async fn server_in(
        &self,
        tx: &mut WriteTx,
        id: Snowflake,
    ) -> StoreResult<Option<ServerRecord>> {
        let row = sqlx::query(server_select!("WHERE s.id = $1"))
            .bind(id.get())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(server_from_row).transpose()
    }

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

    fn role_from_row(&self, r: &AnyRow) -> StoreResult<RoleRecord> {
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

/// Storage of servers and everything in them.
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
        let row = sqlx::query(server_select!("WHERE s.id = $1"))
            .bind(id.get())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(server_from_row).transpose()
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

    /// Roles of a server, lowest position first.
    pub async fn roles(&self, server: Snowflake) -> StoreResult<Vec<RoleRecord>> {
        let rows = sqlx::query(role_select!("WHERE server_id = $1 ORDER BY position, id"))
            .bind(server.get())
            .fetch_all(self.pool())
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

    /// Channels of a server, by position then id.
    pub async fn server_channels(&self, server: Snowflake) -> StoreResult<Vec<ChannelRecord>> {
        let rows = sqlx::query(
            "SELECT id, server_id, type, name, topic, position, parent_id, nsfw, user_limit, bitrate, rate_limit_per_user, \
             owner_id, icon, last_message_id, version, created_at, updated_at FROM channels WHERE server_id = $1 ORDER BY position, id",
        )
        .bind(server.get())
        .fetch_all(self.pool())
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

    /// Overwrites of one channel.
    pub async fn overwrites(&self, channel: Snowflake) -> StoreResult<Vec<OverwriteRecord>> {
        let rows = sqlx::query("SELECT channel_id, target_id, target_type, allow, deny FROM permission_overwrites WHERE channel_id = $1 ORDER BY target_id")
            .bind(channel.get())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(overwrite_from_row).collect()
    }

    /// Overwrites of one channel as the transaction `tx` sees them.
    pub async fn overwrites_in(
        &self,
        tx: &mut WriteTx,
        channel: Snowflake,
    ) -> StoreResult<Vec<OverwriteRecord>> {
        let rows = sqlx::query("SELECT channel_id, target_id, target_type, allow, deny FROM permission_overwrites WHERE channel_id = $1 ORDER BY target_id")
            .bind(channel.get())
            .fetch_all(&mut **tx)
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

    /// `(day since the Unix epoch, messages)` for days from `since` on.
    pub async fn messages_per_day(
        &self,
        server: Snowflake,
        since: Timestamp,
    ) -> StoreResult<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT m.created_at / 86400000 AS day, COUNT(*) AS n FROM messages m JOIN channels c ON c.id = m.channel_id \
             WHERE c.server_id = $1 AND m.created_at >= $2 AND m.deleted_at IS NULL GROUP BY m.created_at / 86400000 ORDER BY day",
        )
        .bind(server.get())
        .bind(since.as_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
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

fn ban_from_row(r: &AnyRow) -> StoreResult<BanRecord> {
    Ok(BanRecord {
        user_id: sf(r.try_get(0)?),
        reason: r.try_get(1)?,
        banned_by: sf_opt(r.try_get(2)?),
        created_at: Timestamp::from_millis(r.try_get(3)?),
    })
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
