//! Moderation: kick, ban, unban, the ban list and the audit log.

use serde_json::json;
use xcord_permissions::bits;
use xcord_types::Snowflake;
use xcord_types::rest::servers::{AuditEntry, AuditLog, Ban, BanList, BanRequest, MemberUser};

use crate::error::{Denial, Entity, Refusal};
use crate::validate::{self, Violations};
use crate::{Caller, Core, Error, Result};

impl Core {
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
}
