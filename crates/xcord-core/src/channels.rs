//! Server channels and their permission overwrites (and `GET /channels/{id}` for any channel).

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::{bits, has};
use xcord_store::{ChannelPatch, ChannelRecord, NewChannel, OverwriteRecord, Versioned};
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::rest::channels::MAX_POSITION;
use xcord_types::rest::channels::{
    Channel, ChannelKind, ChannelList, CreateChannelRequest, NewChannelKind, PermissionOverwrite,
    PutOverwriteRequest, UpdateChannelRequest,
};

use crate::error::{Denial, DirectChannelAction, Entity, Scope};
use crate::servers::{channel_to_wire, require_bits};
use crate::unit_of_work::UnitOfWork;
use crate::validate::{self, Violations};
use crate::{Caller, Core, Error, Result};

fn overwrites_to_wire(list: &[OverwriteRecord]) -> Vec<PermissionOverwrite> {
    list.iter()
        .map(|o| PermissionOverwrite {
            id: o.target_id,
            kind: o.target_type.clone(),
            allow: o.allow as u64,
            deny: o.deny as u64,
        })
        .collect()
}

/// A position is 0–[`MAX_POSITION`].
pub(crate) fn check_position(
    field: &str,
    p: i64,
) -> std::result::Result<(), xcord_types::FieldError> {
    if (0..=MAX_POSITION).contains(&p) {
        Ok(())
    } else {
        Err(xcord_types::FieldError::new(
            field,
            "range",
            format!("must be 0–{MAX_POSITION}"),
        ))
    }
}

/// The failure of a `type` that no server channel can have.
fn unsupported_kind() -> xcord_types::FieldError {
    xcord_types::FieldError::new("type", "enum", "must be text, voice or category")
}

/// What may be set on a channel of `kind`, checked field by field. `None` is a kind the
/// request got wrong (already reported): it has none of the kind-specific fields.
fn check_channel_fields(
    v: &mut Violations,
    kind: Option<ChannelKind>,
    name: Option<&str>,
    topic: Option<&str>,
    user_limit: Option<i64>,
    bitrate: Option<i64>,
    slowmode: Option<i64>,
) {
    if let Some(n) = name
        && !(1..=100).contains(&n.trim().chars().count())
    {
        v.push("name", "length", "must be 1–100 characters");
    }
    if let Some(t) = topic {
        v.check(validate::max_chars("topic", t, 1024));
    }
    if let Some(l) = user_limit {
        if kind != Some(ChannelKind::Voice) {
            v.push("userLimit", "type", "only voice channels have a user limit");
        } else if !(0..=99).contains(&l) {
            v.push("userLimit", "range", "must be 0–99");
        }
    }
    if let Some(b) = bitrate {
        if kind != Some(ChannelKind::Voice) {
            v.push("bitrate", "type", "only voice channels have a bitrate");
        } else if !(8..=384).contains(&b) {
            v.push("bitrate", "range", "must be 8–384 kbps");
        }
    }
    if let Some(s) = slowmode
        && !(0..=21_600).contains(&s)
    {
        v.push("rateLimitPerUser", "range", "must be 0–21600 seconds");
    }
}

/// Overwrites given with a new channel: each of a known type and defined bits, one per
/// target, at most 100.
fn check_initial_overwrites(v: &mut Violations, list: &[PermissionOverwrite]) {
    if list.len() > 100 {
        v.push("permissionOverwrites", "length", "at most 100 overwrites");
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, o) in list.iter().enumerate() {
        if !matches!(o.kind.as_str(), "role" | "user" | "member") {
            v.push(
                &format!("permissionOverwrites[{i}].type"),
                "enum",
                "must be role or user",
            );
        }
        for (field, value) in [("allow", o.allow), ("deny", o.deny)] {
            if value & !bits::ALL != 0 {
                v.push(
                    &format!("permissionOverwrites[{i}].{field}"),
                    "bits",
                    "contains undefined permission bits",
                );
            }
        }
        if !seen.insert(o.id) {
            v.push(
                &format!("permissionOverwrites[{i}].id"),
                "unique",
                "one overwrite per role or user",
            );
        }
    }
}

