//! Reading messages: history pages and single messages.

use xcord_store::Page;
use xcord_types::Snowflake;
use xcord_types::rest::messages::{HistoryQuery, Message, MessageList};

use crate::error::Entity;
use crate::{Caller, Core, Error, Result};

/// A page of history by offset ([`Core::history_page`]).
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Live messages in the channel.
    pub total: i64,
    /// (member, the last message they read).
    pub read_marks: Vec<(Snowflake, Snowflake)>,
}

impl Core {
    /// `GET /channels/{id}/messages`.
    pub async fn history(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        q: HistoryQuery,
    ) -> Result<MessageList> {
        let limit = q.limit.unwrap_or(50);
        let mut v = crate::validate::Violations::default();
        if !(1..=100).contains(&limit) {
            v.push("limit", "range", "must be 1–100");
        }
        let given = [q.before.is_some(), q.after.is_some(), q.around.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            v.push(
                "before",
                "exclusive",
                "give at most one of before, after and around",
            );
        }
        v.finish()?;
        let ctx = self.channel_context(caller, channel_id).await?;
        Self::require_history(&ctx)?;
        let page = match (q.before, q.after, q.around) {
            (Some(b), _, _) => Page::Before(b),
            (_, Some(a), _) => Page::After(a),
            (_, _, Some(c)) => Page::Around(c),
            _ => Page::Latest,
        };
        let list = self.store.history(channel_id, page, limit).await?;
        Ok(MessageList {
            messages: self
                .messages_wire(&list, caller.user_id, ctx.server_id)
                .await?,
        })
    }

    /// Offset paging, for clients that ask for page numbers (SPEC §7's seed-003 profile):
    /// up to `limit` messages after the `offset` newest, oldest first, with the number of
    /// live messages in the channel, and how far each member has read.
    pub async fn history_page(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage> {
        let mut v = crate::validate::Violations::default();
        if !(1..=100).contains(&limit) {
            v.push("limit", "range", "must be 1–100");
        }
        v.finish()?;
        let ctx = self.channel_context(caller, channel_id).await?;
        Self::require_history(&ctx)?;
        let (mut list, total) = self.store.history_offset(channel_id, offset, limit).await?;
        list.reverse();
        let read_marks = self.store.channel_read_marks(channel_id).await?;
        Ok(HistoryPage {
            messages: self
                .messages_wire(&list, caller.user_id, ctx.server_id)
                .await?,
            total,
            read_marks,
        })
    }

    /// `GET /channels/{id}/messages/{messageId}`.
    pub async fn get_message(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
    ) -> Result<Message> {
        let ctx = self.channel_context(caller, channel_id).await?;
        Self::require_history(&ctx)?;
        let m = self
            .store
            .message(channel_id, id)
            .await?
            .ok_or(Error::NotFound(Entity::Message))?;
        self.one_message_wire(&m, caller.user_id, &ctx).await
    }
}
