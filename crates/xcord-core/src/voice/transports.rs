//! Voice without SDP: the transports, producers and consumers of seed 002's mediasoup-style
//! signaling (SPEC §7), over the same voice states, permissions and media plane as the SDP
//! signaling.
//!
//! A participant's voice session opens a sending and a receiving transport; the first one
//! opened joins the channel (leaving any other, as an SDP join does). Its tracks are
//! announced as VOICE_TRACK like any other, and it receives a track only when it asks
//! (`consume`), naming the participant and the kind. Everything is checked against the
//! caller: a transport is used only by the user whose session opened it, a track is consumed
//! only from the caller's own channel.

use std::net::SocketAddr;

use xcord_types::Snowflake;
use xcord_types::gateway::VoiceState;

use super::{MediaPolicy, MediaSession, VoiceChannel};
use crate::error::Entity;
use crate::{Caller, Core, Error, Result};

/// The payload type of Opus on every transport: the media plane's, advertised to clients as
/// the preferred one.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// The payload type of VP8 on every transport.
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// The id of the audio level header extension (RFC 6464) on every transport.
pub const AUDIO_LEVEL_EXTENSION_ID: u8 = 1;
/// The id of the MID header extension (RFC 8843) on every transport.
pub const MID_EXTENSION_ID: u8 = 4;

/// Which way a transport carries media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportDirection {
    /// The client's tracks to the SFU.
    Send,
    /// The room's tracks to the client.
    Recv,
}

impl TransportDirection {
    fn slot(self) -> usize {
        match self {
            TransportDirection::Send => 0,
            TransportDirection::Recv => 1,
        }
    }
}

/// What a track carries (also what the media plane forwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The microphone (Opus).
    Audio,
    /// The camera (VP8).
    Video,
    /// A screen share (VP8).
    Screen,
}

impl TrackKind {
    /// Every kind, in the order of their bits.
    pub const ALL: [TrackKind; 3] = [TrackKind::Audio, TrackKind::Video, TrackKind::Screen];

    /// Its bit in a set of kinds.
    pub(crate) fn bit(self) -> u8 {
        match self {
            TrackKind::Audio => 1,
            TrackKind::Video => 2,
            TrackKind::Screen => 4,
        }
    }

    /// Its name on the wire: VOICE_TRACK's `kind`, the `msid` track id.
    pub fn name(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
            TrackKind::Screen => "screen",
        }
    }

    /// The kind named so.
    pub fn from_name(name: &str) -> Option<TrackKind> {
        match name {
            "audio" => Some(TrackKind::Audio),
            "video" => Some(TrackKind::Video),
            "screen" => Some(TrackKind::Screen),
            _ => None,
        }
    }
}

/// A transport to open on the media plane.
#[derive(Debug, Clone)]
pub struct MediaTransport {
    /// The voice channel.
    pub channel: Snowflake,
    /// The voice session.
    pub session: Snowflake,
    /// The transport's id.
    pub transport: Snowflake,
    /// The participant.
    pub user: Snowflake,
    /// Which way.
    pub direction: TransportDirection,
    /// What the session may send and receive.
    pub policy: MediaPolicy,
    /// The channel's bitrate in kbps.
    pub bitrate_kbps: u32,
}

/// How a client reaches a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportInfo {
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub pwd: String,
    /// SHA-256 fingerprint of the DTLS certificate (upper-case hex, colon-separated).
    pub fingerprint: String,
    /// The address to reach, over UDP or (passive) TCP.
    pub address: SocketAddr,
}

/// A track the client sends.
#[derive(Debug, Clone)]
pub struct Production {
    /// What it carries.
    pub kind: TrackKind,
    /// Its m-line id at the client.
    pub mid: String,
    /// Its SSRC.
    pub ssrc: u32,
    /// The SSRC of its retransmissions.
    pub rtx: Option<u32>,
}

/// How the client receives a consumed track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumption {
    /// The m-line id on the receiving transport.
    pub mid: String,
    /// The SSRC it arrives with.
    pub ssrc: u32,
    /// Its payload type.
    pub payload_type: u8,
    /// The RTCP CNAME.
    pub cname: String,
}

/// A transport just opened.
#[derive(Debug, Clone)]
pub struct OpenedTransport {
    /// Its id (named in connect, produce and consume).
    pub id: Snowflake,
    /// How to reach it.
    pub info: TransportInfo,
    /// The caller's voice state (in the channel now).
    pub state: VoiceState,
}

fn session_id(state: &VoiceState) -> Option<Snowflake> {
    state
        .session_id
        .parse::<i64>()
        .ok()
        .map(Snowflake::from_i64)
}