impl Core {
    /// Checks a new channel's overwrites as `PUT /channels/{id}/permissions/…` would
    /// (MANAGE_ROLES, only bits the caller has, existing targets) and turns them into rows.
    async fn initial_overwrites(
        &self,
        access: &crate::servers::ServerAccess,
        server: Snowflake,
        list: Vec<PermissionOverwrite>,
    ) -> Result<Vec<OverwriteRecord>> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        access.require(bits::MANAGE_ROLES)?;
        let mut out = Vec::with_capacity(list.len());
        for o in list {
            if !has(access.base, bits::ADMINISTRATOR) && (o.allow | o.deny) & !access.base != 0 {
                return Err(Error::Denied(Denial::OverwriteExceedsOwn));
            }
            let kind = if o.kind == "role" { "role" } else { "user" };
            let exists = if kind == "role" {
                access.roles.iter().any(|r| r.id == o.id)
            } else {
                self.store.member(server, o.id).await?.is_some()
            };
            if !exists {
                return Err(Error::NotFound(if kind == "role" {
                    Entity::Role
                } else {
                    Entity::Member
                }));
            }
            out.push(OverwriteRecord {
                channel_id: Snowflake::from_i64(0),
                target_id: o.id,
                target_type: kind.into(),
                allow: o.allow as i64,
                deny: o.deny as i64,
            });
        }
        Ok(out)
    }

    async fn check_parent(
        &self,
        server: Snowflake,
        parent: Snowflake,
        kind: ChannelKind,
    ) -> Result<()> {
        if kind == ChannelKind::Category {
            return Err(Error::invalid(
                "parentId",
                "type",
                "a category cannot have a parent",
            ));
        }
        match self.store.channel(parent).await? {
            Some(p) if p.server_id == Some(server) && p.kind == ChannelKind::Category => Ok(()),
            _ => Err(Error::invalid(
                "parentId",
                "category",
                "must be a category of this server",
            )),
        }
    }

    fn server_channel_wire(c: &ChannelRecord, overwrites: &[OverwriteRecord]) -> Channel {
        channel_to_wire(c, None, Some(overwrites_to_wire(overwrites)))
    }

    /// `GET /servers/{id}/channels`: the channels the caller can see.
    pub async fn server_channels(&self, caller: &Caller, server: Snowflake) -> Result<ChannelList> {
        Ok(ChannelList {
            channels: self
                .get_server(caller, server)
                .await?
                .channels
                .unwrap_or_default(),
        })
    }

    /// `POST /servers/{id}/channels` (MANAGE_CHANNELS).
    pub async fn create_channel(
        &self,
        caller: &Caller,
        server: Snowflake,
        req: CreateChannelRequest,
    ) -> Result<Channel> {
        let access = self.server_access(caller, server).await?;
        let mut v = Violations::default();
        let kind = v.check(
            req.kind
                .unwrap_or(NewChannelKind::Text)
                .kind()
                .ok_or_else(unsupported_kind),
        );
        check_channel_fields(
            &mut v,
            kind,
            Some(&req.name),
            req.topic.as_deref(),
            req.user_limit,
            req.bitrate,
            req.rate_limit_per_user,
        );
        if let Some(p) = req.position {
            v.check(check_position("position", p));
        }
        if req.topic.is_some() && kind != Some(ChannelKind::Text) {
            v.push("topic", "type", "only text channels have a topic");
        }
        let initial = req.permission_overwrites.clone().unwrap_or_default();
        check_initial_overwrites(&mut v, &initial);
        v.finish()?;
        // Reported above already; this only turns the checked value into a kind.
        let kind = kind.ok_or_else(|| Error::Validation(vec![unsupported_kind()]))?;
        access.require(bits::MANAGE_CHANNELS)?;
        if let Some(p) = req.parent_id {
            self.check_parent(server, p, kind).await?;
        }
        let overwrites = self.initial_overwrites(&access, server, initial).await?;
        let id = self.ids.next_id();
        let audit = self.audit_record(
            server,
            caller.user_id,
            "channel_create",
            Some(id),
            None,
            Some(json!({"name": req.name.trim(), "type": kind, "parentId": req.parent_id, "position": req.position})),
        );
        let mut uow = self.begin().await?;
        let c = self
            .store
            .create_channel(
                uow.tx(),
                &NewChannel {
                    id,
                    server_id: server,
                    name: req.name.trim().to_owned(),
                    topic: req.topic,
                    position: req.position,
                    parent_id: req.parent_id,
                    nsfw: req.nsfw.unwrap_or(false),
                    user_limit: if kind == ChannelKind::Voice {
                        Some(req.user_limit.unwrap_or(0))
                    } else {
                        None
                    },
                    bitrate: if kind == ChannelKind::Voice {
                        Some(req.bitrate.unwrap_or(64))
                    } else {
                        None
                    },
                    rate_limit_per_user: req.rate_limit_per_user.unwrap_or(0),
                    kind,
                    overwrites: overwrites.clone(),
                    now: self.clock.now(),
                },
            )
            .await?;
        // The channel, its overwrites, its audit row and its event are one change.
        uow.audit(&audit).await?;
        let out = Self::server_channel_wire(&c, &overwrites);
        uow.emit(Topic::Server(server), Event::ChannelCreate(out.clone()))?;
        uow.commit().await?;
        Ok(out)
    }

    /// The audit row of a change to channel `c`.
    fn channel_audit(
        &self,
        server: Snowflake,
        caller: &Caller,
        action: &str,
        c: &ChannelRecord,
    ) -> xcord_store::AuditRecord {
        let changes = json!({"name": c.name, "type": c.kind, "parentId": c.parent_id, "position": c.position});
        self.audit_record(
            server,
            caller.user_id,
            action,
            Some(c.id),
            None,
            Some(changes),
        )
    }

    /// `GET /channels/{id}`: a server channel the caller can see, or a private channel they are in.
    pub async fn get_channel(&self, caller: &Caller, id: Snowflake) -> Result<Channel> {
        let channel = self
            .store
            .channel(id)
            .await?
            .ok_or(Error::NotFound(Entity::Channel))?;
        if channel.server_id.is_none() {
            let members = self.store.recipients(id).await?;
            if !members.contains(&caller.user_id) {
                return Err(Error::NotFound(Entity::Channel));
            }
            let pc = xcord_store::PrivateChannel {
                channel,
                recipients: members,
            };
            return self.private_channel_view(&pc).await;
        }
        let (c, _, _, overwrites) = self.channel_access(caller, id).await?;
        Ok(Self::server_channel_wire(&c, &overwrites))
    }

    /// `PATCH /channels/{id}` (MANAGE_CHANNELS in it; a group DM's name by its members).
    pub async fn update_channel(
        &self,
        caller: &Caller,
        id: Snowflake,
        req: UpdateChannelRequest,
        if_match: Option<i64>,
    ) -> Result<Channel> {
        let existing = self
            .store
            .channel(id)
            .await?
            .ok_or(Error::NotFound(Entity::Channel))?;
        let Some(server) = existing.server_id else {
            return self
                .update_private_channel(caller, existing, req, if_match)
                .await;
        };
        let (c, access, perms, overwrites) = self.channel_access(caller, id).await?;
        let mut v = Violations::default();
        check_channel_fields(
            &mut v,
            Some(c.kind),
            req.name.as_deref(),
            req.topic.as_ref().and_then(|t| t.as_deref()),
            req.user_limit.flatten(),
            req.bitrate,
            req.rate_limit_per_user,
        );
        if let Some(p) = req.position {
            v.check(check_position("position", p));
        }
        if req.topic.is_some() && c.kind != ChannelKind::Text {
            v.push("topic", "type", "only text channels have a topic");
        }
        if req.rate_limit_per_user.is_some() && c.kind != ChannelKind::Text {
            v.push(
                "rateLimitPerUser",
                "type",
                "only text channels have slowmode",
            );
        }
        v.finish()?;
        require_bits(perms, bits::MANAGE_CHANNELS, Scope::Channel(c.id))?;
        if let Some(Some(p)) = req.parent_id {
            self.check_parent(server, p, c.kind).await?;
        }
        let patch = ChannelPatch {
            name: req.name.map(|n| n.trim().to_owned()),
            topic: req.topic,
            nsfw: req.nsfw,
            position: req.position,
            parent_id: req.parent_id,
            user_limit: req.user_limit,
            bitrate: req.bitrate,
            rate_limit_per_user: req.rate_limit_per_user,
        };
        let mut uow = self.begin().await?;
        let updated = match self
            .store
            .update_channel(uow.tx(), id, &patch, if_match, self.clock.now())
            .await?
        {
            Versioned::Updated(c) => c,
            Versioned::Stale => return Err(crate::servers::stale_error(Entity::Channel, if_match)),
            Versioned::Missing => return Err(Error::NotFound(Entity::Channel)),
        };
        let _ = access;
        let audit = self.channel_audit(server, caller, "channel_update", &updated);
        uow.audit(&audit).await?;
        let out = Self::server_channel_wire(&updated, &overwrites);
        uow.emit(Topic::Server(server), Event::ChannelUpdate(out.clone()))?;
        uow.commit().await?;
        Ok(out)
    }

    async fn update_private_channel(
        &self,
        caller: &Caller,
        c: ChannelRecord,
        req: UpdateChannelRequest,
        if_match: Option<i64>,
    ) -> Result<Channel> {
        let members = self.store.recipients(c.id).await?;
        if !members.contains(&caller.user_id) {
            return Err(Error::NotFound(Entity::Channel));
        }
        if c.kind != ChannelKind::GroupDm {
            return Err(Error::Denied(Denial::DirectChannel(
                DirectChannelAction::Edit,
            )));
        }
        if let Some(n) = &req.name {
            validate::max_chars("name", n, 100).map_err(|f| Error::Validation(vec![f]))?;
        }
        let patch = ChannelPatch {
            name: req.name,
            ..ChannelPatch::default()
        };
        let mut uow = self.begin().await?;
        let updated = match self
            .store
            .update_channel(uow.tx(), c.id, &patch, if_match, self.clock.now())
            .await?
        {
            Versioned::Updated(c) => c,
            Versioned::Stale => return Err(crate::servers::stale_error(Entity::Channel, if_match)),
            Versioned::Missing => return Err(Error::NotFound(Entity::Channel)),
        };
        let view = self
            .private_channel_view(&xcord_store::PrivateChannel {
                channel: updated,
                recipients: members.clone(),
            })
            .await?;
        uow.emit(Topic::Channel(c.id), Event::ChannelUpdate(view.clone()))?;
        uow.commit().await?;
        Ok(view)
    }

    /// `DELETE /channels/{id}` (MANAGE_CHANNELS in it).
    pub async fn delete_channel(&self, caller: &Caller, id: Snowflake) -> Result<()> {
        let existing = self
            .store
            .channel(id)
            .await?
            .ok_or(Error::NotFound(Entity::Channel))?;
        let Some(server) = existing.server_id else {
            let members = self.store.recipients(id).await?;
            if !members.contains(&caller.user_id) {
                return Err(Error::NotFound(Entity::Channel));
            }
            return Err(Error::Denied(Denial::DirectChannel(
                DirectChannelAction::Delete,
            )));
        };
        let (c, _, perms, overwrites) = self.channel_access(caller, id).await?;
        require_bits(perms, bits::MANAGE_CHANNELS, Scope::Channel(c.id))?;
        let files = self.attachment_files_of(&[id]).await?;
        let audit = self.channel_audit(server, caller, "channel_delete", &c);
        let mut uow = self.begin().await?;
        // The deletion and its audit row are one change: both or neither.
        if self.store.delete_channel(uow.tx(), id).await? {
            uow.audit(&audit).await?;
        }
        uow.emit(
            Topic::Server(server),
            Event::ChannelDelete(Self::server_channel_wire(&c, &overwrites)),
        )?;
        uow.commit().await?;
        self.delete_files_later(files);
        Ok(())
    }

    /// `PUT /channels/{id}/permissions/{targetId}` (MANAGE_ROLES in the channel; one can only
    /// allow or deny bits one has, unless owner or administrator).
    pub async fn put_overwrite(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        target: Snowflake,
        req: PutOverwriteRequest,
    ) -> Result<()> {
        let kind = match req.target_type.as_str() {
            "role" => "role",
            "user" | "member" => "user",
            _ => return Err(Error::invalid("targetType", "enum", "must be role or user")),
        };
        let mut v = Violations::default();
        for (field, value) in [("allow", req.allow), ("deny", req.deny)] {
            if value & !bits::ALL != 0 {
                v.push(field, "bits", "contains undefined permission bits");
            }
        }
        v.finish()?;
        let (c, access, perms, _) = self.channel_access(caller, channel_id).await?;
        let server = access.server.id;
        require_bits(perms, bits::MANAGE_ROLES, Scope::Channel(c.id))?;
        if !has(access.base, bits::ADMINISTRATOR) && (req.allow | req.deny) & !perms != 0 {
            return Err(Error::Denied(Denial::OverwriteExceedsOwn));
        }
        let exists = if kind == "role" {
            access.roles.iter().any(|r| r.id == target)
        } else {
            self.store.member(server, target).await?.is_some()
        };
        if !exists {
            return Err(Error::NotFound(if kind == "role" {
                Entity::Role
            } else {
                Entity::Member
            }));
        }
        let o = OverwriteRecord {
            channel_id,
            target_id: target,
            target_type: kind.into(),
            allow: req.allow as i64,
            deny: req.deny as i64,
        };
        let mut uow = self.begin().await?;
        let existed = self.store.put_overwrite(uow.tx(), &o).await?;
        let action = if existed {
            "channel_overwrite_update"
        } else {
            "channel_overwrite_create"
        };
        let changes = json!({"type": kind, "allow": req.allow, "deny": req.deny});
        let audit = self.audit_record(
            server,
            caller.user_id,
            action,
            Some(channel_id),
            None,
            Some(changes),
        );
        uow.audit(&audit).await?;
        self.channel_changed(&mut uow, server, c.id).await?;
        uow.commit().await
    }

    /// `DELETE /channels/{id}/permissions/{targetId}`.
    pub async fn delete_overwrite(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        target: Snowflake,
    ) -> Result<()> {
        let (c, access, perms, _) = self.channel_access(caller, channel_id).await?;
        require_bits(perms, bits::MANAGE_ROLES, Scope::Channel(c.id))?;
        let mut uow = self.begin().await?;
        if !self
            .store
            .delete_overwrite(uow.tx(), channel_id, target)
            .await?
        {
            return Err(Error::NotFound(Entity::Overwrite));
        }
        let audit = self.audit_record(
            access.server.id,
            caller.user_id,
            "channel_overwrite_delete",
            Some(channel_id),
            None,
            Some(json!({"targetId": target})),
        );
        uow.audit(&audit).await?;
        self.channel_changed(&mut uow, access.server.id, c.id)
            .await?;
        uow.commit().await
    }

    /// Announces, when `uow` commits, the channel as `uow` left it.
    async fn channel_changed(
        &self,
        uow: &mut UnitOfWork<'_>,
        server: Snowflake,
        channel: Snowflake,
    ) -> Result<()> {
        let c = self
            .store
            .channel_in(uow.tx(), channel)
            .await?
            .ok_or(Error::NotFound(Entity::Channel))?;
        let ow = self.store.overwrites_in(uow.tx(), channel).await?;
        uow.emit(
            Topic::Server(server),
            Event::ChannelUpdate(Self::server_channel_wire(&c, &ow)),
        )
    }
}
