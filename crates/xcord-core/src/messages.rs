//! Messages: post (nonce, replies, mentions, slowmode, attachments, E2E), history, edit,
//! delete and bulk delete, reactions, pins, typing, attachments with signed URLs, search and
//! read states. Server channels are judged by `xcord_permissions`; private channels by
//! membership.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hmac::Mac as _;
use serde_json::json;
use xcord_bus::Topic;
use xcord_permissions::{bits, has};
use xcord_store::{
    AttachmentRecord, ChannelRecord, MessageRecord, NewMessage, Page, PostOutcome,
    RelationshipType, SearchQuery, Versioned,
};
use xcord_types::Snowflake;
use xcord_types::events::{
    Event, MessageAcked, MessageDeleted, PinsChanged, ReactionChanged, Typing,
};
use xcord_types::rest::channels::ChannelKind;
use xcord_types::rest::messages::{
    Attachment, BulkDeleteRequest, CreateMessageRequest, EditMessageRequest, HistoryQuery,
    Mentions, Message, MessageAuthor, MessageList, Reaction, ReadState, ReadStateList,
    SearchParams,
};
use xcord_types::rest::users::UserList;

use crate::error::{Denial, DirectChannelAction, Entity, Scope, Upload};
use crate::mentions::parse_mentions;
use crate::servers::require_bits;
use crate::storage::{FileSpace, sanitize_filename, sniff_content_type};
use crate::unit_of_work::logged_event;
use crate::{Caller, Core, Error, Result};

/// How long a signed attachment URL works.
const SIGNED_URL_TTL_SECS: i64 = 24 * 3600;
/// How long a typing indicator lasts without a refresh.
pub(crate) const TYPING_MS: i64 = 10_000;
/// Most pins per channel.
const MAX_PINS: usize = 50;
/// Most members a role mention counts as mentioned (bounds the rows one post writes).
const MAX_ROLE_MENTION_FANOUT: u32 = 1000;

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
    is_manager: bool,
}

/// When a user started typing in a channel (ms), and the channel's server.
pub(crate) type TypingSince = (i64, Option<Snowflake>);

/// A user's last post in a slowmode channel, as this node saw it.
#[derive(Debug, Clone, Copy)]
struct LastPost {
    /// When it was posted (ms).
    at: i64,
    /// When the channel's slowmode at the time stops caring about it (ms).
    forget_at: i64,
}

/// In-memory state for slowmode and typing, per node. The core's housekeeping expires and
/// prunes it (see `node`), so it holds only what still matters.
#[derive(Debug, Default)]
pub struct ChannelActivity {
    // No await while locked; short critical sections.
    /// `(channel, user)` → the last post there, only for channels in slowmode. A cache: a
    /// miss asks the database, so an entry can go as soon as its slowmode has passed.
    last_post: std::sync::Mutex<HashMap<(Snowflake, Snowflake), LastPost>>,
    /// `(channel, user)` → (started at, the channel's server), for the typing indicators
    /// this node started and so stops: on the user's next message, after ten seconds, or
    /// silently when another node takes the indicator over.
    typing: std::sync::Mutex<HashMap<(Snowflake, Snowflake), TypingSince>>,
}

impl ChannelActivity {
    /// Notes that `user` started (or refreshed) typing in `channel` at `now`.
    pub(crate) fn start_typing(
        &self,
        channel: Snowflake,
        user: Snowflake,
        server: Option<Snowflake>,
        now: i64,
    ) {
        if let Ok(mut t) = self.typing.lock() {
            t.insert((channel, user), (now, server));
        }
    }

    /// Ends `user`'s indicator in `channel`: `Some(server)` when this node held it, so a
    /// TYPING_STOP is due. One held past its ten seconds counts too: the expiry had not
    /// sent its TYPING_STOP yet and now will not.
    pub(crate) fn stop_typing(
        &self,
        channel: Snowflake,
        user: Snowflake,
    ) -> Option<Option<Snowflake>> {
        let (_, server) = self.typing.lock().ok()?.remove(&(channel, user))?;
        Some(server)
    }

    /// Drops `user`'s indicator in `channel` without a TYPING_STOP from here (another node
    /// took it over or stopped it).
    pub(crate) fn forget_typing(&self, channel: Snowflake, user: Snowflake) {
        if let Ok(mut t) = self.typing.lock() {
            t.remove(&(channel, user));
        }
    }

    /// Whether an indicator this node started is held for `channel` (cheap, so other nodes'
    /// messages are only parsed where one could end).
    pub(crate) fn typing_in(&self, channel: Snowflake) -> bool {
        self.typing
            .lock()
            .is_ok_and(|t| t.keys().any(|(c, _)| *c == channel))
    }

