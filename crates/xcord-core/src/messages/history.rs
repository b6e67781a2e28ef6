//! Reading messages: history pages and single messages.

use xcord_store::Page;
use xcord_types::Snowflake;
use xcord_types::rest::messages::{HistoryQuery, Message, MessageList};

use crate::error::Entity;
use crate::{Caller, Core, Error, Result};

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
