//! Voice channels (SPEC §5): who is in which channel, the signaling use-cases, and what
//! the media plane reports back.
//!
//! The media plane (the SFU of the `voice` role, `xcord-voice`) sits behind
//! [`VoiceMedia`], so the core neither knows about WebRTC nor depends on it. Permissions,
//! limits, voice states and events are decided here; the media plane is told what each
//! participant may send and receive ([`MediaPolicy`]).

use std::collections::HashMap;
use std::sync::Arc;

use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::gateway::{VoiceSdp, VoiceSpeaking, VoiceState, VoiceStateSet, VoiceTrack};
use xcord_types::rest::channels::ChannelKind;
use xcord_types::rest::voice::{JoinVoiceRequest, UpdateVoiceRequest};

use crate::error::{Clash, Entity, Refusal, Scope};
use crate::servers::{ServerAccess, require_bits};
use crate::{Caller, Core, Error, Result};

/// What a participant may send and receive, as the media plane applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Its audio goes to the others (SPEAK, not server-muted).
    pub audio: bool,
    /// Its camera and screen go to the others (STREAM).
    pub video: bool,
    /// It muted itself: its audio is dropped.
    pub self_mute: bool,
    /// Deafened (self or server): nothing is sent to it.
    pub deaf: bool,
}

/// A participant joining the media plane.
#[derive(Debug, Clone)]
pub struct MediaJoin {
    /// The voice channel.
    pub channel: Snowflake,
    /// The voice session.
    pub session: Snowflake,
    /// The participant.
    pub user: Snowflake,
    /// The client's SDP offer.
    pub offer: String,
    /// What it may send and receive.
    pub policy: MediaPolicy,
    /// The channel's bitrate in kbps.
    pub bitrate_kbps: u32,
}

/// Why the media plane refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The SDP cannot be parsed.
    #[error("unparseable SDP: {0}")]
    BadSdp(String),
    /// The offer has no Opus audio.
    #[error("no Opus audio offered")]
    NoOpus,
    /// The WebRTC stack refused the SDP.
    #[error("SDP refused: {0}")]
    Refused(String),
    /// The session is not on the media plane.
    #[error("unknown voice session")]
    UnknownSession,
    /// A server offer waits for its answer.
    #[error("a server offer waits for its answer")]
    OfferPending,
    /// No server offer waits for an answer.
    #[error("no server offer waits")]
    NoOfferPending,
    /// The media plane is not running.
    #[error("voice is not available on this node")]
    Unavailable,
}

impl From<MediaError> for Error {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::BadSdp(_) | MediaError::Refused(_) => Error::Refused(Refusal::InvalidSdp),
            MediaError::NoOpus => Error::invalid("sdp", "opus", "must offer Opus audio"),
            MediaError::UnknownSession => Error::NotFound(Entity::VoiceSession),
            MediaError::OfferPending => Error::Conflict(Clash::VoiceOfferPending),
            MediaError::NoOfferPending => Error::Conflict(Clash::NoVoiceOfferPending),
            MediaError::Unavailable => Error::Unavailable(anyhow::anyhow!("no voice media plane")),
        }
    }
}

/// The media plane: an SFU this node runs (the `voice` role).
#[async_trait::async_trait]
pub trait VoiceMedia: Send + Sync {
    /// Joins with an offer; the answer carries every candidate.
    async fn join(&self, join: MediaJoin) -> Result<String, MediaError>;
    /// Leaves; false when the session was not there.
    async fn leave(&self, session: Snowflake) -> bool;
    /// Moves a session to another channel's room.
    async fn move_to(&self, session: Snowflake, channel: Snowflake, bitrate_kbps: u32) -> bool;
    /// The client's answer to the pending server offer.
    async fn answer(&self, session: Snowflake, sdp: String) -> Result<(), MediaError>;
    /// A client offer; returns the answer.
    async fn offer(&self, session: Snowflake, sdp: String) -> Result<String, MediaError>;
    /// Changes what a session may send and receive.
    async fn set_policy(&self, session: Snowflake, policy: MediaPolicy) -> bool;
    /// A channel's bitrate changed.
    async fn set_bitrate(&self, channel: Snowflake, kbps: u32);
}