impl Core {
    /// The user's voice state (from any node), if they are in a voice channel.
    pub fn voice_state_of(&self, user: Snowflake) -> Option<VoiceState> {
        self.voice.of_user(user)
    }

    /// Opens a transport for the caller in `channel`, joining it first when the caller has
    /// no transports there yet (CONNECT, the user limit, leaving any other voice channel).
    /// A second transport of the same direction replaces the first.
    pub async fn open_voice_transport(
        &self,
        caller: &Caller,
        channel: Snowflake,
        direction: TransportDirection,
    ) -> Result<OpenedTransport> {
        let opened = self.open_transport_here(caller, channel, direction).await;
        self.settle_room(channel, opened.is_ok()).await;
        opened
    }

    async fn open_transport_here(
        &self,
        caller: &Caller,
        channel: Snowflake,
        direction: TransportDirection,
    ) -> Result<OpenedTransport> {
        let media = self.media()?.clone();
        let _turn = self.voice.turn(caller.user_id).await;
        let ch = self.voice_channel(caller, channel).await?;
        let (session, state) = self.transport_session(caller, &ch).await?;
        let transport = self.ids.next_id();
        let opened = media
            .open_transport(MediaTransport {
                channel: ch.id,
                session,
                transport,
                user: caller.user_id,
                direction,
                policy: Self::policy_of(&state, ch.perms),
                bitrate_kbps: ch.bitrate,
            })
            .await;
        let info = match opened {
            Ok(info) => info,
            Err(e) => {
                // A session this call started, left without a transport, is no participant.
                let empty = self
                    .voice
                    .with(|v| {
                        v.media
                            .get(&session)
                            .is_some_and(|m| m.transports == [None; 2])
                    })
                    .unwrap_or(false);
                if empty {
                    self.leave_voice_state(state).await;
                }
                return Err(e.into());
            }
        };
        let recorded = self
            .voice
            .with(|v| {
                v.media
                    .get_mut(&session)
                    .map(|m| m.transports[direction.slot()].replace(transport))
            })
            .flatten();
        match recorded {
            Some(Some(replaced)) => {
                media.leave(replaced).await;
            }
            Some(None) => {}
            // The session ended while the transport was being opened.
            None => {
                media.leave(transport).await;
                return Err(Error::NotFound(Entity::VoiceSession));
            }
        }
        Ok(OpenedTransport {
            id: transport,
            info,
            state,
        })
    }

    /// The caller's transport session in `ch`, started when they have none there. A voice
    /// state they hold there without media (op 8, the Hype socket) keeps its flags. Runs in
    /// the user's turn, so two transports opened at once start one session: the second
    /// finds the first's.
    async fn transport_session(
        &self,
        caller: &Caller,
        ch: &VoiceChannel,
    ) -> Result<(Snowflake, VoiceState)> {
        let user = caller.user_id;
        let current = self.voice.of_user(user);
        if let Some(state) = current.as_ref().filter(|s| s.channel_id == Some(ch.id))
            && let Some(id) = session_id(state)
            && self
                .voice
                .with(|v| v.media.get(&id).is_some_and(|m| m.direct && !m.doomed))
                .unwrap_or(false)
        {
            return Ok((id, state.clone()));
        }
        self.may_enter(ch, user)?;
        let session = self.ids.next_id();
        let (mute, deaf) = self.voice.moderation(ch.server, user);
        let here = current.as_ref().filter(|s| s.channel_id == Some(ch.id));
        let state = VoiceState {
            server_id: ch.server,
            channel_id: Some(ch.id),
            user_id: user,
            session_id: session.to_string(),
            self_mute: here.is_some_and(|s| s.self_mute),
            self_deaf: here.is_some_and(|s| s.self_deaf),
            self_video: false,
            self_stream: false,
            mute,
            deaf,
        };
        self.voice.with(|v| {
            v.media.insert(
                session,
                MediaSession {
                    user,
                    server: ch.server,
                    channel: ch.id,
                    doomed: false,
                    perms: ch.perms,
                    whip: false,
                    tracks: 0,
                    direct: true,
                    transports: [None, None],
                },
            )
        });
        if let Some(previous) = current {
            if previous.channel_id == Some(ch.id) {
                // Same channel: the new session takes over (announced as an update).
                if let Some(old) = session_id(&previous) {
                    self.end_media(old).await;
                }
            } else {
                self.leave_voice_state(previous).await;
            }
        }
        self.announce(state.clone()).await;
        Ok((session, state))
    }

