//! xcord voice: an SFU inside the binary (SPEC §5).
//!
//! One UDP socket carries every participant's media, and a TCP listener on the same port
//! number carries ICE-TCP (RFC 6544, passive, RFC 4571 framing) for networks that block UDP.
//! Packets are demultiplexed in O(1): a STUN request names its peer by the ICE username
//! fragment, and the address it came from is then bound to that peer for everything else.
//!
//! The media plane is signaling-agnostic. A [`Sfu`] holds rooms of peers; a peer is joined
//! with an SDP offer (the canonical signaling) and afterwards driven by commands (answers,
//! offers, forwarding policy). Everything the signaling side must tell clients comes back as
//! [`SfuEvent`]s. A second signaling without SDP (seed 002's mediasoup-style parameters) opens
//! transports (one `Rtc` each, sending or receiving, owned by a voice session) and produces and
//! consumes over the same rooms, tracks and forwarding ([`direct`]; docs/voice.md,
//! "Signaling-agnostic media plane").
//!
//! Media is forwarded at the RTP level: payloads are never decoded or re-packetized; each
//! outgoing stream has its own sequence-number and timestamp base.

pub mod direct;
mod engine;
mod media;
mod peer;
mod sdp;
mod tcp;

use std::net::{IpAddr, SocketAddr};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use direct::{Consumed, OpenTransport, Produce, TransportParams};
pub use engine::describe_metrics;
pub use media::{SfuMedia, pump_events};
pub use sdp::{OfferError, check_offer};

/// A room: one voice channel.
pub type RoomId = u64;
/// A peer: one voice session (one participant's connection).
pub type PeerId = u64;

/// What a participant's track carries, and which way a transport goes: the core's types.
pub use xcord_core::voice::{TrackKind, TransportDirection};

/// Where the SFU listens and what it announces.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address, and the TCP address of ICE-TCP (same port number). Port 0 picks one.
    pub listen: SocketAddr,
    /// The address put in candidates; `None` announces the bound address (or, when bound to
    /// an unspecified address, the first non-loopback one).
    pub public_ip: Option<IpAddr>,
}

/// What a peer may send and receive; set at join and changed by [`Sfu::set_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Its audio is offered to others (SPEAK, and not muted by a moderator). When this turns
    /// false the audio track is removed from everyone's session by renegotiation.
    pub audio: bool,
    /// Its camera and screen are offered to others (STREAM).
    pub video: bool,
    /// It muted itself: its audio packets are dropped (the track stays negotiated).
    pub self_mute: bool,
    /// It is deafened (by itself or a moderator): it is sent no media at all.
    pub deaf: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            self_mute: false,
            deaf: false,
        }
    }
}

/// A peer to join to a room.
#[derive(Debug, Clone)]
pub struct Join {
    /// The room (voice channel).
    pub room: RoomId,
    /// The new peer's id (the voice session).
    pub peer: PeerId,
    /// The participant (user id), named in the `msid` of the tracks others receive.
    pub user: u64,
    /// The client's SDP offer.
    pub offer: String,
    /// What it may send and receive.
    pub policy: Policy,
    /// The room's Opus bitrate cap in kbps.
    pub bitrate_kbps: u32,
}

