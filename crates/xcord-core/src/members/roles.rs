//! A server's roles: list, create, update, delete, and the hierarchy checks that guard them.

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_store::{MemberRecord, RolePatch, Versioned};
use xcord_types::Snowflake;
use xcord_types::events::{Event, RoleChanged, RoleDeleted};
use xcord_types::rest::servers::{Role, RoleList, RoleRequest};

use crate::error::{Denial, Entity, Refusal, Scope};
use crate::servers::{ServerAccess, require_bits, role_to_wire, stale_error};
use crate::validate::Violations;
use crate::{Caller, Core, Error, Result};

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
    /// Denied unless the caller outranks `target` (and `target` is not the owner).
    pub(super) fn outranks(access: &ServerAccess, target: &MemberRecord) -> Result<()> {
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
    pub(super) fn can_manage_position(access: &ServerAccess, position: i64) -> Result<()> {
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
}
