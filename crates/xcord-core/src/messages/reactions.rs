//! Reactions: add, remove, and who reacted.

use std::sync::Arc;

use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_types::Snowflake;
use xcord_types::events::{Event, ReactionChanged};
use xcord_types::rest::users::UserList;

use super::context::ChannelContext;
use crate::error::{Entity, Scope};
use crate::servers::require_bits;
use crate::{Caller, Core, Error, Result};

/// An emoji as a reaction key: a Unicode emoji or a custom `name:id`, ≤ 64 characters.
pub fn check_emoji(emoji: &str) -> Result<()> {
    let n = emoji.chars().count();
    if n == 0
        || n > 64
        || emoji
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#'))
    {
        return Err(Error::invalid(
            "emoji",
            "emoji",
            "must be an emoji or name:id, at most 64 characters",
        ));
    }
    Ok(())
}

impl Core {
    async fn reaction_target(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        message: Snowflake,
        emoji: &str,
    ) -> Result<Arc<ChannelContext>> {
        check_emoji(emoji)?;
        let ctx = self.channel_context(caller, channel_id).await?;
        Self::require_history(&ctx)?;
        self.store
            .message(channel_id, message)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        Ok(ctx)
    }

    /// Adds (or removes) `user`'s reaction in one unit, announced when it changed.
    async fn change_reaction(
        &self,
        ctx: &ChannelContext,
        added: bool,
        message: Snowflake,
        user: Snowflake,
        emoji: &str,
    ) -> Result<()> {
        let mut uow = self.begin().await?;
        let changed = if added {
            self.store
                .add_reaction(uow.tx(), message, emoji, user, self.clock.now())
                .await?
        } else {
            self.store
                .remove_reaction(uow.tx(), message, emoji, user)
                .await?
        };
        if !changed {
            return Ok(());
        }
        let ev = ReactionChanged {
            channel_id: ctx.channel.id,
            message_id: message,
            user_id: user,
            emoji: emoji.to_owned(),
            server_id: ctx.server_id,
        };
        let ev = if added {
            Event::MessageReactionAdd(ev)
        } else {
            Event::MessageReactionRemove(ev)
        };
        uow.emit(Topic::Channel(ctx.channel.id), ev)?;
        uow.commit().await
    }

    /// `PUT`/`POST …/reactions/{emoji}`: a new emoji needs ADD_REACTIONS; joining one does not.
    pub async fn add_reaction(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        message: Snowflake,
        emoji: &str,
    ) -> Result<()> {
        let ctx = self
            .reaction_target(caller, channel_id, message, emoji)
            .await?;
        if !self.store.reaction_exists(message, emoji).await? {
            require_bits(
                ctx.perms,
                bits::ADD_REACTIONS,
                Scope::Channel(ctx.channel.id),
            )?;
        }
        self.check_dm_block(&ctx, caller.user_id).await?;
        self.change_reaction(&ctx, true, message, caller.user_id, emoji)
            .await
    }

    /// `DELETE …/reactions/{emoji}` (one's own).
    pub async fn remove_reaction(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        message: Snowflake,
        emoji: &str,
    ) -> Result<()> {
        let ctx = self
            .reaction_target(caller, channel_id, message, emoji)
            .await?;
        self.change_reaction(&ctx, false, message, caller.user_id, emoji)
            .await
    }

    /// `GET …/reactions/{emoji}`: who reacted.
    pub async fn reaction_users(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        message: Snowflake,
        emoji: &str,
        after: Option<Snowflake>,
        limit: Option<u32>,
    ) -> Result<UserList> {
        let limit = limit.unwrap_or(25);
        if !(1..=100).contains(&limit) {
            return Err(Error::invalid("limit", "range", "must be 1–100"));
        }
        self.reaction_target(caller, channel_id, message, emoji)
            .await?;
        let ids = self
            .store
            .reaction_users(message, emoji, after, limit)
            .await?;
        let mut users = self.store.users_by_ids(&ids).await?;
        users.sort_by_key(|u| u.id);
        Ok(UserList {
            users: users.iter().map(Self::summary).collect(),
        })
    }
}
