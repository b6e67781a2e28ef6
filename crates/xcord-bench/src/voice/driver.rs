//! Voice clients: str0m peers in RTP mode, many per task.
//!
//! A driver task owns a set of `Rtc`s and a heap of their deadlines (the next str0m timeout
//! or the next packet to send, whichever is first), like the SFU's own media loop. Each
//! client has its own UDP socket on 127.0.0.1 (the SFU tells peers apart by source address);
//! a small reader task per socket hands datagrams to the driver over a bounded channel, so
//! the driver never polls sockets that have nothing to read. Signaling (the REST offer and
//! answers, the gateway's VOICE_SDP offers) reaches the driver as commands.
//!
//! Every audio packet carries a header of the tool's own in its payload: the sender's room
//! slot, its sequence number and its send time in nanoseconds after a shared `Instant`, so a
//! receiver in this process measures in → out latency and per-stream loss.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::report::Latencies;

/// One packet every 20 ms, as Opus sends.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// RTP ticks per packet at 48 kHz.
const TICKS_PER_PACKET: u32 = 960;
/// Payload bytes of each packet (a 20 ms Opus frame at about 40 kbit/s).
pub const PAYLOAD_BYTES: usize = 120;
/// Marks payloads written by this tool.
const MAGIC: u32 = 0x7863_6231;
/// Outputs taken from one `Rtc` in one go; str0m ends with a timeout well before this.
const MAX_OUTPUTS: usize = 4096;
/// Inputs handled before timers get a turn.
const INPUT_BATCH: usize = 256;
/// A sender that fell this far behind its schedule skips ahead instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(100);

/// The clock shared by senders and receivers, and the measurement window on it.
#[derive(Debug)]
pub struct Clock {
    epoch: Instant,
    window_start: AtomicU64,
    window_end: AtomicU64,
}

impl Clock {
    /// A clock starting now, with no window.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
        }
    }

    /// Nanoseconds from the epoch to `at`.
    pub fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Packets sent in `[start, end)` are counted and timed.
    pub fn set_window(&self, start: Instant, end: Instant) {
        self.window_end.store(self.ns(end), Ordering::Release);
        self.window_start.store(self.ns(start), Ordering::Release);
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window_start.load(Ordering::Acquire)
            && sent_ns < self.window_end.load(Ordering::Acquire)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The tool's header inside an RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's place in its room.
    pub slot: u32,
    /// The sender's own packet counter.
    pub seq: u64,
    /// When it was sent, in nanoseconds on the shared clock.
    pub sent_ns: u64,
}

impl Stamp {
    const LEN: usize = 4 + 4 + 8 + 8;

    /// A payload of `len` bytes (at least the header) carrying this stamp.
    pub fn payload(&self, len: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(len.max(Self::LEN));
        p.extend_from_slice(&MAGIC.to_be_bytes());
        p.extend_from_slice(&self.slot.to_be_bytes());
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.sent_ns.to_be_bytes());
        p.resize(len.max(Self::LEN), 0xa5);
        p
    }

    /// The stamp in a payload written by [`Stamp::payload`].
    pub fn parse(p: &[u8]) -> Option<Self> {
        let word = |at: usize| p.get(at..at + 4)?.try_into().ok().map(u32::from_be_bytes);
        let long = |at: usize| p.get(at..at + 8)?.try_into().ok().map(u64::from_be_bytes);
        if word(0)? != MAGIC {
            return None;
        }
        Some(Self {
            slot: word(4)?,
            seq: long(8)?,
            sent_ns: long(16)?,
        })
    }
}

/// A new client for a driver.
pub struct NewClient {
    /// Its index in the driver (the next free one).
    pub index: usize,
    /// Its socket; the driver sends from it, a reader task receives on it.
    pub socket: Arc<UdpSocket>,
    /// The room it is in (for the report).
    pub room: usize,
    /// Its place in the room.
    pub slot: u32,
    /// Participants in its room.
    pub room_size: usize,
}

/// What a driver is asked to do.
pub enum Work {
    /// A datagram for client `client`, read at `at`.
    Datagram {
        client: usize,
        from: SocketAddr,
        data: Vec<u8>,
        at: Instant,
    },
    /// Adds a client and returns its SDP offer (one send-only Opus m-line).
    Add(Box<NewClient>, oneshot::Sender<anyhow::Result<String>>),
    /// The server's answer to a client's offer.
    Answer(usize, String, oneshot::Sender<anyhow::Result<()>>),
    /// A server offer (VOICE_SDP); returns the client's answer.
    Offer(usize, String, oneshot::Sender<anyhow::Result<String>>),
    /// How far the clients are.
    Status(oneshot::Sender<Status>),
    /// The window's figures (and a fresh start for the next window).
    Collect(oneshot::Sender<Collected>),
    /// Ends the driver.
    Stop,
}

