//! Wire forms of servers, channels, overwrites and roles.

use xcord_permissions::{ChannelKind, Overwrite, OverwriteTarget, bits};
use xcord_store::{ChannelRecord, OverwriteRecord, RoleRecord, ServerRecord};
use xcord_types::rest::channels::{Channel, ChannelKind as Kind, PermissionOverwrite};
use xcord_types::rest::servers::{Role, Server};
use xcord_types::rest::users::UserSummary;

use super::access::ServerAccess;
use crate::{Core, Result};

/// The wire form of any channel; `recipients` for private ones, `overwrites` for server ones.
pub fn channel_to_wire(
    c: &ChannelRecord,
    recipients: Option<Vec<UserSummary>>,
    overwrites: Option<Vec<PermissionOverwrite>>,
) -> Channel {
    let server = c.server_id.is_some();
    let voice = c.kind == Kind::Voice;
    Channel {
        id: c.id,
        kind: c.kind,
        server_id: c.server_id,
        name: c.name.clone(),
        topic: c.topic.clone(),
        position: server.then_some(c.position),
        parent_id: c.parent_id,
        nsfw: server.then_some(c.nsfw),
        user_limit: if voice {
            Some(c.user_limit.unwrap_or(0))
        } else {
            None
        },
        bitrate: if voice { c.bitrate } else { None },
        rate_limit_per_user: (server && c.kind == Kind::Text).then_some(c.rate_limit_per_user),
        permission_overwrites: overwrites,
        owner_id: c.owner_id,
        recipients,
        last_message_id: c.last_message_id,
        version: c.version,
        created_at: c.created_at,
    }
}

pub(crate) fn overwrite_to_wire(o: &OverwriteRecord) -> PermissionOverwrite {
    PermissionOverwrite {
        id: o.target_id,
        kind: o.target_type.clone(),
        allow: o.allow as u64,
        deny: o.deny as u64,
    }
}

/// The wire form of a role.
pub fn role_to_wire(r: &RoleRecord) -> Role {
    Role {
        id: r.id,
        server_id: r.server_id,
        name: r.name.clone(),
        color: r.color.clone(),
        position: r.position,
        permissions: r.permissions as u64,
        mentionable: r.mentionable,
        hoisted: r.hoisted,
        version: r.version,
        created_at: r.created_at,
    }
}

/// Which permission rules apply to a channel of `kind`. Private channels post messages like
/// text channels do. Exhaustive on purpose: a new kind must decide here.
pub fn channel_kind(kind: Kind) -> ChannelKind {
    match kind {
        Kind::Text | Kind::Dm | Kind::GroupDm => ChannelKind::Text,
        Kind::Voice => ChannelKind::Voice,
        Kind::Category => ChannelKind::Category,
    }
}

pub fn to_overwrites(list: &[OverwriteRecord]) -> Vec<Overwrite> {
    list.iter()
        .map(|o| Overwrite {
            target: if o.target_type == "user" {
                OverwriteTarget::Member(o.target_id.get())
            } else {
                OverwriteTarget::Role(o.target_id.get())
            },
            allow: o.allow as u64,
            deny: o.deny as u64,
        })
        .collect()
}

impl Core {
    pub(crate) fn server_to_wire(
        s: &ServerRecord,
        channels: Option<Vec<Channel>>,
        roles: Option<Vec<Role>>,
    ) -> Server {
        Server {
            id: s.id,
            name: s.name.clone(),
            icon: s.icon.clone(),
            banner: s.banner.clone(),
            description: s.description.clone(),
            owner_id: s.owner_id,
            vanity_url: s.vanity_url.clone(),
            member_count: s.member_count,
            channels,
            roles,
            version: s.version,
            created_at: s.created_at,
        }
    }

    /// The server as the caller sees it: the channels they can view, all roles.
    pub(super) async fn full_server(&self, access: &ServerAccess) -> Result<Server> {
        let visible = self
            .channels_with_permissions(access)
            .await?
            .iter()
            .filter(|(_, _, perms)| perms & bits::VIEW_CHANNELS != 0)
            .map(|(c, ow, _)| {
                channel_to_wire(c, None, Some(ow.iter().map(overwrite_to_wire).collect()))
            })
            .collect();
        Ok(Self::server_to_wire(
            &access.server,
            Some(visible),
            Some(access.roles.iter().map(role_to_wire).collect()),
        ))
    }
}
