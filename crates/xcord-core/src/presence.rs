//! Who is online. The gateway reports connections here; REST and the gateway read it. One
//! node keeps it in memory ([`PresenceRegistry`]); several nodes share it through Redis
//! (`xcord-bus`'s `RedisPresence`), behind the same [`PresenceStore`] trait.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use xcord_types::Snowflake;
use xcord_types::rest::users::Status;

/// Live presence, shared by every node that serves the same users.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// A connection of `user` opened with `status`; true when it is the user's first.
    async fn connect(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<String>,
    ) -> anyhow::Result<bool>;
    /// A connection of `user` closed; true when it was the last one.
    async fn disconnect(&self, user: Snowflake) -> anyhow::Result<bool>;
    /// Changes the status of a connected user (no effect when offline); `None` keeps the
    /// custom status.
    async fn set_status(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<Option<String>>,
    ) -> anyhow::Result<()>;
    /// What others see: offline when not connected or invisible.
    async fn visible_status(&self, user: Snowflake) -> anyhow::Result<(Status, Option<String>)>;
    /// The number of users others can see online.
    async fn online_count(&self) -> anyhow::Result<u64>;
    /// Ids of users others can see online.
    async fn online_users(&self) -> anyhow::Result<Vec<Snowflake>>;
    /// Which of `users` others can see online.
    async fn online_among(&self, users: &[Snowflake]) -> anyhow::Result<Vec<Snowflake>> {
        let online: std::collections::HashSet<Snowflake> =
            self.online_users().await?.into_iter().collect();
        Ok(users
            .iter()
            .copied()
            .filter(|u| online.contains(u))
            .collect())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    connections: u32,
    status: Status,
    custom_status: Option<String>,
}

/// Presence of one node's users, in memory.
#[derive(Debug, Default)]
pub struct PresenceRegistry {
    // Short critical sections, no await inside: a std lock is right.
    users: RwLock<HashMap<Snowflake, Entry>>,
}

impl PresenceRegistry {
    fn visible(e: &Entry) -> bool {
        !matches!(e.status, Status::Invisible | Status::Offline)
    }
}

// Short critical sections with no await inside: a std lock is right. A poisoned lock (a
// panicking writer) reads as "nobody online" rather than taking the node down.
#[async_trait]
impl PresenceStore for PresenceRegistry {
    async fn connect(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<String>,
    ) -> anyhow::Result<bool> {
        let mut m = self
            .users
            .write()
            .map_err(|_| anyhow::anyhow!("presence lock poisoned"))?;
        let e = m.entry(user).or_insert(Entry {
            connections: 0,
            status,
            custom_status: None,
        });
        e.connections += 1;
        e.status = status;
        e.custom_status = custom_status;
        Ok(e.connections == 1)
    }

    async fn disconnect(&self, user: Snowflake) -> anyhow::Result<bool> {
        let mut m = self
            .users
            .write()
            .map_err(|_| anyhow::anyhow!("presence lock poisoned"))?;
        let Some(e) = m.get_mut(&user) else {
            return Ok(false);
        };
        e.connections = e.connections.saturating_sub(1);
        if e.connections == 0 {
            m.remove(&user);
            return Ok(true);
        }
        Ok(false)
    }

    async fn set_status(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<Option<String>>,
    ) -> anyhow::Result<()> {
        if let Ok(mut m) = self.users.write()
            && let Some(e) = m.get_mut(&user)
        {
            e.status = status;
            if let Some(cs) = custom_status {
                e.custom_status = cs;
            }
        }
        Ok(())
    }

    async fn visible_status(&self, user: Snowflake) -> anyhow::Result<(Status, Option<String>)> {
        let m = self
            .users
            .read()
            .map_err(|_| anyhow::anyhow!("presence lock poisoned"))?;
        Ok(match m.get(&user) {
            Some(e) if Self::visible(e) => (e.status, e.custom_status.clone()),
            _ => (Status::Offline, None),
        })
    }

    async fn online_count(&self) -> anyhow::Result<u64> {
        let m = self
            .users
            .read()
            .map_err(|_| anyhow::anyhow!("presence lock poisoned"))?;
        Ok(m.values().filter(|e| Self::visible(e)).count() as u64)
    }

    async fn online_users(&self) -> anyhow::Result<Vec<Snowflake>> {
        let m = self
            .users
            .read()
            .map_err(|_| anyhow::anyhow!("presence lock poisoned"))?;
        Ok(m.iter()
            .filter(|(_, e)| Self::visible(e))
            .map(|(id, _)| *id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_while_any_connection_lives_and_invisible_hides() -> anyhow::Result<()> {
        let p = PresenceRegistry::default();
        let u = Snowflake::from_i64(1);
        assert_eq!(p.visible_status(u).await?.0, Status::Offline);
        assert!(p.connect(u, Status::Online, None).await?);
        assert!(!p.connect(u, Status::Dnd, Some("busy".into())).await?);
        assert_eq!(
            p.visible_status(u).await?,
            (Status::Dnd, Some("busy".into()))
        );
        assert_eq!(p.online_count().await?, 1);
        assert!(!p.disconnect(u).await?);
        assert_eq!(p.visible_status(u).await?.0, Status::Dnd);
        p.set_status(u, Status::Invisible, None).await?;
        assert_eq!(p.visible_status(u).await?.0, Status::Offline);
        assert_eq!(p.online_count().await?, 0);
        assert!(p.disconnect(u).await?);
        assert!(p.online_users().await?.is_empty());
        Ok(())
    }
}
