//! The media loop: one task owns every peer, the UDP socket and the ICE-TCP connections.
//!
//! Nothing here is shared or locked: commands arrive over a channel, packets from the
//! socket, and each is handled to completion (forwarded to the room) before the next.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Once;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Input, Rtc, RtcConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::peer::{Action, Peer, TrackKey, Wire};
use crate::tcp::TcpInput;
use crate::{
    Command, Join, PeerId, Policy, RoomId, SfuConfig, SfuError, SfuEvent, SfuStats, TrackKind,
};

/// A peer that has carried nothing (not even ICE consent checks) for this long is gone.
const GONE_AFTER: Duration = Duration::from_secs(30);
/// A voice session of transports none of which has carried anything this long after it was
/// opened is gone (a receiving transport may wait longer while its sibling carries media).
const UNHEARD_AFTER: Duration = Duration::from_secs(60);
/// How often speaking expiry, gone peers and gauges are looked at.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Datagrams read in one go before commands and timers get a turn.
const READ_BATCH: usize = 64;

/// Names and describes the voice metrics (SPEC §5).
pub fn describe_metrics() {
    metrics::describe_gauge!("voice_rooms", "Voice rooms with at least one participant");
    metrics::describe_gauge!(
        "voice_participants",
        "Voice participants connected to this node"
    );
    metrics::describe_counter!(
        "voice_packets_received_total",
        "RTP packets received from participants"
    );
    metrics::describe_counter!(
        "voice_bytes_received_total",
        "RTP payload bytes received from participants"
    );
    metrics::describe_counter!(
        "voice_packets_forwarded_total",
        "RTP packets forwarded to participants"
    );
    metrics::describe_counter!(
        "voice_bytes_forwarded_total",
        "RTP payload bytes forwarded to participants"
    );
    metrics::describe_counter!(
        "voice_packets_lost_total",
        "RTP packets missing from incoming streams (sequence gaps)"
    );
    metrics::describe_counter!(
        "voice_keyframe_requests_total",
        "Keyframe requests (PLI/FIR) sent to senders"
    );
    metrics::describe_histogram!(
        "voice_forward_seconds",
        "Time from a packet's arrival to its last copy leaving the socket"
    );
}

pub(crate) struct Io {
    udp: UdpSocket,
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    events: mpsc::UnboundedSender<SfuEvent>,
}

impl Wire for Io {
    fn transmit(&self, proto: Protocol, to: SocketAddr, data: &[u8]) {
        match proto {
            Protocol::Udp => {
                if let Err(e) = self.udp.try_send_to(data, to)
                    && e.kind() != ErrorKind::WouldBlock
                {
                    tracing::debug!(error = %e, %to, "voice UDP send failed");
                }
            }
            _ => {
                if let Some(conn) = self.tcp.get(&to) {
                    let _ = conn.try_send(data.to_vec());
                }
            }
        }
    }

    fn event(&self, event: SfuEvent) {
        let _ = self.events.send(event);
    }
}

