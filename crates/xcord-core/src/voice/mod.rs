//! Voice channels (SPEC §5): who is in which channel, the signaling use-cases, and what
//! the media plane reports back.
//!
//! The media plane (the SFU of the `voice` role, `xcord-voice`) sits behind
//! [`VoiceMedia`], so the core neither knows about WebRTC nor depends on it. Permissions,
//! limits, voice states and events are decided here; the media plane is told what each
//! participant may send and receive ([`MediaPolicy`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_types::Snowflake;
use xcord_types::events::{Event, VoiceMoved};
use xcord_types::gateway::{VoiceSdp, VoiceSpeaking, VoiceState, VoiceStateSet, VoiceTrack};
use xcord_types::rest::channels::ChannelKind;
use xcord_types::rest::voice::{JoinVoiceRequest, UpdateVoiceRequest};

use crate::error::{Clash, Entity, Refusal, Scope};
use crate::servers::{ServerAccess, require_bits};
use crate::{Caller, Core, Error, Result};

mod transports;

pub use transports::{
    AUDIO_LEVEL_EXTENSION_ID, Consumption, MID_EXTENSION_ID, MediaTransport, OPUS_PAYLOAD_TYPE,
    OpenedTransport, Production, TrackKind, TransportDirection, TransportInfo, VP8_PAYLOAD_TYPE,
};

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
    /// Transport or RTP parameters that cannot be used.
    #[error("{field}: {message}")]
    BadParameters {
        /// The request field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The track to consume is not forwarded in the room.
    #[error("no such producer")]
    NoSuchProducer,
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
            MediaError::BadParameters { field, message } => {
                Error::invalid(field, "usable", message)
            }
            MediaError::NoSuchProducer => Error::NotFound(Entity::Producer),
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
    /// Opens a transport of a session (mediasoup-style signaling); leaving the session, or
    /// leaving with the transport's id, closes it.
    async fn open_transport(&self, t: MediaTransport) -> Result<TransportInfo, MediaError>;
    /// The client's DTLS fingerprint for one of the session's transports.
    async fn connect_transport(
        &self,
        session: Snowflake,
        transport: Snowflake,
        algorithm: &str,
        fingerprint: &str,
    ) -> Result<(), MediaError>;
    /// A track the client sends on one of the session's sending transports.
    async fn produce(
        &self,
        session: Snowflake,
        transport: Snowflake,
        p: Production,
    ) -> Result<(), MediaError>;
    /// Sends `source`'s track of `kind` on one of the session's receiving transports.
    async fn consume(
        &self,
        session: Snowflake,
        transport: Snowflake,
        source: Snowflake,
        kind: TrackKind,
    ) -> Result<Consumption, MediaError>;
    /// Stops the session's track of `kind`; false when it had none.
    async fn close_producer(&self, session: Snowflake, kind: TrackKind) -> bool;
}

/// A node that holds voice rooms, as the room directory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomOwner {
    /// Its snowflake node id (`XCORD_NODE_ID`).
    pub node_id: u16,
    /// Its internal base URL (`XCORD_INTERNAL_URL`), e.g. `http://10.0.0.5:3000`.
    pub url: String,
}

/// Which node holds each voice channel's room (scale mode: Redis). A record lapses unless
/// its owner refreshes it, so the rooms of a node that died are free again soon.
#[async_trait::async_trait]
pub trait VoiceRooms: Send + Sync {
    /// The node holding `channel`'s room, if any.
    async fn owner(&self, channel: Snowflake) -> anyhow::Result<Option<RoomOwner>>;
    /// Takes the room for `me` unless another node holds it; returns who holds it now.
    async fn claim(&self, channel: Snowflake, me: &RoomOwner) -> anyhow::Result<RoomOwner>;
    /// Extends `me`'s hold, taking the room again if the record lapsed; false when another
    /// node holds it.
    async fn refresh(&self, channel: Snowflake, me: &RoomOwner) -> anyhow::Result<bool>;
    /// Gives the room up if `me` holds it (compare and delete); true when it did.
    async fn release(&self, channel: Snowflake, me: &RoomOwner) -> anyhow::Result<bool>;
}

