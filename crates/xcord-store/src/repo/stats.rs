//! Server statistics.

use sqlx::Row as _;
use xcord_types::{Snowflake, Timestamp};

use crate::{Store, StoreResult};

/// Server statistics.
impl Store {
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
