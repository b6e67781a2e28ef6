//! Membership: list, get and update members, give and take roles, leave, join (also the
//! default server).

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_store::MemberRecord;
use xcord_types::Snowflake;
use xcord_types::events::{Event, MemberChanged, MemberRemoved, ServerDeleted};
use xcord_types::rest::servers::{Member, MemberList, MemberUser, UpdateMemberRequest};

use crate::error::{Entity, Refusal, Scope};
use crate::servers::require_bits;
use crate::unit_of_work::UnitOfWork;
use crate::{Caller, Core, Error, Result};

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
        let ev = self.member_in(uow, server, user).await?;
        let out = ev.member.clone();
        uow.emit(Topic::Server(server), Event::ServerMemberUpdate(ev))?;
        Ok(out)
    }

    /// The member as `uow` sees them, in the form their events carry.
    async fn member_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        server: Snowflake,
        user: Snowflake,
    ) -> Result<MemberChanged> {
        let m = self
            .store
            .member_in(uow.tx(), server, user)
            .await?
            .ok_or(Error::NotFound(Entity::Member))?;
        Ok(MemberChanged {
            server_id: server,
            member: self.member_wire(&m).await?,
        })
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
        // Voice moderation needs its permission only, not a higher role (as in Discord).
        if req.mute.is_some() || req.deaf.is_some() || req.channel_id.is_some() {
            self.moderate_voice(caller, &access, user, req.mute, req.deaf, req.channel_id)
                .await?;
            if req.nickname.is_none() && req.roles.is_none() {
                return self.member_wire(&target).await;
            }
        }
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
    pub(super) fn member_left(
        uow: &mut UnitOfWork<'_>,
        server: Snowflake,
        user: Snowflake,
    ) -> Result<()> {
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
            let ev = self.member_in(uow, server, user).await?;
            uow.emit(Topic::Server(server), Event::ServerMemberAdd(ev))?;
            // The joining user's sessions get the server as they see it, as on creation
            // (read before the commit: a member without roles sees what `@everyone` sees).
            if let Some(snap) = self.server_snapshot(server).await? {
                uow.emit(Topic::User(user), Event::ServerCreate(snap.view_for(user)))?;
            }
        }
        Ok(())
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
