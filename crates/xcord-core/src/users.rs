//! Users: own profile and settings, public profiles, search, status and presence, E2E keys,
//! avatars and banners.

use xcord_bus::Topic;
use xcord_store::{ProfilePatch, RelationshipType, UserRecord};
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::rest::users::{
    OnlineCount, OnlineList, OnlineUser, Presence, PublicKey, PublicUser, SelfUser, Settings,
    SettingsPatch, Status, StatusRequest, UpdateSelfRequest, UserList,
};

use crate::error::{Denial, Entity};
use crate::media::{self, MAX_PROFILE_IMAGE_BYTES};
use crate::password::{hash_password, verify_password};
use crate::validate::{self, Violations};
use crate::{Caller, Core, Error, Result};

/// The settings stored for `u`: the seed-000 defaults under whatever was saved.
pub fn settings_of(u: &UserRecord) -> Settings {
    // Unknown or partial stored documents fall back field by field to the defaults.
    let mut merged = serde_json::to_value(Settings::default()).unwrap_or_default();
    if let Ok(stored) = serde_json::from_str::<serde_json::Value>(&u.settings) {
        merge_json(&mut merged, stored);
    }
    serde_json::from_value(merged).unwrap_or_default()
}

fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A user of [`Core::user_directory`].
#[derive(Debug, Clone)]
pub struct DirectoryEntry {
    /// The public profile.
    pub user: PublicUser,
    /// The presence others see.
    pub status: Status,
    /// The status text others see.
    pub custom_status: Option<String>,
}

impl Core {
    /// `GET /users/@me`.
    pub async fn me(&self, caller: &Caller) -> Result<SelfUser> {
        let views = &self.caches.self_views;
        if let Some(me) = views.get(&caller.user_id) {
            return Ok(me);
        }
        let epoch = views.epoch();
        let me = Self::self_user(&self.user(caller.user_id).await?);
        views.put(epoch, caller.user_id, me.clone());
        Ok(me)
    }

    /// `GET /users/{id}`: the public profile.
    pub async fn public_profile(&self, id: Snowflake) -> Result<PublicUser> {
        Ok(Self::public_user(&self.user(id).await?))
    }

    /// `PATCH /users/@me` (and `PATCH /users/{id}` for oneself).
    pub async fn update_me(&self, caller: &Caller, req: UpdateSelfRequest) -> Result<SelfUser> {
        let user = self.user(caller.user_id).await?;
        let mut v = Violations::default();
        let mut patch = ProfilePatch::default();
        if let Some(name) = &req.username {
            patch.username = v.check(validate::username("username", name));
        }
        if let Some(dn) = &req.display_name {
            if let Some(s) = dn {
                if s.trim().is_empty() {
                    v.push("displayName", "length", "must not be blank");
                }
                v.check(validate::max_chars("displayName", s, 32));
            }
            patch.display_name = Some(dn.clone());
        }
        if let Some(bio) = &req.bio {
            if let Some(s) = bio {
                v.check(validate::max_chars("bio", s, 190));
            }
            patch.bio = Some(bio.clone());
        }
        if let Some(cs) = &req.custom_status {
            if let Some(s) = cs {
                v.check(validate::max_chars("customStatus", s, 128));
            }
            patch.custom_status = Some(cs.clone());
        }
        let new_email = req
            .email
            .as_deref()
            .and_then(|e| v.check(validate::email("email", e)));
        if let Some(p) = &req.new_password {
            v.check(validate::password("newPassword", p));
        }
        let changes_credentials = req.email.is_some() || req.new_password.is_some();
        if user.is_guest
            && changes_credentials
            && (req.email.is_none() || req.new_password.is_none())
        {
            v.push(
                "email",
                "required",
                "a guest account is upgraded with both `email` and `newPassword`",
            );
        }
        if !user.is_guest && changes_credentials && req.current_password.is_none() {
            v.push(
                "currentPassword",
                "required",
                "changing the e-mail or password needs the current password",
            );
        }
        v.finish()?;

        if !user.is_guest && changes_credentials {
            let ok = match (&user.password_hash, &req.current_password) {
                (Some(h), Some(p)) => verify_password(h.clone(), p.clone())
                    .await
                    .map_err(Error::Internal)?,
                _ => false,
            };
            if !ok {
                return Err(Error::Denied(Denial::WrongPassword));
            }
        }
        let email_changed = new_email
            .as_ref()
            .is_some_and(|e| user.email.as_ref() != Some(e));
        if email_changed {
            patch.email = new_email;
        }
        if let Some(p) = req.new_password.clone() {
            patch.password_hash = Some(
                hash_password(self.settings.password_algorithm, p)
                    .await
                    .map_err(Error::Internal)?,
            );
        }
        patch.clear_guest = user.is_guest && changes_credentials;
        let mut uow = self.begin().await?;
        let updated = self
            .store
            .update_profile(uow.tx(), user.id, &patch, self.clock.now())
            .await
            .map_err(Self::conflict)?
            .ok_or(Error::NotFound(Entity::User))?;
        let out = Self::self_user(&updated);
        uow.emit(Topic::User(user.id), Event::UserUpdate(out.clone()))?;
        uow.commit().await?;
        if req.new_password.is_some() && !user.is_guest {
            // A changed password signs out every other device.
            self.revoke_sessions_except(user.id, Some(caller.session_id))
                .await?;
        }
        if email_changed {
            self.send_verification(&updated).await?;
        }
        Ok(out)
    }