    /// Removes the indicators older than ten seconds at `now` and returns them
    /// (`(channel, user)`, server), each due a TYPING_STOP.
    pub(crate) fn expire_typing(
        &self,
        now: i64,
    ) -> Vec<((Snowflake, Snowflake), Option<Snowflake>)> {
        let Ok(mut t) = self.typing.lock() else {
            return Vec::new();
        };
        let mut expired = Vec::new();
        t.retain(|k, (since, server)| {
            let live = now - *since < TYPING_MS;
            if !live {
                expired.push((*k, *server));
            }
            live
        });
        expired
    }

    /// Notes `user`'s post in `channel` at `now`, when the channel has a slowmode of `secs`.
    fn record_post(&self, channel: Snowflake, user: Snowflake, secs: i64, now: i64) {
        if secs <= 0 {
            return;
        }
        if let Ok(mut m) = self.last_post.lock() {
            m.insert(
                (channel, user),
                LastPost {
                    at: now,
                    forget_at: now.saturating_add(secs.saturating_mul(1000)),
                },
            );
        }
    }

    /// `user`'s last post in `channel` (ms), when this node still holds it.
    fn last_post(&self, channel: Snowflake, user: Snowflake) -> Result<Option<i64>> {
        let map = self
            .last_post
            .lock()
            .map_err(|_| Error::Internal(anyhow::anyhow!("slowmode lock poisoned")))?;
        Ok(map.get(&(channel, user)).map(|p| p.at))
    }

    /// Forgets the posts whose slowmode has passed at `now`; returns how many are left.
    pub(crate) fn prune_slowmode(&self, now: i64) -> usize {
        let Ok(mut m) = self.last_post.lock() else {
            return 0;
        };
        m.retain(|_, p| p.forget_at > now);
        m.len()
    }

    /// Typing indicators and slowmode posts held (for tests and diagnostics).
    pub fn held(&self) -> (usize, usize) {
        (
            self.typing.lock().map_or(0, |t| t.len()),
            self.last_post.lock().map_or(0, |m| m.len()),
        )
    }
}

/// The stored mentions document `{users, roles, channels}` (`everyone` has its own column).
/// An attachment list that is not the author's unused uploads to the channel.
fn bad_attachments() -> Error {
    Error::invalid(
        "attachmentIds",
        "owned",
        "must be your own unused uploads to this channel",
    )
}

