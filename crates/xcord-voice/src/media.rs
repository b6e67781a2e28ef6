//! The SFU as the core's media plane: the canonical signaling's use-cases call it through
//! `xcord_core::voice::VoiceMedia`, and its events go back to the core.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xcord_core::Core;
use xcord_core::voice::{
    Consumption, MediaError, MediaEvent, MediaJoin, MediaPolicy, MediaTransport, Production,
    TransportInfo, VoiceMedia,
};
use xcord_types::Snowflake;

use crate::{Join, OpenTransport, Policy, Produce, Sfu, SfuError, SfuEvent, TrackKind};

/// [`Sfu`] behind the core's [`VoiceMedia`].
#[derive(Debug, Clone)]
pub struct SfuMedia(pub Sfu);

fn id(s: Snowflake) -> u64 {
    s.get() as u64
}

fn snowflake(id: u64) -> Snowflake {
    Snowflake::from_i64(id as i64)
}

fn policy(p: MediaPolicy) -> Policy {
    Policy {
        audio: p.audio,
        video: p.video,
        self_mute: p.self_mute,
        deaf: p.deaf,
    }
}

impl From<SfuError> for MediaError {
    fn from(e: SfuError) -> Self {
        match e {
            SfuError::BadSdp(m) => MediaError::BadSdp(m),
            SfuError::NoOpus => MediaError::NoOpus,
            SfuError::Refused(m) => MediaError::Refused(m),
            SfuError::UnknownPeer => MediaError::UnknownSession,
            // Session ids are fresh snowflakes; a duplicate is a bug, refused all the same.
            SfuError::DuplicatePeer => MediaError::Refused("duplicate voice session".into()),
            SfuError::OfferPending => MediaError::OfferPending,
            SfuError::NoOfferPending => MediaError::NoOfferPending,
            SfuError::BadParameters { field, message } => {
                MediaError::BadParameters { field, message }
            }
            SfuError::NoSuchTrack => MediaError::NoSuchProducer,
            SfuError::Stopped => MediaError::Unavailable,
        }
    }
}

#[async_trait::async_trait]
impl VoiceMedia for SfuMedia {
    async fn join(&self, join: MediaJoin) -> Result<String, MediaError> {
        Ok(self
            .0
            .join(Join {
                room: id(join.channel),
                peer: id(join.session),
                user: id(join.user),
                offer: join.offer,
                policy: policy(join.policy),
                bitrate_kbps: join.bitrate_kbps,
            })
            .await?)
    }

    async fn leave(&self, session: Snowflake) -> bool {
        self.0.leave(id(session)).await
    }

    async fn move_to(&self, session: Snowflake, channel: Snowflake, bitrate_kbps: u32) -> bool {
        self.0
            .move_peer(id(session), id(channel), bitrate_kbps)
            .await
    }

    async fn answer(&self, session: Snowflake, sdp: String) -> Result<(), MediaError> {
        Ok(self.0.answer(id(session), sdp).await?)
    }

    async fn offer(&self, session: Snowflake, sdp: String) -> Result<String, MediaError> {
        Ok(self.0.offer(id(session), sdp).await?)
    }

    async fn set_policy(&self, session: Snowflake, p: MediaPolicy) -> bool {
        self.0.set_policy(id(session), policy(p)).await
    }

    async fn set_bitrate(&self, channel: Snowflake, kbps: u32) {
        self.0.set_bitrate(id(channel), kbps).await;
    }

    async fn open_transport(&self, t: MediaTransport) -> Result<TransportInfo, MediaError> {
        let params = self
            .0
            .open_transport(OpenTransport {
                room: id(t.channel),
                session: id(t.session),
                transport: id(t.transport),
                user: id(t.user),
                direction: t.direction,
                policy: policy(t.policy),
                bitrate_kbps: t.bitrate_kbps,
            })
            .await?;
        Ok(TransportInfo {
            ufrag: params.ufrag,
            pwd: params.pwd,
            fingerprint: params.fingerprint,
            address: self.0.announced_addr(),
        })
    }

    async fn connect_transport(
        &self,
        session: Snowflake,
        transport: Snowflake,
        algorithm: &str,
        fingerprint: &str,
    ) -> Result<(), MediaError> {
        Ok(self
            .0
            .connect_transport(id(session), id(transport), algorithm, fingerprint)
            .await?)
    }

    async fn produce(
        &self,
        session: Snowflake,
        transport: Snowflake,
        p: Production,
    ) -> Result<(), MediaError> {
        Ok(self
            .0
            .produce(Produce {
                session: id(session),
                transport: id(transport),
                kind: p.kind,
                mid: p.mid,
                ssrc: p.ssrc,
                rtx: p.rtx,
            })
            .await?)
    }

    async fn consume(
        &self,
        session: Snowflake,
        transport: Snowflake,
        source: Snowflake,
        kind: TrackKind,
    ) -> Result<Consumption, MediaError> {
        let c = self
            .0
            .consume(id(session), id(transport), id(source), kind)
            .await?;
        Ok(Consumption {
            mid: c.mid,
            ssrc: c.ssrc,
            payload_type: c.payload_type,
            cname: c.cname,
        })
    }

    async fn close_producer(&self, session: Snowflake, kind: TrackKind) -> bool {
        self.0.close_producer(id(session), kind).await
    }
}

/// Hands the SFU's events to the core until the SFU stops or `shutdown`.
pub async fn pump_events(
    core: Arc<Core>,
    mut events: mpsc::UnboundedReceiver<SfuEvent>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let event = match event {
            SfuEvent::Offer { peer, sdp } => MediaEvent::Offer {
                session: snowflake(peer),
                sdp,
            },
            SfuEvent::Track { peer, kind, added } => MediaEvent::Track {
                session: snowflake(peer),
                kind,
                added,
            },
            SfuEvent::Speaking { peer, speaking } => MediaEvent::Speaking {
                session: snowflake(peer),
                speaking,
            },
            SfuEvent::Gone { peer } => MediaEvent::Gone {
                session: snowflake(peer),
            },
        };
        core.on_media_event(event).await;
    }
}
