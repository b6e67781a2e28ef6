//! Roles, members, moderation (kick, ban), invites, the audit log and the default server.
//!
//! Hierarchy: nobody acts on a member whose highest role is at or above their own, nobody
//! manages a role at or above their own highest role, and the owner outranks everyone.

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_store::{InviteRecord, MemberRecord, RolePatch, Versioned};
use xcord_types::Snowflake;
use xcord_types::events::{
    Event, MemberChanged, MemberRemoved, RoleChanged, RoleDeleted, ServerDeleted,
};
use xcord_types::rest::channels::ChannelKind;
use xcord_types::rest::servers::{
    AuditEntry, AuditLog, Ban, BanList, BanRequest, CreateInviteRequest, Invite, InviteList,
    InviteServer, Member, MemberList, MemberUser, Role, RoleList, RoleRequest, Server,
    UpdateMemberRequest,
};

use crate::error::{Denial, Entity, Refusal, Scope};
use crate::servers::{ServerAccess, require_bits, role_to_wire, stale_error};
use crate::unit_of_work::UnitOfWork;
use crate::validate::{self, Violations};
use crate::{Caller, Core, Error, Result};

const INVITE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

fn check_role_request(req: &RoleRequest) -> Result<()> {
    let mut v = Violations::default();
    if let Some(n) = &req.name
        && !(1..=100).contains(&n.trim().chars().count())
    {
        v.push("name", "length", "must be 1–100 characters");
    }
    if let Some(c) = &req.color {
        let ok =
            c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit());
        if !ok {
            v.push("color", "pattern", "must be #rrggbb");
        }
    }
    if let Some(p) = req.permissions
        && p & !bits::ALL != 0
    {
        v.push("permissions", "bits", "contains undefined permission bits");
    }
    if let Some(p) = req.position
        && !(1..=xcord_types::rest::channels::MAX_POSITION).contains(&p)
    {
        v.push("position", "range", "must be 1–100000 (0 is @everyone)");
    }
    v.finish()
}

impl Core {
    /// The wire form of one member.
    async fn member_wire(&self, m: &MemberRecord) -> Result<Member> {
        self.members_wire(std::slice::from_ref(m))
            .await?
            .pop()
            .ok_or(Error::NotFound(Entity::User))
    }

    async fn members_wire(&self, list: &[MemberRecord]) -> Result<Vec<Member>> {
        let ids: Vec<Snowflake> = list.iter().map(|m| m.user_id).collect();
        let users = self.users_by_id(&ids).await?;
        Ok(list
            .iter()
            .filter_map(|m| {
                users.get(&m.user_id).map(|u| Member {
                    user: MemberUser {
                        id: u.id,
                        username: u.username.clone(),
                        avatar: u.avatar.as_deref().map(Self::cdn_url),
                    },
                    nickname: m.nickname.clone(),
                    roles: m.roles.clone(),
                    joined_at: m.joined_at,
                })
            })
            .collect())
    }

    /// Denied unless the caller outranks `target` (and `target` is not the owner).
    fn outranks(access: &ServerAccess, target: &MemberRecord) -> Result<()> {
        if target.user_id == access.server.owner_id {
            return Err(Error::Denied(Denial::TargetIsOwner));
        }
        let theirs = access
            .roles
            .iter()
            .filter(|r| target.roles.contains(&r.id))
            .map(|r| r.position)
            .max()
            .unwrap_or(0);
        if access.rank() <= theirs {
            return Err(Error::Denied(Denial::TargetOutranks));
        }
        Ok(())
    }

    /// Denied unless the caller's rank is above `position`.
    fn can_manage_position(access: &ServerAccess, position: i64) -> Result<()> {
        if access.rank() > position {
            Ok(())
        } else {
            Err(Error::Denied(Denial::RoleOutranks))
        }
    }

    /// `GET /servers/{id}/roles`.
    pub async fn roles(&self, caller: &Caller, server: Snowflake) -> Result<RoleList> {
        let access = self.server_access(caller, server).await?;
        Ok(RoleList {
            roles: access.roles.iter().map(role_to_wire).collect(),
        })
    }

