//! What the gateway needs from the core: the state a session starts from, presence on
//! connect and disconnect, and voice states. Typing expiry and the mirror of other nodes'
//! voice states are the core's own per-node work (`node`), run whatever the roles.

use std::collections::HashMap;

use xcord_bus::Topic;
use xcord_permissions::{MemberView, bits, compute_channel_permissions};
use xcord_store::{ChannelRecord, OverwriteRecord, RoleRecord, ServerRecord, UserRecord};
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::gateway::PresenceSet;
use xcord_types::rest::channels::Channel;
use xcord_types::rest::messages::ReadStateList;
use xcord_types::rest::servers::Server;
use xcord_types::rest::users::{Presence, Status, StatusRequest};

use crate::servers::{
    channel_kind, channel_to_wire, overwrite_to_wire, role_to_wire, to_overwrites,
};
use crate::{Caller, Core, Error, Result};

/// Servers with more members than this do not list their members' presences in CONNECTED
/// (Discord's default `large_threshold`).
pub const LARGE_SERVER: usize = 50;

/// Everything about one server that decides who may see what in it.
#[derive(Debug, Clone)]
pub struct ServerSnapshot {
    /// The server.
    pub server: ServerRecord,
    /// Its roles, `@everyone` included.
    pub roles: Vec<RoleRecord>,
    /// Its channels with their overwrites.
    pub channels: Vec<(ChannelRecord, Vec<OverwriteRecord>)>,
    /// Every member with the ids of their roles.
    pub members: Vec<(Snowflake, Vec<Snowflake>)>,
}

impl ServerSnapshot {
    /// A channel of the server as its events carry it (with its overwrites).
    pub fn channel_view(c: &ChannelRecord, overwrites: &[OverwriteRecord]) -> Channel {
        channel_to_wire(
            c,
            None,
            Some(overwrites.iter().map(overwrite_to_wire).collect()),
        )
    }

    /// The server as `user` sees it: the channels they can view, with all roles.
    pub fn view_for(&self, user: Snowflake) -> Server {
        let mine: &[Snowflake] = self
            .members
            .iter()
            .find(|(u, _)| *u == user)
            .map_or(&[], |(_, r)| r.as_slice());
        let role_perms: Vec<(i64, u64)> = self
            .roles
            .iter()
            .filter(|r| mine.contains(&r.id))
            .map(|r| (r.id.get(), r.permissions as u64))
            .collect();
        let view = MemberView {
            user_id: user.get(),
            server_id: self.server.id.get(),
            owner_id: self.server.owner_id.get(),
            everyone: self
                .roles
                .iter()
                .find(|r| r.id == self.server.id)
                .map_or(0, |r| r.permissions as u64),
            roles: &role_perms,
        };
        let channels = self
            .channels
            .iter()
            .filter(|(c, ow)| {
                compute_channel_permissions(&view, channel_kind(c.kind), &to_overwrites(ow))
                    & bits::VIEW_CHANNELS
                    != 0
            })
            .map(|(c, ow)| Self::channel_view(c, ow))
            .collect();
        Core::server_to_wire(
            &self.server,
            Some(channels),
            Some(self.roles.iter().map(role_to_wire).collect()),
        )
    }
}

/// What a new gateway session starts from.
#[derive(Debug, Clone)]
pub struct ConnectedState {
    /// The user.
    pub user: UserRecord,
    /// Their servers.
    pub servers: Vec<ServerSnapshot>,
    /// Their DM and group DM channels.
    pub private_channels: Vec<Channel>,
    /// Their read states.
    pub read_states: ReadStateList,
    /// Friends and private-channel partners (presence reaches them).
    pub personal_contacts: Vec<Snowflake>,
    /// Presences of online users they share something with.
    pub presences: Vec<Presence>,
}

impl Core {
    /// The permission-relevant state of one server, from four queries.
    pub async fn server_snapshot(&self, id: Snowflake) -> Result<Option<ServerSnapshot>> {
        let Some(server) = self.store.server(id).await? else {
            return Ok(None);
        };
        let roles = self.store.roles(id).await?;
        let mut overwrites: HashMap<Snowflake, Vec<OverwriteRecord>> = HashMap::new();
        for o in self.store.server_overwrites(id).await? {
            overwrites.entry(o.channel_id).or_default().push(o);
        }
        let channels = self
            .store
            .server_channels(id)
            .await?
            .into_iter()
            .map(|c| {
                let ow = overwrites.remove(&c.id).unwrap_or_default();
                (c, ow)
            })
            .collect();
        let mut members: HashMap<Snowflake, Vec<Snowflake>> = self
            .store
            .member_ids(id)
            .await?
            .into_iter()
            .map(|u| (u, Vec::new()))
            .collect();
        for (user, role) in self.store.member_role_pairs(id).await? {
            if let Some(r) = members.get_mut(&user) {
                r.push(role);
            }
        }
        Ok(Some(ServerSnapshot {
            server,
            roles,
            channels,
            members: members.into_iter().collect(),
        }))
    }