/// What the media plane reports about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A server offer to push as VOICE_SDP.
    Offer {
        /// The session.
        session: Snowflake,
        /// The offer.
        sdp: String,
    },
    /// A track started or stopped being forwarded.
    Track {
        /// The session.
        session: Snowflake,
        /// `audio`, `video` or `screen`.
        kind: &'static str,
        /// Added or removed.
        added: bool,
    },
    /// Speaking changed.
    Speaking {
        /// The session.
        session: Snowflake,
        /// Speaking now.
        speaking: bool,
    },
    /// The connection is gone (ICE silent for 30 s, DTLS failed).
    Gone {
        /// The session.
        session: Snowflake,
    },
}

/// A media session on this node's SFU.
#[derive(Debug, Clone, Copy)]
struct MediaSession {
    user: Snowflake,
    /// The user's permissions in the channel when they joined.
    perms: u64,
    /// Joined through WHIP (its DELETE answers 200).
    whip: bool,
    /// The kinds of its tracks that are forwarded now (announced by VOICE_TRACK), one bit
    /// each in the order of [`TRACK_KINDS`], so that leaving can announce their removal.
    tracks: u8,
}

/// The kinds of track a participant sends, as VOICE_TRACK names them.
const TRACK_KINDS: [&str; 3] = ["audio", "video", "screen"];

fn track_bit(kind: &str) -> u8 {
    TRACK_KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| 1 << i)
}

#[derive(Debug, Default)]
struct Voices {
    by_user: HashMap<Snowflake, VoiceState>,
    /// Media sessions on this node's SFU: their user and that user's permissions in the
    /// channel when they joined (or were moved).
    media: HashMap<Snowflake, MediaSession>,
    /// Server mute and deafen, per server and user, kept across joins while the node runs.
    moderation: HashMap<(Snowflake, Snowflake), (bool, bool)>,
}

/// Voice states of this deployment's users, one per user.
#[derive(Debug, Default)]
pub struct VoiceStates {
    // No await while locked.
    inner: std::sync::Mutex<Voices>,
}

