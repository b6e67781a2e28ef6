//! The HTTP accept loop: hyper's HTTP/1 connection driver under our own connection limits.
//!
//! `axum::serve` holds a connection for as long as the peer keeps it open, so sockets that
//! send nothing (or half a request line) pile up until the process runs out of descriptors
//! and `/health` stops answering. This loop bounds every connection:
//!
//! - a request head must arrive within the header-read timeout (counted from the accept, or
//!   from the first byte after an idle period);
//! - a keep-alive connection may sit idle between requests for the idle timeout;
//! - a response the peer does not take for the idle timeout ends the connection;
//! - the number of open connections (upgraded WebSockets included) is capped below the
//!   descriptor limit; at the cap a new connection evicts the oldest connection that is not
//!   serving a request, preferring ones that never completed a request, so idle sockets
//!   cannot lock out health checks or new clients. Upgraded connections (gateway sessions)
//!   and requests in flight are never evicted; when nothing can be evicted the newcomer is
//!   closed at once.
//!
//! hyper's own `header_read_timeout` is not used: it restarts whenever the connection goes
//! idle, so it would also cut keep-alive connections at the (short) header deadline.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// Largest request head hyper buffers. Above the API's own head limits (which answer 414
/// and 431 with the JSON error body), so only heads beyond this get hyper's bodiless 431.
const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// First pause after an accept error such as EMFILE; doubled up to the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Warnings about refused or evicted connections are rate limited: an attack produces
/// thousands of them a second.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long the accept loop waits for an evicted connection to release its descriptor.
const EVICTION_WAIT: Duration = Duration::from_millis(100);
/// How long connections still open at the drain deadline get to close after being told to.
const FORCE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Connection limits taken from configuration.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time from accept (or from the first byte after an idle period) to a complete
    /// request head (`XCORD_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request, and how long a
    /// response may wait for the peer to read it (`XCORD_KEEPALIVE_IDLE_SECS`).
    pub keepalive_idle: Duration,
    /// Open connections at most (`XCORD_MAX_CONNECTIONS`, capped by [`connection_cap`]).
    pub max_connections: usize,
}

/// Descriptors kept free for everything that is not a client connection (database pool,
/// Redis, files, the listener): a quarter of the limit, at least 64 and at most 512.
fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 4).clamp(64, 512)
}

/// The soft RLIMIT_NOFILE of this process, when the platform reports one.
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap: the configured one, never above what the descriptor limit leaves
/// after the reserve. `None` configured means as many as the descriptor limit allows.
pub fn connection_cap(configured: Option<usize>, descriptor_limit: Option<u64>) -> usize {
    let allowed = descriptor_limit.map(|limit| {
        let room = limit.saturating_sub(descriptor_reserve(limit)).max(1);
        usize::try_from(room).unwrap_or(usize::MAX)
    });
    match (configured, allowed) {
        (Some(c), Some(a)) => c.min(a),
        (Some(c), None) => c,
        (None, Some(a)) => a,
        // No descriptor limit to respect: a generous bound all the same.
        (None, None) => 65_536,
    }
}

const AWAITING_HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const UPGRADED: u8 = 3;

/// What the accept loop and the watchdog know of one connection. Small on purpose: it
/// stays with every upgraded gateway socket for that socket's whole life.
#[derive(Debug)]
struct Tracked {
    id: u64,
    phase: AtomicU8,
    /// When the phase began, in milliseconds since the registry's epoch.
    since_ms: AtomicU64,
    /// When a write began waiting for the peer to take data (0: no write waiting).
    write_blocked_ms: AtomicU64,
    /// Whether a request on this connection has completed.
    served: AtomicBool,
    evict: Notify,
}

