//! Invites: create, list, preview, accept, delete.

use serde_json::json;
use xcord_permissions::bits;
use xcord_store::InviteRecord;
use xcord_types::Snowflake;
use xcord_types::rest::channels::ChannelKind;
use xcord_types::rest::servers::{CreateInviteRequest, Invite, InviteList, InviteServer, Server};

use crate::error::{Denial, Entity, Scope};
use crate::servers::require_bits;
use crate::validate::Violations;
use crate::{Caller, Core, Error, Result};

const INVITE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

impl Core {
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
}
