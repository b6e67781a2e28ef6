//! `xcord-bench voice`: rooms of WebRTC participants talking through the SFU.
//!
//! Each room is a server of its own with its voice channel; each participant is a
//! registered member with a gateway connection (a voice session ends with its user's last
//! gateway session, and the server's renegotiation offers arrive over it) and a str0m peer
//! that sends 50 Opus-sized packets a second. Rooms join in steps (`--rooms 50,100,200`);
//! after each step and a warm-up, one window measures forwarding: packets/s (the server's
//! counters and the clients' own receipts), server CPU per forwarded packet, send → receive
//! latency, loss per receiving stream, server memory per participant, and the CPU of the
//! server, its busiest thread and this tool.

pub mod driver;
pub mod scrape;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{FutureExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::proc::{self, Sampler};
use crate::report::{Latencies, Report, Row};
use crate::rest::{self, Api, Member, must};
use crate::{gateway, loopback_target, phase};
use driver::{Clock, Collected, Handle, NewClient, Status};
use scrape::Scrape;

/// What a voice run does.
#[derive(Debug, Clone)]
pub struct VoiceOptions {
    /// `http://127.0.0.1:PORT` (loopback only).
    pub target: String,
    /// The server's pid, for RSS and CPU.
    pub server_pid: Option<u32>,
    /// Rooms in play at each step, increasing (one step: one figure).
    pub rooms: Vec<usize>,
    /// Participants per room.
    pub participants: usize,
    /// Seconds between everyone hearing everyone and the window.
    pub warmup: Duration,
    /// Length of each measurement window.
    pub secs: Duration,
    /// Tasks driving the clients.
    pub drivers: usize,
    /// Joins (offer, POST, answer) in flight.
    pub concurrency: usize,
    /// Loopback source addresses for gateway connections.
    pub sources: u8,
    /// Time limit of every phase.
    pub phase_limit: Duration,
}

impl Default for VoiceOptions {
    fn default() -> Self {
        Self {
            target: "http://127.0.0.1:3000".into(),
            server_pid: None,
            rooms: vec![1],
            participants: 5,
            warmup: Duration::from_secs(3),
            secs: Duration::from_secs(20),
            drivers: 2,
            concurrency: 32,
            sources: 4,
            phase_limit: Duration::from_secs(180),
        }
    }
}

/// A room of the run.
struct Room {
    members: Vec<Member>,
    channel: String,
}

/// A participant's place: its room, slot, driver and index there.
#[derive(Debug, Clone, Copy)]
struct Seat {
    room: usize,
    slot: usize,
    driver: usize,
    index: usize,
}

/// Is this frame a VOICE_SDP (op 63)?
fn is_voice_sdp(frame: &str) -> bool {
    frame.contains(r#""t":"VOICE_SDP""#)
}

/// Sets up the rooms: members registered, a server each, its voice channel open to all.
async fn setup_rooms(api: &Api, rooms: usize, participants: usize) -> anyhow::Result<Vec<Room>> {
    let run = hex::encode(rand::random::<[u8; 3]>());
    futures_util::stream::iter(0..rooms)
        .map(|r| {
            let api = api.clone();
            let run = format!("{run}r{r}");
            async move {
                let world = rest::setup_named(&api, &run, participants, 4).await?;
                let (channel, limit) =
                    world.voice.context("the new server has no voice channel")?;
                let owner = world.members.first().context("no members")?;
                if limit != 0 && limit < participants as u64 {
                    let (status, body) = api
                        .patch(
                            &owner.token,
                            &format!("/channels/{channel}"),
                            &json!({"userLimit": 0}),
                        )
                        .await?;
                    must(status, &body, "lift the voice channel's user limit")?;
                }
                Ok::<_, anyhow::Error>(Room {
                    members: world.members,
                    channel,
                })
            }
        })
        // Few writes at once: SQLite serializes them, and a burst of registrations can
        // outlast its busy timeout.
        .buffered(2)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// One participant joining: a socket, a client in its driver, the REST offer/answer; then
/// it answers the server's offers from its gateway frames until aborted.
#[allow(clippy::too_many_arguments)]
async fn participate(
    api: Api,
    handle: Handle,
    seat: Seat,
    room_size: usize,
    socket: Arc<UdpSocket>,
    channel: String,
    token: String,
    mut frames: tokio::sync::mpsc::Receiver<String>,
    joined: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
) {
    let join = async {
        let offer = handle
            .add(NewClient {
                index: seat.index,
                socket,
                room: seat.room,
                slot: seat.slot as u32,
                room_size,
            })
            .await?;
        let (status, body) = api
            .post(
                Some(&token),
                &format!("/channels/{channel}/voice"),
                &json!({"sdp": offer}),
            )
            .await?;
        must(status, &body, "join voice")?;
        let session = body["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_owned();
        let answer = body["sdp"].as_str().context("no answer")?.to_owned();
        handle.answer(seat.index, answer).await?;
        Ok::<_, anyhow::Error>(session)
    };
    let session = match join.await {
        Ok(s) => {
            let _ = joined.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = joined.send(Err(e));
            return;
        }
    };
    // Ends when the gateway reader ends (its sender drops) or the task is aborted.
    while let Some(frame) = frames.recv().await {
        let Ok(v) = serde_json::from_str::<Value>(&frame) else {
            continue;
        };
        let d = &v["d"];
        if d["sessionId"].as_str() != Some(session.as_str()) {
            continue;
        }
        let Some(offer) = d["sdp"].as_str() else {
            continue;
        };
        let Ok(answer) = handle.offer(seat.index, offer.to_owned()).await else {
            continue;
        };
        let path = format!("/channels/{channel}/voice/{session}/answer");
        if let Ok((status, body)) = api.post(Some(&token), &path, &json!({"sdp": answer})).await
            && status != 204
        {
            eprintln!("answer refused with {status}: {body}");
        }
    }
}

/// What the drivers saw in a window, summed.
struct ClientFigures {
    received: u64,
    expected: u64,
    streams: usize,
    lossy_streams: usize,
    worst_stream_loss_pct: f64,
    queue_full: u64,
    latency: Latencies,
}

fn summarize(collected: Vec<Collected>) -> ClientFigures {
    let mut latency = Latencies::default();
    let mut queue_full = 0;
    let mut clients = Vec::new();
    for c in collected {
        latency.merge(c.latency);
        queue_full += c.queue_full;
        clients.extend(c.clients);
    }
    let sent: HashMap<(usize, u32), u64> =
        clients.iter().map(|c| ((c.room, c.slot), c.sent)).collect();
    let mut f = ClientFigures {
        received: 0,
        expected: 0,
        streams: 0,
        lossy_streams: 0,
        worst_stream_loss_pct: 0.0,
        queue_full,
        latency,
    };
    for c in &clients {
        for (slot, &got) in c.received.iter().enumerate() {
            let slot = slot as u32;
            if slot == c.slot {
                continue;
            }
            let Some(&want) = sent.get(&(c.room, slot)) else {
                continue;
            };
            f.streams += 1;
            f.expected += want;
            f.received += got.min(want);
            if got < want {
                f.lossy_streams += 1;
                let pct = (want - got) as f64 / want as f64 * 100.0;
                f.worst_stream_loss_pct = f.worst_stream_loss_pct.max(pct);
            }
        }
    }
    f
}

async fn scrape(api: &Api) -> anyhow::Result<Scrape> {
    Ok(Scrape::parse(&api.get_text("/metrics").await?))
}

async fn statuses(drivers: &[Handle]) -> anyhow::Result<Status> {
    let mut total = Status::default();
    for d in drivers {
        let s = d.status().await?;
        total.clients += s.clients;
        total.connected += s.connected;
        total.hearing_all += s.hearing_all;
        total.failed += s.failed;
    }
    Ok(total)
}

/// Runs the voice benchmark and returns its report.
pub async fn run_voice(opts: &VoiceOptions) -> anyhow::Result<Report> {
    let (ip, port) = loopback_target(&opts.target)?;
    let IpAddr::V4(_) = ip else {
        bail!("the voice mode needs an IPv4 loopback target");
    };
    let mut steps = opts.rooms.clone();
    steps.retain(|r| *r > 0);
    steps.dedup();
    if steps.is_empty() || steps.windows(2).any(|w| w[0] > w[1]) {
        bail!("--rooms must be increasing room counts, e.g. 50,100,200");
    }
    let participants = opts.participants;
    if !(2..=99).contains(&participants) {
        bail!("--participants must be 2–99 (a voice channel's user limit is at most 99)");
    }
    let total_rooms = steps.last().copied().unwrap_or(1);
    let api = Api::new(&format!("http://{ip}:{port}"))?;
    let server = Sampler::new(opts.server_pid);
    let me = Sampler::new(Some(std::process::id()));
    let limit = opts.phase_limit;
    let mut report = Report::default();

    // Is there an SFU, and does /metrics carry its counters?
    scrape(&api).await.context("the server's /metrics")?;

    let started = Instant::now();
    let rooms = phase(
        "voice setup",
        limit,
        setup_rooms(&api, total_rooms, participants),
    )
    .await?;
    report.push(
        Row::new("voice_setup")
            .num("rooms", rooms.len() as f64)
            .num("members", (rooms.len() * participants) as f64)
            .num("secs", started.elapsed().as_secs_f64()),
    );

    let drivers_n = opts.drivers.max(1);
    let cert = driver::certificate()?;
    let clock = Arc::new(Clock::new());
    let mut driver_tasks = JoinSet::new();
    let drivers: Vec<Handle> = (0..drivers_n)
        .map(|_| driver::spawn(cert.clone(), clock.clone(), &mut driver_tasks))
        .collect();
    let mut readers = JoinSet::new();
    let mut gateways = JoinSet::new();
    let mut talkers = JoinSet::new();
    let dropped_frames = Arc::new(AtomicU64::new(0));
    let mut next_index = vec![0usize; drivers_n];
    let mut seat_count = 0usize;

    // Memory before any media session (gateway connections are opened per step, and
    // counted in the figure, since a participant needs one).
    let base = server.sample();
    let mut joined_rooms = 0usize;
    for &step in &steps {
        let step_started = Instant::now();
        let mut joins = Vec::new();
        for (r, room) in rooms.iter().enumerate().take(step).skip(joined_rooms) {
            for (slot, m) in room.members.iter().enumerate() {
                let d = seat_count % drivers_n;
                let seat = Seat {
                    room: r,
                    slot,
                    driver: d,
                    index: next_index[d],
                };
                next_index[d] += 1;
                let source = gateway::source_addr(seat_count, opts.sources);
                seat_count += 1;
                joins.push((seat, room.channel.clone(), m.token.clone(), source));
            }
        }
        // Gateway connections first: the voice session lives as long as they do.
        let conns = phase(
            "voice gateway",
            limit,
            futures_util::stream::iter(
                joins
                    .iter()
                    .map(|(_, _, token, source)| gateway::connect(ip, port, *source, token)),
            )
            .buffered(64)
            .collect::<Vec<_>>()
            .map(|conns| conns.into_iter().collect::<anyhow::Result<Vec<_>>>()),
        )
        .await
        .context("gateway connections for the participants")?;
        let mut waiting = Vec::new();
        for ((seat, channel, token, _), conn) in joins.into_iter().zip(conns) {
            // The server waits for an answer before its next offer, so one or two frames
            // are in flight at most.
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            gateways.spawn(gateway::forward_frames(
                conn,
                is_voice_sdp,
                tx,
                dropped_frames.clone(),
            ));
            let socket = Arc::new(
                UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
                    .await
                    .context("bind a UDP socket on 127.0.0.1")?,
            );
            let handle = drivers[seat.driver].clone();
            handle.spawn_reader(&mut readers, seat.index, socket.clone());
            let (done, joined) = tokio::sync::oneshot::channel();
            waiting.push((
                seat,
                handle.clone(),
                socket,
                channel,
                token,
                rx,
                done,
                joined,
            ));
        }
        // Joins are started `concurrency` at a time; each then stays to answer offers.
        let mut results = Vec::new();
        let mut pending = std::collections::VecDeque::new();
        let max_in_flight = opts.concurrency.max(1);
        let join_phase = async {
            for (seat, handle, socket, channel, token, rx, done, joined) in waiting {
                talkers.spawn(participate(
                    api.clone(),
                    handle,
                    seat,
                    participants,
                    socket,
                    channel,
                    token,
                    rx,
                    done,
                ));
                pending.push_back(joined);
                while pending.len() >= max_in_flight {
                    if let Some(j) = pending.pop_front() {
                        results.push(j.await);
                    }
                }
            }
            while let Some(j) = pending.pop_front() {
                results.push(j.await);
            }
        };
        phase("voice join", limit, async {
            join_phase.await;
            Ok(())
        })
        .await?;
        for r in results {
            r.context("a participant's task ended")??;
        }
        joined_rooms = step;
        let joined_secs = step_started.elapsed().as_secs_f64();

        // Everyone connected and hearing every other member of the room.
        let want = step * participants;
        let ready = phase("voice ready", limit, async {
            loop {
                let s = statuses(&drivers).await?;
                if s.failed > 0 {
                    bail!("{} voice clients failed", s.failed);
                }
                if s.hearing_all >= want {
                    return Ok(s);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await?;
        let ready_secs = step_started.elapsed().as_secs_f64();
        tokio::time::sleep(opts.warmup).await;

        // The window.
        let m0 = scrape(&api).await?;
        let (s0, me0) = (server.sample(), me.sample());
        let threads0 = proc::thread_ticks(opts.server_pid);
        let w0 = Instant::now();
        clock.set_window(w0, w0 + opts.secs);
        tokio::time::sleep(opts.secs).await;
        let m1 = scrape(&api).await?;
        let (s1, me1) = (server.sample(), me.sample());
        let threads1 = proc::thread_ticks(opts.server_pid);
        let secs = w0.elapsed().as_secs_f64();
        // Late packets of the window still count.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut collected = Vec::new();
        for d in &drivers {
            collected.push(d.collect().await?);
        }
        let mut f = summarize(collected);
        let m = m0.delta(&m1);
        let cpu_secs = s0
            .zip(s1)
            .map(|(a, b)| b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / 100.0);
        let loss_pct = if f.expected == 0 {
            None
        } else {
            Some((f.expected - f.received) as f64 / f.expected as f64 * 100.0)
        };
        report.push(
            Row::new("voice")
                .num("rooms", step as f64)
                .num("participants", (step * participants) as f64)
                .num("join_secs", joined_secs)
                .num("ready_secs", ready_secs)
                .num("connected", ready.connected as f64)
                .num("window_secs", secs)
                .num("server_received_per_sec", m.received / secs)
                .num("server_forwarded_per_sec", m.forwarded / secs)
                .num("client_received_per_sec", f.received as f64 / secs)
                .opt(
                    "server_cpu_us_per_forwarded",
                    cpu_secs
                        .filter(|_| m.forwarded > 0.0)
                        .map(|c| c * 1e6 / m.forwarded),
                )
                .opt("server_cpu_pct", proc::cpu_pct(s0, s1))
                .opt(
                    "server_busiest_thread_pct",
                    proc::busiest_thread_pct(&threads0, &threads1, secs),
                )
                .opt("tool_cpu_pct", proc::cpu_pct(me0, me1))
                .ms("latency_p50_ms", f.latency.p(50.0))
                .ms("latency_p99_ms", f.latency.p(99.0))
                .ms("latency_max_ms", f.latency.max())
                .opt(
                    "server_fwd_mean_ms",
                    (m.forward_count > 0.0).then(|| m.forward_sum / m.forward_count * 1000.0),
                )
                .opt("server_fwd_within_0_5ms_pct", m.pct_within(0.0005))
                .opt("server_fwd_within_1ms_pct", m.pct_within(0.001))
                .opt(
                    "server_fwd_p99_bound_ms",
                    m.quantile_bound(99.0).map(|s| s * 1000.0),
                )
                .num("expected", f.expected as f64)
                .num("received", f.received as f64)
                .opt("loss_pct", loss_pct)
                .num("streams", f.streams as f64)
                .num("lossy_streams", f.lossy_streams as f64)
                .num("worst_stream_loss_pct", f.worst_stream_loss_pct)
                .num("server_lost", m.lost)
                .num("tool_queue_dropped", f.queue_full as f64)
                .opt("server_rss_mib", s1.map(|s| s.rss_kib as f64 / 1024.0))
                .opt(
                    "server_kib_per_participant",
                    base.zip(s1).map(|(a, b)| {
                        (b.rss_kib as f64 - a.rss_kib as f64) / (step * participants) as f64
                    }),
                ),
        );
    }
    let dropped = dropped_frames.load(std::sync::atomic::Ordering::Relaxed);
    if dropped > 0 {
        eprintln!("{dropped} VOICE_SDP frames found their queue full");
    }
    for d in &drivers {
        d.stop().await;
    }
    talkers.abort_all();
    gateways.abort_all();
    readers.abort_all();
    driver_tasks.abort_all();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver::ClientWindow;

    #[test]
    fn loss_is_counted_per_receiving_stream() {
        let w = |room, slot, sent, received: Vec<u64>| ClientWindow {
            room,
            slot,
            sent,
            received,
        };
        let c = Collected {
            clients: vec![
                w(0, 0, 100, vec![0, 100, 90]),
                w(0, 1, 100, vec![100, 0, 100]),
                w(0, 2, 100, vec![100, 100, 0]),
            ],
            ..Collected::default()
        };
        let f = summarize(vec![c]);
        assert_eq!(f.streams, 6);
        assert_eq!(f.expected, 600);
        assert_eq!(f.received, 590);
        assert_eq!(f.lossy_streams, 1);
        assert_eq!(f.worst_stream_loss_pct, 10.0);
        assert!(is_voice_sdp(r#"{"op":63,"t":"VOICE_SDP","d":{}}"#));
        assert!(!is_voice_sdp(r#"{"op":60,"t":"VOICE_STATE_UPDATE"}"#));
    }
}
