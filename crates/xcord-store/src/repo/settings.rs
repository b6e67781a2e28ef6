//! Settings of the deployment that its nodes decide once and share (`instance_settings`).

use sqlx::Row as _;
use xcord_types::Timestamp;

use crate::{Store, StoreResult};

impl Store {
    /// The value of setting `name`, if it was set.
    pub async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM instance_settings WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Sets `name` to `value` unless it is set already; whether this call set it (of two
    /// nodes deciding at once, one wins).
    pub async fn set_setting_once(
        &self,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "INSERT INTO instance_settings (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(value.to_owned())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Forgets setting `name`.
    pub async fn clear_setting(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM instance_settings WHERE name = $1")
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
