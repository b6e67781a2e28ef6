//! Message search in a channel or across a server.

use xcord_permissions::{bits, has};
use xcord_store::SearchQuery;
use xcord_types::Snowflake;
use xcord_types::rest::messages::{MessageList, SearchParams};

use crate::{Caller, Core, Result};

/// Where a search looks.
#[derive(Debug, Clone, Copy)]
pub enum SearchScope {
    /// One channel.
    Channel(Snowflake),
    /// Every readable channel of a server.
    Server(Snowflake),
}

impl Core {
    /// Channels of a server the caller can read (VIEW_CHANNELS and READ_MESSAGE_HISTORY).
    async fn readable_channels(
        &self,
        caller: &Caller,
        server: Snowflake,
    ) -> Result<Vec<Snowflake>> {
        let access = self.server_access(caller, server).await?;
        Ok(self
            .channels_with_permissions(&access)
            .await?
            .into_iter()
            .filter(|(_, _, perms)| has(*perms, bits::VIEW_CHANNELS | bits::READ_MESSAGE_HISTORY))
            .map(|(c, _, _)| c.id)
            .collect())
    }

    /// `GET /servers/{id}/messages/search` and `GET /channels/{id}/messages/search`.
    pub async fn search(
        &self,
        caller: &Caller,
        scope: SearchScope,
        p: SearchParams,
    ) -> Result<MessageList> {
        let limit = p.limit.unwrap_or(25);
        let mut v = crate::validate::Violations::default();
        let q = p.q.as_deref().map(str::trim).unwrap_or_default();
        if q.is_empty() || q.chars().count() > 200 {
            v.push("q", "length", "must be 1–200 characters");
        }
        if !(1..=100).contains(&limit) {
            v.push("limit", "range", "must be 1–100");
        }
        v.finish()?;
        let (channels, server) = match scope {
            SearchScope::Channel(c) => {
                let ctx = self.channel_context(caller, c).await?;
                Self::require_history(&ctx)?;
                (vec![c], ctx.server_id)
            }
            SearchScope::Server(s) => {
                let mut readable = self.readable_channels(caller, s).await?;
                if let Some(only) = p.channel_id {
                    readable.retain(|c| *c == only);
                }
                (readable, Some(s))
            }
        };
        let found = self
            .store
            .search(&SearchQuery {
                text: q.to_owned(),
                channels,
                author: p.author_id,
                before: p.before,
                after: p.after,
                limit,
            })
            .await?;
        Ok(MessageList {
            messages: self.messages_wire(&found, caller.user_id, server).await?,
        })
    }
}
