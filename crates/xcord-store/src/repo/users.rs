//! Users: accounts, profiles, credentials, settings and second factors.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use crate::{Store, StoreError, StoreResult};

/// A user row as stored. Holds secrets (hashes, the sealed TOTP secret): never serialize it
/// to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Snowflake id.
    pub id: Snowflake,
    /// As chosen; unique regardless of case.
    pub username: String,
    /// Four digits, `0001`–`9999`.
    pub discriminator: String,
    /// Optional name shown instead of the username.
    pub display_name: Option<String>,
    /// Lower-cased address; `None` for guests.
    pub email: Option<String>,
    /// Whether the address was confirmed.
    pub email_verified: bool,
    /// PHC-format hash (bcrypt or argon2id); `None` for guests.
    pub password_hash: Option<String>,
    /// `YYYY-MM-DD` as given at registration.
    pub date_of_birth: Option<String>,
    /// Avatar file key.
    pub avatar: Option<String>,
    /// Banner file key.
    pub banner: Option<String>,
    /// Profile text, ≤ 190 characters.
    pub bio: Option<String>,
    /// Status text, ≤ 128 characters.
    pub custom_status: Option<String>,
    /// Chosen presence: online, idle, dnd or invisible.
    pub status: String,
    /// Guest accounts have no e-mail or password until upgraded.
    pub is_guest: bool,
    /// Whether TOTP is required at login.
    pub mfa_enabled: bool,
    /// The TOTP secret, sealed with the data-dir key; set while enabling and once enabled.
    pub mfa_secret: Option<String>,
    /// E2E public key.
    pub public_key: Option<String>,
    /// Settings document (JSON text).
    pub settings: String,
    /// When the account was made.
    pub created_at: Timestamp,
    /// Last change to the row.
    pub updated_at: Timestamp,
}