/// Progress of a driver's clients.
#[derive(Debug, Default, Clone, Copy)]
pub struct Status {
    /// Clients added.
    pub clients: usize,
    /// ICE and DTLS are up.
    pub connected: usize,
    /// Clients that have heard every other member of their room.
    pub hearing_all: usize,
    /// Clients whose `Rtc` failed.
    pub failed: usize,
}

/// One client's window.
#[derive(Debug, Clone)]
pub struct ClientWindow {
    /// Its room.
    pub room: usize,
    /// Its place in the room.
    pub slot: u32,
    /// Packets it sent in the window.
    pub sent: u64,
    /// Packets sent in the window that it received, by sender slot.
    pub received: Vec<u64>,
}

/// A driver's window.
#[derive(Debug, Default)]
pub struct Collected {
    /// Per client.
    pub clients: Vec<ClientWindow>,
    /// Send → receive of every packet counted.
    pub latency: Latencies,
    /// Datagrams the sockets dropped because the driver's queue was full.
    pub queue_full: u64,
}

struct Client {
    rtc: Rtc,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    room: usize,
    slot: u32,
    room_size: usize,
    pending: Option<SdpPendingOffer>,
    mid: Option<Mid>,
    pt: Option<Pt>,
    connected: bool,
    failed: bool,
    seq: u64,
    rtp_time: u32,
    next_send: Option<Instant>,
    rtc_deadline: Instant,
    /// The deadline in the heap (a later push replaces it).
    deadline: Option<Instant>,
    heard: Vec<bool>,
    sent: u64,
    received: Vec<u64>,
}

impl Client {
    fn due(&self) -> Instant {
        match self.next_send {
            Some(s) => s.min(self.rtc_deadline),
            None => self.rtc_deadline,
        }
    }

    fn hears_all(&self) -> bool {
        self.heard.iter().filter(|h| **h).count() + 1 >= self.room_size
    }
}

/// Whether `cert` and the crypto provider are ready; str0m needs a process default.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

/// One certificate for every client, so adding one costs no key generation.
pub fn certificate() -> anyhow::Result<DtlsCert> {
    install_crypto();
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .context("no DTLS certificate could be made")
}

