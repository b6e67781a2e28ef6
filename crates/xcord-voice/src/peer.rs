//! One participant's connection: its `Rtc`, the tracks it sends (`TrackIn`), the tracks it
//! receives (`TrackOut`), and its pending server offer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::Protocol;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Event, Output, Rtc};

use crate::{PeerId, Policy, RoomId, SfuEvent, TrackKind, TransportDirection};

/// A source track, named by its sender and its m-line there.
pub(crate) type TrackKey = (PeerId, Mid);

/// Above this level (dBov, 0 = loudest, -127 = silence) a packet counts as speech.
const SPEECH_LEVEL: i8 = -50;
/// Speaking ends after this long without a loud packet.
const SPEECH_HANGOVER: Duration = Duration::from_millis(400);
/// At most one speaking change per this interval per user (SPEC §5).
const SPEAKING_DEBOUNCE: Duration = Duration::from_millis(250);
/// At most one keyframe request per source track per this interval.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// A track the peer sends to the SFU.
pub(crate) struct TrackIn {
    pub mid: Mid,
    pub kind: TrackKind,
    /// The client sends on this m-line (its direction allows it).
    pub sending: bool,
    /// Announced to the room (VOICE_TRACK added, and offered to the others).
    pub forwarded: bool,
    /// Packets were dropped since the last forwarded one, so receivers rebase.
    pub gap: bool,
    last_keyframe_request: Option<Instant>,
    next_seq: Option<u64>,
}

impl TrackIn {
    /// A track the client declared it sends (a producer of the mediasoup-style signaling).
    pub fn new(mid: Mid, kind: TrackKind) -> Self {
        TrackIn {
            mid,
            kind,
            sending: true,
            forwarded: false,
            gap: false,
            last_keyframe_request: None,
            next_seq: None,
        }
    }
}

/// Where a receiving m-line is in its negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// A track the peer receives from another participant.
pub(crate) struct TrackOut {
    pub key: TrackKey,
    pub kind: TrackKind,
    pub user: u64,
    pub state: OutState,
    pt: Option<Pt>,
    rebase: Rebase,
}

/// Sequence numbers and timestamps of one outgoing stream: continuous from a random start
/// whatever the source's numbering and however many packets were held back.
#[derive(Default)]
struct Rebase {
    synced: bool,
    seq_delta: i64,
    ts_delta: u32,
    last_out: Option<(u64, u32, Instant)>,
}

impl Rebase {
    fn map(&mut self, seq: u64, ts: u32, now: Instant, clock: u32) -> (u64, u32) {
        if !self.synced {
            let (next_seq, next_ts) = match self.last_out {
                Some((s, t, at)) => {
                    let elapsed = now.saturating_duration_since(at).as_millis() as u64;
                    let ticks = (elapsed.max(20) * u64::from(clock) / 1000) as u32;
                    (s + 1, t.wrapping_add(ticks))
                }
                // Starting below 2^15 keeps the rollover counter at 0 for a long while, so a
                // receiver needs no out-of-band ROC.
                None => (u64::from(rand::random::<u16>() >> 1), rand::random::<u32>()),
            };
            self.seq_delta = next_seq as i64 - seq as i64;
            self.ts_delta = next_ts.wrapping_sub(ts);
            self.synced = true;
        }
        let out_seq = (seq as i64 + self.seq_delta).max(0) as u64;
        let out_ts = ts.wrapping_add(self.ts_delta);
        if self.last_out.is_none_or(|(s, _, _)| out_seq > s) {
            self.last_out = Some((out_seq, out_ts, now));
        }
        (out_seq, out_ts)
    }
}

/// Speaking state from the audio-level extension.
#[derive(Default)]
struct Speaking {
    on: bool,
    last_loud: Option<Instant>,
    last_change: Option<Instant>,
}

impl Speaking {
    fn may_change(&self, now: Instant) -> bool {
        self.last_change
            .is_none_or(|c| now.saturating_duration_since(c) >= SPEAKING_DEBOUNCE)
    }

    /// A packet with `level`; `Some(true)` when speaking starts.
    fn observe(&mut self, level: i8, now: Instant) -> Option<bool> {
        if level <= SPEECH_LEVEL {
            return None;
        }
        self.last_loud = Some(now);
        if !self.on && self.may_change(now) {
            self.on = true;
            self.last_change = Some(now);
            return Some(true);
        }
        None
    }

