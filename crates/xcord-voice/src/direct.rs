//! Signaling without SDP (seed 002's mediasoup-style parameters, SPEC §7).
//!
//! A voice session opens *transports*: each is its own `Rtc` (ICE-lite, DTLS, SRTP) that
//! either carries the client's tracks to the SFU (sending) or the room's tracks to the client
//! (receiving). The client's ICE username fragment is never signaled: it is learnt from its
//! first connectivity check. Its DTLS fingerprint arrives with `connect`, after which the
//! SFU waits as the DTLS server (a mediasoup client is always the DTLS client). Producing
//! declares the client's m-line and SSRC; consuming declares a new m-line (`mid` "0", "1", …
//! per transport, never reused) and an SSRC of the SFU's. Everything else — rooms, policies,
//! forwarding, speaking, keyframe requests — is shared with the SDP signaling: a transport is
//! a [`Peer`] whose events are reported under its session's id.

use std::time::Instant;

use str0m::crypto::Fingerprint;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::Ssrc;

use crate::engine::Engine;
use crate::peer::{Action, OutState, Peer, TrackIn, TrackOut, Wire};
use crate::{PeerId, Policy, RoomId, SfuError, SfuEvent, TrackKind, TransportDirection};

/// A transport to open.
#[derive(Debug, Clone)]
pub struct OpenTransport {
    /// The room (voice channel).
    pub room: RoomId,
    /// The voice session it belongs to; events are reported under this id, and leaving the
    /// session closes the transport.
    pub session: PeerId,
    /// The transport's own id (fresh).
    pub transport: PeerId,
    /// The participant.
    pub user: u64,
    /// Which way it carries media.
    pub direction: TransportDirection,
    /// What the session may send and receive.
    pub policy: Policy,
    /// The room's Opus bitrate cap in kbps.
    pub bitrate_kbps: u32,
}

/// What the client needs to reach a transport (with [`crate::Sfu::announced_addr`] as its
/// UDP and passive TCP candidate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportParams {
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub pwd: String,
    /// The DTLS certificate's SHA-256 fingerprint, upper-case hex separated by colons.
    pub fingerprint: String,
}

/// A track the client sends on a sending transport.
#[derive(Debug, Clone)]
pub struct Produce {
    /// The voice session.
    pub session: PeerId,
    /// The sending transport.
    pub transport: PeerId,
    /// What the track carries.
    pub kind: TrackKind,
    /// The client's m-line id (1–16 ASCII letters and digits).
    pub mid: String,
    /// The SSRC of its (first) encoding.
    pub ssrc: u32,
    /// The SSRC of its retransmissions, if any.
    pub rtx: Option<u32>,
}

/// How a consumed track reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The m-line id on the receiving transport.
    pub mid: String,
    /// The SSRC the SFU sends it with.
    pub ssrc: u32,
    /// Its payload type (`xcord_core::voice::OPUS_PAYLOAD_TYPE` or `VP8_PAYLOAD_TYPE`).
    pub payload_type: u8,
    /// The RTCP CNAME (one per source session).
    pub cname: String,
}

/// A parsed `connect`.
#[derive(Debug)]
pub(crate) struct Connect {
    session: PeerId,
    transport: PeerId,
    fingerprint: Fingerprint,
}

impl Connect {
    /// Checks the fingerprint: SHA-256 (32 bytes) or SHA-1 (20 bytes, what str0m can still
    /// verify), hex separated by colons.
    pub(crate) fn new(
        session: PeerId,
        transport: PeerId,
        algorithm: &str,
        hex: &str,
    ) -> Result<Self, SfuError> {
        let algorithm = algorithm.to_ascii_lowercase();
        let size = match algorithm.as_str() {
            "sha-256" => 32,
            "sha-1" => 20,
            _ => {
                return Err(bad(
                    "dtlsParameters",
                    format!("the fingerprint must be sha-256 or sha-1, not {algorithm:?}"),
                ));
            }
        };
        let bytes = hex
            .split(':')
            .map(|b| {
                (b.len() == 2)
                    .then(|| u8::from_str_radix(b, 16).ok())
                    .flatten()
            })
            .collect::<Option<Vec<u8>>>()
            .filter(|b| b.len() == size)
            .ok_or_else(|| {
                bad(
                    "dtlsParameters",
                    "the fingerprint is not colon-separated hex",
                )
            })?;
        Ok(Connect {
            session,
            transport,
            fingerprint: Fingerprint {
                hash_func: algorithm,
                bytes,
            },
        })
    }
}

/// A parsed `consume`.
#[derive(Debug)]
pub(crate) struct Consume {
    pub session: PeerId,
    pub transport: PeerId,
    pub source: PeerId,
    pub kind: TrackKind,
}