/// What is needed to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Pre-allocated snowflake.
    pub id: Snowflake,
    /// Validated username.
    pub username: String,
    /// Four digits.
    pub discriminator: String,
    /// Lower-cased e-mail, `None` for guests.
    pub email: Option<String>,
    /// Hash of the password, `None` for guests.
    pub password_hash: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    /// Guest account.
    pub is_guest: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A change to a profile. `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    /// New username.
    pub username: Option<String>,
    /// New display name, or cleared.
    pub display_name: Option<Option<String>>,
    /// New bio, or cleared.
    pub bio: Option<Option<String>>,
    /// New custom status, or cleared.
    pub custom_status: Option<Option<String>>,
    /// New (lower-cased) e-mail; marks it unverified.
    pub email: Option<String>,
    /// New password hash.
    pub password_hash: Option<String>,
    /// Turns a guest into a full account.
    pub clear_guest: bool,
}

macro_rules! user_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, username, discriminator, display_name, email, email_verified, ",
            "password_hash, date_of_birth, avatar, banner, bio, custom_status, status, is_guest, ",
            "mfa_enabled, mfa_secret, public_key, settings, created_at, updated_at FROM users ",
            $tail
        )
    };
}

impl Store {
    pub(crate) fn user_from_row(&self, row: &AnyRow) -> StoreResult<UserRecord> {
        Ok(UserRecord {
            id: Snowflake::from_i64(row.try_get("id")?),
            username: row.try_get("username")?,
            discriminator: row.try_get("discriminator")?,
            display_name: row.try_get("display_name")?,
            email: row.try_get("email")?,
            email_verified: self.flag(row, "email_verified")?,
            password_hash: row.try_get("password_hash")?,
            date_of_birth: row.try_get("date_of_birth")?,
            avatar: row.try_get("avatar")?,
            banner: row.try_get("banner")?,
            bio: row.try_get("bio")?,
            custom_status: row.try_get("custom_status")?,
            status: row.try_get("status")?,
            is_guest: self.flag(row, "is_guest")?,
            mfa_enabled: self.flag(row, "mfa_enabled")?,
            mfa_secret: row.try_get("mfa_secret")?,
            public_key: row.try_get("public_key")?,
            settings: row.try_get("settings")?,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        })
    }

    fn users_from_rows(&self, rows: &[AnyRow]) -> StoreResult<Vec<UserRecord>> {
        rows.iter().map(|r| self.user_from_row(r)).collect()
    }

    async fn one_user(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> StoreResult<Option<UserRecord>> {
        let row = q.fetch_optional(self.pool()).await?;
        row.map(|r| self.user_from_row(&r)).transpose()
    }

    async fn exec(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> StoreResult<u64> {
        Ok(q.execute(self.pool()).await?.rows_affected())
    }

    /// A user as `conn` (a transaction, or a connection of the pool) sees it.
    pub async fn user_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: Snowflake,
    ) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(user_select!("WHERE id = $1"))
            .bind(id.get())
            .fetch_optional(conn)
            .await?;
        match row {
            Some(r) => Ok(self.users_from_rows(&[r])?.pop()),
            None => Ok(None),
        }
    }
}

/// Runs one statement in `tx`; the rows it changed.
async fn exec_in(
    tx: &mut crate::WriteTx,
    q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
) -> StoreResult<u64> {
    Ok(q.execute(&mut **tx).await?.rows_affected())
}

/// `(is_set, value)` for a `CASE WHEN $n THEN $m ELSE col END` update of a nullable column.
fn nullable(v: &Option<Option<String>>) -> (bool, Option<String>) {
    match v {
        None => (false, None),
        Some(inner) => (true, inner.clone()),
    }
}

/// Storage of user accounts.
impl Store {
    /// Inserts a user. A taken username (in any case) or e-mail is a
    /// [`StoreError::Conflict`] naming `users_username_lower` or `users_email`.
    pub async fn create_user(&self, u: &NewUser) -> StoreResult<UserRecord> {
        let now = u.created_at.as_millis();
        sqlx::query(
            "INSERT INTO users (id, username, discriminator, email, password_hash, date_of_birth, \
             is_guest, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(u.id.get())
        .bind(u.username.clone())
        .bind(u.discriminator.clone())
        .bind(u.email.clone())
        .bind(u.password_hash.clone())
        .bind(u.date_of_birth.clone())
        .bind(u.is_guest)
        .bind(now)
        .execute(self.pool())
        .await?;
        self.user_by_id(u.id)
            .await?
            .ok_or(StoreError::Other(sqlx::Error::RowNotFound))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: Snowflake) -> StoreResult<Option<UserRecord>> {
        self.user_in(&mut *self.pool().acquire().await?, id).await
    }

    /// The user with this username, compared without regard to ASCII case.
    pub async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.one_user(
            sqlx::query(user_select!("WHERE lower(username) = lower($1)"))
                .bind(username.to_owned()),
        )
        .await
    }

    /// The user with this (lower-cased) e-mail address.
    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        self.one_user(sqlx::query(user_select!("WHERE email = $1")).bind(email.to_owned()))
            .await
    }

    /// The users with these ids (unknown ids are left out), in no particular order.
    pub async fn users_by_ids(&self, ids: &[Snowflake]) -> StoreResult<Vec<UserRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("{} WHERE id IN {}", user_select!(""), self.in_ids_at(1));
        let list = crate::store::ids_json(ids)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(list)
            .fetch_all(self.pool())
            .await?;
        self.users_from_rows(&rows)
    }

    /// Applies a profile change and returns the new row; conflicts as for `create_user`.
    pub async fn update_profile(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        p: &ProfilePatch,
        now: Timestamp,
    ) -> StoreResult<Option<UserRecord>> {
        let (dn_set, dn) = nullable(&p.display_name);
        let (bio_set, bio) = nullable(&p.bio);
        let (cs_set, cs) = nullable(&p.custom_status);
        sqlx::query(
            "UPDATE users SET \
               username = COALESCE($2, username), \
               display_name = CASE WHEN $3 THEN $4 ELSE display_name END, \
               bio = CASE WHEN $5 THEN $6 ELSE bio END, \
               custom_status = CASE WHEN $7 THEN $8 ELSE custom_status END, \
               email = COALESCE($9, email), \
               email_verified = CASE WHEN $10 THEN $11 ELSE email_verified END, \
               password_hash = COALESCE($12, password_hash), \
               is_guest = CASE WHEN $13 THEN $14 ELSE is_guest END, \
               updated_at = $15 \
             WHERE id = $1",
        )
        .bind(id.get())
        .bind(p.username.clone())
        .bind(dn_set)
        .bind(dn)
        .bind(bio_set)
        .bind(bio)
        .bind(cs_set)
        .bind(cs)
        .bind(p.email.clone())
        .bind(p.email.is_some())
        .bind(false)
        .bind(p.password_hash.clone())
        .bind(p.clear_guest)
        .bind(false)
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?;
        self.user_in(tx, id).await
    }

    /// Replaces the password hash.
    pub async fn set_password_hash(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        exec_in(
            tx,
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(id.get())
                .bind(hash.to_owned())
                .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Marks the e-mail verified.
    pub async fn set_email_verified(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        now: Timestamp,
    ) -> StoreResult<()> {
        exec_in(
            tx,
            sqlx::query("UPDATE users SET email_verified = $2, updated_at = $3 WHERE id = $1")
                .bind(id.get())
                .bind(true)
                .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Replaces the settings document.
    pub async fn set_settings(
        &self,
        id: Snowflake,
        settings_json: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE users SET settings = $2, updated_at = $3 WHERE id = $1")
                .bind(id.get())
                .bind(settings_json.to_owned())
                .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Sets presence status and, when given, the custom status (`Some(None)` clears it).
    pub async fn set_status(
        &self,
        id: Snowflake,
        status: &str,
        custom_status: Option<Option<&str>>,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.exec(
            sqlx::query(
                "UPDATE users SET status = $2, custom_status = CASE WHEN $3 THEN $4 ELSE custom_status END, \
                 updated_at = $5 WHERE id = $1",
            )
            .bind(id.get())
            .bind(status.to_owned())
            .bind(custom_status.is_some())
            .bind(custom_status.flatten().map(str::to_owned))
            .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Sets the avatar (`banner = false`) or banner file key.
    pub async fn set_image(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        banner: bool,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let sql = if banner {
            "UPDATE users SET banner = $2, updated_at = $3 WHERE id = $1"
        } else {
            "UPDATE users SET avatar = $2, updated_at = $3 WHERE id = $1"
        };
        exec_in(
            tx,
            sqlx::query(sql)
                .bind(id.get())
                .bind(key.map(str::to_owned))
                .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Sets the E2E public key.
    pub async fn set_public_key(
        &self,
        id: Snowflake,
        key: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE users SET public_key = $2, updated_at = $3 WHERE id = $1")
                .bind(id.get())
                .bind(key.map(str::to_owned))
                .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Records a successful login.
    pub async fn touch_login(&self, id: Snowflake, now: Timestamp) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
                .bind(id.get())
                .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Sets the sealed TOTP secret and whether TOTP is on. Turning it on keeps the replay step
    /// (the code that confirmed it stays spent); anything else clears it.
    pub async fn set_mfa(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        sealed_secret: Option<&str>,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        exec_in(tx,
            sqlx::query(
                "UPDATE users SET mfa_secret = $2, mfa_enabled = $3, \
                 mfa_last_step = CASE WHEN $3 THEN mfa_last_step ELSE NULL END, updated_at = $4 WHERE id = $1",
            )
            .bind(id.get())
            .bind(sealed_secret.map(str::to_owned))
            .bind(enabled)
            .bind(now.as_millis()),
        )
        .await
        .map(drop)
    }

    /// Records `step` as the last accepted TOTP step. Returns false (and changes nothing)
    /// when a step at or after it was already used: the code is a replay.
    pub async fn claim_mfa_step(&self, id: Snowflake, step: i64) -> StoreResult<bool> {
        // A single conditional UPDATE, so two requests racing with one code cannot both win.
        let n = self
            .exec(
                sqlx::query(
                    "UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND (mfa_last_step IS NULL OR mfa_last_step < $2)",
                )
                .bind(id.get())
                .bind(step),
            )
            .await?;
        Ok(n == 1)
    }

    /// Replaces all backup codes with these hashes.
    pub async fn replace_backup_codes(
        &self,
        tx: &mut crate::WriteTx,
        id: Snowflake,
        code_hashes: &[String],
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
            .bind(id.get())
            .execute(&mut **tx)
            .await?;
        for h in code_hashes {
            sqlx::query("INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(id.get())
                .bind(h.clone())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Uses up a backup code; false when unknown or already used.
    pub async fn use_backup_code(
        &self,
        id: Snowflake,
        code_hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = self
            .exec(
                sqlx::query(
                    "UPDATE mfa_backup_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                )
                .bind(id.get())
                .bind(code_hash.to_owned())
                .bind(now.as_millis()),
            )
            .await?;
        Ok(n == 1)
    }

    /// Accounts in the order they joined (guests only when `with_guests`), skipping
    /// `offset`, with the count of all of them.
    pub async fn list_users(
        &self,
        offset: u64,
        limit: u32,
        with_guests: bool,
    ) -> StoreResult<(Vec<UserRecord>, i64)> {
        // `is_guest <= $1`: registered accounts (0) always, guests (1) when asked for.
        let rows = sqlx::query(user_select!(
            "WHERE is_guest <= $1 ORDER BY id LIMIT $2 OFFSET $3"
        ))
        .bind(with_guests)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM users WHERE is_guest <= $1")
            .bind(with_guests)
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        Ok((self.users_from_rows(&rows)?, total))
    }

    /// Users whose name starts with `prefix` (ASCII, case-insensitive), names in order.
    pub async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let low = prefix.to_ascii_lowercase();
        let rows = match self.backend() {
            // SQLite compares bytes, so the range [prefix, prefix + U+007F) on the
            // lower(username) index covers exactly the (ASCII) names starting with prefix.
            crate::Backend::Sqlite => {
                let high = format!("{low}\u{7f}");
                sqlx::query(user_select!(
                    "WHERE lower(username) >= $1 AND lower(username) < $2 ORDER BY lower(username) LIMIT $3"
                ))
                .bind(low)
                .bind(high)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?
            }
            // PostgreSQL collations need not order bytewise; LIKE on a text_pattern_ops
            // index is correct in every locale.
            crate::Backend::Postgres => {
                let pattern = format!("{}%", escape_like(&low));
                sqlx::query(user_select!(
                    "WHERE lower(username) LIKE $1 ESCAPE '\\' ORDER BY lower(username) LIMIT $2"
                ))
                .bind(pattern)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?
            }
        };
        self.users_from_rows(&rows)
    }
}

/// Escapes LIKE's wildcards (`%`, `_`) and the escape character itself.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