    /// `Some(false)` when speaking has ended by `now`.
    fn expire(&mut self, now: Instant) -> Option<bool> {
        let quiet = self
            .last_loud
            .is_none_or(|l| now.saturating_duration_since(l) >= SPEECH_HANGOVER);
        if self.on && quiet && self.may_change(now) {
            self.on = false;
            self.last_change = Some(now);
            return Some(false);
        }
        None
    }
}

/// What draining a peer's output asks of the rest of the room.
pub(crate) enum Action {
    /// Forward a packet of `key` to the room.
    Forward(TrackKey, TrackKind, Box<RtpPacket>),
    /// Ask the sender of `key` for a keyframe.
    Keyframe(TrackKey, KeyframeRequestKind),
    /// The tracks of the room changed (a track came or went, a peer connected).
    Recompute(RoomId),
}

/// Where a peer's transmissions go (the media loop's sockets).
pub(crate) trait Wire {
    fn transmit(&self, proto: Protocol, to: SocketAddr, data: &[u8]);
    fn event(&self, event: SfuEvent);
}

pub(crate) struct Peer {
    pub id: PeerId,
    /// The voice session its events are reported under: itself, or for a transport of the
    /// mediasoup-style signaling the session that opened it.
    pub owner: PeerId,
    /// Set for such a transport: which way it carries media. Its tracks are produced and
    /// consumed by command, never negotiated.
    pub direct: Option<TransportDirection>,
    /// The client's ICE username fragment, learnt from its first check (transports only).
    pub remote_ufrag: Option<String>,
    /// The next `mid` a consumer gets on this (receiving) transport.
    pub next_mid: u32,
    /// The client's DTLS fingerprint was given (`connect`; transports only).
    pub dtls_started: bool,
    /// Anything arrived from the client yet (a transport never connected is not "gone").
    pub heard: bool,
    pub room: RoomId,
    pub user: u64,
    pub rtc: Rtc,
    pub ufrag: String,
    pub policy: Policy,
    pub bitrate_kbps: u32,
    pub ins: Vec<TrackIn>,
    pub outs: Vec<TrackOut>,
    pub pending: Option<SdpPendingOffer>,
    /// ICE and DTLS are up, so server offers can be made.
    pub connected: bool,
    pub alive: bool,
    pub last_input: Instant,
    pub deadline: Option<Instant>,
    /// Transport addresses bound to this peer in the demultiplexer.
    pub addrs: Vec<(Protocol, SocketAddr)>,
    ssrcs: Vec<(Ssrc, usize)>,
    speaking: Speaking,
    /// Counters read by the loop's metrics.
    pub lost: u64,
    /// RTP packets received from this peer, forwarded or not.
    pub received: u64,
}

impl Peer {
    pub fn new(id: PeerId, room: RoomId, user: u64, rtc: Rtc, ufrag: String, now: Instant) -> Self {
        Self {
            id,
            owner: id,
            direct: None,
            remote_ufrag: None,
            next_mid: 0,
            dtls_started: false,
            heard: false,
            room,
            user,
            rtc,
            ufrag,
            policy: Policy::default(),
            bitrate_kbps: 64,
            ins: Vec::new(),
            outs: Vec::new(),
            pending: None,
            connected: false,
            alive: true,
            last_input: now,
            deadline: None,
            addrs: Vec::new(),
            ssrcs: Vec::new(),
            speaking: Speaking::default(),
            lost: 0,
            received: 0,
        }
    }

    /// Whether the track is offered to the others (it is sent and the policy allows it).
    pub fn allows(&self, t: &TrackIn) -> bool {
        t.sending
            && match t.kind {
                TrackKind::Audio => self.policy.audio,
                TrackKind::Video | TrackKind::Screen => self.policy.video,
            }
    }