fn bad(field: &'static str, message: impl Into<String>) -> SfuError {
    SfuError::BadParameters {
        field,
        message: message.into(),
    }
}

/// The upper-case, colon-separated hex of a fingerprint.
fn fingerprint_hex(f: &Fingerprint) -> String {
    let mut out = String::with_capacity(f.bytes.len() * 3);
    for (i, b) in f.bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

fn media_kind(kind: TrackKind) -> MediaKind {
    match kind {
        TrackKind::Audio => MediaKind::Audio,
        TrackKind::Video | TrackKind::Screen => MediaKind::Video,
    }
}

/// A client's m-line id, if it is one str0m keeps as given.
fn mid_of(mid: &str) -> Option<Mid> {
    (!mid.is_empty() && mid.len() <= 16 && mid.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| Mid::from(mid))
}

impl Engine {
    /// The transport `id` of `session`, going the way `direction` says.
    fn transport_mut(
        &mut self,
        session: PeerId,
        id: PeerId,
        direction: TransportDirection,
    ) -> Result<&mut Peer, SfuError> {
        let peer = self
            .peers
            .get_mut(&id)
            .filter(|p| p.owner == session && p.direct.is_some())
            .ok_or(SfuError::UnknownPeer)?;
        if peer.direct != Some(direction) {
            return Err(bad(
                "transportId",
                match direction {
                    TransportDirection::Send => "not a sending transport",
                    TransportDirection::Recv => "not a receiving transport",
                },
            ));
        }
        Ok(peer)
    }

    pub(crate) fn open_transport(
        &mut self,
        open: OpenTransport,
        now: Instant,
    ) -> Result<TransportParams, SfuError> {
        if self.peers.contains_key(&open.transport) {
            return Err(SfuError::DuplicatePeer);
        }
        let (rtc, creds) = self.new_rtc(now)?;
        let bitrate = *self.bitrates.entry(open.room).or_insert(open.bitrate_kbps);
        let mut peer = Peer::new(
            open.transport,
            open.room,
            open.user,
            rtc,
            creds.ufrag.clone(),
            now,
        );
        peer.owner = open.session;
        peer.direct = Some(open.direction);
        peer.policy = open.policy;
        peer.bitrate_kbps = bitrate;
        let fingerprint = fingerprint_hex(peer.rtc.direct_api().local_dtls_fingerprint());
        self.peers.insert(open.transport, peer);
        self.by_ufrag.insert(creds.ufrag.clone(), open.transport);
        self.rooms
            .entry(open.room)
            .or_default()
            .push(open.transport);
        self.owned
            .entry(open.session)
            .or_default()
            .push(open.transport);
        self.drain(open.transport, now);
        self.update_gauges();
        Ok(TransportParams {
            ufrag: creds.ufrag,
            pwd: creds.pass,
            fingerprint,
        })
    }

    pub(crate) fn connect_transport(&mut self, c: Connect, now: Instant) -> Result<(), SfuError> {
        let peer = self
            .peers
            .get_mut(&c.transport)
            .filter(|p| p.owner == c.session && p.direct.is_some())
            .ok_or(SfuError::UnknownPeer)?;
        if peer.dtls_started {
            return Err(bad("dtlsParameters", "the transport is already connected"));
        }
        let mut api = peer.rtc.direct_api();
        api.set_remote_fingerprint(c.fingerprint);
        // The client is the DTLS client; the SFU answers its handshake.
        api.start_dtls(false)
            .map_err(|e| SfuError::Refused(e.to_string()))?;
        peer.dtls_started = true;
        self.drain(c.transport, now);
        Ok(())
    }

    pub(crate) fn produce(&mut self, p: Produce, now: Instant) -> Result<(), SfuError> {
        let mid = mid_of(&p.mid)
            .ok_or_else(|| bad("rtpParameters", "mid must be 1-16 letters or digits"))?;
        if p.rtx == Some(p.ssrc) {
            return Err(bad(
                "rtpParameters",
                "the RTX SSRC must differ from the SSRC",
            ));
        }
        // One track of each kind per participant, whichever of its transports sends it.
        let produced = self
            .owned
            .get(&p.session)
            .into_iter()
            .flatten()
            .filter_map(|id| self.peers.get(id))
            .any(|t| t.ins.iter().any(|t| t.kind == p.kind));
        if produced {
            return Err(bad(
                "kind",
                format!("this session already produces {}", p.kind.name()),
            ));
        }
        let peer = self.transport_mut(p.session, p.transport, TransportDirection::Send)?;
        if peer.ins.iter().any(|t| t.mid == mid) {
            return Err(bad(
                "rtpParameters",
                format!("mid {} is already in use", p.mid),
            ));
        }
        let mut api = peer.rtc.direct_api();
        let taken = |api: &mut str0m::change::DirectApi<'_>, s: u32| {
            api.stream_rx(&Ssrc::from(s)).is_some()
        };
        if taken(&mut api, p.ssrc) || p.rtx.is_some_and(|r| taken(&mut api, r)) {
            return Err(bad("rtpParameters", "the SSRC is already in use"));
        }
        // A closed producer's m-line may come back with a new track.
        api.remove_media(mid);
        api.declare_media(mid, media_kind(p.kind));
        api.expect_stream_rx(Ssrc::from(p.ssrc), p.rtx.map(Ssrc::from), mid, None);
        peer.ins.push(TrackIn::new(mid, p.kind));
        let room = peer.room;
        self.drain(p.transport, now);
        self.actions.push(Action::Recompute(room));
        Ok(())
    }

    pub(crate) fn consume(&mut self, c: Consume, now: Instant) -> Result<Consumed, SfuError> {
        let room = self
            .transport_mut(c.session, c.transport, TransportDirection::Recv)?
            .room;
        let (key, user) = self
            .rooms
            .get(&room)
            .into_iter()
            .flatten()
            .filter_map(|id| self.peers.get(id))
            .filter(|p| p.owner == c.source)
            .find_map(|p| {
                p.ins
                    .iter()
                    .find(|t| t.kind == c.kind && t.forwarded)
                    .map(|t| ((p.id, t.mid), p.user))
            })
            .ok_or(SfuError::NoSuchTrack)?;
        let peer = self.transport_mut(c.session, c.transport, TransportDirection::Recv)?;
        // Consuming the same track again replaces the earlier consumer.
        if let Some(i) = peer.outs.iter().position(|o| o.key == key) {
            let old = peer.outs.remove(i);
            if let OutState::Open(m) = old.state {
                peer.rtc.direct_api().remove_media(m);
            }
        }
        let mid_text = peer.next_mid.to_string();
        peer.next_mid += 1;
        let mid = Mid::from(mid_text.as_str());
        let codec = if c.kind == TrackKind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        let pt = peer
            .payload_type(codec)
            .ok_or_else(|| SfuError::Refused("codec not configured".into()))?;
        let mut api = peer.rtc.direct_api();
        let ssrc = api.new_ssrc();
        api.declare_media(mid, media_kind(c.kind));
        api.declare_stream_tx(ssrc, None, mid, None);
        peer.outs.push(TrackOut::open(key, c.kind, user, mid, pt));
        self.drain(c.transport, now);
        if c.kind != TrackKind::Audio {
            self.actions
                .push(Action::Keyframe(key, KeyframeRequestKind::Pli));
        }
        Ok(Consumed {
            mid: mid_text,
            ssrc: *ssrc,
            payload_type: *pt,
            cname: format!("xcord-{}", c.source),
        })
    }

    /// Stops the track of `kind` that `session` produced (on any of its transports).
    pub(crate) fn close_producer(
        &mut self,
        session: PeerId,
        kind: TrackKind,
        now: Instant,
    ) -> bool {
        let transports = self.owned.get(&session).cloned().unwrap_or_default();
        for id in transports {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let Some(i) = peer.ins.iter().position(|t| t.kind == kind) else {
                continue;
            };
            let t = peer.ins.remove(i);
            peer.forget_ssrcs();
            peer.rtc.direct_api().remove_media(t.mid);
            if t.forwarded {
                self.io.event(SfuEvent::Track {
                    peer: session,
                    kind,
                    added: false,
                });
            }
            if kind == TrackKind::Audio
                && let Some(e) = peer.stop_speaking(now)
            {
                self.io.event(e);
            }
            let room = peer.room;
            self.drain(id, now);
            self.actions.push(Action::Recompute(room));
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_must_be_colon_separated_hex_of_a_known_hash() {
        let hex = ["AB"; 32].join(":");
        let c = Connect::new(1, 2, "SHA-256", &hex).map(|c| c.fingerprint);
        assert_eq!(
            c.clone(),
            Ok(Fingerprint {
                hash_func: "sha-256".into(),
                bytes: vec![0xAB; 32]
            })
        );
        assert_eq!(fingerprint_hex(&c.expect("parsed")), hex);
        for (alg, value) in [
            ("md5", hex.as_str()),
            ("sha-512", hex.as_str()),
            ("sha-1", hex.as_str()),
            ("sha-256", "AB:CD"),
            ("sha-256", "ABCD:EF"),
            ("sha-256", "zz:zz:zz:zz:zz:zz:zz:zz:zz:zz:zz:zz:zz:zz:zz:zz"),
            ("sha-256", ""),
        ] {
            assert!(
                matches!(
                    Connect::new(1, 2, alg, value),
                    Err(SfuError::BadParameters {
                        field: "dtlsParameters",
                        ..
                    })
                ),
                "{alg} {value}"
            );
        }
    }

    #[test]
    fn the_advertised_payload_types_and_extension_ids_are_the_sfu_s() {
        use str0m::rtp::Extension;
        use xcord_core::voice as advertised;
        let mut config = crate::engine::media_config();
        let pt_of = |config: &mut str0m::RtcConfig, codec: Codec| {
            config
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| *p.pt())
        };
        assert_eq!(
            pt_of(&mut config, Codec::Opus),
            Some(advertised::OPUS_PAYLOAD_TYPE)
        );
        assert_eq!(
            pt_of(&mut config, Codec::Vp8),
            Some(advertised::VP8_PAYLOAD_TYPE)
        );
        let exts = config.extension_map();
        assert_eq!(
            exts.id_of(Extension::AudioLevel),
            Some(advertised::AUDIO_LEVEL_EXTENSION_ID)
        );
        assert_eq!(
            exts.id_of(Extension::RtpMid),
            Some(advertised::MID_EXTENSION_ID)
        );
    }

    fn open(session: PeerId, transport: PeerId, direction: TransportDirection) -> OpenTransport {
        OpenTransport {
            room: 1,
            session,
            transport,
            user: session + 1000,
            direction,
            policy: Policy::default(),
            bitrate_kbps: 64,
        }
    }

    fn audio(session: PeerId, transport: PeerId, mid: &str, ssrc: u32) -> Produce {
        Produce {
            session,
            transport,
            kind: TrackKind::Audio,
            mid: mid.into(),
            ssrc,
            rtx: None,
        }
    }

    #[tokio::test]
    async fn a_session_s_transports_serve_only_it_and_end_with_it() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let config = crate::SfuConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
        };
        let (sfu, _events, task) = crate::Sfu::start(config, shutdown.clone())
            .await
            .expect("the SFU binds on loopback");
        let (send, recv) = (11, 12);
        for (id, direction) in [
            (send, TransportDirection::Send),
            (recv, TransportDirection::Recv),
        ] {
            let params = sfu.open_transport(open(10, id, direction)).await;
            assert!(params.is_ok_and(|p| p.fingerprint.len() == 32 * 3 - 1));
        }
        let stats = sfu.stats().await.expect("stats");
        assert_eq!(stats.peers, 1, "one voice session, however many transports");
        let hex = ["AB"; 32].join(":");

        // Another session cannot use them; each goes one way only.
        let refused = sfu.connect_transport(99, send, "sha-256", &hex).await;
        assert_eq!(refused, Err(SfuError::UnknownPeer));
        let wrong_way = sfu.produce(audio(10, recv, "0", 1)).await;
        assert!(matches!(
            wrong_way,
            Err(SfuError::BadParameters {
                field: "transportId",
                ..
            })
        ));
        let wrong_way = sfu.consume(10, send, 10, TrackKind::Audio).await;
        assert!(matches!(
            wrong_way,
            Err(SfuError::BadParameters {
                field: "transportId",
                ..
            })
        ));

        // One track of a kind, each SSRC once.
        assert_eq!(sfu.produce(audio(10, send, "0", 1)).await, Ok(()));
        assert!(matches!(
            sfu.produce(audio(10, send, "1", 2)).await,
            Err(SfuError::BadParameters { field: "kind", .. })
        ));
        let mut camera = audio(10, send, "1", 1);
        camera.kind = TrackKind::Video;
        assert!(matches!(
            sfu.produce(camera.clone()).await,
            Err(SfuError::BadParameters {
                field: "rtpParameters",
                ..
            })
        ));
        camera.ssrc = 3;
        camera.rtx = Some(3);
        assert!(matches!(
            sfu.produce(camera).await,
            Err(SfuError::BadParameters {
                field: "rtpParameters",
                ..
            })
        ));
        // Nothing of another session's is forwarded in the room.
        let missing = sfu.consume(10, recv, 77, TrackKind::Audio).await;
        assert_eq!(missing, Err(SfuError::NoSuchTrack));

        // Leaving the session closes both transports.
        assert!(sfu.leave(10).await);
        assert_eq!(sfu.stats().await.expect("stats").peers, 0);
        let gone = sfu.connect_transport(10, recv, "sha-256", &hex).await;
        assert_eq!(gone, Err(SfuError::UnknownPeer));
        assert!(!sfu.leave(10).await);
        shutdown.cancel();
        let _ = task.await;
    }

    #[test]
    fn only_plain_mids_are_taken() {
        assert_eq!(mid_of("0"), Some(Mid::from("0")));
        assert_eq!(mid_of("audio1"), Some(Mid::from("audio1")));
        assert_eq!(mid_of(""), None);
        assert_eq!(mid_of("a b"), None);
        assert_eq!(mid_of(&"1".repeat(17)), None);
    }
}