    /// The caller's session holding `transport`.
    fn transport_owner(&self, caller: &Caller, transport: Snowflake) -> Result<Snowflake> {
        self.voice
            .with(|v| {
                v.media
                    .iter()
                    .find(|(_, m)| {
                        m.user == caller.user_id && m.transports.contains(&Some(transport))
                    })
                    .map(|(id, _)| *id)
            })
            .flatten()
            .ok_or(Error::NotFound(Entity::VoiceTransport))
    }

    /// The client's DTLS fingerprint for one of its transports.
    pub async fn connect_voice_transport(
        &self,
        caller: &Caller,
        transport: Snowflake,
        algorithm: &str,
        fingerprint: &str,
    ) -> Result<()> {
        let session = self.transport_owner(caller, transport)?;
        self.media()?
            .connect_transport(session, transport, algorithm, fingerprint)
            .await?;
        Ok(())
    }

    /// A track the caller sends on one of its sending transports. It reaches the others
    /// as the caller's permissions and flags allow (SPEAK, STREAM, mute), as with SDP.
    pub async fn produce_voice(
        &self,
        caller: &Caller,
        transport: Snowflake,
        production: Production,
    ) -> Result<()> {
        let session = self.transport_owner(caller, transport)?;
        self.media()?
            .produce(session, transport, production)
            .await?;
        Ok(())
    }

    /// Sends `producer`'s track of `kind` (a participant of the caller's channel) on one of
    /// the caller's receiving transports.
    pub async fn consume_voice(
        &self,
        caller: &Caller,
        transport: Snowflake,
        producer: Snowflake,
        kind: TrackKind,
    ) -> Result<Consumption> {
        // One's own tracks are not sent back.
        if producer == caller.user_id {
            return Err(Error::NotFound(Entity::Producer));
        }
        let session = self.transport_owner(caller, transport)?;
        let source = self
            .voice
            .with(|v| {
                let own = v.media.get(&session)?.channel;
                let state = v.by_user.get(&producer)?;
                let id = session_id(state)?;
                v.media
                    .get(&id)
                    .filter(|m| m.channel == own && !m.doomed)
                    .map(|_| id)
            })
            .flatten()
            .ok_or(Error::NotFound(Entity::Producer))?;
        Ok(self
            .media()?
            .consume(session, transport, source, kind)
            .await?)
    }

    /// Stops the caller's track of `kind`; false when it sent none.
    pub async fn close_voice_producer(&self, caller: &Caller, kind: TrackKind) -> Result<bool> {
        let Some((session, _)) = self.voice.media_session(caller.user_id) else {
            return Ok(false);
        };
        Ok(self.media()?.close_producer(session, kind).await)
    }

    /// The tracks `user` sends in `channel` now (a channel the caller can see).
    pub async fn voice_producers(
        &self,
        caller: &Caller,
        channel: Snowflake,
        user: Snowflake,
    ) -> Result<Vec<TrackKind>> {
        let ch = self.voice_channel(caller, channel).await?;
        let tracks = self
            .voice
            .with(|v| {
                let state = v.by_user.get(&user)?;
                let m = v.media.get(&session_id(state)?)?;
                (m.channel == ch.id).then_some(m.tracks)
            })
            .flatten()
            .unwrap_or(0);
        Ok(TrackKind::ALL
            .into_iter()
            .filter(|k| tracks & k.bit() != 0)
            .collect())
    }

    /// Leaves voice: `channel` (when the caller is in it) or wherever the caller is.
    pub async fn leave_voice_channel(&self, caller: &Caller, channel: Option<Snowflake>) {
        let _turn = self.voice.turn(caller.user_id).await;
        if let Some(state) = self
            .voice
            .of_user(caller.user_id)
            .filter(|s| channel.is_none() || s.channel_id == channel)
        {
            self.leave_voice_state(state).await;
        }
    }

    /// Being in a voice channel as a client says it (seed 002's socket): joins `channel`
    /// without media, or sets the flags of the state held there; `None` leaves voice.
    /// `gateway_session` is the socket's session, which a state without media ends with.
    pub async fn set_voice_presence(
        &self,
        caller: &Caller,
        gateway_session: &str,
        channel: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<()> {
        let Some(channel) = channel else {
            self.leave_voice_channel(caller, None).await;
            return Ok(());
        };
        let ch = self.voice_channel(caller, channel).await?;
        self.set_voice_state(
            caller,
            gateway_session,
            xcord_types::gateway::VoiceStateSet {
                server_id: ch.server,
                channel_id: Some(ch.id),
                self_mute,
                self_deaf,
            },
        )
        .await
    }
}
