//! Sessions, their refresh tokens, single-use user tokens (e-mail verification, password
//! reset, MFA tickets) and the list of revoked access tokens.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use crate::{Store, StoreResult};

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Snowflake id; carried in access tokens as `sid`.
    pub id: Snowflake,
    /// Owner.
    pub user_id: Snowflake,
    /// A short device description derived from the user agent.
    pub device: Option<String>,
    /// The client's User-Agent at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
    /// Login time.
    pub created_at: Timestamp,
    /// Last login or refresh.
    pub last_used_at: Timestamp,
    /// When its current refresh token expires.
    pub expires_at: Timestamp,
    /// Set once revoked (logout, reuse detected, password reset).
    pub revoked_at: Option<Timestamp>,
}

/// A session to create together with its first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Pre-allocated id.
    pub id: Snowflake,
    /// Owner.
    pub user_id: Snowflake,
    /// Device description.
    pub device: Option<String>,
    /// User-Agent.
    pub user_agent: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Login time.
    pub now: Timestamp,
    /// Refresh-token expiry.
    pub expires_at: Timestamp,
    /// SHA-256 (hex) of the first refresh token.
    pub refresh_hash: String,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is spent and the new one stored.
    Rotated(SessionRecord),
    /// The token had been used before: the session is now revoked (theft detected).
    Reused(SessionRecord),
    /// The token or its session expired or was revoked earlier.
    Dead,
    /// No such token.
    Unknown,
}

/// What a single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Confirms an e-mail address.
    VerifyEmail,
    /// Allows setting a new password.
    ResetPassword,
    /// Second step of a login with TOTP.
    MfaTicket,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
            TokenPurpose::MfaTicket => "mfa_ticket",
        }
    }
}

fn session_from_row(row: &AnyRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: Snowflake::from_i64(row.try_get("id")?),
        user_id: Snowflake::from_i64(row.try_get("user_id")?),
        device: row.try_get("device")?,
        user_agent: row.try_get("user_agent")?,
        ip: row.try_get("ip")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        last_used_at: Timestamp::from_millis(row.try_get("last_used_at")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(Timestamp::from_millis),
    })
}

macro_rules! session_select {
    ($tail:literal) => {
        concat!(
            "SELECT s.id, s.user_id, s.device, s.user_agent, s.ip, s.created_at, s.last_used_at, ",
            "s.expires_at, s.revoked_at FROM sessions s ",
            $tail
        )
    };
}

/// Storage of sessions and tokens.
impl Store {
    /// Creates a session and its first refresh token in one transaction.
    pub async fn create_session(&self, s: &NewSession) -> StoreResult<SessionRecord> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, device, user_agent, ip, created_at, last_used_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(s.id.get())
        .bind(s.user_id.get())
        .bind(s.device.clone())
        .bind(s.user_agent.clone())
        .bind(s.ip.clone())
        .bind(s.now.as_millis())
        .bind(s.expires_at.as_millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(s.refresh_hash.clone())
            .bind(s.id.get())
            .bind(s.now.as_millis())
            .bind(s.expires_at.as_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SessionRecord {
            id: s.id,
            user_id: s.user_id,
            device: s.device.clone(),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            created_at: s.now,
            last_used_at: s.now,
            expires_at: s.expires_at,
            revoked_at: None,
        })
    }