/// The room directory and this node's entry in it.
pub(crate) struct RoomDirectory {
    rooms: Arc<dyn VoiceRooms>,
    me: RoomOwner,
}

/// Where a channel-scoped voice request is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceRoute {
    /// On this node.
    Local,
    /// On the node holding the channel's room: the request is forwarded there.
    Forward(RoomOwner),
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
        /// What it carries.
        kind: TrackKind,
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
    /// The server of its channel.
    server: Snowflake,
    /// The channel whose room it is in.
    channel: Snowflake,
    /// Moved by a moderator to a channel whose room another node holds: it ends when the
    /// state announcing the move arrives.
    doomed: bool,
    /// The user's permissions in the channel when they joined.
    perms: u64,
    /// Joined through WHIP (its DELETE answers 200).
    whip: bool,
    /// The kinds of its tracks that are forwarded now (announced by VOICE_TRACK), one bit
    /// each ([`TrackKind::bit`]), so that leaving can announce their removal.
    tracks: u8,
    /// Joined through transports (mediasoup-style signaling), not SDP.
    direct: bool,
    /// Its open transports, sending and receiving (direct sessions).
    transports: [Option<Snowflake>; 2],
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

/// How many locks a user's voice changes are serialized by (a user always takes the same).
const TURNS: usize = 64;

/// Voice states of this deployment's users, one per user.
#[derive(Debug)]
pub struct VoiceStates {
    // No await while locked.
    inner: std::sync::Mutex<Voices>,
    /// One user's voice changes (joins, transports, flags, leaves) run one at a time, so a
    /// change never works from a state another is replacing.
    turns: [tokio::sync::Mutex<()>; TURNS],
}

impl Default for VoiceStates {
    fn default() -> Self {
        VoiceStates {
            inner: std::sync::Mutex::default(),
            turns: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        }
    }
}

