//! Posting a message: nonce, replies, mentions, slowmode, DM blocks, attachments, E2E.

use std::collections::HashSet;

use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::{bits, has};
use xcord_store::{NewMessage, PostOutcome, RelationshipType};
use xcord_types::Snowflake;
use xcord_types::events::{Event, Typing};
use xcord_types::rest::channels::ChannelKind;
use xcord_types::rest::messages::{CreateMessageRequest, Mentions, Message, MessageAuthor};

use super::attachments::bad_attachments;
use super::context::ChannelContext;
use crate::error::{Denial, Scope};
use crate::mentions::parse_mentions;
use crate::servers::require_bits;
use crate::unit_of_work::logged_event;
use crate::{Caller, Core, Error, Result};

/// Most members a role mention counts as mentioned (bounds the rows one post writes).
const MAX_ROLE_MENTION_FANOUT: u32 = 1000;

/// The stored mentions document `{users, roles, channels}` (`everyone` has its own column).
pub(super) fn mentions_document(m: &Mentions) -> Result<String> {
    serde_json::to_string(&json!({"users": m.users, "roles": m.roles, "channels": m.channels}))
        .map_err(|e| Error::Internal(e.into()))
}

/// Refuses channels that hold no messages (voice channels, categories).
pub(crate) fn require_message_channel(ctx: &ChannelContext) -> Result<()> {
    // Exhaustive, so a new kind has to say whether it holds messages.
    let holds_messages = match ctx.channel.kind {
        ChannelKind::Text | ChannelKind::Dm | ChannelKind::GroupDm => true,
        ChannelKind::Voice | ChannelKind::Category => false,
    };
    if holds_messages {
        Ok(())
    } else {
        Err(Error::invalid(
            "channelId",
            "type",
            "messages go to text and DM channels",
        ))
    }
}

impl Core {
    /// Upload `id` if it is `user`'s, to `channel`, and not yet attached to a message;
    /// otherwise the `attachmentIds` failure.
    pub(crate) async fn unused_upload(
        &self,
        user: Snowflake,
        channel: Snowflake,
        id: Snowflake,
    ) -> Result<xcord_store::AttachmentRecord> {
        match self.store.attachment(id).await? {
            Some(a)
                if a.uploader_id == user && a.channel_id == channel && a.message_id.is_none() =>
            {
                Ok(a)
            }
            _ => Err(bad_attachments()),
        }
    }

    /// Resolves mentions to what takes effect: members (or recipients) only, roles of the
    /// server, channels of the server; `@everyone` only with MENTION_EVERYONE.
    pub(super) async fn resolve_mentions(
        &self,
        ctx: &ChannelContext,
        content: &str,
    ) -> Result<(Mentions, Vec<Snowflake>)> {
        let parsed = parse_mentions(content);
        let everyone = parsed.everyone && has(ctx.perms, bits::MENTION_EVERYONE);
        let mut notified_extra: Vec<Snowflake> = Vec::new();
        let (users, roles, channels) = match ctx.server_id {
            None => (
                parsed
                    .users
                    .into_iter()
                    .filter(|u| ctx.recipients.contains(u))
                    .collect::<Vec<_>>(),
                Vec::new(),
                Vec::new(),
            ),
            Some(server) => {
                let mut users = Vec::new();
                let mut role_members = Vec::new();
                for u in parsed.users {
                    if self.store.member(server, u).await?.is_some() {
                        users.push(u);
                    }
                }
                // A role mention pings when the role is mentionable or the author may ping
                // everyone (as on Discord); its members then count as mentioned.
                let may_ping_all = has(ctx.perms, bits::MENTION_EVERYONE);
                let pingable: HashSet<Snowflake> = if parsed.roles.is_empty() {
                    HashSet::new()
                } else {
                    self.store
                        .roles(server)
                        .await?
                        .into_iter()
                        .filter(|r| r.mentionable || may_ping_all)
                        .map(|r| r.id)
                        .collect()
                };
                let roles: Vec<Snowflake> = parsed
                    .roles
                    .into_iter()
                    .filter(|r| pingable.contains(r) && *r != server)
                    .collect();
                for m in self
                    .store
                    .members_with_roles(server, &roles, MAX_ROLE_MENTION_FANOUT)
                    .await?
                {
                    if !users.contains(&m) {
                        role_members.push(m);
                    }
                }
                let channel_ids: HashSet<Snowflake> = if parsed.channels.is_empty() {
                    HashSet::new()
                } else {
                    self.store
                        .server_channels(server)
                        .await?
                        .into_iter()
                        .map(|c| c.id)
                        .collect()
                };
                let channels = parsed
                    .channels
                    .into_iter()
                    .filter(|c| channel_ids.contains(c))
                    .collect();
                notified_extra = role_members;
                (users, roles, channels)
            }
        };
        let mut notified = users.clone();
        notified.extend(notified_extra);
        Ok((
            Mentions {
                users,
                roles,
                channels,
                everyone,
            },
            notified,
        ))
    }

    /// Blocks stop 1:1 DMs in both directions.
    pub(crate) async fn check_dm_block(&self, ctx: &ChannelContext, user: Snowflake) -> Result<()> {
        if ctx.channel.kind == ChannelKind::Dm
            && let Some(other) = ctx.recipients.iter().copied().find(|r| *r != user)
        {
            let (mine, theirs) = self.store.relationship_pair(user, other).await?;
            if mine == Some(RelationshipType::Blocked) || theirs == Some(RelationshipType::Blocked)
            {
                return Err(Error::Denied(Denial::Blocked));
            }
        }
        Ok(())
    }

    /// `POST /channels/{id}/messages`. The flag is false when the nonce matched an earlier message.
    pub async fn post_message(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        req: CreateMessageRequest,
    ) -> Result<(Message, bool)> {
        self.post_message_as(caller, channel_id, req, false).await
    }