    /// `GET /users/@me/settings`.
    pub async fn settings(&self, caller: &Caller) -> Result<Settings> {
        Ok(settings_of(&self.user(caller.user_id).await?))
    }

    /// `PATCH /users/@me/settings`: only the given fields change.
    pub async fn update_settings(&self, caller: &Caller, patch: SettingsPatch) -> Result<Settings> {
        let user = self.user(caller.user_id).await?;
        let mut s = settings_of(&user);
        if let Some(lang) = &patch.language {
            let ok = (2..=16).contains(&lang.len())
                && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(Error::invalid(
                    "language",
                    "pattern",
                    "must be a language tag such as `en` or `pt-BR`",
                ));
            }
            s.language = lang.clone();
        }
        if let Some(t) = patch.theme {
            s.theme = t;
        }
        if let Some(n) = patch.notifications {
            s.notifications.email = n.email.unwrap_or(s.notifications.email);
            s.notifications.push = n.push.unwrap_or(s.notifications.push);
            s.notifications.mention_only = n.mention_only.unwrap_or(s.notifications.mention_only);
        }
        if let Some(p) = patch.privacy {
            s.privacy.show_online_status =
                p.show_online_status.unwrap_or(s.privacy.show_online_status);
            s.privacy.allow_dms = p.allow_dms.unwrap_or(s.privacy.allow_dms);
        }
        let json = serde_json::to_string(&s).map_err(|e| Error::Internal(e.into()))?;
        self.store
            .set_settings(user.id, &json, self.clock.now())
            .await?;
        Ok(s)
    }

    /// The user directory of clients that list every account (SPEC §7's profiles): users
    /// in the order they joined (guests too when `with_guests`), `limit` after `offset`,
    /// with the total, each with the presence others may see. Only public fields (no
    /// e-mail).
    pub async fn user_directory(
        &self,
        offset: u64,
        limit: u32,
        with_guests: bool,
    ) -> Result<(Vec<DirectoryEntry>, i64)> {
        let mut v = Violations::default();
        if !(1..=1000).contains(&limit) {
            v.push("limit", "range", "must be 1–1000");
        }
        v.finish()?;
        let (users, total) = self.store.list_users(offset, limit, with_guests).await?;
        let mut out = Vec::with_capacity(users.len());
        for u in &users {
            let (status, custom_status) = self.visible_presence(u).await?;
            out.push(DirectoryEntry {
                user: Self::public_user(u),
                status,
                custom_status,
            });
        }
        Ok((out, total))
    }

    /// One user of the directory ([`Core::user_directory`]), by id.
    pub async fn directory_entry(&self, id: Snowflake) -> Result<DirectoryEntry> {
        let u = self.user(id).await?;
        let (status, custom_status) = self.visible_presence(&u).await?;
        Ok(DirectoryEntry {
            user: Self::public_user(&u),
            status,
            custom_status,
        })
    }

    /// `GET /users/search?q=&limit=`: users whose name starts with `q`, leaving out those who
    /// block the caller.
    pub async fn search_users(
        &self,
        caller: &Caller,
        q: Option<&str>,
        limit: Option<u32>,
    ) -> Result<UserList> {
        let q = q.map(str::trim).unwrap_or_default();
        let mut v = Violations::default();
        if q.is_empty() || q.chars().count() > 32 {
            v.push("q", "length", "must be 1–32 characters");
        }
        let limit = limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            v.push("limit", "range", "must be 1–100");
        }
        v.finish()?;
        // Names are ASCII; a query with anything else cannot match.
        if !q.is_ascii() {
            return Ok(UserList { users: Vec::new() });
        }
        let found = self.store.search_users(q, limit).await?;
        let mut users = Vec::with_capacity(found.len());
        for u in &found {
            if u.id != caller.user_id {
                let (theirs, _) = self.store.relationship_pair(u.id, caller.user_id).await?;
                if theirs == Some(RelationshipType::Blocked) {
                    continue;
                }
            }
            users.push(Self::summary(u));
        }
        Ok(UserList { users })
    }

    /// What others see of `user`: offline when not connected, invisible, or hiding their
    /// online status in their privacy settings.
    pub async fn visible_presence(&self, user: &UserRecord) -> Result<(Status, Option<String>)> {
        if !settings_of(user).privacy.show_online_status {
            return Ok((Status::Offline, None));
        }
        self.presence
            .visible_status(user.id)
            .await
            .map_err(Error::Unavailable)
    }

    /// Publishes `user`'s presence as others see it, to everyone who shares a server, a DM
    /// or a friendship with them (the gateway routes it).
    pub async fn publish_presence(&self, user: &UserRecord) -> Result<()> {
        let (status, custom_status) = self.visible_presence(user).await?;
        let presence = Presence {
            user_id: user.id,
            status,
            custom_status,
        };
        self.publish_ephemeral(Topic::User(user.id), Event::PresenceUpdate(presence))
            .await;
        Ok(())
    }

    /// `PUT /users/@me/status`.
    pub async fn set_status(&self, caller: &Caller, req: StatusRequest) -> Result<Presence> {
        if req.status == Status::Offline {
            return Err(Error::invalid(
                "status",
                "enum",
                "must be online, idle, dnd or invisible",
            ));
        }
        if let Some(Some(cs)) = &req.custom_status {
            validate::max_chars("customStatus", cs, 128).map_err(|f| Error::Validation(vec![f]))?;
        }
        let cs = req.custom_status.as_ref().map(|o| o.as_deref());
        self.store
            .set_status(caller.user_id, req.status.as_str(), cs, self.clock.now())
            .await?;
        self.presence
            .set_status(caller.user_id, req.status, req.custom_status.clone())
            .await
            .map_err(Error::Unavailable)?;
        let user = self.user(caller.user_id).await?;
        self.publish_presence(&user).await?;
        Ok(Presence {
            user_id: user.id,
            status: req.status,
            custom_status: user.custom_status,
        })
    }

    /// `GET /users/online/count`.
    pub async fn online_count(&self) -> Result<OnlineCount> {
        Ok(OnlineCount {
            online_user_count: self
                .presence
                .online_count()
                .await
                .map_err(Error::Unavailable)?,
            timestamp: self.clock.now(),
        })
    }

    /// `GET /users/online/list`: online users the caller shares a server, DM or friendship
    /// with, except those who hide their online status.
    pub async fn online_list(&self, caller: &Caller) -> Result<OnlineList> {
        let online: std::collections::HashSet<Snowflake> = self
            .presence
            .online_users()
            .await
            .map_err(Error::Unavailable)?
            .into_iter()
            .collect();
        if online.is_empty() {
            return Ok(OnlineList { users: Vec::new() });
        }
        let contacts: Vec<Snowflake> = self
            .store
            .contacts_of(caller.user_id)
            .await?
            .into_iter()
            .filter(|id| online.contains(id))
            .collect();
        let mut users = Vec::new();
        for u in self.store.users_by_ids(&contacts).await? {
            if !settings_of(&u).privacy.show_online_status {
                continue;
            }
            let (status, custom_status) = self.visible_presence(&u).await?;
            if status != Status::Offline {
                users.push(OnlineUser {
                    user: Self::summary(&u),
                    status,
                    custom_status,
                });
            }
        }
        users.sort_by(|a, b| {
            a.user
                .username
                .to_ascii_lowercase()
                .cmp(&b.user.username.to_ascii_lowercase())
        });
        Ok(OnlineList { users })
    }

    /// `GET /users/{id}/presence`: only for oneself and users one shares something with.
    pub async fn presence_of(&self, caller: &Caller, id: Snowflake) -> Result<Presence> {
        let user = self.user(id).await?;
        if id != caller.user_id && !self.store.are_contacts(caller.user_id, id).await? {
            return Err(Error::Denied(Denial::NoSharedContext));
        }
        let (status, custom_status) = if id == caller.user_id {
            self.presence
                .visible_status(id)
                .await
                .map_err(Error::Unavailable)?
        } else {
            self.visible_presence(&user).await?
        };
        Ok(Presence {
            user_id: id,
            status,
            custom_status,
        })
    }

    /// `PUT /users/@me/keys`.
    pub async fn set_public_key(&self, caller: &Caller, key: &str) -> Result<PublicKey> {
        if key.trim().is_empty() || key.len() > 8192 {
            return Err(Error::invalid(
                "publicKey",
                "length",
                "must be 1–8192 characters",
            ));
        }
        self.store
            .set_public_key(caller.user_id, Some(key), self.clock.now())
            .await?;
        Ok(PublicKey {
            user_id: caller.user_id,
            public_key: Some(key.to_owned()),
        })
    }

    /// `GET /users/{id}/keys`.
    pub async fn public_key(&self, id: Snowflake) -> Result<PublicKey> {
        let u = self.user(id).await?;
        Ok(PublicKey {
            user_id: id,
            public_key: u.public_key,
        })
    }

    /// `POST /users/@me/avatar` and `/banner`: checks, stores and links the image; returns its URL.
    pub async fn set_profile_image(
        &self,
        caller: &Caller,
        banner: bool,
        bytes: Vec<u8>,
    ) -> Result<String> {
        let img = media::check_image(bytes, MAX_PROFILE_IMAGE_BYTES).await?;
        let usage = if banner {
            media::ImageUse::Banner
        } else {
            media::ImageUse::Avatar
        };
        let key = media::store_image(self.files.as_ref(), usage, caller.user_id, &img)
            .await
            .map_err(Error::Internal)?;
        let mut uow = self.begin().await?;
        self.store
            .set_image(
                uow.tx(),
                caller.user_id,
                banner,
                Some(&key),
                self.clock.now(),
            )
            .await?;
        self.user_changed(&mut uow, caller.user_id).await?;
        uow.commit().await?;
        Ok(Self::cdn_url(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcord_types::rest::users::{AllowDms, Theme};

    fn record(settings: &str) -> UserRecord {
        UserRecord {
            id: Snowflake::from_i64(1),
            username: "u".into(),
            discriminator: "0001".into(),
            display_name: None,
            email: None,
            email_verified: false,
            password_hash: None,
            date_of_birth: None,
            avatar: None,
            banner: None,
            bio: None,
            custom_status: None,
            status: "online".into(),
            is_guest: false,
            mfa_enabled: false,
            mfa_secret: None,
            public_key: None,
            settings: settings.into(),
            created_at: xcord_types::Timestamp::from_millis(0),
            updated_at: xcord_types::Timestamp::from_millis(0),
        }
    }

    #[test]
    fn stored_settings_merge_over_defaults() {
        assert_eq!(settings_of(&record("{}")), Settings::default());
        let s = settings_of(&record(
            r#"{"theme":"light","privacy":{"allowDMs":"friends"}}"#,
        ));
        assert_eq!(s.theme, Theme::Light);
        assert_eq!(s.privacy.allow_dms, AllowDms::Friends);
        assert!(
            s.privacy.show_online_status,
            "untouched fields keep their defaults"
        );
        assert_eq!(settings_of(&record("not json")), Settings::default());
    }
}