pub(crate) struct Engine {
    pub(crate) io: Io,
    listener: Option<TcpListener>,
    local_udp: SocketAddr,
    announced: SocketAddr,
    cert: DtlsCert,
    pub(crate) peers: HashMap<PeerId, Peer>,
    pub(crate) rooms: HashMap<RoomId, Vec<PeerId>>,
    pub(crate) bitrates: HashMap<RoomId, u32>,
    pub(crate) by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<(Protocol, SocketAddr), PeerId>,
    /// The transports each voice session of the mediasoup-style signaling opened.
    pub(crate) owned: HashMap<PeerId, Vec<PeerId>>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    pub(crate) actions: Vec<Action>,
    /// Peers whose connection failed while being drained, removed after the current work.
    failed: Vec<PeerId>,
    stats: SfuStats,
    forward_started: Option<Instant>,
    /// Reused by `forward` for the receivers of a packet.
    members_scratch: Vec<PeerId>,
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

/// The address to announce: the configured one, else the bound one, else (bound to an
/// unspecified address) the first non-loopback address of this host.
fn announced_ip(config: &SfuConfig, bound: SocketAddr) -> IpAddr {
    if let Some(ip) = config.public_ip {
        return ip;
    }
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    // Connecting a UDP socket sends nothing; it only asks the kernel which source address
    // it would use, which is the host's primary address.
    let probe = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).map(|_| s))
        .and_then(|s| s.local_addr());
    match probe {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// What every peer's `Rtc` speaks: ICE-lite, RTP forwarded as is, Opus and VP8 (at the
/// payload types and header extension ids `xcord_core::voice` advertises).
pub(crate) fn media_config() -> RtcConfig {
    RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
}

/// Binds the UDP socket and, on the same port number, the ICE-TCP listener. With port 0
/// the kernel picks a free UDP port, whose number may be taken for TCP: then another is
/// tried (a bounded number of times).
async fn bind_pair(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let tries = if listen.port() == 0 { 32 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(listen).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free for both UDP and TCP")))
}

impl Engine {
    pub async fn bind(
        config: &SfuConfig,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> std::io::Result<Engine> {
        install_crypto();
        let (udp, listener) = bind_pair(config.listen).await?;
        let local_udp = udp.local_addr()?;
        let announced = SocketAddr::new(announced_ip(config, local_udp), local_udp.port());
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("no DTLS certificate could be made"))?;
        Ok(Engine {
            io: Io {
                udp,
                tcp: HashMap::new(),
                events,
            },
            listener: Some(listener),
            local_udp,
            announced,
            cert,
            peers: HashMap::new(),
            rooms: HashMap::new(),
            bitrates: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            owned: HashMap::new(),
            timers: BinaryHeap::new(),
            actions: Vec::new(),
            failed: Vec::new(),
            stats: SfuStats::default(),
            forward_started: None,
            members_scratch: Vec::new(),
        })
    }

    pub fn local_udp(&self) -> SocketAddr {
        self.local_udp
    }

    pub fn announced(&self) -> SocketAddr {
        self.announced
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let (tcp_tx, mut tcp_rx) = mpsc::channel(4096);
        if let Some(listener) = self.listener.take() {
            tokio::spawn(crate::tcp::accept_loop(listener, tcp_tx, shutdown.clone()));
        }
        let mut buf = vec![0u8; 2048];
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        loop {
            let wake = self
                .timers
                .peek()
                .map(|Reverse((t, _))| *t)
                .unwrap_or(next_housekeeping)
                .min(next_housekeeping);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                ready = self.io.udp.readable() => {
                    if ready.is_ok() {
                        self.read_udp(&mut buf);
                    }
                }
                input = tcp_rx.recv() => if let Some(input) = input {
                    self.on_tcp(input);
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            self.run_timers(now);
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
        }
        metrics::gauge!("voice_rooms").set(0.0);
        metrics::gauge!("voice_participants").set(0.0);
    }

    fn read_udp(&mut self, buf: &mut [u8]) {
        for _ in 0..READ_BATCH {
            match self.io.udp.try_recv_from(buf) {
                Ok((n, source)) => {
                    let now = Instant::now();
                    let Some(data) = buf.get(..n) else { return };
                    self.on_datagram(Protocol::Udp, source, data, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here on some systems; the next read goes on.
                    tracing::trace!(error = %e, "voice UDP receive error");
                    return;
                }
            }
        }
    }

    fn on_tcp(&mut self, input: TcpInput) {
        match input {
            TcpInput::Opened(addr, tx) => {
                self.io.tcp.insert(addr, tx);
            }
            TcpInput::Frame(addr, frame) => {
                self.on_datagram(Protocol::Tcp, addr, &frame, Instant::now());
            }
            TcpInput::Closed(addr) => {
                self.io.tcp.remove(&addr);
                if let Some(id) = self.by_addr.remove(&(Protocol::Tcp, addr))
                    && let Some(p) = self.peers.get_mut(&id)
                {
                    p.addrs.retain(|a| *a != (Protocol::Tcp, addr));
                }
            }
        }
    }

    /// Finds the peer a packet belongs to: STUN by its username fragment (binding the
    /// source address to that peer), anything else by the source address.
    fn route(&mut self, proto: Protocol, source: SocketAddr, data: &[u8]) -> Option<PeerId> {
        // RFC 7983: a first byte of 0–3 is STUN.
        if data.first().is_some_and(|b| *b < 4) {
            let msg = str0m::ice::StunMessage::parse(data).ok()?;
            let (ours, theirs) = msg.split_username()?;
            let id = *self.by_ufrag.get(ours)?;
            // A transport is never told the client's ICE credentials: its first check names
            // them (an ICE-lite agent sends no checks, so it needs no password).
            if let Some(p) = self.peers.get_mut(&id)
                && p.direct.is_some()
                && p.remote_ufrag.is_none()
            {
                p.remote_ufrag = Some(theirs.to_owned());
                p.rtc
                    .direct_api()
                    .set_remote_ice_credentials(str0m::IceCreds {
                        ufrag: theirs.to_owned(),
                        pass: String::new(),
                    });
            }
            let key = (proto, source);
            if self.by_addr.get(&key) != Some(&id) {
                if let Some(old) = self.by_addr.insert(key, id)
                    && let Some(p) = self.peers.get_mut(&old)
                {
                    p.addrs.retain(|a| *a != key);
                }
                if let Some(p) = self.peers.get_mut(&id) {
                    p.addrs.push(key);
                }
            }
            return Some(id);
        }
        self.by_addr.get(&(proto, source)).copied()
    }

    fn on_datagram(&mut self, proto: Protocol, source: SocketAddr, data: &[u8], now: Instant) {
        let Some(id) = self.route(proto, source, data) else {
            return;
        };
        let Ok(receive) = Receive::new(proto, source, self.announced, data) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.last_input = now;
        peer.heard = true;
        if let Err(e) = peer.rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!(peer = id, error = %e, "voice input refused");
        }
        self.forward_started = Some(now);
        self.drain(id, now);
        self.run_actions(now);
        self.forward_started = None;
    }

    pub(crate) fn drain(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let before = peer.deadline;
        peer.drain(&self.io, &mut self.actions, now);
        if !peer.alive || !peer.rtc.is_alive() {
            self.failed.push(id);
        }
        if peer.deadline != before
            && let Some(t) = peer.deadline
        {
            self.timers.push(Reverse((t, id)));
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            // A later deadline replaced this one; its own entry is in the heap.
            if peer.deadline != Some(t) {
                continue;
            }
            peer.deadline = None;
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(peer = id, error = %e, "voice timeout refused");
            }
            self.drain(id, now);
        }
        self.run_actions(now);
    }

    fn run_actions(&mut self, now: Instant) {
        // Bounded: each action can only queue work for other peers once per packet or change.
        let mut rounds = 0;
        while !self.actions.is_empty() && rounds < 64 {
            rounds += 1;
            let batch = std::mem::take(&mut self.actions);
            for action in batch {
                match action {
                    Action::Forward(key, kind, packet) => self.forward(key, kind, &packet, now),
                    Action::Keyframe((source, mid), kind) => {
                        if let Some(p) = self.peers.get_mut(&source)
                            && p.request_keyframe(mid, kind, now)
                        {
                            metrics::counter!("voice_keyframe_requests_total").increment(1);
                            self.drain(source, now);
                        }
                    }
                    Action::Recompute(room) => self.recompute(room),
                }
            }
        }
        self.reap(now);
    }

    fn forward(
        &mut self,
        key: TrackKey,
        kind: TrackKind,
        packet: &str0m::rtp::RtpPacket,
        now: Instant,
    ) {
        let (source, mid) = key;
        let Some(room) = self.peers.get(&source).map(|p| p.room) else {
            return;
        };
        let resync = match self
            .peers
            .get_mut(&source)
            .and_then(|p| p.ins.iter_mut().find(|t| t.mid == mid))
        {
            Some(t) => std::mem::replace(&mut t.gap, false),
            None => return,
        };
        let bytes = packet.payload.len() as u64;
        // The member list is copied into a reusable buffer so the peers can be borrowed
        // mutably while it is walked (draining a receiver never changes the room: failed
        // peers are only removed after the current work, in `reap`).
        let mut members = std::mem::take(&mut self.members_scratch);
        members.clear();
        if let Some(m) = self.rooms.get(&room) {
            members.extend_from_slice(m);
        }
        let mut sent = 0u64;
        for &to in &members {
            if to == source {
                continue;
            }
            let Some(peer) = self.peers.get_mut(&to) else {
                continue;
            };
            if peer.policy.deaf || !peer.alive {
                continue;
            }
            if peer.write(key, kind, packet, resync, now) {
                sent += 1;
                self.drain(to, now);
            }
        }
        self.members_scratch = members;
        if sent > 0 {
            self.stats.packets_out += sent;
            metrics::counter!("voice_packets_forwarded_total").increment(sent);
            metrics::counter!("voice_bytes_forwarded_total").increment(sent * bytes);
            if let Some(arrived) = self.forward_started {
                metrics::histogram!("voice_forward_seconds")
                    .record(arrived.elapsed().as_secs_f64());
            }
        }
    }

    /// Works out what each member of `room` should receive, announces tracks that came or
    /// went, and starts the server offers that follow.
    fn recompute(&mut self, room: RoomId) {
        let Some(members) = self.rooms.get(&room).cloned() else {
            return;
        };
        let mut sources: Vec<(TrackKey, TrackKind, u64)> = Vec::new();
        for id in &members {
            let Some(p) = self.peers.get_mut(id) else {
                continue;
            };
            let allowed: Vec<bool> = p.ins.iter().map(|t| p.allows(t) && p.alive).collect();
            for (t, now_forwarded) in p.ins.iter_mut().zip(allowed) {
                if t.forwarded != now_forwarded {
                    t.forwarded = now_forwarded;
                    t.gap = true;
                    self.io.event(SfuEvent::Track {
                        peer: p.owner,
                        kind: t.kind,
                        added: now_forwarded,
                    });
                }
                if now_forwarded {
                    sources.push(((*id, t.mid), t.kind, p.user));
                }
            }
        }
        for id in &members {
            let Some(p) = self.peers.get_mut(id) else {
                continue;
            };
            if p.direct.is_some() {
                // Consumers are made by command; one whose track stopped goes with it.
                p.drop_consumers_except(&sources);
                continue;
            }
            let wanted: Vec<(TrackKey, TrackKind, u64)> = sources
                .iter()
                .filter(|((from, _), _, _)| from != id)
                .copied()
                .collect();
            p.subscribe(&wanted);
            if let Some(sdp) = p.negotiate() {
                self.io.event(SfuEvent::Offer { peer: *id, sdp });
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join(join, reply) => {
                let result = self.join(*join, now);
                let _ = reply.send(result);
            }
            Command::Leave(id, reply) => {
                let _ = reply.send(self.remove_session(id, now));
            }
            Command::Answer(id, sdp, reply) => {
                let _ = reply.send(self.answer(id, &sdp, now));
            }
            Command::Offer(id, sdp, reply) => {
                let _ = reply.send(self.client_offer(id, &sdp, now));
            }
            Command::Policy(id, policy, reply) => {
                let mut any = false;
                for p in self.session_peers(id) {
                    any |= self.set_policy(p, policy, now);
                }
                let _ = reply.send(any);
            }
            Command::Move(id, room, kbps, reply) => {
                let mut any = false;
                for p in self.session_peers(id) {
                    any |= self.move_peer(p, room, kbps);
                }
                let _ = reply.send(any);
            }
            Command::Open(open, reply) => {
                let _ = reply.send(self.open_transport(*open, now));
            }
            Command::Connect(connect, reply) => {
                let _ = reply.send(self.connect_transport(connect, now));
            }
            Command::Produce(produce, reply) => {
                let _ = reply.send(self.produce(*produce, now));
            }
            Command::Consume(consume, reply) => {
                let _ = reply.send(self.consume(consume, now));
            }
            Command::CloseProducer(session, kind, reply) => {
                let _ = reply.send(self.close_producer(session, kind, now));
            }
            Command::Bitrate(room, kbps) => {
                self.bitrates.insert(room, kbps);
                for id in self.rooms.get(&room).into_iter().flatten() {
                    if let Some(p) = self.peers.get_mut(id) {
                        p.bitrate_kbps = kbps;
                    }
                }
            }
            Command::Stats(reply) => {
                let mut s = self.stats;
                s.rooms = self.rooms.len();
                s.peers = self.session_count();
                s.packets_lost =
                    self.peers.values().map(|p| p.lost).sum::<u64>() + self.stats.packets_lost;
                s.packets_in =
                    self.peers.values().map(|p| p.received).sum::<u64>() + self.stats.packets_in;
                let _ = reply.send(s);
            }
        }
        self.run_actions(now);
    }

    pub(crate) fn new_rtc(&self, now: Instant) -> Result<(Rtc, str0m::IceCreds), SfuError> {
        let creds = str0m::IceCreds::new();
        let local = creds.clone();
        let mut rtc = media_config()
            .set_dtls_cert(self.cert.clone())
            .set_local_ice_credentials(creds)
            .build(now);
        let udp =
            Candidate::host(self.announced, "udp").map_err(|e| SfuError::Refused(e.to_string()))?;
        let tcp = Candidate::builder()
            .tcp()
            .host(self.announced)
            .tcptype(TcpType::Passive)
            .build()
            .map_err(|e| SfuError::Refused(e.to_string()))?;
        rtc.add_local_candidate(udp);
        rtc.add_local_candidate(tcp);
        Ok((rtc, local))
    }

    fn join(&mut self, join: Join, now: Instant) -> Result<String, SfuError> {
        if self.peers.contains_key(&join.peer) {
            return Err(SfuError::DuplicatePeer);
        }
        let offer = crate::sdp::check_offer(&join.offer).map_err(|e| match e {
            crate::OfferError::NoOpus => SfuError::NoOpus,
            crate::OfferError::Unparseable(m) => SfuError::BadSdp(m),
        })?;
        let (mut rtc, creds) = self.new_rtc(now)?;
        let ufrag = creds.ufrag;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Refused(e.to_string()))?;
        let bitrate = self
            .bitrates
            .get(&join.room)
            .copied()
            .unwrap_or(join.bitrate_kbps);
        self.bitrates.insert(join.room, bitrate);
        let mut peer = Peer::new(join.peer, join.room, join.user, rtc, ufrag.clone(), now);
        peer.policy = join.policy;
        peer.bitrate_kbps = bitrate;
        self.peers.insert(join.peer, peer);
        self.by_ufrag.insert(ufrag, join.peer);
        self.rooms.entry(join.room).or_default().push(join.peer);
        self.drain(join.peer, now);
        self.update_gauges();
        Ok(crate::sdp::cap_opus_bitrate(
            &answer.to_sdp_string(),
            bitrate,
        ))
    }

    fn answer(&mut self, id: PeerId, sdp: &str, now: Instant) -> Result<(), SfuError> {
        let answer = crate::sdp::parse_answer(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        let pending = peer.pending.take().ok_or(SfuError::NoOfferPending)?;
        if let Err(e) = peer.rtc.sdp_api().accept_answer(pending, answer) {
            // The offer is spent either way; its changes are redone with the next offer.
            peer.offer_cancelled();
            return Err(SfuError::Refused(e.to_string()));
        }
        let opened = peer.answered();
        let room = peer.room;
        for key in opened {
            self.actions.push(Action::Keyframe(
                key,
                str0m::media::KeyframeRequestKind::Pli,
            ));
        }
        self.drain(id, now);
        self.actions.push(Action::Recompute(room));
        Ok(())
    }

    fn client_offer(&mut self, id: PeerId, sdp: &str, now: Instant) -> Result<String, SfuError> {
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        if peer.pending.is_some() {
            return Err(SfuError::OfferPending);
        }
        let offer = str0m::change::SdpOffer::from_sdp_string(sdp)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Refused(e.to_string()))?;
        let bitrate = peer.bitrate_kbps;
        let room = peer.room;
        self.drain(id, now);
        self.actions.push(Action::Recompute(room));
        Ok(crate::sdp::cap_opus_bitrate(
            &answer.to_sdp_string(),
            bitrate,
        ))
    }

    fn set_policy(&mut self, id: PeerId, policy: Policy, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let was = std::mem::replace(&mut peer.policy, policy);
        let room = peer.room;
        if was.deaf && !policy.deaf {
            // Media resumes: streams rebase over the pause, and video needs a keyframe.
            peer.resync_all();
            for key in peer.open_video() {
                self.actions.push(Action::Keyframe(
                    key,
                    str0m::media::KeyframeRequestKind::Pli,
                ));
            }
        }
        if (policy.self_mute || !policy.audio)
            && let Some(e) = peer.stop_speaking(now)
        {
            self.io.event(e);
        }
        self.actions.push(Action::Recompute(room));
        true
    }

    /// Moves a peer to another room: its tracks leave the old room and reach the new one.
    fn move_peer(&mut self, id: PeerId, room: RoomId, kbps: u32) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let old = std::mem::replace(&mut peer.room, room);
        if old == room {
            return true;
        }
        let bitrate = *self.bitrates.entry(room).or_insert(kbps);
        peer.bitrate_kbps = bitrate;
        // What it received came from the old room's members.
        if peer.direct.is_some() {
            peer.drop_consumers_except(&[]);
        } else {
            peer.subscribe(&[]);
        }
        if let Some(members) = self.rooms.get_mut(&old) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(&old);
                self.bitrates.remove(&old);
            }
        }
        self.rooms.entry(room).or_default().push(id);
        self.actions.push(Action::Recompute(old));
        self.actions.push(Action::Recompute(room));
        self.update_gauges();
        true
    }

    /// A voice session's peers: itself (SDP signaling) or the transports it opened.
    fn session_peers(&self, session: PeerId) -> Vec<PeerId> {
        let mut ids = self.owned.get(&session).cloned().unwrap_or_default();
        if self.peers.contains_key(&session) {
            ids.push(session);
        }
        ids
    }

    /// Removes a voice session: its peer, or every transport it opened.
    fn remove_session(&mut self, session: PeerId, now: Instant) -> bool {
        let mut any = false;
        for id in self.session_peers(session) {
            any |= self.remove(id, now).is_some();
        }
        any
    }

    /// Removes a peer; the others' sessions drop its tracks by renegotiation. Returns the
    /// session it belonged to.
    fn remove(&mut self, id: PeerId, now: Instant) -> Option<PeerId> {
        let mut peer = self.peers.remove(&id)?;
        if peer.direct.is_some()
            && let Some(list) = self.owned.get_mut(&peer.owner)
        {
            list.retain(|t| *t != id);
            if list.is_empty() {
                self.owned.remove(&peer.owner);
            }
        }
        if let Some(e) = peer.stop_speaking(now) {
            self.io.event(e);
        }
        for t in peer.ins.iter().filter(|t| t.forwarded) {
            self.io.event(SfuEvent::Track {
                peer: peer.owner,
                kind: t.kind,
                added: false,
            });
        }
        peer.rtc.disconnect();
        peer.drain(&self.io, &mut Vec::new(), now);
        self.by_ufrag.remove(&peer.ufrag);
        for key in &peer.addrs {
            if self.by_addr.get(key) == Some(&id) {
                self.by_addr.remove(key);
            }
        }
        self.stats.packets_lost += peer.lost;
        self.stats.packets_in += peer.received;
        if let Some(members) = self.rooms.get_mut(&peer.room) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(&peer.room);
                self.bitrates.remove(&peer.room);
            } else {
                self.actions.push(Action::Recompute(peer.room));
            }
        }
        self.update_gauges();
        Some(peer.owner)
    }

    /// Removes peers whose `Rtc` has failed (DTLS errors, closed by the far end).
    fn reap(&mut self, now: Instant) {
        if self.failed.is_empty() {
            return;
        }
        let mut failed = std::mem::take(&mut self.failed);
        failed.sort_unstable();
        failed.dedup();
        for id in failed {
            if let Some(owner) = self.remove(id, now) {
                self.io.event(SfuEvent::Gone { peer: owner });
            }
        }
        if !self.actions.is_empty() {
            let batch = std::mem::take(&mut self.actions);
            for action in batch {
                if let Action::Recompute(room) = action {
                    self.recompute(room);
                }
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let mut gone = Vec::new();
        let mut unheard = Vec::new();
        for p in self.peers.values_mut() {
            if let Some(e) = p.expire_speaking(now) {
                self.io.event(e);
            }
            let quiet = now.saturating_duration_since(p.last_input);
            if p.direct.is_some() && !p.heard {
                // Nothing yet since it was opened (`last_input` is then its opening time).
                if quiet >= UNHEARD_AFTER {
                    unheard.push(p.id);
                }
            } else if quiet >= GONE_AFTER {
                gone.push(p.id);
            }
            if !p.alive || !p.rtc.is_alive() {
                gone.push(p.id);
            }
        }
        for id in unheard {
            let Some(owner) = self.peers.get(&id).map(|p| p.owner) else {
                continue;
            };
            let sibling_heard = self
                .owned
                .get(&owner)
                .into_iter()
                .flatten()
                .filter_map(|t| self.peers.get(t))
                .any(|t| t.heard);
            if !sibling_heard {
                gone.push(id);
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for id in gone {
            if let Some(owner) = self.remove(id, now) {
                self.io.event(SfuEvent::Gone { peer: owner });
            }
        }
        self.run_actions(now);
        let lost: u64 = self.peers.values().map(|p| p.lost).sum::<u64>() + self.stats.packets_lost;
        metrics::counter!("voice_packets_lost_total").absolute(lost);
    }

    /// Voice sessions: an SDP peer each, and the sessions that opened transports.
    fn session_count(&self) -> usize {
        self.peers.values().filter(|p| p.direct.is_none()).count() + self.owned.len()
    }

    pub(crate) fn update_gauges(&self) {
        metrics::gauge!("voice_rooms").set(self.rooms.len() as f64);
        metrics::gauge!("voice_participants").set(self.session_count() as f64);
    }
}