/// A running driver: its input queue.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Work>,
    full: Arc<AtomicU64>,
}

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Work) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| anyhow!("the voice driver stopped"))?;
        rx.await.map_err(|_| anyhow!("the voice driver stopped"))
    }

    /// Adds a client; its offer.
    pub async fn add(&self, client: NewClient) -> anyhow::Result<String> {
        self.ask(|r| Work::Add(Box::new(client), r)).await?
    }

    /// Gives client `i` the server's answer.
    pub async fn answer(&self, i: usize, sdp: String) -> anyhow::Result<()> {
        self.ask(|r| Work::Answer(i, sdp, r)).await?
    }

    /// Gives client `i` a server offer; its answer.
    pub async fn offer(&self, i: usize, sdp: String) -> anyhow::Result<String> {
        self.ask(|r| Work::Offer(i, sdp, r)).await?
    }

    /// Progress.
    pub async fn status(&self) -> anyhow::Result<Status> {
        self.ask(Work::Status).await
    }

    /// The window's figures.
    pub async fn collect(&self) -> anyhow::Result<Collected> {
        let mut c = self.ask(Work::Collect).await?;
        c.queue_full = self.full.swap(0, Ordering::Relaxed);
        Ok(c)
    }

    /// Ends the driver.
    pub async fn stop(&self) {
        let _ = self.tx.send(Work::Stop).await;
    }

    /// Reads `socket` for client `client` until the driver stops or the task is aborted.
    pub fn spawn_reader(
        &self,
        set: &mut tokio::task::JoinSet<()>,
        client: usize,
        socket: Arc<UdpSocket>,
    ) {
        let tx = self.tx.clone();
        let full = self.full.clone();
        set.spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut errors = 0u32;
            // Ends with the driver (its queue closes) or after persistent socket errors.
            while errors < 1000 {
                let (n, from) = match socket.recv_from(&mut buf).await {
                    Ok(r) => r,
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                };
                errors = 0;
                let at = Instant::now();
                let data = buf.get(..n).unwrap_or_default().to_vec();
                match tx.try_send(Work::Datagram {
                    client,
                    from,
                    data,
                    at,
                }) {
                    Ok(()) => {}
                    // Like a full socket buffer: the datagram is lost, and counted.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
    }
}

/// Starts a driver task.
pub fn spawn(cert: DtlsCert, clock: Arc<Clock>, tasks: &mut tokio::task::JoinSet<()>) -> Handle {
    // Bounded: a driver that cannot keep up loses datagrams (counted), as a slow client
    // would, instead of growing a queue without limit.
    let (tx, rx) = mpsc::channel(16_384);
    let driver = Driver {
        cert,
        clock,
        clients: Vec::new(),
        heap: BinaryHeap::new(),
        latency: Latencies::default(),
    };
    tasks.spawn(driver.run(rx));
    Handle {
        tx,
        full: Arc::new(AtomicU64::new(0)),
    }
}

struct Driver {
    cert: DtlsCert,
    clock: Arc<Clock>,
    clients: Vec<Option<Client>>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    latency: Latencies,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        loop {
            let wake = self
                .heap
                .peek()
                .map(|Reverse((t, _))| *t)
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
            tokio::select! {
                biased;
                input = rx.recv() => {
                    let Some(input) = input else { return };
                    if !self.on_input(input) {
                        return;
                    }
                    for _ in 0..INPUT_BATCH {
                        match rx.try_recv() {
                            Ok(input) => if !self.on_input(input) { return },
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.run_timers(Instant::now());
        }
    }

    /// Handles one input; false to stop.
    fn on_input(&mut self, input: Work) -> bool {
        let now = Instant::now();
        match input {
            Work::Datagram {
                client,
                from,
                data,
                at,
            } => self.on_datagram(client, from, &data, at, now),
            Work::Add(c, reply) => {
                let _ = reply.send(self.add(*c, now));
            }
            Work::Answer(i, sdp, reply) => {
                let r = self.accept_answer(i, &sdp);
                self.drain(i, now, None);
                let _ = reply.send(r);
            }
            Work::Offer(i, sdp, reply) => {
                let r = self.accept_offer(i, &sdp);
                self.drain(i, now, None);
                let _ = reply.send(r);
            }
            Work::Status(reply) => {
                let mut s = Status::default();
                for c in self.clients.iter().flatten() {
                    s.clients += 1;
                    s.connected += usize::from(c.connected);
                    s.hearing_all += usize::from(c.hears_all());
                    s.failed += usize::from(c.failed);
                }
                let _ = reply.send(s);
            }
            Work::Collect(reply) => {
                let mut out = Collected {
                    latency: std::mem::take(&mut self.latency),
                    ..Collected::default()
                };
                for c in self.clients.iter_mut().flatten() {
                    out.clients.push(ClientWindow {
                        room: c.room,
                        slot: c.slot,
                        sent: std::mem::take(&mut c.sent),
                        received: std::mem::replace(&mut c.received, vec![0; c.room_size]),
                    });
                }
                let _ = reply.send(out);
            }
            Work::Stop => return false,
        }
        true
    }

    fn add(&mut self, c: NewClient, now: Instant) -> anyhow::Result<String> {
        let local = c.socket.local_addr()?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .set_dtls_cert(self.cert.clone())
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| anyhow!("candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some("bench".into()),
            Some("audio".into()),
            None,
        );
        let (offer, pending) = api.apply().context("no offer was made")?;
        let index = c.index;
        if self.clients.len() <= index {
            self.clients.resize_with(index + 1, || None);
        }
        self.clients[index] = Some(Client {
            rtc,
            socket: c.socket,
            local,
            room: c.room,
            slot: c.slot,
            room_size: c.room_size,
            pending: Some(pending),
            mid: Some(mid),
            pt: None,
            connected: false,
            failed: false,
            seq: u64::from(rand::random::<u16>() >> 1),
            rtp_time: rand::random(),
            next_send: None,
            rtc_deadline: now,
            deadline: None,
            heard: vec![false; c.room_size],
            sent: 0,
            received: vec![0; c.room_size],
        });
        self.drain(index, now, None);
        Ok(offer.to_sdp_string())
    }

    fn client(&mut self, i: usize) -> anyhow::Result<&mut Client> {
        self.clients
            .get_mut(i)
            .and_then(Option::as_mut)
            .context("no such client")
    }

    fn accept_answer(&mut self, i: usize, sdp: &str) -> anyhow::Result<()> {
        let c = self.client(i)?;
        let pending = c.pending.take().context("no offer pending")?;
        let answer = SdpAnswer::from_sdp_string(sdp).context("the answer does not parse")?;
        c.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .context("the answer was refused")?;
        c.pt = c
            .rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt());
        Ok(())
    }

    fn accept_offer(&mut self, i: usize, sdp: &str) -> anyhow::Result<String> {
        let c = self.client(i)?;
        let offer = SdpOffer::from_sdp_string(sdp).context("the offer does not parse")?;
        let answer = c
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .context("the offer was refused")?;
        Ok(answer.to_sdp_string())
    }

    fn on_datagram(&mut self, i: usize, from: SocketAddr, data: &[u8], at: Instant, now: Instant) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.failed {
            return;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, from, c.local, data) else {
            return;
        };
        // A refused datagram (as the SFU does too) is not the end of the connection; a
        // dead `Rtc` shows in `poll_output` or `is_alive`.
        let _ = c.rtc.handle_input(Input::Receive(now, receive));
        self.drain(i, now, Some(at));
    }

    fn run_timers(&mut self, now: Instant) {
        // Bounded by the heap: every entry is popped once, and each client pushes at most
        // one entry per drain.
        let mut budget = self.heap.len() + self.clients.len() + 1;
        while budget > 0 {
            budget -= 1;
            let Some(Reverse((t, i))) = self.heap.peek().copied() else {
                break;
            };
            if t > now {
                break;
            }
            self.heap.pop();
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if c.deadline != Some(t) || c.failed {
                continue;
            }
            c.deadline = None;
            if let Some(at) = c.next_send
                && at <= now
            {
                send_packet(c, &self.clock, now);
                let mut next = at + PACKET_INTERVAL;
                if next + MAX_LAG < now {
                    next = now + PACKET_INTERVAL;
                }
                c.next_send = Some(next);
            }
            if c.rtc_deadline <= now {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            self.drain(i, now, None);
        }
    }

    /// Takes a client's output: transmissions go out, events are counted, and its next
    /// deadline goes into the heap.
    fn drain(&mut self, i: usize, now: Instant, rx_at: Option<Instant>) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        for _ in 0..MAX_OUTPUTS {
            let output = match c.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("voice client {i} failed: {e}");
                    c.failed = true;
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    c.rtc_deadline = t;
                    break;
                }
                Output::Transmit(t) => {
                    if let Err(e) = c.socket.try_send_to(&t.contents, t.destination)
                        && e.kind() != ErrorKind::WouldBlock
                    {
                        eprintln!("voice client {i} failed to send: {e}");
                        c.failed = true;
                    }
                }
                Output::Event(Event::Connected) => {
                    c.connected = true;
                    // Senders start spread over one interval, as real talkers would.
                    let spread = PACKET_INTERVAL.mul_f64(rand::random::<f64>());
                    c.next_send = Some(now + spread);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let Some(stamp) = Stamp::parse(&p.payload) else {
                        continue;
                    };
                    let slot = stamp.slot as usize;
                    if let Some(h) = c.heard.get_mut(slot) {
                        *h = true;
                    }
                    if self.clock.in_window(stamp.sent_ns) {
                        if let Some(n) = c.received.get_mut(slot) {
                            *n += 1;
                        }
                        let at = self.clock.ns(rx_at.unwrap_or(now));
                        self.latency
                            .add(Duration::from_nanos(at.saturating_sub(stamp.sent_ns)));
                    }
                }
                Output::Event(_) => {}
            }
        }
        if !c.rtc.is_alive() && !c.failed {
            eprintln!("voice client {i} failed: its connection closed");
            c.failed = true;
        }
        let due = c.due();
        if c.deadline.is_none_or(|d| due < d) {
            c.deadline = Some(due);
            self.heap.push(Reverse((due, i)));
        }
    }
}

