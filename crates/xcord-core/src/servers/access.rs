//! What a caller is in a server and may do there: [`ServerAccess`], channel access,
//! permission checks.

use std::collections::HashMap;

use xcord_permissions::{
    MemberView, bits, compute_base_permissions, compute_channel_permissions, has,
};
use xcord_store::{ChannelRecord, MemberRecord, OverwriteRecord, RoleRecord, ServerRecord};
use xcord_types::Snowflake;

use super::wire::{channel_kind, to_overwrites};
use crate::error::{Entity, Scope};
use crate::{Caller, Core, Error, Result};

/// What the caller is in a server, gathered once per request.
#[derive(Debug, Clone)]
pub struct ServerAccess {
    /// The server.
    pub server: ServerRecord,
    /// Its roles, lowest first.
    pub roles: Vec<RoleRecord>,
    /// The caller's membership.
    pub member: MemberRecord,
    /// Server-wide permissions.
    pub base: u64,
    pub(super) role_perms: Vec<(i64, u64)>,
}

impl ServerAccess {
    fn view(&self) -> MemberView<'_> {
        MemberView {
            user_id: self.member.user_id.get(),
            server_id: self.server.id.get(),
            owner_id: self.server.owner_id.get(),
            everyone: self
                .roles
                .iter()
                .find(|r| r.id == self.server.id)
                .map_or(0, |r| r.permissions as u64),
            roles: &self.role_perms,
        }
    }

    /// Whether the caller owns the server.
    pub fn is_owner(&self) -> bool {
        self.server.owner_id == self.member.user_id
    }

    /// The caller's rank: their highest role position, above everything for the owner.
    pub fn rank(&self) -> i64 {
        if self.is_owner() {
            i64::MAX
        } else {
            rank_of(&self.roles, &self.member)
        }
    }

    /// Permissions in `channel`.
    pub fn in_channel(&self, channel: &ChannelRecord, overwrites: &[OverwriteRecord]) -> u64 {
        compute_channel_permissions(
            &self.view(),
            channel_kind(channel.kind),
            &to_overwrites(overwrites),
        )
    }

    /// [`Error::MissingPermission`] unless the caller has every bit of `need` server-wide.
    pub fn require(&self, need: u64) -> Result<()> {
        require_bits(self.base, need, Scope::Server(self.server.id))
    }
}

fn rank_of(roles: &[RoleRecord], m: &MemberRecord) -> i64 {
    roles
        .iter()
        .filter(|r| m.roles.contains(&r.id))
        .map(|r| r.position)
        .max()
        .unwrap_or(0)
}

/// [`Error::MissingPermission`] unless `have` includes every bit of `need` at `scope`,
/// carrying the bits that are missing.
pub fn require_bits(have: u64, need: u64, scope: Scope) -> Result<()> {
    if has(have, need) {
        return Ok(());
    }
    Err(Error::MissingPermission {
        missing: need & !have,
        scope,
    })
}

/// The error for a stale `If-Match` on `entity`.
pub fn stale_error(entity: Entity, given: Option<i64>) -> Error {
    Error::StaleVersion { entity, given }
}

impl Core {
    /// The caller's standing in a server; 404 when the server does not exist or the caller
    /// is not a member (a server one is not in does not exist for one).
    pub async fn server_access(
        &self,
        caller: &Caller,
        server_id: Snowflake,
    ) -> Result<ServerAccess> {
        let server = self
            .store
            .server(server_id)
            .await?
            .ok_or(Error::NotFound(Entity::Server))?;
        let member = self
            .store
            .member(server_id, caller.user_id)
            .await?
            .ok_or(Error::NotFound(Entity::Server))?;
        let roles = self.store.roles(server_id).await?;
        let role_perms: Vec<(i64, u64)> = roles
            .iter()
            .filter(|r| member.roles.contains(&r.id))
            .map(|r| (r.id.get(), r.permissions as u64))
            .collect();
        let mut access = ServerAccess {
            server,
            roles,
            member,
            base: 0,
            role_perms,
        };
        access.base = compute_base_permissions(&access.view());
        Ok(access)
    }

    /// A server channel the caller can see, with their permissions in it; 404 otherwise.
    pub async fn channel_access(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
    ) -> Result<(ChannelRecord, ServerAccess, u64, Vec<OverwriteRecord>)> {
        let channel = self
            .store
            .channel(channel_id)
            .await?
            .ok_or(Error::NotFound(Entity::Channel))?;
        let server_id = channel.server_id.ok_or(Error::NotFound(Entity::Channel))?;
        let access = self
            .server_access(caller, server_id)
            .await
            .map_err(|_| Error::NotFound(Entity::Channel))?;
        let overwrites = self.store.overwrites(channel_id).await?;
        let perms = access.in_channel(&channel, &overwrites);
        if perms & bits::VIEW_CHANNELS == 0 {
            return Err(Error::NotFound(Entity::Channel));
        }
        Ok((channel, access, perms, overwrites))
    }

    /// Every channel of the server with its overwrites and the caller's permissions in it,
    /// from two queries whatever the channel count.
    pub(crate) async fn channels_with_permissions(
        &self,
        access: &ServerAccess,
    ) -> Result<Vec<(ChannelRecord, Vec<OverwriteRecord>, u64)>> {
        let channels = self.store.server_channels(access.server.id).await?;
        let mut by_channel: HashMap<Snowflake, Vec<OverwriteRecord>> = HashMap::new();
        for o in self.store.server_overwrites(access.server.id).await? {
            by_channel.entry(o.channel_id).or_default().push(o);
        }
        Ok(channels
            .into_iter()
            .map(|c| {
                let ow = by_channel.remove(&c.id).unwrap_or_default();
                let perms = access.in_channel(&c, &ow);
                (c, ow, perms)
            })
            .collect())
    }
}
