//! The gateway side: connections from several loopback addresses, receipt tracking, and
//! the idle-connection phase.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::proc::Sampler;
use crate::report::{Latencies, Row};
use crate::rest::World;

/// One identified gateway connection.
pub struct Conn {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    heartbeat: Duration,
}

/// Opens a connection from `source` and identifies with `token`.
pub async fn connect(ip: IpAddr, port: u16, source: Ipv4Addr, token: &str) -> anyhow::Result<Conn> {
    let target = SocketAddr::new(ip, port);
    let sock = if target.is_ipv4() {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(IpAddr::V4(source), 0))
            .with_context(|| format!("cannot bind {source}"))?;
        s
    } else {
        TcpSocket::new_v6()?
    };
    let tcp = sock.connect(target).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 8 * 1024;
    config.write_buffer_size = 0;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{target}/api/ws"),
        MaybeTlsStream::Plain(tcp),
        Some(config),
    )
    .await
    .context("WebSocket handshake")?;
    let hello = next_json(&mut ws).await?;
    let interval = hello["d"]["heartbeatInterval"].as_u64().unwrap_or(41_250);
    ws.send(Message::Text(
        serde_json::json!({"op": 3, "d": {"token": token}})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        let f = next_json(&mut ws).await?;
        if f["t"] == "CONNECTED" {
            break;
        }
    }
    Ok(Conn {
        ws,
        heartbeat: Duration::from_millis(interval),
    })
}

async fn next_json(
    ws: &mut WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
) -> anyhow::Result<serde_json::Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

pub(crate) fn source_addr(i: usize, sources: u8) -> Ipv4Addr {
    let n = sources.max(1);
    Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(n)) as u8)
}

/// Opens `n` connections, member `i % members` on connection `i`.
pub async fn connect_members(
    ip: IpAddr,
    port: u16,
    world: &World,
    n: usize,
    sources: u8,
) -> anyhow::Result<Vec<Conn>> {
    connect_range(ip, port, world, 0..n, sources).await
}