impl VoiceStates {
    /// Waits for `user`'s turn to change their voice state; it lasts as long as the guard.
    async fn turn(&self, user: Snowflake) -> tokio::sync::MutexGuard<'_, ()> {
        self.turns[(user.get() as u64 % TURNS as u64) as usize]
            .lock()
            .await
    }

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

    /// The voice state a media session is, if it is still its user's current one.
    fn user_of_media(&self, session: Snowflake) -> Option<VoiceState> {
        self.with(|v| {
            let m = v.media.get(&session)?;
            v.by_user
                .get(&m.user)
                .filter(|s| s.session_id == session.to_string())
                .cloned()
        })
        .flatten()
    }

    /// How many media sessions this node's SFU serves.
    pub fn media_session_count(&self) -> usize {
        self.with(|v| v.media.len()).unwrap_or(0)
    }

    /// The channels with a media session on this node (a doomed one is leaving).
    fn media_channels(&self) -> HashSet<Snowflake> {
        self.with(|v| {
            v.media
                .values()
                .filter(|m| !m.doomed)
                .map(|m| m.channel)
                .collect()
        })
        .unwrap_or_default()
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

    /// The room directory of a multi-node deployment; `me` is this node's entry. Without
    /// one (a single node), every voice request is served here.
    pub fn install_voice_rooms(&self, rooms: Arc<dyn VoiceRooms>, me: RoomOwner) {
        let _ = self.voice_rooms.set(RoomDirectory { rooms, me });
    }

    /// Where a request about `channel`'s room is served. `join`: it may start the room
    /// (a node with the media plane claims a room nobody holds; one without answers 503).
    /// `forwarded`: another node sent it here, so it is served here whatever the directory
    /// says (a request is forwarded at most once).
    pub async fn voice_route(
        &self,
        channel: Snowflake,
        join: bool,
        forwarded: bool,
    ) -> Result<VoiceRoute> {
        let Some(dir) = self.voice_rooms.get() else {
            return Ok(VoiceRoute::Local);
        };
        let serves = self.voice_media.get().is_some();
        let unavailable = |e: anyhow::Error| Error::Unavailable(e.context("voice room directory"));
        if forwarded {
            if join && serves {
                dir.rooms
                    .claim(channel, &dir.me)
                    .await
                    .map_err(unavailable)?;
            }
            return Ok(VoiceRoute::Local);
        }
        match dir.rooms.owner(channel).await.map_err(unavailable)? {
            Some(owner) if owner == dir.me => Ok(VoiceRoute::Local),
            Some(owner) => Ok(VoiceRoute::Forward(owner)),
            None if !join => Ok(VoiceRoute::Local),
            None if serves => {
                let owner = dir
                    .rooms
                    .claim(channel, &dir.me)
                    .await
                    .map_err(unavailable)?;
                Ok(if owner == dir.me {
                    VoiceRoute::Local
                } else {
                    VoiceRoute::Forward(owner)
                })
            }
            None => Err(MediaError::Unavailable.into()),
        }
    }

    /// Gives up `channel`'s room once no media session of this node is in it.
    async fn release_room_if_empty(&self, channel: Snowflake) {
        let Some(dir) = self.voice_rooms.get() else {
            return;
        };
        if self.voice.media_channels().contains(&channel) {
            return;
        }
        if let Err(e) = dir.rooms.release(channel, &dir.me).await {
            tracing::warn!(error = format!("{e:#}"), channel = %channel, "cannot release a voice room");
        }
    }

    /// Extends this node's hold on every room it has media sessions in (the voice role
    /// does this every ten seconds); returns how many rooms it holds.
    pub async fn refresh_voice_rooms(&self) -> usize {
        let Some(dir) = self.voice_rooms.get() else {
            return 0;
        };
        let channels = self.voice.media_channels();
        for channel in &channels {
            match dir.rooms.refresh(*channel, &dir.me).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    channel = %channel,
                    "another node holds a voice room this node has sessions in"
                ),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    channel = %channel,
                    "cannot refresh a voice room"
                ),
            }
        }
        channels.len()
    }

    /// Whether this node may hold `channel`'s room: it does, or it just took it (always,
    /// without a directory).
    async fn may_hold_room(&self, channel: Snowflake) -> bool {
        let Some(dir) = self.voice_rooms.get() else {
            return true;
        };
        match dir.rooms.claim(channel, &dir.me).await {
            Ok(owner) => owner == dir.me,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), channel = %channel, "cannot claim a voice room");
                false
            }
        }
    }

    /// Ends a media session of this node (if it is one) and gives its room up when it was
    /// the last one there. Announces nothing.
    async fn end_media(&self, session: Snowflake) -> bool {
        let Some(m) = self.voice.with(|v| v.media.remove(&session)).flatten() else {
            return false;
        };
        if let Some(media) = self.voice_media.get() {
            media.leave(session).await;
        }
        // Its tracks went with it.
        for kind in TrackKind::ALL {
            if m.tracks & kind.bit() == 0 {
                continue;
            }
            self.publish_ephemeral(
                Topic::Channel(m.channel),
                Event::VoiceTrack(VoiceTrack {
                    server_id: m.server,
                    channel_id: m.channel,
                    user_id: m.user,
                    kind: kind.name().to_owned(),
                    state: "removed".to_owned(),
                }),
            )
            .await;
        }
        self.release_room_if_empty(m.channel).await;
        true
    }

    /// Moves a media session of this node to `target`'s room, when this node holds (or
    /// could take) that room; false otherwise (the session is untouched).
    async fn move_media(&self, session: Snowflake, target: Snowflake, bitrate: u32) -> bool {
        let Some(media) = self.voice_media.get() else {
            return false;
        };
        if !self.may_hold_room(target).await {
            return false;
        }
        let Some(from) = self
            .voice
            .with(|v| {
                v.media.get_mut(&session).map(|m| {
                    let from = m.channel;
                    m.channel = target;
                    m.doomed = false;
                    from
                })
            })
            .flatten()
        else {
            return false;
        };
        media.move_to(session, target, bitrate).await;
        if from != target {
            self.release_room_if_empty(from).await;
        }
        true
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
            self.end_media(session).await;
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
        let joined = self.join_voice_here(caller, channel, req, whip).await;
        self.settle_room(channel, joined.is_ok()).await;
        joined
    }

    /// After a join that may have claimed `channel`'s room (`voice_route`): a refused one
    /// gives it up; a joined one refreshes it, since a session that left meanwhile may have
    /// released the room this one is in.
    async fn settle_room(&self, channel: Snowflake, joined: bool) {
        if !joined {
            self.release_room_if_empty(channel).await;
        } else if let Some(dir) = self.voice_rooms.get()
            && let Err(e) = dir.rooms.refresh(channel, &dir.me).await
        {
            tracing::warn!(error = format!("{e:#}"), "cannot refresh a voice room");
        }
    }

    async fn join_voice_here(
        &self,
        caller: &Caller,
        channel: Snowflake,
        req: JoinVoiceRequest,
        whip: bool,
    ) -> Result<(Snowflake, String, VoiceState)> {
        let media = self.media()?.clone();
        let _turn = self.voice.turn(caller.user_id).await;
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
        // The session and the state that names it appear together: the media plane's first
        // events for it may be handled at any moment now.
        self.voice.with(|v| {
            v.media.insert(
                session,
                MediaSession {
                    user: caller.user_id,
                    server: ch.server,
                    channel: ch.id,
                    doomed: false,
                    perms: ch.perms,
                    whip,
                    tracks: 0,
                    direct: false,
                    transports: [None, None],
                },
            );
            v.by_user.insert(caller.user_id, state.clone());
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
        let _turn = self.voice.turn(caller.user_id).await;
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
        let _turn = self.voice.turn(caller.user_id).await;
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
                    if let Some((session, _)) = self.voice.media_session(user) {
                        if !self.move_media(session, ch.id, ch.bitrate).await {
                            // Another node holds the target's room: the member is
                            // disconnected (their client joins again there).
                            self.leave_voice_state(state).await;
                            return Ok(());
                        }
                    } else if let Some(old) = old {
                        // The media, if any, is on another node: it moves there first, so
                        // the leave announced next is not taken for a real one.
                        self.publish_ephemeral(
                            Topic::Channel(old),
                            Event::VoiceMoved(VoiceMoved {
                                session_id: state.session_id.clone(),
                                from: old,
                                to: ch.id,
                                bitrate: ch.bitrate,
                            }),
                        )
                        .await;
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
        // A session that already left (or was never this node's) reports nothing; one this
        // node still holds that is no longer its user's voice state ends when its connection
        // is gone.
        let Some(mut state) = self.voice.user_of_media(session) else {
            if matches!(event, MediaEvent::Gone { .. }) && self.end_media(session).await {
                tracing::info!(session = %session, "a voice session left behind ended");
            }
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
                            m.tracks |= kind.bit();
                        } else {
                            m.tracks &= !kind.bit();
                        }
                    }
                });
                self.publish_ephemeral(
                    Topic::Channel(channel),
                    Event::VoiceTrack(VoiceTrack {
                        server_id: state.server_id,
                        channel_id: channel,
                        user_id: state.user_id,
                        kind: kind.name().to_owned(),
                        state: if added { "added" } else { "removed" }.to_owned(),
                    }),
                )
                .await;
                let changed = match kind {
                    TrackKind::Video => std::mem::replace(&mut state.self_video, added) != added,
                    TrackKind::Screen => std::mem::replace(&mut state.self_stream, added) != added,
                    TrackKind::Audio => false,
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
        let _turn = self.voice.turn(caller.user_id).await;
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

    /// The user's last gateway session closed: their voice state ends too (SPEC §5),
    /// wherever its media session is (the node holding it ends it on hearing the leave).
    pub(crate) async fn user_went_offline(&self, user: Snowflake) {
        if let Some(prev) = self.voice.of_user(user) {
            self.leave_voice_state(prev).await;
        }
    }

    /// A voice state set on another node (`topic`: the channel it was published to):
    /// mirrored here, and obeyed by the media session of this node it concerns, so a leave,
    /// moderation, op 8 or a join elsewhere acts on media wherever it runs.
    pub(crate) async fn apply_foreign_voice_state(&self, topic: &Topic, state: &VoiceState) {
        let session = state
            .session_id
            .parse::<i64>()
            .ok()
            .map(Snowflake::from_i64);
        let (held, previous) = self
            .voice
            .with(|v| {
                v.moderation
                    .insert((state.server_id, state.user_id), (state.mute, state.deaf));
                let held: Vec<(Snowflake, MediaSession)> = v
                    .media
                    .iter()
                    .filter(|(_, m)| m.user == state.user_id)
                    .map(|(id, m)| (*id, *m))
                    .collect();
                (held, v.by_user.get(&state.user_id).cloned())
            })
            .unwrap_or_default();
        self.voice.apply(state);
        for (id, m) in held {
            if Some(id) != session {
                // In voice under another session now: this one was left behind.
                if state.channel_id.is_some() {
                    self.end_media(id).await;
                }
                continue;
            }
            match state.channel_id {
                // A leave is about the channel it was announced in; one from a room this
                // session has already moved out of (a move's leave) changes nothing here.
                None => {
                    if *topic == Topic::Channel(m.channel) {
                        self.end_media(id).await;
                    }
                }
                Some(channel) if channel == m.channel && m.doomed => {
                    self.leave_voice_state(state.clone()).await;
                }
                Some(channel) if channel == m.channel => {
                    let before = previous
                        .as_ref()
                        .filter(|p| p.session_id == state.session_id)
                        .map(|p| Self::policy_of(p, m.perms));
                    let after = Self::policy_of(state, m.perms);
                    if before != Some(after)
                        && let Some(media) = self.voice_media.get()
                    {
                        media.set_policy(id, after).await;
                    }
                }
                // Moved without word ahead (VOICE_MOVED): moved here, or ended.
                Some(channel) => {
                    let bitrate = self.channel_bitrate(channel).await;
                    if !self.move_media(id, channel, bitrate).await {
                        self.leave_voice_state(state.clone()).await;
                    }
                }
            }
        }
    }

    /// A moderator on another node moved a voice session: this node moves its media ahead
    /// of the states that announce it, or, when another node holds the target's room,
    /// marks it to end once the move is announced.
    pub(crate) async fn apply_foreign_voice_move(&self, moved: &VoiceMoved) {
        let Ok(session) = moved.session_id.parse::<i64>().map(Snowflake::from_i64) else {
            return;
        };
        let held = self
            .voice
            .with(|v| v.media.get(&session).map(|m| m.channel))
            .flatten();
        if held != Some(moved.from) {
            return;
        }
        if !self.move_media(session, moved.to, moved.bitrate).await {
            self.voice.with(|v| {
                if let Some(m) = v.media.get_mut(&session) {
                    m.channel = moved.to;
                    m.doomed = true;
                }
            });
            self.release_room_if_empty(moved.from).await;
        }
    }

    async fn channel_bitrate(&self, channel: Snowflake) -> u32 {
        match self.store.channel(channel).await {
            Ok(Some(c)) => c.bitrate.unwrap_or(64).clamp(8, 384) as u32,
            _ => 64,
        }
    }
}
