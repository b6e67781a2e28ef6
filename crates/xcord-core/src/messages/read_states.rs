//! Read states: acknowledging messages and listing what is unread.

use xcord_bus::Topic;
use xcord_types::Snowflake;
use xcord_types::events::{Event, MessageAcked};
use xcord_types::rest::messages::{ReadState, ReadStateList};

use crate::error::Entity;
use crate::{Caller, Core, Error, Result};

impl Core {
    /// Marks everything up to message `id` read in its channel, for clients that name only
    /// the message (SPEC §7's seed-003 profile); returns the channel.
    pub async fn ack_message(&self, caller: &Caller, id: Snowflake) -> Result<Snowflake> {
        let m = self
            .store
            .live_message(id)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        self.ack(caller, m.channel_id, id).await?;
        Ok(m.channel_id)
    }

    /// `POST /channels/{id}/messages/{messageId}/ack`.
    pub async fn ack(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        message: Snowflake,
    ) -> Result<()> {
        let ctx = self.channel_context(caller, channel_id).await?;
        self.store
            .message(channel_id, message)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        let now = self.clock.now();
        let mut uow = self.begin().await?;
        self.store
            .ack(uow.tx(), caller.user_id, channel_id, message, now)
            .await?;
        let ev = Event::MessageAck(MessageAcked {
            channel_id,
            message_id: message,
            user_id: caller.user_id,
            read_at: now,
        });
        // Read receipts are shared in DMs; elsewhere only the reader's own sessions hear of it.
        let topic = if ctx.server_id.is_none() {
            Topic::Channel(channel_id)
        } else {
            Topic::User(caller.user_id)
        };
        uow.emit(topic, ev)?;
        uow.commit().await
    }

    /// `GET /users/@me/read-states`.
    pub async fn read_states(&self, caller: &Caller) -> Result<ReadStateList> {
        let list = self.store.read_states(caller.user_id).await?;
        Ok(ReadStateList {
            read_states: list
                .into_iter()
                .map(|r| ReadState {
                    channel_id: r.channel_id,
                    last_read_message_id: r.last_read_message_id,
                    unread_count: r.unread_count,
                    mention_count: r.mention_count,
                })
                .collect(),
        })
    }
}
