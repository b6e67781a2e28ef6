//! A server's life: create, list, get, update, delete.

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_store::{NewServer, ServerPatch, Versioned};
use xcord_types::Snowflake;
use xcord_types::events::{Event, ServerDeleted};
use xcord_types::rest::servers::{CreateServerRequest, Server, ServerList, UpdateServerRequest};

use super::access::{ServerAccess, stale_error};
use super::wire::{channel_to_wire, role_to_wire};
use crate::error::{Clash, Denial, Entity, OwnerAction};
use crate::validate::{self, Violations};
use crate::{Caller, Core, Error, Result};

impl Core {
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
        let roles = self.store.roles_in(uow.tx(), id).await?;
        let channels = self.store.server_channels_in(uow.tx(), id).await?;
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
}