    /// `POST /servers/{id}/roles` (MANAGE_ROLES; only permissions one has, below one's rank).
    pub async fn create_role(
        &self,
        caller: &Caller,
        server: Snowflake,
        req: RoleRequest,
    ) -> Result<Role> {
        check_role_request(&req)?;
        let access = self.server_access(caller, server).await?;
        access.require(bits::MANAGE_ROLES)?;
        let perms = req.permissions.unwrap_or(0);
        require_bits(access.base, perms, Scope::Server(server))
            .map_err(|_| Error::Denied(Denial::GrantExceedsOwn))?;
        if let Some(p) = req.position {
            Self::can_manage_position(&access, p)?;
        }
        let patch = RolePatch {
            name: req.name.map(|n| n.trim().to_owned()),
            color: req.color,
            permissions: Some(perms as i64),
            mentionable: req.mentionable,
            hoisted: req.hoisted,
            position: req.position,
        };
        let id = self.ids.next_id();
        let audit = self.audit_record(
            server,
            caller.user_id,
            "role_create",
            Some(id),
            None,
            Some(
                json!({"name": patch.name.as_deref().unwrap_or("new role"), "permissions": perms}),
            ),
        );
        let mut uow = self.begin().await?;
        let role = self
            .store
            .create_role(uow.tx(), id, server, &patch, self.clock.now())
            .await?;
        uow.audit(&audit).await?;
        let out = role_to_wire(&role);
        let ev = RoleChanged {
            server_id: server,
            role: out.clone(),
        };
        uow.emit(Topic::Server(server), Event::RoleCreate(ev))?;
        uow.commit().await?;
        Ok(out)
    }

    /// `PATCH /servers/{id}/roles/{roleId}`.
    pub async fn update_role(
        &self,
        caller: &Caller,
        server: Snowflake,
        role_id: Snowflake,
        req: RoleRequest,
        if_match: Option<i64>,
    ) -> Result<Role> {
        check_role_request(&req)?;
        let access = self.server_access(caller, server).await?;
        access.require(bits::MANAGE_ROLES)?;
        let role = access
            .roles
            .iter()
            .find(|r| r.id == role_id)
            .cloned()
            .ok_or(Error::NotFound(Entity::Role))?;
        let everyone = role.id == server;
        if everyone && (req.name.is_some() || req.position.is_some()) {
            return Err(Error::invalid(
                "name",
                "everyone",
                "the @everyone role keeps its name and position",
            ));
        }
        if !everyone {
            Self::can_manage_position(&access, role.position)?;
        }
        if let Some(p) = req.position {
            Self::can_manage_position(&access, p)?;
        }
        if let Some(p) = req.permissions {
            // Bits the role already had may stay; new ones must be the caller's own.
            require_bits(
                access.base,
                p & !(role.permissions as u64),
                Scope::Server(server),
            )
            .map_err(|_| Error::Denied(Denial::GrantExceedsOwn))?;
        }
        let patch = RolePatch {
            name: req.name.clone().map(|n| n.trim().to_owned()),
            color: req.color.clone(),
            permissions: req.permissions.map(|p| p as i64),
            mentionable: req.mentionable,
            hoisted: req.hoisted,
            position: req.position,
        };
        let mut uow = self.begin().await?;
        let updated = match self
            .store
            .update_role(uow.tx(), role_id, &patch, if_match, self.clock.now())
            .await?
        {
            Versioned::Updated(r) => r,
            Versioned::Stale => return Err(stale_error(Entity::Role, if_match)),
            Versioned::Missing => return Err(Error::NotFound(Entity::Role)),
        };
        let out = role_to_wire(&updated);
        let changes = json!({"name": req.name, "color": req.color, "permissions": req.permissions, "position": req.position,
            "mentionable": req.mentionable, "hoisted": req.hoisted});
        let audit = self.audit_record(
            server,
            caller.user_id,
            "role_update",
            Some(role_id),
            None,
            Some(changes),
        );
        uow.audit(&audit).await?;
        let ev = RoleChanged {
            server_id: server,
            role: out.clone(),
        };
        uow.emit(Topic::Server(server), Event::RoleUpdate(ev))?;
        uow.commit().await?;
        Ok(out)
    }