/// Something the signaling side tells clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// A server offer for `peer` (renegotiation), to push as VOICE_SDP; the answer comes back
    /// through [`Sfu::answer`].
    Offer {
        /// Whose session.
        peer: PeerId,
        /// The SDP offer.
        sdp: String,
    },
    /// One of `peer`'s tracks started or stopped being forwarded (VOICE_TRACK).
    Track {
        /// Whose track.
        peer: PeerId,
        /// Which.
        kind: TrackKind,
        /// Added (true) or removed.
        added: bool,
    },
    /// `peer` started or stopped speaking (VOICE_SPEAKING), debounced.
    Speaking {
        /// Who.
        peer: PeerId,
        /// Now speaking.
        speaking: bool,
    },
    /// `peer`'s connection is gone: ICE has carried nothing for the grace period, or DTLS
    /// failed. The peer has been removed from its room.
    Gone {
        /// Who.
        peer: PeerId,
    },
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    /// The SDP could not be parsed.
    #[error("the SDP cannot be parsed: {0}")]
    BadSdp(String),
    /// The offer has no Opus audio.
    #[error("the offer has no Opus audio")]
    NoOpus,
    /// The SDP was parsed but refused by the WebRTC stack.
    #[error("the SDP was refused: {0}")]
    Refused(String),
    /// No such peer (it left or was never joined).
    #[error("no such voice session")]
    UnknownPeer,
    /// A peer with this id already exists.
    #[error("this voice session already exists")]
    DuplicatePeer,
    /// A server offer waits for its answer; the client must answer it before offering.
    #[error("a server offer waits for its answer")]
    OfferPending,
    /// An answer came while no server offer was waiting.
    #[error("no server offer waits for an answer")]
    NoOfferPending,
    /// Transport or RTP parameters that cannot be used (a transport of the wrong direction,
    /// a fingerprint that does not parse, a second connect, a kind already produced).
    #[error("{field}: {message}")]
    BadParameters {
        /// The request field at fault (`dtlsParameters`, `rtpParameters`, `transportId`,
        /// `kind`).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The track to consume is not forwarded in the room (no such producer).
    #[error("no such track in the room")]
    NoSuchTrack,
    /// The SFU has stopped.
    #[error("the voice server has stopped")]
    Stopped,
}

pub(crate) enum Command {
    Join(Box<Join>, oneshot::Sender<Result<String, SfuError>>),
    Leave(PeerId, oneshot::Sender<bool>),
    Answer(PeerId, String, oneshot::Sender<Result<(), SfuError>>),
    Offer(PeerId, String, oneshot::Sender<Result<String, SfuError>>),
    Policy(PeerId, Policy, oneshot::Sender<bool>),
    Move(PeerId, RoomId, u32, oneshot::Sender<bool>),
    Bitrate(RoomId, u32),
    Stats(oneshot::Sender<SfuStats>),
    Open(
        Box<OpenTransport>,
        oneshot::Sender<Result<TransportParams, SfuError>>,
    ),
    Connect(direct::Connect, oneshot::Sender<Result<(), SfuError>>),
    Produce(Box<Produce>, oneshot::Sender<Result<(), SfuError>>),
    Consume(direct::Consume, oneshot::Sender<Result<Consumed, SfuError>>),
    CloseProducer(PeerId, TrackKind, oneshot::Sender<bool>),
}

/// Counters of the media plane (also exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Rooms with at least one peer.
    pub rooms: usize,
    /// Voice sessions (an SDP peer, or a session with its transports).
    pub peers: usize,
    /// RTP packets received from peers.
    pub packets_in: u64,
    /// RTP packets written to peers.
    pub packets_out: u64,
    /// Sequence-number gaps seen on incoming streams.
    pub packets_lost: u64,
}

/// A handle to the running SFU; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    udp: SocketAddr,
    announced: SocketAddr,
}

