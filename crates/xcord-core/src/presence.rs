//! Who is online. The gateway reports connections here; REST reads it. In memory per node now;
//! the Redis-backed registry of multi-node mode implements the same operations.

use std::collections::HashMap;
use std::sync::RwLock;

use xcord_types::Snowflake;
use xcord_types::rest::users::Status;

#[derive(Debug, Clone)]
struct Entry {
    connections: u32,
    status: Status,
    custom_status: Option<String>,
}

/// Live presence of users with gateway connections.
#[derive(Debug, Default)]
pub struct PresenceRegistry {
    // Short critical sections, no await inside: a std lock is right.
    users: RwLock<HashMap<Snowflake, Entry>>,
}

impl PresenceRegistry {
    /// A connection of `user` opened with the chosen `status`.
    pub fn connect(&self, user: Snowflake, status: Status, custom_status: Option<String>) {
        if let Ok(mut m) = self.users.write() {
            let e = m.entry(user).or_insert(Entry {
                connections: 0,
                status,
                custom_status: None,
            });
            e.connections += 1;
            e.status = status;
            e.custom_status = custom_status;
        }
    }

    /// A connection of `user` closed; returns true when it was the last one.
    pub fn disconnect(&self, user: Snowflake) -> bool {
        let Ok(mut m) = self.users.write() else {
            return false;
        };
        let Some(e) = m.get_mut(&user) else {
            return false;
        };
        e.connections = e.connections.saturating_sub(1);
        if e.connections == 0 {
            m.remove(&user);
            return true;
        }
        false
    }

    /// Changes the status of a connected user (no effect when offline).
    pub fn set_status(
        &self,
        user: Snowflake,
        status: Status,
        custom_status: Option<Option<String>>,
    ) {
        if let Ok(mut m) = self.users.write()
            && let Some(e) = m.get_mut(&user)
        {
            e.status = status;
            if let Some(cs) = custom_status {
                e.custom_status = cs;
            }
        }
    }

    /// What others see: offline when not connected or invisible.
    pub fn visible_status(&self, user: Snowflake) -> (Status, Option<String>) {
        let Ok(m) = self.users.read() else {
            return (Status::Offline, None);
        };
        match m.get(&user) {
            Some(e) if e.status != Status::Invisible && e.status != Status::Offline => {
                (e.status, e.custom_status.clone())
            }
            _ => (Status::Offline, None),
        }
    }

    /// Users others can see online.
    pub fn online_count(&self) -> u64 {
        self.users
            .read()
            .map(|m| {
                m.values()
                    .filter(|e| !matches!(e.status, Status::Invisible | Status::Offline))
                    .count() as u64
            })
            .unwrap_or(0)
    }

    /// Ids of users others can see online.
    pub fn online_users(&self) -> Vec<Snowflake> {
        self.users
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| !matches!(e.status, Status::Invisible | Status::Offline))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_any_connection_lives_and_invisible_hides() {
        let p = PresenceRegistry::default();
        let u = Snowflake::from_i64(1);
        assert_eq!(p.visible_status(u).0, Status::Offline);
        p.connect(u, Status::Online, None);
        p.connect(u, Status::Dnd, Some("busy".into()));
        assert_eq!(p.visible_status(u), (Status::Dnd, Some("busy".into())));
        assert_eq!(p.online_count(), 1);
        assert!(!p.disconnect(u));
        assert_eq!(p.visible_status(u).0, Status::Dnd);
        p.set_status(u, Status::Invisible, None);
        assert_eq!(p.visible_status(u).0, Status::Offline);
        assert_eq!(p.online_count(), 0);
        assert!(p.disconnect(u));
        assert!(p.online_users().is_empty());
    }
}
