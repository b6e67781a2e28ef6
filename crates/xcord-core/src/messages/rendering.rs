//! Messages in their wire form, with authors, attachments, reactions and pins loaded in batches.

use std::collections::HashSet;

use xcord_store::{AttachmentRecord, MessageRecord};
use xcord_types::Snowflake;
use xcord_types::rest::messages::{Attachment, Mentions, Message, MessageAuthor, Reaction};

use super::context::ChannelContext;
use crate::{Core, Error, Result};

impl Core {
    pub(super) fn attachment_wire(&self, a: &AttachmentRecord) -> Attachment {
        Attachment {
            id: a.id,
            url: self.signed_attachment_url(a),
            filename: a.filename.clone(),
            size: a.size,
            content_type: a.content_type.clone(),
            width: a.width,
            height: a.height,
        }
    }

    /// Messages in their wire form, with authors, attachments, reactions and pins loaded in
    /// batches (a fixed number of queries for any page).
    pub async fn messages_wire(
        &self,
        list: &[MessageRecord],
        viewer: Snowflake,
        server_id: Option<Snowflake>,
    ) -> Result<Vec<Message>> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Snowflake> = list.iter().map(|m| m.id).collect();
        let mut authors: Vec<Snowflake> = list.iter().map(|m| m.author_id).collect();
        authors.sort();
        authors.dedup();
        let users = self.users_by_id(&authors).await?;
        let mut attachments = self.store.attachments_for(&ids).await?;
        let mut reactions = self.store.reactions_for(&ids, viewer).await?;
        let pinned: HashSet<Snowflake> = self.store.pinned_among(&ids).await?.into_iter().collect();
        Ok(list
            .iter()
            .map(|m| {
                let author = users.get(&m.author_id).map_or_else(
                    || MessageAuthor {
                        id: m.author_id,
                        username: "deleted-user".into(),
                        avatar: None,
                    },
                    |u| MessageAuthor {
                        id: u.id,
                        username: u.username.clone(),
                        avatar: u.avatar.as_deref().map(Self::cdn_url),
                    },
                );
                let atts = attachments
                    .remove(&m.id)
                    .unwrap_or_default()
                    .iter()
                    .map(|a| self.attachment_wire(a))
                    .collect();
                let reacts = reactions
                    .remove(&m.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| Reaction {
                        emoji: r.emoji,
                        count: r.count,
                        me: r.me,
                    })
                    .collect();
                self.message_wire(m, author, atts, reacts, pinned.contains(&m.id), server_id)
            })
            .collect())
    }

    pub(super) fn message_wire(
        &self,
        m: &MessageRecord,
        author: MessageAuthor,
        attachments: Vec<Attachment>,
        reactions: Vec<Reaction>,
        pinned: bool,
        server_id: Option<Snowflake>,
    ) -> Message {
        let mut mentions: Mentions = serde_json::from_str(&m.mentions).unwrap_or_default();
        mentions.everyone = m.mention_everyone;
        Message {
            id: m.id,
            channel_id: m.channel_id,
            server_id,
            author,
            content: m.content.clone(),
            timestamp: m.created_at,
            edited: m.edited_at.is_some(),
            edited_at: m.edited_at,
            attachments,
            embeds: Vec::new(),
            reactions,
            mentions,
            reply_to: m.reply_to,
            pinned,
            nonce: m.nonce.clone(),
            encrypted: m.encrypted,
            encrypted_keys: m
                .encrypted_keys
                .as_deref()
                .and_then(|k| serde_json::from_str(k).ok()),
            is_automatic: m.is_automatic,
            version: m.version,
        }
    }

    pub(super) async fn one_message_wire(
        &self,
        m: &MessageRecord,
        viewer: Snowflake,
        ctx: &ChannelContext,
    ) -> Result<Message> {
        let mut v = self
            .messages_wire(std::slice::from_ref(m), viewer, ctx.server_id)
            .await?;
        v.pop()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("message vanished while rendering")))
    }
}
