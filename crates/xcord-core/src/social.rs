//! Friends, blocks and direct-message channels, with `allowDMs` and blocks enforced.

use std::collections::HashMap;

use xcord_bus::Topic;
use xcord_store::{PrivateChannel, RelationshipType, UserRecord};
use xcord_types::Snowflake;
use xcord_types::events::{Event, RelationshipChanged};
use xcord_types::rest::channels::{Channel, ChannelList, CreateDmRequest};
use xcord_types::rest::users::{
    AllowDms, Relationship, RelationshipAction, RelationshipKind, RelationshipList,
};

use crate::error::{Denial, Entity, SelfAction};
use crate::users::settings_of;
use crate::{Caller, Core, Error, Result};

fn wire_kind(k: RelationshipType) -> RelationshipKind {
    match k {
        RelationshipType::Friend => RelationshipKind::Friend,
        RelationshipType::PendingOutgoing => RelationshipKind::PendingOutgoing,
        RelationshipType::PendingIncoming => RelationshipKind::PendingIncoming,
        RelationshipType::Blocked => RelationshipKind::Blocked,
    }
}

impl Core {
    /// The users with these ids, by id, in one query.
    pub(crate) async fn users_by_id(
        &self,
        ids: &[Snowflake],
    ) -> Result<HashMap<Snowflake, UserRecord>> {
        Ok(self
            .store
            .users_by_ids(ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect())
    }

    /// `GET /users/@me/relationships`.
    pub async fn relationships(&self, caller: &Caller) -> Result<RelationshipList> {
        let rows = self.store.relationships_of(caller.user_id).await?;
        let ids: Vec<Snowflake> = rows.iter().map(|r| r.other_user_id).collect();
        let users = self.users_by_id(&ids).await?;
        Ok(RelationshipList {
            relationships: rows
                .into_iter()
                .filter_map(|r| {
                    users.get(&r.other_user_id).map(|u| Relationship {
                        user_id: r.other_user_id,
                        kind: wire_kind(r.kind),
                        user: Self::summary(u),
                        since: r.created_at,
                    })
                })
                .collect(),
        })
    }

    /// `PUT /users/@me/relationships/{userId}`: send or accept a friend request, or block.
    pub async fn put_relationship(
        &self,
        caller: &Caller,
        other: Snowflake,
        action: RelationshipAction,
    ) -> Result<()> {
        use RelationshipType::{Blocked, Friend, PendingIncoming, PendingOutgoing};
        let me = caller.user_id;
        if other == me {
            return Err(Error::invalid(
                "userId",
                "self",
                "you cannot have a relationship with yourself",
            ));
        }
        self.user(other).await?;
        let (mine, theirs) = self.store.relationship_pair(me, other).await?;
        let next = match action {
            // A block removes any friendship or request, and leaves their block of me alone.
            RelationshipAction::Block => (Some(Blocked), theirs.filter(|t| *t == Blocked)),
            RelationshipAction::Friend => match (mine, theirs) {
                (_, Some(Blocked)) | (Some(Blocked), _) => {
                    return Err(Error::Denied(Denial::FriendRequestBlocked));
                }
                (Some(Friend), _) | (Some(PendingOutgoing), _) => return Ok(()),
                (Some(PendingIncoming), _) => (Some(Friend), Some(Friend)),
                _ => (Some(PendingOutgoing), Some(PendingIncoming)),
            },
        };
        self.write_relationship(me, other, (mine, theirs), next)
            .await
    }

    /// `DELETE /users/@me/relationships/{userId}`: unfriend, cancel or decline, or unblock.
    pub async fn delete_relationship(&self, caller: &Caller, other: Snowflake) -> Result<()> {
        use RelationshipType::Blocked;
        let me = caller.user_id;
        let (mine, theirs) = self.store.relationship_pair(me, other).await?;
        let next = match mine {
            None => return Err(Error::NotFound(Entity::Relationship)),
            // Unblocking leaves their side as it is (they may block me).
            Some(Blocked) => (None, theirs),
            // Friendship and requests are two-sided; removing one side removes both.
            Some(_) => (None, theirs.filter(|t| *t == Blocked)),
        };
        self.write_relationship(me, other, (mine, theirs), next)
            .await
    }

    async fn write_relationship(
        &self,
        me: Snowflake,
        other: Snowflake,
        before: (Option<RelationshipType>, Option<RelationshipType>),
        after: (Option<RelationshipType>, Option<RelationshipType>),
    ) -> Result<()> {
        if before == after {
            return Ok(());
        }
        let mut uow = self.begin().await?;
        self.store
            .set_relationship_pair(uow.tx(), me, other, after.0, after.1, self.clock.now())
            .await?;
        if before.0 != after.0 {
            let ev = RelationshipChanged {
                user_id: other,
                kind: after.0.map(wire_kind),
            };
            uow.emit(Topic::User(me), Event::RelationshipUpdate(ev))?;
        }
        if before.1 != after.1 {
            let ev = RelationshipChanged {
                user_id: me,
                kind: after.1.map(wire_kind),
            };
            uow.emit(Topic::User(other), Event::RelationshipUpdate(ev))?;
        }
        uow.commit().await
    }

    /// The wire form of a private channel, with its members in short.
    pub async fn private_channel_view(&self, pc: &PrivateChannel) -> Result<Channel> {
        let users = self.users_by_id(&pc.recipients).await?;
        Ok(Self::channel_view(pc, &users))
    }

    fn channel_view(pc: &PrivateChannel, users: &HashMap<Snowflake, UserRecord>) -> Channel {
        let recipients = pc
            .recipients
            .iter()
            .filter_map(|id| users.get(id))
            .map(Self::summary)
            .collect();
        crate::servers::channel_to_wire(&pc.channel, Some(recipients), None)
    }

    /// `GET /users/{id}/dm-channels` (`id` must be the caller).
    pub async fn dm_channels(&self, caller: &Caller, path_user: Snowflake) -> Result<ChannelList> {
        if path_user != caller.user_id {
            return Err(Error::Denied(Denial::NotSelf(SelfAction::ListDmChannels)));
        }
        let list = self.store.private_channels_of(caller.user_id).await?;
        let mut ids: Vec<Snowflake> = list
            .iter()
            .flat_map(|pc| pc.recipients.iter().copied())
            .collect();
        ids.sort();
        ids.dedup();
        let users = self.users_by_id(&ids).await?;
        Ok(ChannelList {
            channels: list
                .iter()
                .map(|pc| Self::channel_view(pc, &users))
                .collect(),
        })
    }

    /// Whether `from` may open a DM with `to`: no block either way, and `to`'s `allowDMs`.
    pub(crate) async fn check_dm_allowed(&self, from: Snowflake, to: Snowflake) -> Result<()> {
        let target = self.user(to).await?;
        let (mine, theirs) = self.store.relationship_pair(from, to).await?;
        if mine == Some(RelationshipType::Blocked) || theirs == Some(RelationshipType::Blocked) {
            return Err(Error::Denied(Denial::Blocked));
        }
        match settings_of(&target).privacy.allow_dms {
            AllowDms::Everyone => Ok(()),
            AllowDms::Friends if mine == Some(RelationshipType::Friend) => Ok(()),
            AllowDms::Friends => Err(Error::Denied(Denial::DmsFriendsOnly)),
            AllowDms::None => Err(Error::Denied(Denial::DmsClosed)),
        }
    }

    /// `POST /users/{id}/dm-channels`: create-or-get a 1:1 DM (`recipientId`), or create a
    /// group DM (`recipients`, 2–9 others). The flag is true when a channel was created.
    pub async fn create_dm(
        &self,
        caller: &Caller,
        path_user: Snowflake,
        req: CreateDmRequest,
    ) -> Result<(Channel, bool)> {
        if path_user != caller.user_id {
            return Err(Error::Denied(Denial::NotSelf(SelfAction::OpenDmChannel)));
        }
        let me = caller.user_id;
        let now = self.clock.now();
        let (pc, created, mut uow) = match (req.recipient_id, req.recipients) {
            (Some(other), None) => {
                if other == me {
                    return Err(Error::invalid(
                        "recipientId",
                        "self",
                        "you cannot open a DM with yourself",
                    ));
                }
                self.check_dm_allowed(me, other).await?;
                let mut uow = self.begin().await?;
                let (pc, created) = self
                    .store
                    .create_or_get_dm(uow.tx(), self.ids.next_id(), me, other, now)
                    .await?;
                (pc, created, uow)
            }
            (None, Some(mut others)) => {
                others.sort();
                others.dedup();
                others.retain(|id| *id != me);
                if !(2..=9).contains(&others.len()) {
                    return Err(Error::invalid(
                        "recipients",
                        "length",
                        "a group DM needs 2–9 other users",
                    ));
                }
                if let Some(name) = &req.name {
                    crate::validate::max_chars("name", name, 100)
                        .map_err(|f| Error::Validation(vec![f]))?;
                }
                for other in &others {
                    self.check_dm_allowed(me, *other).await?;
                }
                let mut members = vec![me];
                members.extend(others);
                let mut uow = self.begin().await?;
                let pc = self
                    .store
                    .create_group_dm(
                        uow.tx(),
                        self.ids.next_id(),
                        me,
                        &members,
                        req.name.as_deref(),
                        now,
                    )
                    .await?;
                (pc, true, uow)
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "recipients",
                    "exclusive",
                    "give either `recipientId` or `recipients`",
                ));
            }
            (None, None) => {
                return Err(Error::invalid(
                    "recipientId",
                    "required",
                    "give `recipientId` or `recipients`",
                ));
            }
        };
        let view = self.private_channel_view(&pc).await?;
        if created {
            for member in &pc.recipients {
                uow.emit(Topic::User(*member), Event::ChannelCreate(view.clone()))?;
            }
        }
        uow.commit().await?;
        Ok((view, created))
    }
}