    /// `DELETE /servers/{id}/roles/{roleId}`.
    pub async fn delete_role(
        &self,
        caller: &Caller,
        server: Snowflake,
        role_id: Snowflake,
    ) -> Result<()> {
        let access = self.server_access(caller, server).await?;
        access.require(bits::MANAGE_ROLES)?;
        let role = access
            .roles
            .iter()
            .find(|r| r.id == role_id)
            .cloned()
            .ok_or(Error::NotFound(Entity::Role))?;
        if role.id == server {
            return Err(Error::Refused(Refusal::EveryoneRoleUndeletable));
        }
        Self::can_manage_position(&access, role.position)?;
        let audit = self.audit_record(
            server,
            caller.user_id,
            "role_delete",
            Some(role_id),
            None,
            Some(json!({"name": role.name})),
        );
        let mut uow = self.begin().await?;
        self.store.delete_role(uow.tx(), role_id).await?;
        uow.audit(&audit).await?;
        let ev = RoleDeleted {
            server_id: server,
            role_id,
        };
        uow.emit(Topic::Server(server), Event::RoleDelete(ev))?;
        uow.commit().await?;
        Ok(())
    }

    /// `GET /servers/{id}/members?limit=&after=`.
    pub async fn members(
        &self,
        caller: &Caller,
        server: Snowflake,
        limit: Option<u32>,
        after: Option<Snowflake>,
    ) -> Result<MemberList> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "range", "must be 1–1000"));
        }
        self.server_access(caller, server).await?;
        let list = self.store.members(server, after, limit).await?;
        Ok(MemberList {
            members: self.members_wire(&list).await?,
        })
    }

    /// `GET /servers/{id}/members/{userId}`.
    pub async fn member(
        &self,
        caller: &Caller,
        server: Snowflake,
        user: Snowflake,
    ) -> Result<Member> {
        self.server_access(caller, server).await?;
        let m = self
            .store
            .member(server, user)
            .await?
            .ok_or(Error::NotFound(Entity::Member))?;
        self.member_wire(&m).await
    }

    /// The member as `uow` left them, announced when it commits.
    async fn member_changed(
        &self,
        uow: &mut UnitOfWork<'_>,
        server: Snowflake,
        user: Snowflake,
    ) -> Result<Member> {
        let m = self
            .store
            .member_in(uow.tx(), server, user)
            .await?
            .ok_or(Error::NotFound(Entity::Member))?;
        let out = self.member_wire(&m).await?;
        let ev = MemberChanged {
            server_id: server,
            member: out.clone(),
        };
        uow.emit(Topic::Server(server), Event::ServerMemberUpdate(ev))?;
        Ok(out)
    }

    /// `PATCH /servers/{id}/members/{userId}`: nickname (CHANGE_NICKNAME for oneself,
    /// MANAGE_NICKNAMES for others) and the complete role set (MANAGE_ROLES).
    pub async fn update_member(
        &self,
        caller: &Caller,
        server: Snowflake,
        user: Snowflake,
        req: UpdateMemberRequest,
    ) -> Result<Member> {
        if let Some(Some(n)) = &req.nickname
            && !(1..=32).contains(&n.trim().chars().count())
        {
            return Err(Error::invalid(
                "nickname",
                "length",
                "must be 1–32 characters",
            ));
        }
        let access = self.server_access(caller, server).await?;
        let target = self
            .store
            .member(server, user)
            .await?
            .ok_or(Error::NotFound(Entity::Member))?;
        let myself = user == caller.user_id;
        let mut uow = self.begin().await?;
        if let Some(nick) = &req.nickname {
            if myself {
                if !access.is_owner() {
                    require_bits(access.base, bits::CHANGE_NICKNAME, Scope::Server(server))?;
                }
            } else {
                access.require(bits::MANAGE_NICKNAMES)?;
                Self::outranks(&access, &target)?;
            }
            let nick = nick.as_deref().map(str::trim);
            self.store
                .set_nickname(uow.tx(), server, user, nick)
                .await?;
            let audit = self.audit_record(
                server,
                caller.user_id,
                "member_update",
                Some(user),
                None,
                Some(json!({"nickname": nick})),
            );
            uow.audit(&audit).await?;
        }
        if let Some(wanted) = &req.roles {
            access.require(bits::MANAGE_ROLES)?;
            if !myself {
                Self::outranks(&access, &target)?;
            }
            let added: Vec<Snowflake> = wanted
                .iter()
                .copied()
                .filter(|r| !target.roles.contains(r))
                .collect();
            let removed: Vec<Snowflake> = target
                .roles
                .iter()
                .copied()
                .filter(|r| !wanted.contains(r))
                .collect();
            for r in added.iter().chain(removed.iter()) {
                let role = access
                    .roles
                    .iter()
                    .find(|x| x.id == *r && x.id != server)
                    .ok_or(Error::NotFound(Entity::Role))?;
                Self::can_manage_position(&access, role.position)?;
            }
            for r in &added {
                self.store
                    .add_member_role(uow.tx(), server, user, *r)
                    .await?;
            }
            for r in &removed {
                self.store
                    .remove_member_role(uow.tx(), server, user, *r)
                    .await?;
            }
            let audit = self.audit_record(
                server,
                caller.user_id,
                "member_role_update",
                Some(user),
                None,
                Some(json!({"added": added, "removed": removed})),
            );
            uow.audit(&audit).await?;
        }
        let out = self.member_changed(&mut uow, server, user).await?;
        uow.commit().await?;
        Ok(out)
    }

    /// `PUT` (`add = true`) or `DELETE` `/servers/{id}/members/{userId}/roles/{roleId}`.
    pub async fn set_member_role(
        &self,
        caller: &Caller,
        server: Snowflake,
        user: Snowflake,
        role_id: Snowflake,
        add: bool,
    ) -> Result<()> {
        let access = self.server_access(caller, server).await?;
        access.require(bits::MANAGE_ROLES)?;
        let role = access
            .roles
            .iter()
            .find(|r| r.id == role_id && r.id != server)
            .cloned()
            .ok_or(Error::NotFound(Entity::Role))?;
        let target = self
            .store
            .member(server, user)
            .await?
            .ok_or(Error::NotFound(Entity::Member))?;
        Self::can_manage_position(&access, role.position)?;
        if user != caller.user_id {
            Self::outranks(&access, &target)?;
        }
        let mut uow = self.begin().await?;
        let changed = if add {
            self.store
                .add_member_role(uow.tx(), server, user, role_id)
                .await?
        } else {
            self.store
                .remove_member_role(uow.tx(), server, user, role_id)
                .await?
        };
        if changed {
            let key = if add { "added" } else { "removed" };
            let audit = self.audit_record(
                server,
                caller.user_id,
                "member_role_update",
                Some(user),
                None,
                Some(json!({key: [role_id]})),
            );
            uow.audit(&audit).await?;
            self.member_changed(&mut uow, server, user).await?;
        }
        uow.commit().await?;
        Ok(())
    }

    /// Announces, when `uow` commits, that `user` is no longer in `server`.
    fn member_left(uow: &mut UnitOfWork<'_>, server: Snowflake, user: Snowflake) -> Result<()> {
        let removed = MemberRemoved {
            server_id: server,
            user_id: user,
        };
        uow.emit(Topic::Server(server), Event::ServerMemberRemove(removed))?;
        let gone = ServerDeleted { id: server };
        uow.emit(Topic::User(user), Event::ServerDelete(gone))
    }

    /// `DELETE /servers/{id}/members/@me`: leave; the owner must transfer the server first.
    pub async fn leave_server(&self, caller: &Caller, server: Snowflake) -> Result<()> {
        let access = self.server_access(caller, server).await?;
        if access.is_owner() {
            return Err(Error::Refused(Refusal::OwnerCannotLeave));
        }
        let mut uow = self.begin().await?;
        self.store
            .remove_member(uow.tx(), server, caller.user_id)
            .await?;
        Self::member_left(&mut uow, server, caller.user_id)?;
        uow.commit().await
    }

    /// `POST /servers/{id}/members/{userId}/kick` (KICK_MEMBERS, hierarchy).
    pub async fn kick(
        &self,
        caller: &Caller,
        server: Snowflake,
        user: Snowflake,
        reason: Option<String>,
    ) -> Result<()> {
        if let Some(r) = &reason {
            validate::max_chars("reason", r, 512).map_err(|f| Error::Validation(vec![f]))?;
        }
        let access = self.server_access(caller, server).await?;
        access.require(bits::KICK_MEMBERS)?;
        if user == caller.user_id {
            return Err(Error::Refused(Refusal::KickSelf));
        }
        let target = self
            .store
            .member(server, user)
            .await?
            .ok_or(Error::NotFound(Entity::Member))?;
        Self::outranks(&access, &target)?;
        let audit = self.audit_record(
            server,
            caller.user_id,
            "member_kick",
            Some(user),
            reason.as_deref(),
            None,
        );
        let mut uow = self.begin().await?;
        // The removal and its audit row are one change: both or neither.
        if self.store.remove_member(uow.tx(), server, user).await? {
            uow.audit(&audit).await?;
        }
        Self::member_left(&mut uow, server, user)?;
        uow.commit().await
    }

    /// `POST /servers/{id}/bans` (BAN_MEMBERS, hierarchy when the target is a member).
    pub async fn ban(&self, caller: &Caller, server: Snowflake, req: BanRequest) -> Result<()> {
        let days = req.delete_message_days.unwrap_or(0);
        let mut v = Violations::default();
        if !(0..=7).contains(&days) {
            v.push("deleteMessageDays", "range", "must be 0–7");
        }
        if let Some(r) = &req.reason {
            v.check(validate::max_chars("reason", r, 512));
        }
        v.finish()?;
        let access = self.server_access(caller, server).await?;
        access.require(bits::BAN_MEMBERS)?;
        if req.user_id == caller.user_id {
            return Err(Error::Refused(Refusal::BanSelf));
        }
        self.user(req.user_id).await?;
        if req.user_id == access.server.owner_id {
            return Err(Error::Denied(Denial::TargetIsOwner));
        }
        if let Some(target) = self.store.member(server, req.user_id).await? {
            Self::outranks(&access, &target)?;
        }
        let now = self.clock.now();
        let since = (days > 0).then(|| now.plus_millis(-days * 86_400_000));
        let audit = self.audit_record(
            server,
            caller.user_id,
            "member_ban_add",
            Some(req.user_id),
            req.reason.as_deref(),
            Some(json!({"deleteMessageDays": days})),
        );
        let mut uow = self.begin().await?;
        let was_member = self
            .store
            .ban(
                uow.tx(),
                server,
                req.user_id,
                req.reason.as_deref(),
                caller.user_id,
                since,
                now,
            )
            .await?;
        uow.audit(&audit).await?;
        if was_member {
            Self::member_left(&mut uow, server, req.user_id)?;
        }
        uow.commit().await
    }

    /// `DELETE /servers/{id}/bans/{userId}` (BAN_MEMBERS).
    pub async fn unban(&self, caller: &Caller, server: Snowflake, user: Snowflake) -> Result<()> {
        let access = self.server_access(caller, server).await?;
        access.require(bits::BAN_MEMBERS)?;
        let mut uow = self.begin().await?;
        if !self.store.unban(uow.tx(), server, user).await? {
            return Err(Error::NotFound(Entity::Ban));
        }
        let audit = self.audit_record(
            server,
            caller.user_id,
            "member_ban_remove",
            Some(user),
            None,
            None,
        );
        uow.audit(&audit).await?;
        uow.commit().await
    }

    /// `GET /servers/{id}/bans` (BAN_MEMBERS).
    pub async fn bans(&self, caller: &Caller, server: Snowflake) -> Result<BanList> {
        let access = self.server_access(caller, server).await?;
        access.require(bits::BAN_MEMBERS)?;
        let bans = self.store.bans(server).await?;
        let ids: Vec<Snowflake> = bans.iter().map(|b| b.user_id).collect();
        let users = self.users_by_id(&ids).await?;
        Ok(BanList {
            bans: bans
                .iter()
                .filter_map(|b| {
                    users.get(&b.user_id).map(|u| Ban {
                        user: MemberUser {
                            id: u.id,
                            username: u.username.clone(),
                            avatar: u.avatar.as_deref().map(Self::cdn_url),
                        },
                        reason: b.reason.clone(),
                        created_at: b.created_at,
                    })
                })
                .collect(),
        })
    }

    fn invite_wire(i: &InviteRecord, s: &xcord_store::ServerRecord) -> Invite {
        Invite {
            code: i.code.clone(),
            server_id: i.server_id,
            channel_id: i.channel_id,
            inviter_id: i.inviter_id,
            max_age_seconds: i.max_age_seconds,
            max_uses: i.max_uses,
            uses: i.uses,
            expires_at: i.expires_at,
            created_at: i.created_at,
            server: InviteServer {
                id: s.id,
                name: s.name.clone(),
                icon: s.icon.clone(),
                description: s.description.clone(),
                member_count: s.member_count,
            },
        }
    }

    /// `POST /servers/{id}/invites` (CREATE_INVITE in the target channel).
    pub async fn create_invite(
        &self,
        caller: &Caller,
        server: Snowflake,
        req: CreateInviteRequest,
    ) -> Result<Invite> {
        let max_age = req.max_age_seconds.unwrap_or(86_400);
        let max_uses = req.max_uses.unwrap_or(0);
        let mut v = Violations::default();
        if !(0..=604_800).contains(&max_age) {
            v.push(
                "maxAgeSeconds",
                "range",
                "must be 0 (never) to 604800 (7 days)",
            );
        }
        if !(0..=100).contains(&max_uses) {
            v.push("maxUses", "range", "must be 0 (unlimited) to 100");
        }
        v.finish()?;
        let access = self.server_access(caller, server).await?;
        let channels = self.store.server_channels(server).await?;
        let channel = match req.channel_id {
            Some(id) => channels
                .iter()
                .find(|c| c.id == id)
                .ok_or(Error::NotFound(Entity::Channel))?,
            None => channels
                .iter()
                .find(|c| c.kind == ChannelKind::Text)
                .or(channels.first())
                .ok_or(Error::NotFound(Entity::Channel))?,
        };
        let ow = self.store.overwrites(channel.id).await?;
        let perms = access.in_channel(channel, &ow);
        if perms & bits::VIEW_CHANNELS == 0 {
            return Err(Error::NotFound(Entity::Channel));
        }
        require_bits(perms, bits::CREATE_INVITE, Scope::Channel(channel.id))?;
        let now = self.clock.now();
        let mut invite = InviteRecord {
            code: String::new(),
            server_id: server,
            channel_id: Some(channel.id),
            inviter_id: Some(caller.user_id),
            max_age_seconds: max_age,
            max_uses,
            uses: 0,
            expires_at: (max_age > 0).then(|| now.plus_millis(max_age * 1000)),
            created_at: now,
        };
        // Eight characters from 56 leave ~10^14 codes; a clash is retried, not reported.
        for _ in 0..5 {
            invite.code = (0..8)
                .map(|_| INVITE_ALPHABET[rand::random_range(0..INVITE_ALPHABET.len())] as char)
                .collect();
            let mut uow = self.begin().await?;
            match self.store.create_invite(uow.tx(), &invite).await {
                Ok(()) => {
                    let audit = self.audit_record(server, caller.user_id, "invite_create", None, None, Some(json!({"code": invite.code, "maxAgeSeconds": max_age, "maxUses": max_uses})));
                    uow.audit(&audit).await?;
                    uow.commit().await?;
                    return Ok(Self::invite_wire(&invite, &access.server));
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal(anyhow::anyhow!(
            "could not find a free invite code"
        )))
    }

    /// `GET /servers/{id}/invites` (MANAGE_SERVER).
    pub async fn invites(&self, caller: &Caller, server: Snowflake) -> Result<InviteList> {
        let access = self.server_access(caller, server).await?;
        access.require(bits::MANAGE_SERVER)?;
        let list = self.store.invites(server).await?;
        Ok(InviteList {
            invites: list
                .iter()
                .map(|i| Self::invite_wire(i, &access.server))
                .collect(),
        })
    }

    /// The live invite (or vanity code) `code` names, with its server.
    async fn resolve_invite(
        &self,
        code: &str,
    ) -> Result<(InviteRecord, xcord_store::ServerRecord)> {
        let now = self.clock.now();
        if let Some(i) = self.store.invite(code).await? {
            let live =
                i.expires_at.is_none_or(|t| t > now) && (i.max_uses == 0 || i.uses < i.max_uses);
            if live && let Some(s) = self.store.server(i.server_id).await? {
                return Ok((i, s));
            }
            return Err(Error::NotFound(Entity::Invite));
        }
        let s = self
            .store
            .server_by_vanity(code)
            .await?
            .ok_or(Error::NotFound(Entity::Invite))?;
        let vanity = InviteRecord {
            code: s.vanity_url.clone().unwrap_or_default(),
            server_id: s.id,
            channel_id: None,
            inviter_id: None,
            max_age_seconds: 0,
            max_uses: 0,
            uses: 0,
            expires_at: None,
            created_at: s.created_at,
        };
        Ok((vanity, s))
    }

    /// `GET /invites/{code}`: a preview, without joining.
    pub async fn preview_invite(&self, code: &str) -> Result<Invite> {
        let (i, s) = self.resolve_invite(code).await?;
        Ok(Self::invite_wire(&i, &s))
    }

    /// `POST /invites/{code}`: join the server. Banned users are refused; joining a server
    /// one is already in uses nothing up.
    pub async fn accept_invite(&self, caller: &Caller, code: &str) -> Result<Server> {
        let (invite, server) = self.resolve_invite(code).await?;
        if self
            .store
            .ban_of(server.id, caller.user_id)
            .await?
            .is_some()
        {
            return Err(Error::Denied(Denial::Banned));
        }
        if self
            .store
            .member(server.id, caller.user_id)
            .await?
            .is_none()
        {
            let is_vanity = server
                .vanity_url
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case(code))
                && invite.inviter_id.is_none();
            let mut uow = self.begin().await?;
            if !is_vanity
                && !self
                    .store
                    .use_invite(uow.tx(), &invite.code, self.clock.now())
                    .await?
            {
                // Used up or expired between the look-up and now.
                return Err(Error::NotFound(Entity::Invite));
            }
            self.join_server(&mut uow, server.id, caller.user_id)
                .await?;
            uow.commit().await?;
        }
        self.get_server(caller, server.id).await
    }

    /// Adds a member in `uow`, and everyone is told when it commits.
    pub(crate) async fn join_server(
        &self,
        uow: &mut UnitOfWork<'_>,
        server: Snowflake,
        user: Snowflake,
    ) -> Result<()> {
        if self
            .store
            .add_member(uow.tx(), server, user, self.clock.now())
            .await?
        {
            let m = self
                .store
                .member_in(uow.tx(), server, user)
                .await?
                .ok_or(Error::NotFound(Entity::Member))?;
            let out = self.member_wire(&m).await?;
            let ev = MemberChanged {
                server_id: server,
                member: out,
            };
            uow.emit(Topic::Server(server), Event::ServerMemberAdd(ev))?;
            // The joining user's sessions get the server as they see it, as on creation
            // (read before the commit: a member without roles sees what `@everyone` sees).
            if let Some(snap) = self.server_snapshot(server).await? {
                uow.emit(Topic::User(user), Event::ServerCreate(snap.view_for(user)))?;
            }
        }
        Ok(())
    }

    /// `DELETE /invites/{code}`: its creator or MANAGE_SERVER.
    pub async fn delete_invite(&self, caller: &Caller, code: &str) -> Result<()> {
        let invite = self
            .store
            .invite(code)
            .await?
            .ok_or(Error::NotFound(Entity::Invite))?;
        let access = self
            .server_access(caller, invite.server_id)
            .await
            .map_err(|_| Error::NotFound(Entity::Invite))?;
        if invite.inviter_id != Some(caller.user_id) {
            access.require(bits::MANAGE_SERVER)?;
        }
        let mut uow = self.begin().await?;
        self.store.delete_invite(uow.tx(), code).await?;
        let audit = self.audit_record(
            invite.server_id,
            caller.user_id,
            "invite_delete",
            None,
            None,
            Some(json!({"code": code})),
        );
        uow.audit(&audit).await?;
        uow.commit().await
    }

    /// `GET /servers/{id}/audit-log` (VIEW_AUDIT_LOG).
    pub async fn audit_log(
        &self,
        caller: &Caller,
        server: Snowflake,
        q: xcord_types::rest::servers::AuditQuery,
    ) -> Result<AuditLog> {
        let limit = q.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(Error::invalid("limit", "range", "must be 1–100"));
        }
        let access = self.server_access(caller, server).await?;
        access.require(bits::VIEW_AUDIT_LOG)?;
        let rows = self
            .store
            .audit_log(server, q.before, q.action.as_deref(), q.actor_id, limit)
            .await?;
        Ok(AuditLog {
            entries: rows
                .into_iter()
                .map(|r| AuditEntry {
                    id: r.id,
                    action: r.action,
                    actor_id: r.actor_id,
                    target_id: r.target_id,
                    reason: r.reason,
                    changes: r.changes.and_then(|c| serde_json::from_str(&c).ok()),
                    created_at: r.created_at,
                })
                .collect(),
        })
    }

    /// Joins a new user to the configured default server, if there is one.
    pub(crate) async fn join_default_server(&self, user: Snowflake) {
        let Some(server) = self.settings.default_server else {
            return;
        };
        match self.store.server(server).await {
            Ok(Some(_)) => {
                let joined = async {
                    let mut uow = self.begin().await?;
                    self.join_server(&mut uow, server, user).await?;
                    uow.commit().await
                };
                if let Err(e) = joined.await {
                    tracing::warn!(error = %e, "could not join the default server");
                }
            }
            Ok(None) => tracing::warn!(%server, "the configured default server does not exist"),
            Err(e) => tracing::warn!(error = %e, "could not look up the default server"),
        }
    }
}