fn mentions_document(m: &Mentions) -> Result<String> {
    serde_json::to_string(&json!({"users": m.users, "roles": m.roles, "channels": m.channels}))
        .map_err(|e| Error::Internal(e.into()))
}

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

    fn require_history(ctx: &ChannelContext) -> Result<()> {
        require_bits(
            ctx.perms,
            bits::READ_MESSAGE_HISTORY,
            Scope::Channel(ctx.channel.id),
        )
    }

    /// A signed, expiring URL for an attachment.
    pub fn signed_attachment_url(&self, a: &AttachmentRecord) -> String {
        let expires = self.clock.now().as_millis() / 1000 + SIGNED_URL_TTL_SECS;
        let sig = self.attachment_signature(a.id, expires);
        format!(
            "/cdn/attachments/{}/{}?ex={expires:x}&sig={sig}",
            a.id, a.filename
        )
    }

    fn attachment_signature(&self, id: Snowflake, expires: i64) -> String {
        let mut mac = self.cdn_mac.clone();
        mac.update(format!("{id}:{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks an attachment URL's signature and expiry; denied when either is wrong.
    pub async fn verify_attachment_url(
        &self,
        id: Snowflake,
        ex_hex: &str,
        sig: &str,
    ) -> Result<AttachmentRecord> {
        let forbidden = || Error::Denied(Denial::InvalidSignedLink);
        let expires = i64::from_str_radix(ex_hex, 16).map_err(|_| forbidden())?;
        let want = self.attachment_signature(id, expires);
        // Constant-time comparison through the MAC library would need the raw tag; the
        // signature is public-length hex, so compare without early exit.
        let same = want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same || expires * 1000 <= self.clock.now().as_millis() {
            return Err(forbidden());
        }
        let a = self
            .store
            .attachment(id)
            .await?
            .ok_or(Error::NotFound(Entity::Attachment))?;
        Ok(a)
    }

    /// Storage keys of these channels' attachments (read before the rows go).
    pub(crate) async fn attachment_files_of(&self, channels: &[Snowflake]) -> Result<Vec<String>> {
        Ok(self.store.attachment_keys(channels).await?)
    }

    /// Deletes stored files by key, in the background, once their rows are gone (a failure is
    /// logged; the files are unreachable either way).
    pub(crate) fn delete_files_later(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let files = self.files.clone();
        self.spawn_background(async move {
            for key in keys {
                if let Err(e) = files.delete(FileSpace::Attachments, &key).await {
                    tracing::warn!(error = format!("{e:#}"), "attachment file not removed");
                }
            }
        });
    }

    /// Opens an attachment's bytes.
    pub async fn open_attachment(
        &self,
        a: &AttachmentRecord,
    ) -> Result<Option<crate::storage::StoredFile>> {
        self.files
            .open(FileSpace::Attachments, &a.storage_key)
            .await
            .map_err(Error::Internal)
    }

    fn attachment_wire(&self, a: &AttachmentRecord) -> Attachment {
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

    fn message_wire(
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

    async fn one_message_wire(
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

    /// Resolves mentions to what takes effect: members (or recipients) only, roles of the
    /// server, channels of the server; `@everyone` only with MENTION_EVERYONE.
    async fn resolve_mentions(
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

    async fn check_slowmode(&self, ctx: &ChannelContext, user: Snowflake) -> Result<()> {
        let secs = ctx.channel.rate_limit_per_user;
        if secs <= 0 || ctx.is_manager {
            return Ok(());
        }
        let now = self.clock.now().as_millis();
        // The node's map is a cache: the housekeeping forgets a post once the slowmode it
        // was made under has passed (a later, longer slowmode still counts it), and in
        // scale mode the last post may have gone through another node. A miss asks the
        // database, looking only at messages young enough to matter.
        let last = match self.activity.last_post(ctx.channel.id, user)? {
            Some(t) => Some(t),
            None => {
                let since = xcord_types::Snowflake::from_parts(
                    xcord_types::Timestamp::now().as_millis() - secs * 1000 - 60_000,
                    0,
                    0,
                );
                self.store
                    .last_post_since(ctx.channel.id, user, since)
                    .await?
                    .map(|t| t.as_millis())
            }
        };
        if let Some(last) = last {
            let wait = last + secs * 1000 - now;
            if wait > 0 {
                return Err(Error::RateLimited {
                    retry_after_secs: u64::try_from((wait + 999) / 1000).unwrap_or(1),
                    limit: 1,
                });
            }
        }
        Ok(())
    }

    /// Notes a post for slowmode; returns whether the author's typing indicator was showing
    /// (it stops with the message).
    fn record_post(&self, ctx: &ChannelContext, user: Snowflake) -> bool {
        let now = self.clock.now().as_millis();
        self.activity
            .record_post(ctx.channel.id, user, ctx.channel.rate_limit_per_user, now);
        self.activity.stop_typing(ctx.channel.id, user).is_some()
    }

    /// Blocks stop 1:1 DMs in both directions.
    async fn check_dm_block(&self, ctx: &ChannelContext, user: Snowflake) -> Result<()> {
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
        let ctx = self.channel_context(caller, channel_id).await?;
        // Exhaustive, so a new kind has to say whether it holds messages.
        let holds_messages = match ctx.channel.kind {
            ChannelKind::Text | ChannelKind::Dm | ChannelKind::GroupDm => true,
            ChannelKind::Voice | ChannelKind::Category => false,
        };
        if !holds_messages {
            return Err(Error::invalid(
                "channelId",
                "type",
                "messages go to text and DM channels",
            ));
        }
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
            match self.store.attachment(*id).await? {
                Some(a)
                    if a.uploader_id == caller.user_id
                        && a.channel_id == new.channel_id
                        && a.message_id.is_none() =>
                {
                    attachments.push(a);
                }
                _ => return Err(bad_attachments()),
            }
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
            if self.store.pins(channel_id).await?.len() >= MAX_PINS {
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

    /// `POST /channels/{id}/typing` (SEND_MESSAGES).
    pub async fn typing(&self, caller: &Caller, channel_id: Snowflake) -> Result<()> {
        let ctx = self.channel_context(caller, channel_id).await?;
        require_bits(
            ctx.perms,
            bits::SEND_MESSAGES,
            Scope::Channel(ctx.channel.id),
        )?;
        let now = self.clock.now();
        self.activity
            .start_typing(channel_id, caller.user_id, ctx.server_id, now.as_millis());
        let ev = Typing {
            channel_id,
            user_id: caller.user_id,
            server_id: ctx.server_id,
            timestamp: now,
        };
        self.publish_ephemeral(Topic::Channel(channel_id), Event::TypingStart(ev))
            .await;
        Ok(())
    }

    /// `POST /channels/{id}/attachments`: stores an upload for a later message.
    pub async fn upload_attachment(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Attachment> {
        let ctx = self.channel_context(caller, channel_id).await?;
        require_bits(
            ctx.perms,
            bits::SEND_MESSAGES | bits::ATTACH_FILES,
            Scope::Channel(ctx.channel.id),
        )?;
        if bytes.is_empty() {
            return Err(Error::invalid("file", "required", "the file is empty"));
        }
        if bytes.len() > self.settings.attachment_max_bytes {
            return Err(Error::TooLarge {
                upload: Upload::Attachment,
                limit_bytes: self.settings.attachment_max_bytes,
            });
        }
        let content_type = sniff_content_type(&bytes);
        let (width, height) = match crate::media::sniff(&bytes) {
            Some((format, _)) => {
                let dims = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format)
                    .into_dimensions()
                    .ok();
                (dims.map(|d| i64::from(d.0)), dims.map(|d| i64::from(d.1)))
            }
            None => (None, None),
        };
        let id = self.ids.next_id();
        let filename = sanitize_filename(filename);
        let key = format!("{channel_id}/{id}");
        self.files
            .put(FileSpace::Attachments, &key, &bytes)
            .await
            .map_err(Error::Internal)?;
        let rec = AttachmentRecord {
            id,
            uploader_id: caller.user_id,
            channel_id,
            message_id: None,
            filename,
            content_type: content_type.to_owned(),
            size: bytes.len() as i64,
            width,
            height,
            storage_key: key,
            created_at: self.clock.now(),
        };
        self.store.create_attachment(&rec).await?;
        Ok(self.attachment_wire(&rec))
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

/// Where a search looks.
#[derive(Debug, Clone, Copy)]
pub enum SearchScope {
    /// One channel.
    Channel(Snowflake),
    /// Every readable channel of a server.
    Server(Snowflake),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> Snowflake {
        Snowflake::from_i64(n)
    }

    #[test]
    fn slowmode_posts_are_forgotten_once_their_slowmode_passed() -> Result<()> {
        let a = ChannelActivity::default();
        let (slow, slower, open, user) = (id(1), id(2), id(3), id(9));
        a.record_post(slow, user, 30, 1_000);
        a.record_post(slower, user, 3600, 1_000);
        // Posts where no slowmode applies are not kept at all.
        a.record_post(open, user, 0, 1_000);
        assert_eq!(a.held().1, 2);
        assert_eq!(a.last_post(slow, user)?, Some(1_000));
        assert_eq!(a.last_post(open, user)?, None);
        // Still inside the 30 s: kept.
        assert_eq!(a.prune_slowmode(30_999), 2);
        // Past it: only the hour-long one is left.
        assert_eq!(a.prune_slowmode(31_000), 1);
        assert_eq!(a.last_post(slow, user)?, None);
        assert_eq!(a.last_post(slower, user)?, Some(1_000));
        assert_eq!(a.prune_slowmode(1_000 + 3_600_000), 0);
        Ok(())
    }

    #[test]
    fn typing_ends_once_by_message_expiry_or_another_node() {
        let a = ChannelActivity::default();
        let (channel, other, server, ann, bob) = (id(1), id(2), Some(id(5)), id(8), id(9));
        a.start_typing(channel, ann, server, 0);
        a.start_typing(channel, bob, server, 0);
        assert!(a.typing_in(channel));
        assert!(!a.typing_in(other));
        // A message while the indicator shows: one TYPING_STOP, then nothing left to stop.
        assert_eq!(a.stop_typing(channel, ann), Some(server));
        assert_eq!(a.stop_typing(channel, ann), None);
        // Expiry takes only what is ten seconds old, once.
        assert!(a.expire_typing(9_999).is_empty());
        assert_eq!(a.expire_typing(10_000), vec![((channel, bob), server)]);
        assert!(a.expire_typing(20_000).is_empty());
        assert!(!a.typing_in(channel));
        // A message after the indicator lapsed but before the housekeeping came by sends
        // the one TYPING_STOP; the expiry then has nothing to send.
        a.start_typing(channel, ann, None, 30_000);
        assert_eq!(a.stop_typing(channel, ann), Some(None));
        assert!(a.expire_typing(40_500).is_empty());
        // Another node taking the indicator over: this node forgets it without a word.
        a.start_typing(channel, bob, server, 50_000);
        a.forget_typing(channel, bob);
        assert!(a.expire_typing(70_000).is_empty());
        assert_eq!(a.held().0, 0);
    }
}
