//! Pinned messages.

use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_types::Snowflake;
use xcord_types::events::{Event, PinsChanged};
use xcord_types::rest::messages::MessageList;

use crate::error::{Entity, Scope};
use crate::servers::require_bits;
use crate::{Caller, Core, Error, Result};

/// Most pins per channel.
const MAX_PINS: i64 = 50;

impl Core {
    /// `GET /channels/{id}/pins`.
    pub async fn pins(&self, caller: &Caller, channel_id: Snowflake) -> Result<MessageList> {
        let ctx = self.channel_context(caller, channel_id).await?;
        Self::require_history(&ctx)?;
        let list = self.store.pins(channel_id).await?;
        Ok(MessageList {
            messages: self
                .messages_wire(&list, caller.user_id, ctx.server_id)
                .await?,
        })
    }

    /// `PUT`/`DELETE /channels/{id}/pins/{messageId}` (MANAGE_MESSAGES; any member of a DM).
    pub async fn set_pin(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        message: Snowflake,
        pinned: bool,
    ) -> Result<()> {
        let ctx = self.channel_context(caller, channel_id).await?;
        if ctx.server_id.is_some() {
            require_bits(
                ctx.perms,
                bits::MANAGE_MESSAGES,
                Scope::Channel(ctx.channel.id),
            )?;
        }
        self.store
            .message(channel_id, message)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        let mut uow = self.begin().await?;
        let changed = if pinned {
            if self.store.pin_count_in(uow.tx(), channel_id).await? >= MAX_PINS {
                return Err(Error::invalid(
                    "messageId",
                    "maxPins",
                    format!("a channel holds at most {MAX_PINS} pins"),
                ));
            }
            self.store
                .pin(
                    uow.tx(),
                    channel_id,
                    message,
                    caller.user_id,
                    self.clock.now(),
                )
                .await?
        } else {
            self.store.unpin(uow.tx(), channel_id, message).await?
        };
        if changed {
            let ev = PinsChanged {
                channel_id,
                server_id: ctx.server_id,
                last_pin_timestamp: self.clock.now(),
            };
            uow.emit(Topic::Channel(channel_id), Event::ChannelPinsUpdate(ev))?;
        }
        uow.commit().await
    }
}
