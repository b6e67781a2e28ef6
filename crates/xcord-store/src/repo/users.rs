//! Users: accounts, profiles and credentials.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use crate::{Store, StoreResult};

/// A user row as stored. Holds secrets (hashes): never serialize it to a client.
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

/// Storage of user accounts.
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Inserts a user. A taken username (in any case) or e-mail is a
    /// [`crate::StoreError::Conflict`] naming `users_username_lower` or `users_email`.
    async fn create_user(&self, user: &NewUser) -> StoreResult<UserRecord>;
    /// The user with this id.
    async fn user_by_id(&self, id: Snowflake) -> StoreResult<Option<UserRecord>>;
    /// The user with this username, compared without regard to ASCII case.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// The user with this (lower-cased) e-mail address.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
}

impl Store {
    fn user_from_row(&self, row: &AnyRow) -> StoreResult<UserRecord> {
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
            public_key: row.try_get("public_key")?,
            settings: row.try_get("settings")?,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        })
    }

    async fn fetch_user(
        &self,
        sql: &'static str,
        key: UserKey<'_>,
    ) -> StoreResult<Option<UserRecord>> {
        let q = sqlx::query(sql);
        let q = match key {
            UserKey::Id(id) => q.bind(id.get()),
            UserKey::Text(s) => q.bind(s.to_owned()),
        };
        let row = q.fetch_optional(self.pool()).await?;
        row.map(|r| self.user_from_row(&r)).transpose()
    }
}

enum UserKey<'a> {
    Id(Snowflake),
    Text(&'a str),
}

macro_rules! select_user_where {
    ($cond:literal) => {
        concat!(
            "SELECT id, username, discriminator, display_name, email, email_verified, ",
            "password_hash, date_of_birth, avatar, banner, bio, custom_status, status, is_guest, ",
            "mfa_enabled, public_key, settings, created_at, updated_at FROM users WHERE ",
            $cond
        )
    };
}

#[async_trait]
impl UserRepository for Store {
    async fn create_user(&self, u: &NewUser) -> StoreResult<UserRecord> {
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
            .ok_or_else(|| crate::StoreError::Other(sqlx::Error::RowNotFound))
    }

    async fn user_by_id(&self, id: Snowflake) -> StoreResult<Option<UserRecord>> {
        self.fetch_user(select_user_where!("id = $1"), UserKey::Id(id))
            .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.fetch_user(
            select_user_where!("lower(username) = lower($1)"),
            UserKey::Text(username),
        )
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        self.fetch_user(select_user_where!("email = $1"), UserKey::Text(email))
            .await
    }
}