impl Tracked {
    fn set_phase(&self, phase: u8, now_ms: u64) {
        self.since_ms.store(now_ms, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// When this connection must be closed unless something happens first; `None` while
    /// it serves a request that is progressing, or once it is upgraded.
    fn deadline_ms(&self, limits: &ConnectionLimits) -> Option<u64> {
        let since = self.since_ms.load(Ordering::Relaxed);
        match self.phase.load(Ordering::Acquire) {
            AWAITING_HEAD => Some(since + millis(limits.header_read_timeout)),
            IDLE => Some(since + millis(limits.keepalive_idle)),
            BUSY => match self.write_blocked_ms.load(Ordering::Relaxed) {
                0 => None,
                blocked => Some(blocked + millis(limits.keepalive_idle)),
            },
            _ => None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every open connection of one listener.
struct Registry {
    epoch: Instant,
    cap: usize,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Connections that may be evicted or timed out: open and not upgraded. Keyed by
    /// accept order, so the first match is the oldest. Locked briefly, never across an
    /// await, so a std Mutex is right.
    watched: Mutex<BTreeMap<u64, Arc<Tracked>>>,
    /// Woken whenever a connection's descriptor is released.
    released: Notify,
    last_warning_ms: AtomicU64,
}

impl Registry {
    fn new(cap: usize) -> Self {
        Self {
            epoch: Instant::now(),
            cap,
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            watched: Mutex::new(BTreeMap::new()),
            released: Notify::new(),
            last_warning_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which `write_blocked_ms` uses for "not blocked".
        millis(self.epoch.elapsed()).max(1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn at_cap(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.cap
    }

    /// At the cap, evicts a connection and waits (briefly) until its descriptor is
    /// released, so the next accept never takes the process past the cap: accepting first
    /// and evicting after would let a burst pile up descriptors faster than the evicted
    /// connections' tasks can close them, straight into EMFILE.
    async fn make_room(&self) {
        if !self.at_cap() || !self.evict_one() {
            return;
        }
        self.warn_sometimes("at the connection cap: closed the oldest idle connection");
        let deadline = Instant::now() + EVICTION_WAIT;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.at_cap() {
                return;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return;
            }
        }
    }

    /// Refuses a connection accepted while still at the cap (nothing could be evicted).
    fn refuse(&self, stream: TcpStream) {
        drop(stream);
        metrics::counter!("http_connections_refused_total").increment(1);
        self.warn_sometimes(
            "at the connection cap with every connection busy or upgraded: refused a connection",
        );
    }

    /// Closes the oldest connection that is not serving a request, preferring ones that
    /// never completed a request. `false` when there is none.
    fn evict_one(&self) -> bool {
        let victim = {
            let Ok(mut watched) = self.watched.lock() else {
                return false;
            };
            let pick = watched
                .values()
                .filter(|t| t.phase.load(Ordering::Acquire) != BUSY)
                .min_by_key(|t| (t.served.load(Ordering::Relaxed), t.id))
                .map(|t| t.id);
            pick.and_then(|id| watched.remove(&id))
        };
        match victim {
            Some(t) => {
                t.evict.notify_one();
                metrics::counter!("http_connections_evicted_total").increment(1);
                true
            }
            None => false,
        }
    }

    fn register(self: &Arc<Self>) -> Slot {
        let now = self.now_ms();
        let tracked = Arc::new(Tracked {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(AWAITING_HEAD),
            since_ms: AtomicU64::new(now),
            write_blocked_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evict: Notify::new(),
        });
        if let Ok(mut watched) = self.watched.lock() {
            watched.insert(tracked.id, tracked.clone());
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!("http_connections_open").increment(1.0);
        Slot {
            registry: self.clone(),
            tracked,
        }
    }

    fn unwatch(&self, id: u64) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.remove(&id);
        }
    }

    fn warn_sometimes(&self, message: &str) {
        let now = self.now_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= millis(WARN_EVERY))
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(cap = self.cap, "{message}");
        }
    }
}

/// One connection's place in the registry, released when its socket is dropped (for an
/// upgraded connection, when the WebSocket ends).
struct Slot {
    registry: Arc<Registry>,
    tracked: Arc<Tracked>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.unwatch(self.tracked.id);
        self.registry.open.fetch_sub(1, Ordering::AcqRel);
        self.registry.released.notify_waiters();
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

/// The TCP stream with the bookkeeping the watchdog needs: the first byte after an idle
/// period starts the header clock, and a write the peer does not take is timed.
struct WatchedIo {
    stream: TcpStream,
    slot: Slot,
}

impl WatchedIo {
    fn note_write<T>(&self, r: &Poll<io::Result<T>>) {
        let t = &self.slot.tracked;
        match r {
            Poll::Pending => {
                if t.write_blocked_ms.load(Ordering::Relaxed) == 0 {
                    t.write_blocked_ms
                        .store(self.slot.registry.now_ms(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                if t.write_blocked_ms.load(Ordering::Relaxed) != 0 {
                    t.write_blocked_ms.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && self.slot.tracked.phase.load(Ordering::Acquire) == IDLE
        {
            let now = self.slot.registry.now_ms();
            self.slot.tracked.set_phase(AWAITING_HEAD, now);
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.stream).poll_flush(cx);
        self.note_write(&r);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Marks its connection busy while a request is served; dropped with the response body
/// (after hyper has taken all of it), or with the handler's future when the peer leaves.
struct InFlight {
    registry: Arc<Registry>,
    tracked: Arc<Tracked>,
}

impl InFlight {
    fn begin(registry: Arc<Registry>, tracked: Arc<Tracked>) -> Self {
        tracked.set_phase(BUSY, registry.now_ms());
        Self { registry, tracked }
    }

    /// The connection now belongs to a WebSocket (or another upgrade): its own protocol
    /// keeps time from here, and it is never evicted.
    fn upgraded(&self) {
        self.tracked.set_phase(UPGRADED, self.registry.now_ms());
        self.registry.unwatch(self.tracked.id);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.tracked.phase.load(Ordering::Acquire) == UPGRADED {
            return;
        }
        self.tracked.served.store(true, Ordering::Relaxed);
        self.tracked.set_phase(IDLE, self.registry.now_ms());
    }
}

/// A response body that keeps its connection marked busy until it is dropped.
struct TrackedBody {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops accepting, asks
/// every connection to finish its request in flight and close, and waits up to
/// `drain_deadline` before closing whatever is left. Upgraded connections are not waited
/// for: the gateway winds them down itself.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    drain_deadline: Duration,
) {
    let registry = Arc::new(Registry::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        // The buffer bounds a head still arriving; the header size, one that arrived
        // whole in a read that overshot the buffer.
        .max_buf_size(MAX_HEAD_BUFFER)
        .max_header_size(MAX_HEAD_BUFFER);
    let http = Arc::new(http);
    let limits = Arc::new(limits);
    let connections = TaskTracker::new();
    let force = CancellationToken::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = async {
                registry.make_room().await;
                listener.accept().await
            } => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = ACCEPT_BACKOFF_MIN;
                pair
            }
            // The peer gave up before we took the connection: nothing to do.
            Err(e) if is_per_connection_error(&e) => continue,
            // Out of descriptors or memory: retrying at once would spin. Free a slot
            // for the next attempt and wait a little longer each time.
            Err(e) => {
                tracing::warn!(error = %e, pause = ?backoff, "cannot accept connections");
                registry.evict_one();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if registry.at_cap() {
            registry.refuse(stream);
            continue;
        }
        // Gateway frames and small responses go out at once: no Nagle delay waiting for
        // the peer's (delayed) ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let slot = registry.register();
        connections.spawn(serve_connection(
            WatchedIo { stream, slot },
            peer,
            router.clone(),
            http.clone(),
            limits.clone(),
            shutdown.clone(),
            force.clone(),
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain_deadline, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {drain_deadline:?}; stopping anyway"
        );
        force.cancel();
        let _ = tokio::time::timeout(FORCE_CLOSE_GRACE, connections.wait()).await;
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

async fn serve_connection(
    io: WatchedIo,
    peer: SocketAddr,
    router: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    limits: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let registry = io.slot.registry.clone();
    let tracked = io.slot.tracked.clone();
    let service = {
        let (registry, tracked) = (registry.clone(), tracked.clone());
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let in_flight = InFlight::begin(registry.clone(), tracked.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(req);
            async move {
                let Ok(res) = response.await;
                if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                    in_flight.upgraded();
                }
                Ok::<_, Infallible>(res.map(|body| TrackedBody {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let now = registry.now_ms();
        // While a request is served there is no deadline; look again after a while, as
        // the connection may be idle by then.
        let wake = match tracked.deadline_ms(&limits) {
            Some(deadline) if deadline <= now => {
                let phase = match tracked.phase.load(Ordering::Acquire) {
                    AWAITING_HEAD => "header_read",
                    IDLE => "keepalive_idle",
                    _ => "send_stalled",
                };
                metrics::counter!("http_connections_timed_out_total", "phase" => phase)
                    .increment(1);
                tracing::debug!(%peer, phase, "closing a connection that timed out");
                return;
            }
            Some(deadline) => deadline,
            None => now + millis(limits.header_read_timeout.min(limits.keepalive_idle)),
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tracked.evict.notified() => return,
            () = tokio::time::sleep_until(registry.at(wake)) => {}
            () = shutdown.cancelled(), if !draining => {
                // Idle connections close now; one serving a request closes after it.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = force.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        // This machine's 20,000 descriptors: room for the 19,000-socket benchmark.
        assert_eq!(connection_cap(None, Some(20_000)), 19_488);
        assert_eq!(connection_cap(Some(50_000), Some(20_000)), 19_488);
        assert_eq!(connection_cap(Some(100), Some(20_000)), 100);
        assert_eq!(connection_cap(None, Some(1024)), 768);
        assert_eq!(connection_cap(None, Some(100)), 36);
        assert_eq!(connection_cap(Some(7), None), 7);
        assert!(connection_cap(None, Some(10)) >= 1);
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(75),
            max_connections: 10,
        };
        let t = Tracked {
            id: 0,
            phase: AtomicU8::new(AWAITING_HEAD),
            since_ms: AtomicU64::new(1_000),
            write_blocked_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evict: Notify::new(),
        };
        assert_eq!(t.deadline_ms(&limits), Some(11_000));
        t.set_phase(BUSY, 2_000);
        assert_eq!(t.deadline_ms(&limits), None);
        t.write_blocked_ms.store(3_000, Ordering::Relaxed);
        assert_eq!(t.deadline_ms(&limits), Some(78_000));
        t.write_blocked_ms.store(0, Ordering::Relaxed);
        t.set_phase(IDLE, 4_000);
        assert_eq!(t.deadline_ms(&limits), Some(79_000));
        t.set_phase(UPGRADED, 5_000);
        assert_eq!(t.deadline_ms(&limits), None);
    }
}