/// Writes the client's next audio packet (once it can send).
fn send_packet(c: &mut Client, clock: &Clock, now: Instant) {
    let (Some(mid), Some(pt), true) = (c.mid, c.pt, c.connected) else {
        return;
    };
    let sent_ns = clock.ns(now);
    let stamp = Stamp {
        slot: c.slot,
        seq: c.seq,
        sent_ns,
    };
    let mut api = c.rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, None) else {
        return;
    };
    tx.write_rtp(RtpWrite::new(
        pt,
        SeqNo::from(c.seq),
        c.rtp_time,
        now,
        stamp.payload(PAYLOAD_BYTES),
    ));
    c.seq += 1;
    c.rtp_time = c.rtp_time.wrapping_add(TICKS_PER_PACKET);
    if clock.in_window(sent_ns) {
        c.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_foreign_payloads_are_ignored() {
        let s = Stamp {
            slot: 7,
            seq: 123_456,
            sent_ns: 9_876_543_210,
        };
        let p = s.payload(PAYLOAD_BYTES);
        assert_eq!(p.len(), PAYLOAD_BYTES);
        assert_eq!(Stamp::parse(&p), Some(s));
        assert_eq!(Stamp::parse(&p[..10]), None);
        assert_eq!(Stamp::parse(&[0u8; 40]), None);
    }

    #[test]
    fn the_window_counts_what_was_sent_inside_it() {
        let clock = Clock::new();
        let t = Instant::now();
        assert!(!clock.in_window(clock.ns(t)), "no window yet");
        clock.set_window(t, t + Duration::from_secs(1));
        assert!(clock.in_window(clock.ns(t)));
        assert!(!clock.in_window(clock.ns(t + Duration::from_secs(1))));
    }
}