impl Sfu {
    /// Binds the UDP socket and the ICE-TCP listener and starts the media loop. Events come
    /// out of the returned receiver; the loop ends when `shutdown` is cancelled.
    pub async fn start(
        config: SfuConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<(
        Sfu,
        mpsc::UnboundedReceiver<SfuEvent>,
        tokio::task::JoinHandle<()>,
    )> {
        let (commands, command_rx) = mpsc::channel(1024);
        let (events, event_rx) = mpsc::unbounded_channel();
        let started = engine::Engine::bind(&config, events).await?;
        let udp = started.local_udp();
        let announced = started.announced();
        let task = tokio::spawn(started.run(command_rx, shutdown));
        Ok((
            Sfu {
                commands,
                udp,
                announced,
            },
            event_rx,
            task,
        ))
    }

    /// The bound UDP address (the ICE-TCP listener has the same port).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The address announced in candidates.
    pub fn announced_addr(&self) -> SocketAddr {
        self.announced
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }

    /// Joins a peer with its offer; returns the answer (with every server candidate).
    pub async fn join(&self, join: Join) -> Result<String, SfuError> {
        self.ask(|tx| Command::Join(Box::new(join), tx)).await?
    }

    /// Removes a peer; false when it was not there.
    pub async fn leave(&self, peer: PeerId) -> bool {
        self.ask(|tx| Command::Leave(peer, tx))
            .await
            .unwrap_or(false)
    }

    /// The client's answer to the pending server offer.
    pub async fn answer(&self, peer: PeerId, sdp: String) -> Result<(), SfuError> {
        self.ask(|tx| Command::Answer(peer, sdp, tx)).await?
    }

    /// A client offer (adding or removing its own tracks); returns the answer.
    pub async fn offer(&self, peer: PeerId, sdp: String) -> Result<String, SfuError> {
        self.ask(|tx| Command::Offer(peer, sdp, tx)).await?
    }

    /// Changes what a peer may send and receive; false when it is not there.
    pub async fn set_policy(&self, peer: PeerId, policy: Policy) -> bool {
        self.ask(|tx| Command::Policy(peer, policy, tx))
            .await
            .unwrap_or(false)
    }

    /// Moves a peer to another room (a moderator's move); both rooms renegotiate.
    pub async fn move_peer(&self, peer: PeerId, room: RoomId, bitrate_kbps: u32) -> bool {
        self.ask(|tx| Command::Move(peer, room, bitrate_kbps, tx))
            .await
            .unwrap_or(false)
    }

    /// Changes a room's Opus bitrate cap (applies to offers and answers from now on).
    pub async fn set_bitrate(&self, room: RoomId, kbps: u32) {
        let _ = self.commands.send(Command::Bitrate(room, kbps)).await;
    }

    /// Current counters.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        self.ask(Command::Stats).await
    }

    /// Opens a transport of a voice session (mediasoup-style signaling): its ICE and DTLS
    /// parameters. Leaving the session ([`Sfu::leave`] with the session id) closes it.
    pub async fn open_transport(&self, open: OpenTransport) -> Result<TransportParams, SfuError> {
        self.ask(|tx| Command::Open(Box::new(open), tx)).await?
    }

    /// The client's DTLS fingerprint for a transport (`algorithm`, hex bytes separated by
    /// colons); the server then waits as the DTLS server.
    pub async fn connect_transport(
        &self,
        session: PeerId,
        transport: PeerId,
        algorithm: &str,
        fingerprint: &str,
    ) -> Result<(), SfuError> {
        let connect = direct::Connect::new(session, transport, algorithm, fingerprint)?;
        self.ask(|tx| Command::Connect(connect, tx)).await?
    }

    /// A track the client sends on a sending transport.
    pub async fn produce(&self, produce: Produce) -> Result<(), SfuError> {
        self.ask(|tx| Command::Produce(Box::new(produce), tx))
            .await?
    }

    /// Starts sending `source`'s track of `kind` (another voice session in the room) on a
    /// receiving transport; the parameters the client receives it with.
    pub async fn consume(
        &self,
        session: PeerId,
        transport: PeerId,
        source: PeerId,
        kind: TrackKind,
    ) -> Result<Consumed, SfuError> {
        let consume = direct::Consume {
            session,
            transport,
            source,
            kind,
        };
        self.ask(|tx| Command::Consume(consume, tx)).await?
    }

    /// Stops a track a session produced; false when it had none of that kind.
    pub async fn close_producer(&self, session: PeerId, kind: TrackKind) -> bool {
        self.ask(|tx| Command::CloseProducer(session, kind, tx))
            .await
            .unwrap_or(false)
    }
}