    /// Posts like [`Core::post_message`]; `automatic` marks a message of the automatic
    /// messages (`isAutomatic: true`), which only the job queue posts.
    pub(crate) async fn post_message_as(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        req: CreateMessageRequest,
        automatic: bool,
    ) -> Result<(Message, bool)> {
        let ctx = self.channel_context(caller, channel_id).await?;
        require_message_channel(&ctx)?;
        let encrypted = req.encrypted.unwrap_or(false);
        let content = req.content.clone().unwrap_or_default();
        let attachment_ids = req.attachment_ids.clone().unwrap_or_default();
        let max = if encrypted { 8192 } else { 2000 };
        let mut v = crate::validate::Violations::default();
        let n = content.chars().count();
        if n > max
            || (n == 0 && attachment_ids.is_empty())
            || (!encrypted && content.trim().is_empty() && attachment_ids.is_empty())
        {
            v.push(
                "content",
                "length",
                format!("must be 1–{max} characters (or attach a file)"),
            );
        }
        if attachment_ids.len() > 10 {
            v.push("attachmentIds", "length", "at most 10 attachments");
        }
        if let Some(nonce) = &req.nonce
            && (nonce.is_empty() || nonce.len() > 64)
        {
            v.push("nonce", "length", "must be 1–64 characters");
        }
        if encrypted && ctx.server_id.is_some() {
            v.push(
                "encrypted",
                "dmOnly",
                "end-to-end encrypted messages go to DM channels",
            );
        }
        if req.encrypted_keys.is_some() && !encrypted {
            v.push("encryptedKeys", "encrypted", "only with encrypted: true");
        }
        if let Some(keys) = &req.encrypted_keys
            && (keys.len() > 10 || keys.values().any(|k| k.len() > 4096))
        {
            v.push(
                "encryptedKeys",
                "length",
                "at most 10 keys of at most 4096 characters",
            );
        }
        v.finish()?;
        require_bits(
            ctx.perms,
            bits::SEND_MESSAGES,
            Scope::Channel(ctx.channel.id),
        )?;
        if !attachment_ids.is_empty() {
            require_bits(
                ctx.perms,
                bits::ATTACH_FILES,
                Scope::Channel(ctx.channel.id),
            )?;
        }
        self.check_dm_block(&ctx, caller.user_id).await?;
        self.check_slowmode(&ctx, caller.user_id).await?;
        if let Some(parent) = req.reply_to {
            match self.store.message(channel_id, parent).await? {
                Some(_) => {}
                None => {
                    return Err(Error::invalid(
                        "replyTo",
                        "sameChannel",
                        "must be a live message of this channel",
                    ));
                }
            }
        }
        let (mentions, notified) = if encrypted {
            (Mentions::default(), Vec::new())
        } else {
            self.resolve_mentions(&ctx, &content).await?
        };
        let mentions_json = mentions_document(&mentions)?;
        let mut new = NewMessage {
            id: self.ids.next_id(),
            channel_id,
            author_id: caller.user_id,
            content,
            nonce: req.nonce.clone(),
            reply_to: req.reply_to,
            mention_everyone: mentions.everyone,
            mentions: mentions_json,
            mentioned_users: notified,
            encrypted,
            encrypted_keys: match &req.encrypted_keys {
                Some(k) => Some(serde_json::to_string(k).map_err(|e| Error::Internal(e.into()))?),
                None => None,
            },
            attachment_ids,
            is_automatic: automatic,
            now: self.clock.now(),
            events: Vec::new(),
        };
        // Rendered before it is stored, so that its event commits with it (the outbox). A
        // new message has no reactions and no pin, and only the attachments it is given.
        let out = self.new_message_wire(caller, &ctx, &new).await?;
        let created_event = self.prepare_event(
            Topic::Channel(channel_id),
            Event::MessageCreate(out.clone()),
        )?;
        new.events.push(logged_event(&created_event));
        match self.store.post_message(&new).await? {
            PostOutcome::Created(_) => {}
            PostOutcome::Duplicate(first) => {
                let out = self.one_message_wire(&first, caller.user_id, &ctx).await?;
                return Ok((out, false));
            }
            PostOutcome::BadAttachments => return Err(bad_attachments()),
        }
        let was_typing = self.record_post(&ctx, caller.user_id);
        self.publish_committed(vec![created_event]).await;
        if was_typing {
            let stop = Typing {
                channel_id,
                user_id: caller.user_id,
                server_id: ctx.server_id,
                timestamp: self.clock.now(),
            };
            self.publish_ephemeral(Topic::Channel(channel_id), Event::TypingStop(stop))
                .await;
        }
        Ok((out, true))
    }

    /// A message about to be posted, as it will be once stored.
    async fn new_message_wire(
        &self,
        caller: &Caller,
        ctx: &ChannelContext,
        new: &NewMessage,
    ) -> Result<Message> {
        let author = self.user(caller.user_id).await?;
        let author = MessageAuthor {
            id: author.id,
            username: author.username.clone(),
            avatar: author.avatar.as_deref().map(Self::cdn_url),
        };
        let mut attachments = Vec::with_capacity(new.attachment_ids.len());
        for id in &new.attachment_ids {
            // The store checks again in the posting transaction; this only renders.
            attachments.push(
                self.unused_upload(caller.user_id, new.channel_id, *id)
                    .await?,
            );
        }
        attachments.sort_by_key(|a| a.id);
        let attachments = attachments
            .iter()
            .map(|a| self.attachment_wire(a))
            .collect();
        Ok(self.message_wire(
            &new.record(),
            author,
            attachments,
            Vec::new(),
            false,
            ctx.server_id,
        ))
    }
}