impl VoiceStates {
    fn with<T>(&self, f: impl FnOnce(&mut Voices) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut v| f(&mut v))
    }

    /// Records `state` (or forgets the user when it has no channel).
    pub fn apply(&self, state: &VoiceState) {
        self.with(|v| {
            if state.channel_id.is_some() {
                v.by_user.insert(state.user_id, state.clone());
            } else if v
                .by_user
                .get(&state.user_id)
                .is_some_and(|s| s.session_id == state.session_id)
            {
                v.by_user.remove(&state.user_id);
            }
        });
    }

    /// The voice states in `server`.
    pub fn of_server(&self, server: Snowflake) -> Vec<VoiceState> {
        self.with(|v| {
            v.by_user
                .values()
                .filter(|s| s.server_id == server)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    /// The voice states in `channel`.
    pub fn of_channel(&self, channel: Snowflake) -> Vec<VoiceState> {
        self.with(|v| {
            v.by_user
                .values()
                .filter(|s| s.channel_id == Some(channel))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    fn of_user(&self, user: Snowflake) -> Option<VoiceState> {
        self.with(|v| v.by_user.get(&user).cloned()).flatten()
    }

    fn count_in(&self, channel: Snowflake) -> usize {
        self.with(|v| {
            v.by_user
                .values()
                .filter(|s| s.channel_id == Some(channel))
                .count()
        })
        .unwrap_or(0)
    }

    fn moderation(&self, server: Snowflake, user: Snowflake) -> (bool, bool) {
        self.with(|v| v.moderation.get(&(server, user)).copied())
            .flatten()
            .unwrap_or((false, false))
    }

    fn user_of_media(&self, session: Snowflake) -> Option<VoiceState> {
        self.with(|v| {
            let m = v.media.get(&session)?;
            v.by_user.get(&m.user).cloned()
        })
        .flatten()
    }

    /// The user's media session on this node, with the permissions it was granted.
    fn media_session(&self, user: Snowflake) -> Option<(Snowflake, u64)> {
        self.with(|v| {
            let s = v.by_user.get(&user)?;
            let id = s.session_id.parse::<i64>().ok().map(Snowflake::from_i64)?;
            v.media.get(&id).map(|m| (id, m.perms))
        })
        .flatten()
    }
}

/// The caller's permissions in a voice channel, after checking it is one they can see.
struct VoiceChannel {
    id: Snowflake,
    server: Snowflake,
    perms: u64,
    user_limit: u32,
    bitrate: u32,
}

impl Core {
    /// The media plane, once the `voice` role has installed one.
    pub fn install_voice_media(&self, media: Arc<dyn VoiceMedia>) {
        let _ = self.voice_media.set(media);
    }

    fn media(&self) -> Result<&Arc<dyn VoiceMedia>> {
        self.voice_media
            .get()
            .ok_or_else(|| MediaError::Unavailable.into())
    }

    async fn voice_channel(&self, caller: &Caller, channel: Snowflake) -> Result<VoiceChannel> {
        let (c, access, perms, _) = self.channel_access(caller, channel).await?;
        if c.kind != ChannelKind::Voice {
            return Err(Error::NotFound(Entity::Channel));
        }
        Ok(VoiceChannel {
            id: c.id,
            server: access.server.id,
            perms,
            user_limit: c.user_limit.unwrap_or(0).max(0) as u32,
            bitrate: c.bitrate.unwrap_or(64).clamp(8, 384) as u32,
        })
    }

    /// CONNECT, and room under the user limit (MOVE_MEMBERS passes a full channel).
    fn may_enter(&self, ch: &VoiceChannel, user: Snowflake) -> Result<()> {
        require_bits(ch.perms, bits::CONNECT, Scope::Channel(ch.id))?;
        let already_in = self
            .voice
            .of_user(user)
            .is_some_and(|s| s.channel_id == Some(ch.id));
        if ch.user_limit > 0
            && !already_in
            && self.voice.count_in(ch.id) >= ch.user_limit as usize
            && ch.perms & bits::MOVE_MEMBERS == 0
        {
            return Err(Error::Conflict(Clash::VoiceChannelFull));
        }
        Ok(())
    }

    fn policy_of(state: &VoiceState, perms: u64) -> MediaPolicy {
        MediaPolicy {
            audio: perms & bits::SPEAK != 0 && !state.mute,
            video: perms & bits::STREAM != 0,
            self_mute: state.self_mute,
            deaf: state.self_deaf || state.deaf,
        }
    }

    async fn announce(&self, state: VoiceState) {
        self.voice.apply(&state);
        if let Some(channel) = state.channel_id {
            self.publish_ephemeral(Topic::Channel(channel), Event::VoiceStateUpdate(state))
                .await;
        }
    }

    /// Takes the user out of voice wherever they are (media session included) and tells
    /// the channel they left.
    async fn leave_voice_state(&self, previous: VoiceState) {
        let Some(channel) = previous.channel_id else {
            return;
        };
        if let Ok(session) = previous.session_id.parse::<i64>().map(Snowflake::from_i64) {
            let media = self.voice.with(|v| v.media.remove(&session)).flatten();
            if let Some(media) = media {
                if let Some(m) = self.voice_media.get() {
                    m.leave(session).await;
                }
                // Its tracks went with it.
                for (i, kind) in TRACK_KINDS.iter().enumerate() {
                    if media.tracks & (1 << i) == 0 {
                        continue;
                    }
                    self.publish_ephemeral(
                        Topic::Channel(channel),
                        Event::VoiceTrack(VoiceTrack {
                            server_id: previous.server_id,
                            channel_id: channel,
                            user_id: previous.user_id,
                            kind: (*kind).to_owned(),
                            state: "removed".to_owned(),
                        }),
                    )
                    .await;
                }
            }
        }
        let left = VoiceState {
            channel_id: None,
            ..previous
        };
        self.voice.apply(&left);
        self.publish_ephemeral(Topic::Channel(channel), Event::VoiceStateUpdate(left))
            .await;
    }

    /// `POST /channels/{id}/voice`: joins a voice channel with an SDP offer (leaving any
    /// other voice channel first). Returns the session id, the answer and the voice state.
    pub async fn join_voice(
        &self,
        caller: &Caller,
        channel: Snowflake,
        req: JoinVoiceRequest,
        whip: bool,
    ) -> Result<(Snowflake, String, VoiceState)> {
        let media = self.media()?.clone();
        let ch = self.voice_channel(caller, channel).await?;
        self.may_enter(&ch, caller.user_id)?;
        if let Some(previous) = self.voice.of_user(caller.user_id) {
            self.leave_voice_state(previous).await;
        }
        let session = self.ids.next_id();
        let (mute, deaf) = self.voice.moderation(ch.server, caller.user_id);
        let state = VoiceState {
            server_id: ch.server,
            channel_id: Some(ch.id),
            user_id: caller.user_id,
            session_id: session.to_string(),
            self_mute: req.self_mute,
            self_deaf: req.self_deaf,
            self_video: false,
            self_stream: false,
            mute,
            deaf,
        };
        let answer = media
            .join(MediaJoin {
                channel: ch.id,
                session,
                user: caller.user_id,
                offer: req.sdp,
                policy: Self::policy_of(&state, ch.perms),
                bitrate_kbps: ch.bitrate,
            })
            .await?;
        self.voice.with(|v| {
            v.media.insert(
                session,
                MediaSession {
                    user: caller.user_id,
                    perms: ch.perms,
                    whip,
                    tracks: 0,
                },
            )
        });
        self.announce(state.clone()).await;
        Ok((session, answer, state))
    }

    /// The caller's own media session in `channel`.
    fn own_session(
        &self,
        caller: &Caller,
        channel: Snowflake,
        session: Snowflake,
    ) -> Result<VoiceState> {
        self.voice
            .user_of_media(session)
            .filter(|s| s.user_id == caller.user_id && s.channel_id == Some(channel))
            .ok_or(Error::NotFound(Entity::VoiceSession))
    }

    /// `POST /channels/{id}/voice/{sessionId}/answer`.
    pub async fn answer_voice(
        &self,
        caller: &Caller,
        channel: Snowflake,
        session: Snowflake,
        sdp: String,
    ) -> Result<()> {
        self.own_session(caller, channel, session)?;
        self.media()?.answer(session, sdp).await?;
        Ok(())
    }

    /// `PATCH /channels/{id}/voice/{sessionId}` with `sdp`: the client's own offer.
    pub async fn offer_voice(
        &self,
        caller: &Caller,
        channel: Snowflake,
        session: Snowflake,
        sdp: String,
    ) -> Result<String> {
        self.own_session(caller, channel, session)?;
        Ok(self.media()?.offer(session, sdp).await?)
    }

    /// `PATCH /channels/{id}/voice/{sessionId}` with flags.
    pub async fn update_voice(
        &self,
        caller: &Caller,
        channel: Snowflake,
        session: Snowflake,
        req: &UpdateVoiceRequest,
    ) -> Result<VoiceState> {
        let mut state = self.own_session(caller, channel, session)?;
        let ch = self.voice_channel(caller, channel).await?;
        state.self_mute = req.self_mute.unwrap_or(state.self_mute);
        state.self_deaf = req.self_deaf.unwrap_or(state.self_deaf);
        state.self_video = req.self_video.unwrap_or(state.self_video);
        state.self_stream = req.self_stream.unwrap_or(state.self_stream);
        self.media()?
            .set_policy(session, Self::policy_of(&state, ch.perms))
            .await;
        self.announce(state.clone()).await;
        Ok(state)
    }

    /// `DELETE /channels/{id}/voice/{sessionId}` (also the WHIP resource); true when the
    /// session was joined through WHIP.
    pub async fn leave_voice(
        &self,
        caller: &Caller,
        channel: Snowflake,
        session: Snowflake,
    ) -> Result<bool> {
        let state = self.own_session(caller, channel, session)?;
        let whip = self
            .voice
            .with(|v| v.media.get(&session).is_some_and(|m| m.whip))
            .unwrap_or(false);
        self.leave_voice_state(state).await;
        Ok(whip)
    }

    /// `GET /channels/{id}/voice`.
    pub async fn channel_voice_states(
        &self,
        caller: &Caller,
        channel: Snowflake,
    ) -> Result<Vec<VoiceState>> {
        let ch = self.voice_channel(caller, channel).await?;
        Ok(self.voice.of_channel(ch.id))
    }

    /// Server mute, deafen, move and disconnect (`PATCH /servers/{id}/members/{userId}`
    /// with `mute`, `deaf` or `channelId`).
    pub(crate) async fn moderate_voice(
        &self,
        caller: &Caller,
        access: &ServerAccess,
        user: Snowflake,
        mute: Option<bool>,
        deaf: Option<bool>,
        channel: Option<Option<Snowflake>>,
    ) -> Result<()> {
        if mute.is_some() {
            access.require(bits::MUTE_MEMBERS)?;
        }
        if deaf.is_some() {
            access.require(bits::DEAFEN_MEMBERS)?;
        }
        if channel.is_some() {
            access.require(bits::MOVE_MEMBERS)?;
        }
        let server = access.server.id;
        if mute.is_some() || deaf.is_some() {
            self.voice.with(|v| {
                let entry = v.moderation.entry((server, user)).or_default();
                entry.0 = mute.unwrap_or(entry.0);
                entry.1 = deaf.unwrap_or(entry.1);
            });
        }
        let current = self.voice.of_user(user).filter(|s| s.server_id == server);
        match channel {
            Some(None) => {
                let Some(state) = current else {
                    return Err(Error::Refused(Refusal::NotInVoice));
                };
                self.leave_voice_state(state).await;
                return Ok(());
            }
            Some(Some(target)) => {
                let Some(state) = current.clone() else {
                    return Err(Error::Refused(Refusal::NotInVoice));
                };
                // The mover must see the target channel; the limit is not theirs to pass
                // unless they could pass it themselves (MOVE_MEMBERS does).
                let ch = self.voice_channel(caller, target).await?;
                if ch.server != server {
                    return Err(Error::invalid(
                        "channelId",
                        "voice",
                        "must be a voice channel of the server",
                    ));
                }
                if state.channel_id != Some(ch.id) {
                    let old = state.channel_id;
                    let moved = VoiceState {
                        channel_id: Some(ch.id),
                        ..state.clone()
                    };
                    if let Some((session, _)) = self.voice.media_session(user)
                        && let Some(m) = self.voice_media.get()
                    {
                        m.move_to(session, ch.id, ch.bitrate).await;
                    }
                    if let Some(old) = old {
                        let left = VoiceState {
                            channel_id: None,
                            ..state
                        };
                        self.publish_ephemeral(Topic::Channel(old), Event::VoiceStateUpdate(left))
                            .await;
                    }
                    self.announce(moved).await;
                }
            }
            None => {}
        }
        if mute.is_some() || deaf.is_some() {
            let Some(mut state) = self.voice.of_user(user).filter(|s| s.server_id == server) else {
                // Not in voice: it applies at their next join.
                return Ok(());
            };
            let (m, d) = self.voice.moderation(server, user);
            state.mute = m;
            state.deaf = d;
            if let Some((session, perms)) = self.voice.media_session(user)
                && let Some(media) = self.voice_media.get()
            {
                media
                    .set_policy(session, Self::policy_of(&state, perms))
                    .await;
            }
            self.announce(state).await;
        }
        Ok(())
    }

    /// What the media plane reported.
    pub async fn on_media_event(&self, event: MediaEvent) {
        let session = match &event {
            MediaEvent::Offer { session, .. }
            | MediaEvent::Track { session, .. }
            | MediaEvent::Speaking { session, .. }
            | MediaEvent::Gone { session } => *session,
        };
        // A session that already left (or was never this node's) reports nothing.
        let Some(mut state) = self.voice.user_of_media(session) else {
            return;
        };
        let Some(channel) = state.channel_id else {
            return;
        };
        match event {
            MediaEvent::Offer { sdp, .. } => {
                self.publish_ephemeral(
                    Topic::User(state.user_id),
                    Event::VoiceSdp(VoiceSdp {
                        channel_id: channel,
                        session_id: state.session_id,
                        sdp,
                    }),
                )
                .await;
            }
            MediaEvent::Track { kind, added, .. } => {
                self.voice.with(|v| {
                    if let Some(m) = v.media.get_mut(&session) {
                        if added {
                            m.tracks |= track_bit(kind);
                        } else {
                            m.tracks &= !track_bit(kind);
                        }
                    }
                });
                self.publish_ephemeral(
                    Topic::Channel(channel),
                    Event::VoiceTrack(VoiceTrack {
                        server_id: state.server_id,
                        channel_id: channel,
                        user_id: state.user_id,
                        kind: kind.to_owned(),
                        state: if added { "added" } else { "removed" }.to_owned(),
                    }),
                )
                .await;
                let changed = match kind {
                    "video" => std::mem::replace(&mut state.self_video, added) != added,
                    "screen" => std::mem::replace(&mut state.self_stream, added) != added,
                    _ => false,
                };
                if changed {
                    self.announce(state).await;
                }
            }
            MediaEvent::Speaking { speaking, .. } => {
                self.publish_ephemeral(
                    Topic::Channel(channel),
                    Event::VoiceSpeaking(VoiceSpeaking {
                        server_id: state.server_id,
                        channel_id: channel,
                        user_id: state.user_id,
                        speaking,
                    }),
                )
                .await;
            }
            MediaEvent::Gone { .. } => {
                tracing::info!(session = %session, user = %state.user_id, "voice connection gone; leaving");
                self.leave_voice_state(state).await;
            }
        }
    }

    /// Op 8 VOICE_STATE_SET: sets mute/deaf of the current voice session, leaves voice
    /// (`channelId: null`), or joins a channel without media (CONNECT needed; a full
    /// channel needs MOVE_MEMBERS).
    pub async fn set_voice_state(
        &self,
        caller: &Caller,
        session_id: &str,
        req: VoiceStateSet,
    ) -> Result<()> {
        let access = self.server_access(caller, req.server_id).await?;
        let previous = self.voice.of_user(caller.user_id);
        let Some(channel) = req.channel_id else {
            if let Some(prev) = previous.filter(|p| p.server_id == access.server.id) {
                self.leave_voice_state(prev).await;
            }
            return Ok(());
        };
        let ch = self
            .voice_channel(caller, channel)
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => Error::invalid(
                    "channelId",
                    "voice",
                    "must be a voice channel of the server",
                ),
                e => e,
            })?;
        if ch.server != access.server.id {
            return Err(Error::invalid(
                "channelId",
                "voice",
                "must be a voice channel of the server",
            ));
        }
        self.may_enter(&ch, caller.user_id)?;
        if let Some(prev) = previous.clone()
            && prev.channel_id == Some(ch.id)
        {
            // Same channel: only the flags change (media session or not).
            let state = VoiceState {
                self_mute: req.self_mute,
                self_deaf: req.self_deaf,
                ..prev
            };
            if let Ok(session) = state.session_id.parse::<i64>().map(Snowflake::from_i64)
                && self.voice.media_session(caller.user_id).map(|(s, _)| s) == Some(session)
            {
                self.media()?
                    .set_policy(session, Self::policy_of(&state, ch.perms))
                    .await;
            }
            self.announce(state).await;
            return Ok(());
        }
        if let Some(prev) = previous {
            self.leave_voice_state(prev).await;
        }
        let (mute, deaf) = self.voice.moderation(ch.server, caller.user_id);
        self.announce(VoiceState {
            server_id: ch.server,
            channel_id: Some(ch.id),
            user_id: caller.user_id,
            session_id: session_id.to_owned(),
            self_mute: req.self_mute,
            self_deaf: req.self_deaf,
            self_video: false,
            self_stream: false,
            mute,
            deaf,
        })
        .await;
        Ok(())
    }

    /// A gateway session ended: a voice state it holds without media goes with it.
    pub async fn drop_voice_state(&self, user: Snowflake, session_id: &str) {
        if let Some(prev) = self.voice.of_user(user)
            && prev.session_id == session_id
        {
            self.leave_voice_state(prev).await;
        }
    }

    /// Permissions may have changed for participants on this node: a role, a member's roles,
    /// a channel's overwrites, the owner; or a member or channel went away. Each media
    /// session here in what `topic` names is checked again from the database: without
    /// VIEW_CHANNELS or CONNECT (or no longer a member) it is disconnected; otherwise SPEAK
    /// and STREAM apply at once to what it may send. Called for every event this node
    /// follows (its own included); costs nothing when no session is affected.
    pub(crate) async fn recheck_voice(&self, topic: &Topic, event: &Event) {
        if !matches!(
            event,
            Event::ChannelUpdate(_)
                | Event::ChannelDelete(_)
                | Event::ServerUpdate(_)
                | Event::ServerDelete(_)
                | Event::RoleUpdate(_)
                | Event::RoleDelete(_)
                | Event::ServerMemberUpdate(_)
                | Event::ServerMemberRemove(_)
        ) {
            return;
        }
        let affected: Vec<(Snowflake, VoiceState, u64)> = self
            .voice
            .with(|v| {
                v.media
                    .iter()
                    .filter_map(|(session, m)| {
                        let state = v.by_user.get(&m.user)?;
                        let named = match topic {
                            Topic::Server(server) => state.server_id == *server,
                            Topic::Channel(channel) => state.channel_id == Some(*channel),
                            Topic::User(user) => state.user_id == *user,
                            Topic::Global => true,
                        };
                        named.then(|| (*session, state.clone(), m.perms))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (session, state, before) in affected {
            let Some(channel) = state.channel_id else {
                continue;
            };
            let caller = Caller {
                user_id: state.user_id,
                session_id: session,
                expires_at: self.clock.now(),
            };
            match self.voice_channel(&caller, channel).await {
                Ok(ch) if ch.perms & bits::CONNECT != 0 => {
                    if ch.perms == before {
                        continue;
                    }
                    self.voice.with(|v| {
                        if let Some(m) = v.media.get_mut(&session) {
                            m.perms = ch.perms;
                        }
                    });
                    if let Some(media) = self.voice_media.get() {
                        media
                            .set_policy(session, Self::policy_of(&state, ch.perms))
                            .await;
                    }
                }
                Ok(_) | Err(Error::NotFound(_)) => {
                    tracing::info!(session = %session, user = %state.user_id, "no longer allowed in the voice channel; disconnected");
                    self.leave_voice_state(state).await;
                }
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "voice permissions could not be checked again");
                }
            }
        }
    }

    /// The user's last gateway session closed: their media session ends too (SPEC §5).
    pub(crate) async fn user_went_offline(&self, user: Snowflake) {
        if self.voice.media_session(user).is_some()
            && let Some(prev) = self.voice.of_user(user)
        {
            self.leave_voice_state(prev).await;
        }
    }
}