/// Opens connections numbered `range` (member `i % members` on connection `i`), 128 at a
/// time.
async fn connect_range(
    ip: IpAddr,
    port: u16,
    world: &World,
    range: std::ops::Range<usize>,
    sources: u8,
) -> anyhow::Result<Vec<Conn>> {
    futures_util::stream::iter(range)
        .map(|i| {
            let token = world.members[i % world.members.len()].token.clone();
            async move { connect(ip, port, source_addr(i, sources), &token).await }
        })
        .buffered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

#[derive(Debug, Default)]
struct ConnStats {
    seen: Vec<u64>,
    latency: Latencies,
    duplicates: u64,
}

/// Who received which message, and when.
#[derive(Debug)]
pub struct Tracker {
    t0: Instant,
    /// Nanoseconds after `t0` each message was sent (0: not yet).
    sent_at: Vec<AtomicU64>,
    failed: Vec<AtomicBool>,
    conns: Vec<Mutex<ConnStats>>,
    delivered: AtomicU64,
}

/// What the receivers saw.
#[derive(Debug)]
pub struct Delivery {
    /// Connections counted.
    pub receivers: usize,
    /// Copies expected (accepted messages × receivers).
    pub expected: u64,
    /// Distinct copies received.
    pub delivered: u64,
    /// Copies received more than once.
    pub duplicates: u64,
    /// Post → receipt.
    pub latency: Latencies,
}

impl Delivery {
    /// Delivered / expected.
    pub fn fraction(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }
}

impl Tracker {
    /// For `messages` messages and `receivers` connections.
    pub fn new(messages: usize, receivers: usize) -> Self {
        Self {
            t0: Instant::now(),
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..messages).map(|_| AtomicBool::new(false)).collect(),
            conns: (0..receivers)
                .map(|_| {
                    Mutex::new(ConnStats {
                        seen: vec![0; messages.div_ceil(64)],
                        ..ConnStats::default()
                    })
                })
                .collect(),
            delivered: AtomicU64::new(0),
        }
    }

    /// Message `i` is being sent now.
    pub fn sent(&self, i: usize, at: Instant) {
        if let Some(s) = self.sent_at.get(i) {
            let ns = u64::try_from(at.duration_since(self.t0).as_nanos()).unwrap_or(u64::MAX);
            s.store(ns.max(1), Ordering::Release);
        }
    }

    /// Message `i` was not accepted.
    pub fn failed(&self, i: usize) {
        if let Some(f) = self.failed.get(i) {
            f.store(true, Ordering::Release);
        }
    }

    fn received(&self, conn: usize, i: usize, now: Instant) {
        let (Some(slot), Some(sent)) = (self.conns.get(conn), self.sent_at.get(i)) else {
            return;
        };
        let Ok(mut c) = slot.lock() else { return };
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if c.seen[word] & bit != 0 {
            c.duplicates += 1;
            return;
        }
        c.seen[word] |= bit;
        let at = sent.load(Ordering::Acquire);
        if at > 0 {
            let now_ns = u64::try_from(now.duration_since(self.t0).as_nanos()).unwrap_or(0);
            c.latency
                .add(Duration::from_nanos(now_ns.saturating_sub(at)));
        }
        drop(c);
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    fn expected(&self) -> u64 {
        let ok = self
            .failed
            .iter()
            .filter(|f| !f.load(Ordering::Acquire))
            .count() as u64;
        ok * self.conns.len() as u64
    }

    /// Waits until every accepted message reached every receiver.
    pub async fn wait_all(&self, poll: Duration) -> anyhow::Result<()> {
        let expected = self.expected();
        while self.delivered.load(Ordering::Relaxed) < expected {
            tokio::time::sleep(poll.min(Duration::from_millis(5))).await;
        }
        Ok(())
    }

    /// Totals so far.
    pub fn summary(&self) -> Delivery {
        let mut d = Delivery {
            receivers: self.conns.len(),
            expected: self.expected(),
            delivered: self.delivered.load(Ordering::Relaxed),
            duplicates: 0,
            latency: Latencies::default(),
        };
        for c in &self.conns {
            if let Ok(c) = c.lock() {
                d.duplicates += c.duplicates;
                d.latency.merge(c.latency.clone());
            }
        }
        d
    }
}

/// The index in a `MESSAGE_CREATE` frame whose content is `b:<index>`, found without
/// parsing the whole frame.
pub fn message_index(frame: &str) -> Option<usize> {
    if !frame.starts_with(r#"{"op":11,"#) {
        return None;
    }
    let at = frame.find(r#""content":"b:"#)? + r#""content":"b:"#.len();
    let digits = &frame[at..];
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

/// Reads every connection until aborted, recording receipts and sending heartbeats.
pub fn spawn_readers(conns: Vec<Conn>, tracker: Arc<Tracker>) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for (n, conn) in conns.into_iter().enumerate() {
        let tracker = tracker.clone();
        set.spawn(read_loop(conn, move |text| {
            if let Some(i) = message_index(text) {
                tracker.received(n, i, Instant::now());
            }
        }));
    }
    set
}

/// Reads a connection until it ends (or the task is aborted), heartbeating; the text
/// frames `keep` accepts go to `frames`. A frame that finds the queue full is dropped and
/// counted in `dropped` (the caller sizes the queue for what the protocol allows in flight).
pub async fn forward_frames(
    conn: Conn,
    keep: fn(&str) -> bool,
    frames: tokio::sync::mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
) {
    read_loop(conn, move |text| {
        if keep(text) && frames.try_send(text.to_owned()).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
}

async fn read_loop(conn: Conn, mut on_text: impl FnMut(&str)) {
    let Conn { mut ws, heartbeat } = conn;
    let mut tick = tokio::time::interval(heartbeat);
    tick.tick().await;
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => on_text(t.as_str()),
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = tick.tick() => {
                if ws.send(Message::Text(r#"{"op":1,"d":null}"#.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Opens idle connections up to each of `steps` and records the server's memory and idle
/// CPU at each.
pub async fn idle(
    ip: IpAddr,
    port: u16,
    world: &World,
    sources: u8,
    steps: &[usize],
    server: &Sampler,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let base = server.sample();
    let mut held = tokio::task::JoinSet::new();
    let mut open = 0usize;
    for &target in steps {
        let start = Instant::now();
        while open < target {
            let batch = (target - open).min(500);
            for c in connect_range(ip, port, world, open..open + batch, sources).await? {
                held.spawn(read_loop(c, |_| {}));
            }
            open += batch;
        }
        let opened_in = start.elapsed();
        let a = server.sample();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let b = server.sample();
        rows.push(
            Row::new("idle")
                .num("connections", open as f64)
                .num("open_secs", opened_in.as_secs_f64())
                .opt("server_rss_mib", b.map(|s| s.rss_kib as f64 / 1024.0))
                .opt(
                    "server_kib_per_connection",
                    base.zip(b)
                        .map(|(x, y)| (y.rss_kib as f64 - x.rss_kib as f64) / open as f64),
                )
                .opt("server_idle_cpu_pct", crate::proc::cpu_pct(a, b)),
        );
    }
    held.abort_all();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_read_from_the_frame() {
        let f =
            r#"{"op":11,"t":"MESSAGE_CREATE","d":{"id":"1","content":"b:4711","author":{}},"s":3}"#;
        assert_eq!(message_index(f), Some(4711));
        assert_eq!(message_index(r#"{"op":12,"d":{"content":"b:1"}}"#), None);
        assert_eq!(message_index(r#"{"op":11,"d":{"content":"hello"}}"#), None);
        assert_eq!(source_addr(5, 4), Ipv4Addr::new(127, 0, 0, 2));
    }
}
