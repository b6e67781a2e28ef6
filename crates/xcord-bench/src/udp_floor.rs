//! `xcord-bench udp-floor`: what the kernel alone charges the sender for one datagram on
//! loopback, the floor under the SFU's CPU per forwarded packet.
//!
//! One thread sends Opus-sized datagrams round-robin to several loopback sockets that other
//! threads read, as the SFU does to its participants; the sending thread's own CPU time
//! (from `/proc/thread-self/schedstat`) divided by the datagrams sent is the figure. On
//! loopback the sender's system call also carries the datagram through the receiving side
//! of the stack into the receiver's socket, so this is what a packet forwarded to a peer on
//! the same machine costs before any user-space work.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Bytes of each datagram: an SRTP packet with a 120-byte Opus payload.
const DATAGRAM_BYTES: usize = 150;
/// Datagrams between short pauses, so the readers keep up as participants would.
const BURST: usize = 1000;

/// The sending thread's CPU time so far, in nanoseconds.
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    s.split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .context("an unreadable schedstat")
}

/// One way of sending and its cost.
#[derive(Debug, Clone)]
pub struct FloorRow {
    /// `send_to` (one unconnected socket, as the SFU) or `connected` (a socket per peer).
    pub way: &'static str,
    /// Datagrams sent.
    pub sent: usize,
    /// Sender CPU per datagram, microseconds.
    pub cpu_us: f64,
    /// Datagrams per second of wall time.
    pub rate: f64,
}

fn readers(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        addrs.push(socket.local_addr()?);
        // Each reader ends when nothing came for half a second (after the run).
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while socket.recv(&mut buf).is_ok() {}
        });
    }
    Ok(addrs)
}

fn measure(
    way: &'static str,
    packets: usize,
    mut send: impl FnMut(usize) -> std::io::Result<usize>,
) -> anyhow::Result<FloorRow> {
    let started = Instant::now();
    let cpu0 = thread_cpu_ns()?;
    let mut sent = 0;
    let mut i = 0;
    while sent < packets {
        if send(i).is_ok() {
            sent += 1;
        }
        i += 1;
        if i % BURST == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{way}: not done within 120 s");
        }
    }
    let cpu = thread_cpu_ns()?.saturating_sub(cpu0);
    let wall = started.elapsed().as_secs_f64();
    Ok(FloorRow {
        way,
        sent,
        cpu_us: cpu as f64 / sent as f64 / 1000.0,
        rate: sent as f64 / wall,
    })
}

/// Sends `packets` datagrams each way to `receivers` loopback sockets.
pub fn run_floor(receivers: usize, packets: usize) -> anyhow::Result<Vec<FloorRow>> {
    if receivers == 0 || packets == 0 {
        bail!("--receivers and --packets must be at least 1");
    }
    let payload = [0xa5u8; DATAGRAM_BYTES];
    let mut rows = Vec::new();
    let dests = readers(receivers)?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    rows.push(measure("send_to", packets, |i| {
        socket.send_to(&payload, dests[i % dests.len()])
    })?);
    let dests = readers(receivers)?;
    let mut connected = Vec::with_capacity(dests.len());
    for d in &dests {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.connect(d)?;
        connected.push(s);
    }
    rows.push(measure("connected", packets, |i| {
        connected[i % connected.len()].send(&payload)
    })?);
    Ok(rows)
}
