//! Servers, channels, roles, members, invites, moderation and the audit log. Every decision
//! about what a caller may do goes through `xcord_permissions`.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::{
    ChannelKind, MemberView, Overwrite, OverwriteTarget, bits, compute_base_permissions,
    compute_channel_permissions, has,
};
use xcord_store::{
    AuditRecord, ChannelRecord, MemberRecord, NewServer, OverwriteRecord, RoleRecord, ServerPatch,
    ServerRecord, Versioned,
};
use xcord_types::events::{Event, ServerDeleted};
use xcord_types::rest::channels::{Channel, ChannelKind as Kind, PermissionOverwrite};
use xcord_types::rest::servers::{
    CreateServerRequest, DayCount, Role, Server, ServerList, ServerStats, UpdateServerRequest,
};
use xcord_types::rest::users::UserSummary;
use xcord_types::{Snowflake, Timestamp};

use crate::error::{Clash, Denial, Entity, OwnerAction, Scope, Upload};
use crate::validate::{self, Violations};
use crate::{Caller, Core, Error, Result};

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
    role_perms: Vec<(i64, u64)>,
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

    /// An audit row, for a store method that writes it with the change it records.
    pub(crate) fn audit_record(
        &self,
        server: Snowflake,
        actor: Snowflake,
        action: &str,
        target: Option<Snowflake>,
        reason: Option<&str>,
        changes: Option<serde_json::Value>,
    ) -> AuditRecord {
        AuditRecord {
            id: self.ids.next_id(),
            server_id: server,
            actor_id: actor,
            action: action.to_owned(),
            target_id: target,
            reason: reason.map(str::to_owned),
            changes: changes.map(|c| c.to_string()),
            created_at: self.clock.now(),
        }
    }

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

    /// The server as the caller sees it: the channels they can view, all roles.
    async fn full_server(&self, access: &ServerAccess) -> Result<Server> {
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

    /// Stores a base64 (or data URL) icon as an image under `/cdn/icons/…`.
    async fn store_icon(&self, owner: Snowflake, data: &str) -> Result<String> {
        use base64::Engine as _;
        let b64 = data.split_once("base64,").map_or(data, |(_, b)| b).trim();
        if b64.len() > 8 * 1024 * 1024 {
            return Err(Error::TooLarge {
                upload: Upload::ServerIcon,
                limit_bytes: crate::media::MAX_PROFILE_IMAGE_BYTES,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                Error::invalid("icon", "base64", "must be a base64 image or a data URL")
            })?;
        let img = crate::media::check_image(bytes, crate::media::MAX_PROFILE_IMAGE_BYTES).await?;
        let key = crate::media::store_image(
            self.files.as_ref(),
            crate::media::ImageUse::ServerIcon,
            owner,
            &img,
        )
        .await
        .map_err(Error::Internal)?;
        Ok(Self::cdn_url(&key))
    }

    /// `POST /servers`: the server with `@everyone`, `general` and `General`; the caller owns it.
    pub async fn create_server(&self, caller: &Caller, req: CreateServerRequest) -> Result<Server> {
        let name = req.name.trim().to_owned();
        if !(2..=100).contains(&name.chars().count()) {
            return Err(Error::invalid("name", "length", "must be 2–100 characters"));
        }
        let id = self.ids.next_id();
        let icon = match req.icon.as_deref().filter(|i| !i.is_empty()) {
            Some(data) => Some(self.store_icon(id, data).await?),
            None => None,
        };
        let mut uow = self.begin().await?;
        let server = self
            .store
            .create_server(
                uow.tx(),
                &NewServer {
                    id,
                    name,
                    icon,
                    owner_id: caller.user_id,
                    everyone_permissions: bits::EVERYONE_DEFAULT as i64,
                    text_channel_id: self.ids.next_id(),
                    voice_channel_id: self.ids.next_id(),
                    now: self.clock.now(),
                },
            )
            .await?;
        // The owner sees every channel of a new server (it has no overwrites yet).
        let (roles, channels) = self.store.roles_and_channels_in(uow.tx(), id).await?;
        let out = Self::server_to_wire(
            &server,
            Some(
                channels
                    .iter()
                    .map(|c| channel_to_wire(c, None, Some(Vec::new())))
                    .collect(),
            ),
            Some(roles.iter().map(role_to_wire).collect()),
        );
        uow.emit(
            Topic::User(caller.user_id),
            Event::ServerCreate(out.clone()),
        )?;
        uow.commit().await?;
        Ok(out)
    }

    /// `GET /servers`.
    pub async fn my_servers(&self, caller: &Caller) -> Result<ServerList> {
        let list = self.store.servers_of(caller.user_id).await?;
        Ok(ServerList {
            servers: list
                .iter()
                .map(|s| Self::server_to_wire(s, None, None))
                .collect(),
        })
    }

    /// `GET /servers/{id}`.
    pub async fn get_server(&self, caller: &Caller, id: Snowflake) -> Result<Server> {
        let access = self.server_access(caller, id).await?;
        self.full_server(&access).await
    }

    /// `PATCH /servers/{id}`.
    pub async fn update_server(
        &self,
        caller: &Caller,
        id: Snowflake,
        req: UpdateServerRequest,
        if_match: Option<i64>,
    ) -> Result<Server> {
        let access = self.server_access(caller, id).await?;
        let touches_settings = req.name.is_some()
            || req.icon.is_some()
            || req.banner.is_some()
            || req.description.is_some()
            || req.vanity_url.is_some();
        if touches_settings {
            access.require(bits::MANAGE_SERVER)?;
        }
        if req.owner_id.is_some() && !access.is_owner() {
            return Err(Error::Denied(Denial::NotOwner(OwnerAction::TransferServer)));
        }
        let mut v = Violations::default();
        let mut patch = ServerPatch::default();
        if let Some(n) = &req.name {
            let n = n.trim().to_owned();
            if !(2..=100).contains(&n.chars().count()) {
                v.push("name", "length", "must be 2–100 characters");
            }
            patch.name = Some(n);
        }
        if let Some(Some(d)) = &req.description {
            v.check(validate::max_chars("description", d, 500));
        }
        patch.description = req.description.clone();
        if let Some(Some(code)) = &req.vanity_url {
            let ok = (3..=32).contains(&code.len())
                && code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                v.push("vanityUrl", "pattern", "must be 3–32 of a–z, 0–9 and -");
            }
        }
        patch.vanity_url = req.vanity_url.clone();
        v.finish()?;
        if let Some(new_owner) = req.owner_id {
            if self.store.member(id, new_owner).await?.is_none() {
                return Err(Error::invalid(
                    "ownerId",
                    "member",
                    "the new owner must be a member",
                ));
            }
            patch.owner_id = Some(new_owner);
        }
        if let Some(icon) = &req.icon {
            patch.icon = Some(match icon.as_deref().filter(|i| !i.is_empty()) {
                Some(data) => Some(self.store_icon(id, data).await?),
                None => None,
            });
        }
        if let Some(banner) = &req.banner {
            patch.banner = Some(match banner.as_deref().filter(|i| !i.is_empty()) {
                Some(data) => Some(self.store_icon(id, data).await?),
                None => None,
            });
        }
        let mut uow = self.begin().await?;
        let updated = match self
            .store
            .update_server(uow.tx(), id, &patch, if_match, self.clock.now())
            .await
        {
            Ok(Versioned::Updated(s)) => s,
            Ok(Versioned::Stale) => return Err(stale_error(Entity::Server, if_match)),
            Ok(Versioned::Missing) => return Err(Error::NotFound(Entity::Server)),
            Err(e) if e.is_conflict() => {
                return Err(Error::Conflict(Clash::VanityUrlTaken));
            }
            Err(e) => return Err(e.into()),
        };
        let changes = json!({"name": req.name, "description": req.description, "vanityUrl": req.vanity_url, "ownerId": req.owner_id,
            "iconChanged": req.icon.is_some(), "bannerChanged": req.banner.is_some()});
        let audit = self.audit_record(
            id,
            caller.user_id,
            "server_update",
            Some(id),
            None,
            Some(changes),
        );
        uow.audit(&audit).await?;
        uow.emit(
            Topic::Server(id),
            Event::ServerUpdate(Self::server_to_wire(&updated, None, None)),
        )?;
        uow.commit().await?;
        let access = ServerAccess {
            server: updated,
            ..access
        };
        self.full_server(&access).await
    }

    /// `DELETE /servers/{id}`: the owner only.
    pub async fn delete_server(&self, caller: &Caller, id: Snowflake) -> Result<()> {
        let access = self.server_access(caller, id).await?;
        if !access.is_owner() {
            return Err(Error::Denied(Denial::NotOwner(OwnerAction::DeleteServer)));
        }
        let channels: Vec<Snowflake> = self
            .store
            .server_channels(id)
            .await?
            .iter()
            .map(|c| c.id)
            .collect();
        let files = self.attachment_files_of(&channels).await?;
        let mut uow = self.begin().await?;
        self.store.delete_server(uow.tx(), id).await?;
        uow.emit(Topic::Server(id), Event::ServerDelete(ServerDeleted { id }))?;
        uow.commit().await?;
        self.delete_files_later(files);
        Ok(())
    }

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
