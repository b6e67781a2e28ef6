//! ICE-TCP (RFC 6544), passive: a listener on the media port number; each connection
//! carries RFC 4571 frames (a 2-byte big-endian length, then one STUN, DTLS or SRTP packet).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// At most this many ICE-TCP connections at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 2048;
/// A connection that sends nothing for this long is closed (ICE consent checks come every
/// few seconds on a live one).
const IDLE: Duration = Duration::from_secs(40);
/// Frames queued toward one connection; beyond that, packets to it are dropped (media is
/// loss-tolerant, and a stalled reader must not hold up the media loop).
const WRITE_QUEUE: usize = 512;

/// What the connections tell the media loop.
pub(crate) enum TcpInput {
    /// A connection opened; frames for `addr` go to the sender.
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    /// One frame arrived.
    Frame(SocketAddr, Vec<u8>),
    /// The connection closed.
    Closed(SocketAddr),
}

/// Accepts connections until `shutdown`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    to_engine: mpsc::Sender<TcpInput>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("voice_tcp_refused_total").increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let to_engine = to_engine.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve(stream, addr, to_engine, shutdown).await;
            drop(slot);
        });
    }
}

async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    to_engine: mpsc::Sender<TcpInput>,
    shutdown: CancellationToken,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if to_engine.send(TcpInput::Opened(addr, tx)).await.is_err() {
        return;
    }
    let write = async move {
        while let Some(frame) = rx.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            if writer.write_all(&len.to_be_bytes()).await.is_err()
                || writer.write_all(&frame).await.is_err()
            {
                return;
            }
        }
    };
    let engine = to_engine.clone();
    let read = async move {
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(IDLE, reader.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
            match tokio::time::timeout(IDLE, reader.read_exact(&mut frame)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            if engine.send(TcpInput::Frame(addr, frame)).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = read => {}
        _ = write => {}
    }
    let _ = to_engine.send(TcpInput::Closed(addr)).await;
}
