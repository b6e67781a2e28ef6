//! Per-node channel activity: slowmode and typing indicators ([`ChannelActivity`]).

use std::collections::HashMap;

use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_types::Snowflake;
use xcord_types::events::{Event, Typing};

use super::context::ChannelContext;
use crate::error::Scope;
use crate::servers::require_bits;
use crate::{Caller, Core, Error, Result};

/// How long a typing indicator lasts without a refresh.
pub(crate) const TYPING_MS: i64 = 10_000;

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

impl Core {
    pub(super) async fn check_slowmode(&self, ctx: &ChannelContext, user: Snowflake) -> Result<()> {
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
    pub(super) fn record_post(&self, ctx: &ChannelContext, user: Snowflake) -> bool {
        let now = self.clock.now().as_millis();
        self.activity
            .record_post(ctx.channel.id, user, ctx.channel.rate_limit_per_user, now);
        self.activity.stop_typing(ctx.channel.id, user).is_some()
    }

    /// `POST /channels/{id}/typing` (SEND_MESSAGES).
    pub async fn typing(&self, caller: &Caller, channel_id: Snowflake) -> Result<()> {
        self.typing_event(caller, channel_id, true).await
    }

    /// Ends the caller's typing indicator in a channel at once (clients that say when they
    /// stop, such as SPEC §7's seed-003 sockets). TYPING_STOP goes out even when this node
    /// does not hold the indicator: the node that does forgets it on hearing the event.
    pub async fn stop_typing(&self, caller: &Caller, channel_id: Snowflake) -> Result<()> {
        self.typing_event(caller, channel_id, false).await
    }

    /// Starts or stops the caller's indicator (SEND_MESSAGES) and tells the channel.
    async fn typing_event(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        start: bool,
    ) -> Result<()> {
        let ctx = self.channel_context(caller, channel_id).await?;
        require_bits(
            ctx.perms,
            bits::SEND_MESSAGES,
            Scope::Channel(ctx.channel.id),
        )?;
        let now = self.clock.now();
        if start {
            self.activity
                .start_typing(channel_id, caller.user_id, ctx.server_id, now.as_millis());
        } else {
            self.activity.stop_typing(channel_id, caller.user_id);
        }
        let ev = Typing {
            channel_id,
            user_id: caller.user_id,
            server_id: ctx.server_id,
            timestamp: now,
        };
        let ev = if start {
            Event::TypingStart(ev)
        } else {
            Event::TypingStop(ev)
        };
        self.publish_ephemeral(Topic::Channel(channel_id), ev).await;
        Ok(())
    }
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
