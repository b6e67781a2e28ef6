//! The channel a caller meets: its record, server and the caller's permissions in it, looked
//! up through the per-node context cache.

use std::sync::Arc;

use xcord_permissions::{bits, has};
use xcord_store::ChannelRecord;
use xcord_types::Snowflake;

use crate::error::{Entity, Scope};
use crate::servers::require_bits;
use crate::{Caller, Core, Error, Result};

/// What private-channel members may do (no moderation of each other).
const PRIVATE_PERMS: u64 = bits::VIEW_CHANNELS
    | bits::SEND_MESSAGES
    | bits::EMBED_LINKS
    | bits::ATTACH_FILES
    | bits::ADD_REACTIONS
    | bits::USE_EXTERNAL_EMOJIS
    | bits::READ_MESSAGE_HISTORY
    | bits::MENTION_EVERYONE;

/// A channel as a caller meets it: where it is and what they may do there.
#[derive(Debug, Clone)]
pub struct ChannelContext {
    /// The channel.
    pub channel: ChannelRecord,
    /// Its server, for server channels.
    pub server_id: Option<Snowflake>,
    /// The caller's permissions in it.
    pub perms: u64,
    /// Members of a private channel.
    pub recipients: Vec<Snowflake>,
    /// The caller owns the server (for slowmode exemptions and such).
    pub(super) is_manager: bool,
}

impl Core {
    /// The caller's view of a channel: 404 when it does not exist for them.
    pub async fn channel_context(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
    ) -> Result<Arc<ChannelContext>> {
        let key = (channel_id, caller.user_id);
        if let Some(ctx) = self.caches.contexts.get(&key) {
            return Ok(ctx);
        }
        let epoch = self.caches.contexts.epoch();
        let ctx = Arc::new(self.load_channel_context(caller, channel_id).await?);
        self.caches.contexts.put(epoch, key, ctx.clone());
        Ok(ctx)
    }

    async fn load_channel_context(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
    ) -> Result<ChannelContext> {
        let channel = self
            .store
            .channel(channel_id)
            .await?
            .ok_or(Error::NotFound(Entity::Channel))?;
        match channel.server_id {
            None => {
                let recipients = self.store.recipients(channel_id).await?;
                if !recipients.contains(&caller.user_id) {
                    return Err(Error::NotFound(Entity::Channel));
                }
                Ok(ChannelContext {
                    channel,
                    server_id: None,
                    perms: PRIVATE_PERMS,
                    recipients,
                    is_manager: false,
                })
            }
            Some(server) => {
                let (channel, access, perms, _) = self.channel_access(caller, channel_id).await?;
                let is_manager = access.is_owner()
                    || has(perms, bits::MANAGE_MESSAGES)
                    || has(perms, bits::MANAGE_CHANNELS);
                Ok(ChannelContext {
                    channel,
                    server_id: Some(server),
                    perms,
                    recipients: Vec::new(),
                    is_manager,
                })
            }
        }
    }

    pub(super) fn require_history(ctx: &ChannelContext) -> Result<()> {
        require_bits(
            ctx.perms,
            bits::READ_MESSAGE_HISTORY,
            Scope::Channel(ctx.channel.id),
        )
    }
}