    /// Everything a session announces in CONNECTED and routes by.
    pub async fn connected_state(&self, caller: &Caller) -> Result<ConnectedState> {
        let user = self.user(caller.user_id).await?;
        let mut servers = Vec::new();
        for s in self.store.servers_of(user.id).await? {
            if let Some(snap) = self.server_snapshot(s.id).await? {
                servers.push(snap);
            }
        }
        let private_channels = self.dm_channels(caller, user.id).await?.channels;
        let read_states = self.read_states(caller).await?;
        let personal_contacts = self.store.personal_contacts_of(user.id).await?;
        // As Discord's large_threshold: members of big servers are not listed; their
        // presence arrives as it changes (and `/users/online/list` has it).
        let mut candidates: std::collections::HashSet<Snowflake> =
            personal_contacts.iter().copied().collect();
        for snap in servers.iter().filter(|s| s.members.len() <= LARGE_SERVER) {
            candidates.extend(snap.members.iter().map(|(u, _)| *u));
        }
        candidates.remove(&user.id);
        let presences = self.presences_of(candidates).await?;
        Ok(ConnectedState {
            user,
            servers,
            private_channels,
            read_states,
            personal_contacts,
            presences,
        })
    }

    /// Presences of the `candidates` who are online and let others see it.
    async fn presences_of(
        &self,
        candidates: std::collections::HashSet<Snowflake>,
    ) -> Result<Vec<Presence>> {
        let candidates: Vec<Snowflake> = candidates.into_iter().collect();
        let ids = self
            .presence
            .online_among(&candidates)
            .await
            .map_err(Error::Unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        for u in self.store.users_by_ids(&ids).await? {
            let (status, custom_status) = self.visible_presence(&u).await?;
            if status != Status::Offline {
                out.push(Presence {
                    user_id: u.id,
                    status,
                    custom_status,
                });
            }
        }
        Ok(out)
    }

    /// A gateway connection of `caller` opened; the first one makes the user online for
    /// others (with the status it asked for, or the one they last chose).
    pub async fn gateway_connected(&self, caller: &Caller, ask: Option<PresenceSet>) -> Result<()> {
        let user = self.user(caller.user_id).await?;
        // The status they last chose (a stored value is never offline).
        let stored = Status::parse(&user.status)
            .filter(|s| *s != Status::Offline)
            .unwrap_or(Status::Online);
        let (status, custom) = match ask {
            Some(p) if p.status != Status::Offline => (
                p.status,
                p.custom_status
                    .unwrap_or_else(|| user.custom_status.clone()),
            ),
            _ => (stored, user.custom_status.clone()),
        };
        let before = self
            .presence
            .visible_status(user.id)
            .await
            .map_err(Error::Unavailable)?;
        let first = self
            .presence
            .connect(user.id, status, custom)
            .await
            .map_err(Error::Unavailable)?;
        let after = self
            .presence
            .visible_status(user.id)
            .await
            .map_err(Error::Unavailable)?;
        // Announced when others see a change: the first connection, or another one that
        // brought a different status. A user with many sessions does not flood everyone.
        if first || before != after {
            self.publish_presence(&user).await?;
        }
        Ok(())
    }

    /// A gateway connection of `user` closed; after the last one they are offline.
    pub async fn gateway_disconnected(&self, user: Snowflake) -> Result<()> {
        if self
            .presence
            .disconnect(user)
            .await
            .map_err(Error::Unavailable)?
        {
            let offline = Presence {
                user_id: user,
                status: Status::Offline,
                custom_status: None,
            };
            self.publish_ephemeral(Topic::User(user), Event::PresenceUpdate(offline))
                .await;
            self.user_went_offline(user).await;
        }
        Ok(())
    }

    /// Op 4 PRESENCE_SET: as `PUT /users/@me/status`.
    pub async fn gateway_presence_set(&self, caller: &Caller, p: PresenceSet) -> Result<()> {
        self.set_status(
            caller,
            StatusRequest {
                status: p.status,
                custom_status: p.custom_status,
            },
        )
        .await
        .map(|_| ())
    }
}