    /// Polls the `Rtc` until it has nothing more than a timeout; transmissions go out at
    /// once, what concerns other peers is pushed to `actions`.
    pub fn drain(&mut self, wire: &impl Wire, actions: &mut Vec<Action>, now: Instant) {
        loop {
            if !self.alive {
                return;
            }
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(peer = self.id, error = %e, "voice peer failed");
                    self.alive = false;
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.deadline = Some(t);
                    return;
                }
                Output::Transmit(t) => wire.transmit(t.proto, t.destination, &t.contents),
                Output::Event(e) => self.on_event(e, wire, actions, now),
            }
        }
    }

    fn on_event(&mut self, e: Event, wire: &impl Wire, actions: &mut Vec<Action>, now: Instant) {
        match e {
            Event::Connected => {
                self.connected = true;
                actions.push(Action::Recompute(self.room));
            }
            // A transport's m-lines are declared by command, not negotiated.
            Event::MediaAdded(_) | Event::MediaChanged(_) if self.direct.is_some() => {}
            Event::MediaAdded(m) => self.media_direction(m.mid, m.kind, m.direction, actions),
            Event::MediaChanged(m) => {
                if let Some(kind) = self.rtc.media(m.mid).map(|x| x.kind()) {
                    self.media_direction(m.mid, kind, m.direction, actions);
                }
            }
            Event::RtpPacket(p) => self.on_rtp(p, wire, actions, now),
            Event::KeyframeRequest(r) => {
                if let Some(out) = self.outs.iter().find(|o| o.state == OutState::Open(r.mid)) {
                    actions.push(Action::Keyframe(out.key, r.kind));
                }
            }
            Event::IceConnectionStateChange(s) => {
                tracing::debug!(peer = self.id, state = ?s, "voice ICE state");
            }
            _ => {}
        }
    }

    /// An m-line appeared or changed direction. Ours (send-only, toward the client) are
    /// tracked as `outs`; any other carries the client's media when our side receives.
    fn media_direction(
        &mut self,
        mid: Mid,
        kind: MediaKind,
        dir: Direction,
        actions: &mut Vec<Action>,
    ) {
        if self.outs.iter().any(|o| o.mid() == Some(mid)) {
            return;
        }
        let stopped = self.rtc.media(mid).is_none_or(|m| m.disabled());
        let sending = !stopped && matches!(dir, Direction::RecvOnly | Direction::SendRecv);
        if let Some(t) = self.ins.iter_mut().find(|t| t.mid == mid) {
            if t.sending != sending {
                t.sending = sending;
                actions.push(Action::Recompute(self.room));
            }
            return;
        }
        if dir == Direction::SendOnly {
            return;
        }
        let track_kind = match kind {
            MediaKind::Audio => TrackKind::Audio,
            MediaKind::Video => {
                let named_screen = self.rtc.media(mid).is_some_and(|m| {
                    m.track_id().to_ascii_lowercase().contains("screen")
                        || m.stream_id().to_ascii_lowercase().contains("screen")
                });
                let has_camera = self.ins.iter().any(|t| t.kind == TrackKind::Video);
                if named_screen || has_camera {
                    TrackKind::Screen
                } else {
                    TrackKind::Video
                }
            }
        };
        // One track of each kind; a further m-line of a kind already present is not
        // forwarded (the SFU would not know whose camera it is).
        if self.ins.iter().any(|t| t.kind == track_kind) {
            return;
        }
        self.ins.push(TrackIn {
            mid,
            kind: track_kind,
            sending,
            forwarded: false,
            gap: false,
            last_keyframe_request: None,
            next_seq: None,
        });
        actions.push(Action::Recompute(self.room));
    }

    /// Forgets which SSRC is which track (a track was removed, so the indexes moved).
    pub fn forget_ssrcs(&mut self) {
        self.ssrcs.clear();
    }

    fn track_index(&mut self, ssrc: Ssrc) -> Option<usize> {
        if let Some((_, i)) = self.ssrcs.iter().find(|(s, _)| *s == ssrc) {
            return Some(*i);
        }
        let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
        let i = self.ins.iter().position(|t| t.mid == mid)?;
        self.ssrcs.push((ssrc, i));
        Some(i)
    }

    fn on_rtp(&mut self, p: RtpPacket, wire: &impl Wire, actions: &mut Vec<Action>, now: Instant) {
        // Every packet counts as received, including those dropped below (self-muted, not
        // allowed, an m-line that is not one of its tracks).
        self.received += 1;
        metrics::counter!("voice_packets_received_total").increment(1);
        metrics::counter!("voice_bytes_received_total").increment(p.payload.len() as u64);
        let Some(i) = self.track_index(p.header.ssrc) else {
            return;
        };
        let seq = *p.seq_no;
        let allowed = self.allows(&self.ins[i]);
        let self_mute = self.policy.self_mute;
        let t = &mut self.ins[i];
        if let Some(expected) = t.next_seq
            && seq > expected
        {
            self.lost += seq - expected;
        }
        if t.next_seq.is_none_or(|e| seq >= e) {
            t.next_seq = Some(seq + 1);
        }
        let kind = t.kind;
        if !allowed || (kind == TrackKind::Audio && self_mute) {
            t.gap = true;
            return;
        }
        if kind == TrackKind::Audio
            && let Some(level) = p.header.ext_vals.audio_level
            && let Some(on) = self.speaking.observe(level, now)
        {
            wire.event(SfuEvent::Speaking {
                peer: self.owner,
                speaking: on,
            });
        }
        actions.push(Action::Forward(
            (self.id, self.ins[i].mid),
            kind,
            Box::new(p),
        ));
    }

    /// Speaking that has ended; called by the loop's housekeeping.
    pub fn expire_speaking(&mut self, now: Instant) -> Option<SfuEvent> {
        self.speaking
            .expire(now)
            .map(|speaking| SfuEvent::Speaking {
                peer: self.owner,
                speaking,
            })
    }

    /// Stops a speaking indication (the peer is leaving or was muted).
    pub fn stop_speaking(&mut self, now: Instant) -> Option<SfuEvent> {
        if self.speaking.on {
            self.speaking.on = false;
            self.speaking.last_change = Some(now);
            return Some(SfuEvent::Speaking {
                peer: self.owner,
                speaking: false,
            });
        }
        None
    }

    /// Asks the client for a keyframe on one of its tracks, at most once per interval.
    pub fn request_keyframe(&mut self, mid: Mid, kind: KeyframeRequestKind, now: Instant) -> bool {
        let Some(t) = self.ins.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if t.kind == TrackKind::Audio
            || t.last_keyframe_request
                .is_some_and(|l| now.saturating_duration_since(l) < KEYFRAME_INTERVAL)
        {
            return false;
        }
        let mut api = self.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        rx.request_keyframe(kind);
        t.last_keyframe_request = Some(now);
        true
    }

    /// Writes a forwarded packet to this peer's stream for `key`; false when it has none open.
    pub fn write(
        &mut self,
        key: TrackKey,
        kind: TrackKind,
        p: &RtpPacket,
        resync: bool,
        now: Instant,
    ) -> bool {
        let Some(out) = self.outs.iter_mut().find(|o| o.key == key) else {
            return false;
        };
        let OutState::Open(mid) = out.state else {
            return false;
        };
        let Some(pt) = out.pt else {
            return false;
        };
        if resync {
            out.rebase.synced = false;
        }
        let clock = if kind == TrackKind::Audio {
            48_000
        } else {
            90_000
        };
        let (seq, ts) = out.rebase.map(*p.seq_no, p.header.timestamp, now, clock);
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let ext = ExtensionValues {
            audio_level: p.header.ext_vals.audio_level,
            voice_activity: p.header.ext_vals.voice_activity,
            video_orientation: p.header.ext_vals.video_orientation,
            ..ExtensionValues::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), ts, p.timestamp, p.payload.clone())
                .marker(p.header.marker)
                .ext_vals(ext)
                .nackable(kind != TrackKind::Audio),
        );
        true
    }

    /// Marks every receiving stream for rebasing (after a pause in what it was sent).
    pub fn resync_all(&mut self) {
        for o in &mut self.outs {
            o.rebase.synced = false;
        }
    }

    /// Brings `outs` in line with `wanted` (the tracks this peer should receive).
    pub fn subscribe(&mut self, wanted: &[(TrackKey, TrackKind, u64)]) {
        for o in &mut self.outs {
            let keep = wanted.iter().any(|(k, _, _)| *k == o.key);
            if !keep && let OutState::Open(m) = o.state {
                o.state = OutState::ToStop(m);
            }
        }
        self.outs
            .retain(|o| o.state != OutState::ToOpen || wanted.iter().any(|(k, _, _)| *k == o.key));
        for (key, kind, user) in wanted {
            if !self.outs.iter().any(|o| o.key == *key) {
                self.outs.push(TrackOut {
                    key: *key,
                    kind: *kind,
                    user: *user,
                    state: OutState::ToOpen,
                    pt: None,
                    rebase: Rebase::default(),
                });
            }
        }
    }

    /// Drops the consumers (transports of the mediasoup-style signaling) whose track is not
    /// among `sources` any more, with their m-lines.
    pub fn drop_consumers_except(&mut self, sources: &[(TrackKey, TrackKind, u64)]) {
        let mut api = self.rtc.direct_api();
        self.outs.retain(|o| {
            let keep = sources.iter().any(|(k, _, _)| *k == o.key);
            if !keep && let Some(mid) = o.mid() {
                api.remove_media(mid);
            }
            keep
        });
    }

    /// Starts a server offer for pending changes; the SDP to push, if any.
    pub fn negotiate(&mut self) -> Option<String> {
        if !self.connected || self.pending.is_some() || !self.alive || self.direct.is_some() {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        for o in &mut self.outs {
            match o.state {
                OutState::ToOpen => {
                    let media = match o.kind {
                        TrackKind::Audio => MediaKind::Audio,
                        TrackKind::Video | TrackKind::Screen => MediaKind::Video,
                    };
                    let mid = api.add_media(
                        media,
                        Direction::SendOnly,
                        Some(o.user.to_string()),
                        Some(o.kind.name().to_owned()),
                        None,
                    );
                    o.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    api.stop_media(mid);
                    o.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !api.has_changes() {
            return None;
        }
        let (offer, pending) = api.apply()?;
        self.pending = Some(pending);
        Some(crate::sdp::cap_opus_bitrate(
            &offer.to_sdp_string(),
            self.bitrate_kbps,
        ))
    }

    /// The client answered the server offer: opened m-lines start carrying media.
    /// Returns the keys of video tracks that opened (they need a keyframe).
    pub fn answered(&mut self) -> Vec<TrackKey> {
        let opus = self.payload_type(Codec::Opus);
        let vp8 = self.payload_type(Codec::Vp8);
        let mut opened = Vec::new();
        for o in &mut self.outs {
            if let OutState::Negotiating(m) = o.state {
                o.state = OutState::Open(m);
                o.pt = if o.kind == TrackKind::Audio {
                    opus
                } else {
                    vp8
                };
                if o.kind != TrackKind::Audio {
                    opened.push(o.key);
                }
            }
        }
        self.outs
            .retain(|o| !matches!(o.state, OutState::NegotiatingStop(_)));
        opened
    }

    /// A client offer replaced the pending server offer: its changes are redone after.
    pub fn offer_cancelled(&mut self) {
        self.pending = None;
        for o in &mut self.outs {
            match o.state {
                OutState::Negotiating(_) => o.state = OutState::ToOpen,
                OutState::NegotiatingStop(m) => o.state = OutState::ToStop(m),
                _ => {}
            }
        }
    }

    pub fn payload_type(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    /// Keys of the tracks it receives that are open, for keyframe requests after a pause.
    pub fn open_video(&self) -> Vec<TrackKey> {
        self.outs
            .iter()
            .filter(|o| o.kind != TrackKind::Audio && matches!(o.state, OutState::Open(_)))
            .map(|o| o.key)
            .collect()
    }
}

impl TrackOut {
    /// A consumer of the mediasoup-style signaling: open at once on `mid`.
    pub fn open(key: TrackKey, kind: TrackKind, user: u64, mid: Mid, pt: Pt) -> Self {
        TrackOut {
            key,
            kind,
            user,
            state: OutState::Open(mid),
            pt: Some(pt),
            rebase: Rebase::default(),
        }
    }

    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebased_streams_continue_across_a_pause() {
        let t0 = Instant::now();
        let mut r = Rebase::default();
        let (s1, t1) = r.map(40_000, 1_000, t0, 48_000);
        assert!(s1 < 1 << 15, "starts below 2^15 so no ROC is needed");
        let (s2, t2) = r.map(40_001, 1_960, t0, 48_000);
        assert_eq!((s2, t2), (s1 + 1, t1.wrapping_add(960)));
        // A new source (or a pause): the next packet follows on.
        r.synced = false;
        let later = t0 + Duration::from_millis(1000);
        let (s3, t3) = r.map(7, 5, later, 48_000);
        assert_eq!(s3, s2 + 1);
        assert_eq!(t3, t2.wrapping_add(48_000));
    }

    #[test]
    fn speaking_is_debounced_and_ends_after_quiet() {
        let t0 = Instant::now();
        let mut s = Speaking::default();
        assert_eq!(s.observe(-127, t0), None, "silence is not speech");
        assert_eq!(s.observe(-20, t0), Some(true));
        assert_eq!(s.observe(-20, t0 + Duration::from_millis(20)), None);
        assert_eq!(
            s.expire(t0 + Duration::from_millis(300)),
            None,
            "still within the hangover"
        );
        assert_eq!(s.expire(t0 + Duration::from_millis(430)), Some(false));
        // Speech again 50 ms after it ended: held back by the debounce, then reported.
        assert_eq!(s.observe(-20, t0 + Duration::from_millis(480)), None);
        assert!(!s.on);
        assert_eq!(s.observe(-20, t0 + Duration::from_millis(700)), Some(true));
    }
}