    /// A session by id.
    pub async fn session(&self, id: Snowflake) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(session_select!("WHERE s.id = $1"))
            .bind(id.get())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The user's live sessions (not revoked, not expired), oldest first.
    pub async fn live_sessions(
        &self,
        user_id: Snowflake,
        now: Timestamp,
    ) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(session_select!(
            "WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 ORDER BY s.created_at, s.id"
        ))
        .bind(user_id.get())
        .bind(now.as_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Spends the refresh token with hash `old_hash` and stores `new_hash` in its place,
    /// atomically: of two concurrent uses of one token, exactly one rotates and the other
    /// counts as reuse.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
        new_expires: Timestamp,
    ) -> StoreResult<RefreshOutcome> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT rt.used_at AS rt_used_at, rt.expires_at AS rt_expires_at, s.id, s.user_id, s.device, \
             s.user_agent, s.ip, s.created_at, s.last_used_at, s.expires_at, s.revoked_at \
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id WHERE rt.token_hash = $1",
        )
        .bind(old_hash.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Unknown);
        };
        let mut session = session_from_row(&row)?;
        let used: Option<i64> = row.try_get("rt_used_at")?;
        let token_expires: i64 = row.try_get("rt_expires_at")?;
        if session.revoked_at.is_some() || token_expires <= now.as_millis() {
            return Ok(RefreshOutcome::Dead);
        }
        // Spend the token only if nobody else has: under PostgreSQL's row lock or SQLite's
        // write lock the loser of a race sees 0 rows and is treated as a reuse.
        let spent = if used.is_none() {
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
            )
            .bind(old_hash.to_owned())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            false
        };
        if !spent {
            sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(session.id.get())
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            session.revoked_at = Some(now);
            return Ok(RefreshOutcome::Reused(session));
        }
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(new_hash.to_owned())
            .bind(session.id.get())
            .bind(now.as_millis())
            .bind(new_expires.as_millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sessions SET last_used_at = $2, expires_at = $3 WHERE id = $1")
            .bind(session.id.get())
            .bind(now.as_millis())
            .bind(new_expires.as_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        session.last_used_at = now;
        session.expires_at = new_expires;
        Ok(RefreshOutcome::Rotated(session))
    }

    /// Revokes one session of `user_id`; false when it is not theirs or already revoked.
    pub async fn revoke_session(
        &self,
        user_id: Snowflake,
        session_id: Snowflake,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(session_id.get())
            .bind(user_id.get())
            .bind(now.as_millis())
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Revokes every live session of a user except `keep`; returns the revoked ids.
    pub async fn revoke_all_sessions(
        &self,
        user_id: Snowflake,
        keep: Option<Snowflake>,
        now: Timestamp,
    ) -> StoreResult<Vec<Snowflake>> {
        let keep = keep.map_or(-1, Snowflake::get);
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2",
        )
        .bind(user_id.get())
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2")
            .bind(user_id.get())
            .bind(keep)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect()
    }

    /// Records a revoked access-token key (`sid:…` or `jti:…`) until `expires_at`.
    pub async fn add_revoked(&self, key: &str, expires_at: Timestamp) -> StoreResult<()> {
        // Revoking twice keeps the later expiry.
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > revoked_tokens.expires_at \
             THEN excluded.expires_at ELSE revoked_tokens.expires_at END",
        )
        .bind(key.to_owned())
        .bind(expires_at.as_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Revoked keys that have not expired, to warm the in-memory list at start-up.
    pub async fn revoked_since(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        let rows = sqlx::query("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
            .bind(now.as_millis())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, Timestamp::from_millis(r.try_get(1)?))))
            .collect()
    }

    /// Drops expired revocations.
    pub async fn purge_revoked(&self, now: Timestamp) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
                .bind(now.as_millis())
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

    /// Stores a single-use token (by hash).
    pub async fn create_user_token(
        &self,
        hash: &str,
        user_id: Snowflake,
        purpose: TokenPurpose,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash.to_owned())
        .bind(user_id.get())
        .bind(purpose.as_str())
        .bind(expires_at.as_millis())
        .bind(now.as_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Spends a token: the owner when it exists, has this purpose, is unused and unexpired.
    pub async fn consume_user_token(
        &self,
        tx: &mut crate::WriteTx,
        hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<Snowflake>> {
        let row = sqlx::query(
            "UPDATE user_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL \
             AND expires_at > $3 RETURNING user_id",
        )
        .bind(hash.to_owned())
        .bind(purpose.as_str())
        .bind(now.as_millis())
        .fetch_optional(&mut **tx)
        .await?;
        row.map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .transpose()
    }

    /// A live token's owner and failed attempts, without spending it.
    pub async fn peek_user_token(
        &self,
        hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<(Snowflake, i64)>> {
        let row = sqlx::query(
            "SELECT user_id, attempts FROM user_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL \
             AND expires_at > $3",
        )
        .bind(hash.to_owned())
        .bind(purpose.as_str())
        .bind(now.as_millis())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((Snowflake::from_i64(r.try_get(0)?), r.try_get(1)?)))
            .transpose()
    }

    /// Counts a failed attempt against a token; returns the new count.
    pub async fn fail_user_token(&self, hash: &str) -> StoreResult<i64> {
        let row = sqlx::query("UPDATE user_tokens SET attempts = attempts + 1 WHERE token_hash = $1 RETURNING attempts")
            .bind(hash.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(i64::MAX))
    }

    /// Spends every live token of a user for a purpose (e.g. older reset links).
    pub async fn expire_user_tokens(
        &self,
        user_id: Snowflake,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE user_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL")
            .bind(user_id.get())
            .bind(purpose.as_str())
            .bind(now.as_millis())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
