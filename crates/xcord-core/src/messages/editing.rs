//! Changing posted messages: edit, delete and bulk delete.

use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_store::Versioned;
use xcord_types::Snowflake;
use xcord_types::events::{Event, MessageDeleted};
use xcord_types::rest::messages::{BulkDeleteRequest, EditMessageRequest, Mentions, Message};

use super::context::ChannelContext;
use super::posting::mentions_document;
use crate::error::{Denial, DirectChannelAction, Entity, Scope};
use crate::servers::require_bits;
use crate::{Caller, Core, Error, Result};

impl Core {
    /// `PATCH /channels/{id}/messages/{messageId}`: the author only.
    pub async fn edit_message(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
        req: EditMessageRequest,
        if_match: Option<i64>,
    ) -> Result<Message> {
        let ctx = self.channel_context(caller, channel_id).await?;
        let m = self
            .store
            .message(channel_id, id)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        let max = if m.encrypted { 8192 } else { 2000 };
        let n = req.content.chars().count();
        if n == 0 || n > max || (!m.encrypted && req.content.trim().is_empty()) {
            return Err(Error::invalid(
                "content",
                "length",
                format!("must be 1–{max} characters"),
            ));
        }
        if m.author_id != caller.user_id {
            return Err(Error::Denied(Denial::NotAuthor));
        }
        let (mentions, notified) = if m.encrypted {
            (Mentions::default(), Vec::new())
        } else {
            self.resolve_mentions(&ctx, &req.content).await?
        };
        let mentions_json = mentions_document(&mentions)?;
        let mut uow = self.begin().await?;
        let edited = match self
            .store
            .edit_message(
                uow.tx(),
                &m,
                &req.content,
                &mentions_json,
                mentions.everyone,
                &notified,
                if_match,
                self.clock.now(),
            )
            .await?
        {
            Versioned::Updated(m) => m,
            Versioned::Stale => return Err(crate::servers::stale_error(Entity::Message, if_match)),
            Versioned::Missing => return Err(Error::NotFound(Entity::Message)),
        };
        let out = self.one_message_wire(&edited, caller.user_id, &ctx).await?;
        uow.emit(
            Topic::Channel(channel_id),
            Event::MessageUpdate(out.clone()),
        )?;
        uow.commit().await?;
        Ok(out)
    }

    /// Deletes `ids` of the context's channel in one unit; each deleted one is announced.
    async fn delete_and_announce(&self, ctx: &ChannelContext, ids: &[Snowflake]) -> Result<()> {
        let mut uow = self.begin().await?;
        let gone = self
            .store
            .delete_messages(uow.tx(), ctx.channel.id, ids, self.clock.now())
            .await?;
        for id in gone {
            let ev = MessageDeleted {
                id,
                channel_id: ctx.channel.id,
                server_id: ctx.server_id,
            };
            uow.emit(Topic::Channel(ctx.channel.id), Event::MessageDelete(ev))?;
        }
        uow.commit().await
    }

    /// `DELETE /channels/{id}/messages/{messageId}`: the author, or MANAGE_MESSAGES.
    pub async fn delete_message(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
    ) -> Result<()> {
        let ctx = self.channel_context(caller, channel_id).await?;
        let m = self
            .store
            .message(channel_id, id)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        if m.author_id != caller.user_id {
            require_bits(
                ctx.perms,
                bits::MANAGE_MESSAGES,
                Scope::Channel(ctx.channel.id),
            )?;
        }
        self.delete_and_announce(&ctx, &[id]).await
    }

    /// `POST /channels/{id}/messages/bulk-delete` (MANAGE_MESSAGES; 2–100 ids; ids that are
    /// not live messages of the channel are skipped).
    pub async fn bulk_delete(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        req: BulkDeleteRequest,
    ) -> Result<()> {
        let mut ids = req.message_ids;
        ids.sort();
        ids.dedup();
        if !(2..=100).contains(&ids.len()) {
            return Err(Error::invalid(
                "messageIds",
                "length",
                "give 2–100 distinct ids",
            ));
        }
        let ctx = self.channel_context(caller, channel_id).await?;
        if ctx.server_id.is_none() {
            return Err(Error::Denied(Denial::DirectChannel(
                DirectChannelAction::BulkDelete,
            )));
        }
        require_bits(
            ctx.perms,
            bits::MANAGE_MESSAGES,
            Scope::Channel(ctx.channel.id),
        )?;
        self.delete_and_announce(&ctx, &ids).await
    }
}
