//! Server statistics.

use std::collections::{HashMap, HashSet};

use xcord_types::rest::servers::{DayCount, ServerStats};
use xcord_types::{Snowflake, Timestamp};

use crate::{Caller, Core, Error, Result};

impl Core {
    /// `GET /servers/{id}/stats`.
    pub async fn server_stats(&self, caller: &Caller, id: Snowflake) -> Result<ServerStats> {
        let access = self.server_access(caller, id).await?;
        let now = self.clock.now();
        let today = now.as_millis().div_euclid(86_400_000);
        let first = today - 29;
        let counts: HashMap<i64, i64> = self
            .store
            .messages_per_day(id, Timestamp::from_millis(first * 86_400_000))
            .await?
            .into_iter()
            .collect();
        let messages_per_day = (first..=today)
            .map(|day| DayCount {
                date: Timestamp::from_millis(day * 86_400_000).to_rfc3339()[..10].to_owned(),
                count: counts.get(&day).copied().unwrap_or(0),
            })
            .collect();
        let members: HashSet<Snowflake> = self.store.member_ids(id).await?.into_iter().collect();
        let online = self
            .presence
            .online_users()
            .await
            .map_err(Error::Unavailable)?
            .into_iter()
            .filter(|u| members.contains(u))
            .count() as i64;
        let channels = self.store.server_channels(id).await?.len() as i64;
        Ok(ServerStats {
            member_count: access.server.member_count,
            online_count: online,
            channel_count: channels,
            messages_per_day,
        })
    }
}
