//! The gateway protocol of one connection, without its transport: IDENTIFY or RESUME, the
//! heartbeat and identify deadlines, the frame rate limit, the client ops, sequence numbers
//! and replay, and what the session's queue hands over.
//!
//! A [`GatewaySession`] takes decoded [`ClientCommand`]s and yields [`Outbound`] items: typed
//! frames, dispatches (rendered once per event for every recipient) and a close. It never
//! sees bytes or sockets: the transport ([`crate::connection`] for WebSocket) decodes what
//! arrives, encodes what goes out, and keeps the one timer [`GatewaySession::deadline`]
//! asks for. Another transport or encoding drives the same session.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;
use xcord_core::Error as CoreError;
use xcord_types::gateway::{
    ClientCommand, ClientOp, Connected, ConnectedServer, DecodeError, Hello, Identify,
    InvalidSession, Resume, Resumed, ServerFrame, close, op,
};
use xcord_types::rest::users::Status;

use crate::Gateway;
use crate::session::{Dispatch, Kick, Sequenced, SessionHandle};

/// Dispatches [`GatewaySession::wait`] hands over per wake-up at most.
pub const MAX_BATCH: usize = 64;

/// The window of the frame rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A close the session asks for: code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// A code of [`xcord_types::gateway::close`], or 1000, 1011.
    pub code: u16,
    /// A short reason for the close frame.
    pub reason: &'static str,
}

impl Close {
    /// A close with `code` and `reason`.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// The client takes frames too slowly (4010); it may resume.
    pub const SLOW_CONSUMER: Self = Self::new(close::SLOW_CONSUMER, "send queue overflow");
    /// Something broke on the server's side (1011).
    pub const INTERNAL: Self = Self::new(1011, "internal error");
    const AUTHENTICATION_FAILED: Self =
        Self::new(close::AUTHENTICATION_FAILED, "authentication failed");
    const IDENTIFY_FIRST: Self = Self::new(close::NOT_AUTHENTICATED, "identify first");

    /// A frame that does not decode, at the transport or in the encoding (4002).
    pub const fn undecodable(reason: &'static str) -> Self {
        Self::new(close::DECODE_ERROR, reason)
    }
}

/// Frames a client may send per minute, counted over fixed one-minute windows; every
/// transport of the gateway (WebSocket, Socket.IO, the Hype socket) spends from one.
#[derive(Debug, Clone, Copy)]
pub struct FrameBudget {
    window_start: Instant,
    used: u32,
}

impl FrameBudget {
    /// A budget whose first window opens at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            used: 0,
        }
    }

    /// Spends one frame at `now`; false once more than `per_minute` were spent in the
    /// current window.
    pub fn spend(&mut self, now: Instant, per_minute: u32) -> bool {
        if now.duration_since(self.window_start) >= RATE_WINDOW {
            self.window_start = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= per_minute
    }
}

/// What the session gives its transport to send, in order.
#[derive(Debug)]
pub enum Outbound {
    /// A frame other than a dispatch.
    Frame(ServerFrame),
    /// A dispatch with this session's sequence number. Consecutive dispatches may go out
    /// with one flush.
    Dispatch(Sequenced),
    /// Close the connection; nothing follows.
    Close(Close),
}

/// The protocol state of one connection: before IDENTIFY or RESUME, then the session it
/// serves.
pub struct GatewaySession {
    gw: Arc<Gateway>,
    /// The session this connection serves, once identified or resumed.
    handle: Option<Arc<SessionHandle>>,
    /// The attach generation this connection holds; it acts only while it is current.
    generation: u64,
    /// The session's queue to this connection.
    rx: Option<mpsc::Receiver<Sequenced>>,
    heartbeat_deadline: Instant,
    /// Heartbeats do not extend it.
    identify_by: Instant,
    budget: FrameBudget,
    /// Made once, not per wake-up: a fresh waiter on the shared shutdown token for every
    /// frame would cost 1,000 registrations per message.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Runs once, the moment the connection holds a session.
    on_attach: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for GatewaySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySession")
            .field("session", &self.handle.as_ref().map(|h| &h.id))
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl GatewaySession {
    /// A connection that opened at `now`: it must identify or resume in time.
    pub fn new(gw: Arc<Gateway>, now: Instant) -> Self {
        let shutdown = Box::pin(gw.shutdown.clone().cancelled_owned());
        Self {
            heartbeat_deadline: now + Duration::from_millis(gw.settings.heartbeat_ms) * 2,
            identify_by: now + Duration::from_secs(gw.settings.identify_secs),
            budget: FrameBudget::new(now),
            handle: None,
            generation: 0,
            rx: None,
            shutdown,
            on_attach: None,
            gw,
        }
    }

    /// Runs `f` once, as soon as the connection holds a session (identified or resumed).
    pub fn on_attach(&mut self, f: impl FnOnce() + Send + Sync + 'static) {
        self.on_attach = Some(Box::new(f));
    }

    /// The first frame.
    pub fn hello(&self) -> ServerFrame {
        ServerFrame::Hello(Hello {
            heartbeat_interval: self.gw.settings.heartbeat_ms,
        })
    }

    /// Whether the connection holds a session.
    pub fn identified(&self) -> bool {
        self.handle.is_some()
    }

    /// The id of the session held.
    pub fn session_id(&self) -> Option<&str> {
        self.handle.as_ref().map(|h| &*h.id)
    }

    /// When [`GatewaySession::expired`] must be asked next: the heartbeat deadline, or the
    /// identify deadline if sooner and still pending. One timer serves both.
    pub fn deadline(&self) -> Instant {
        match self.handle {
            None => self.heartbeat_deadline.min(self.identify_by),
            Some(_) => self.heartbeat_deadline,
        }
    }

    /// The close due at `now`: 4003 without a session past the identify deadline, 4009
    /// after two heartbeat intervals without a heartbeat; `None` before the deadline.
    pub fn expired(&self, now: Instant) -> Option<Close> {
        if now < self.deadline() {
            return None;
        }
        if self.handle.is_none() && now >= self.identify_by {
            return Some(Close::new(
                close::NOT_AUTHENTICATED,
                "identify or resume in time",
            ));
        }
        Some(Close::new(close::SESSION_TIMED_OUT, "no heartbeat"))
    }

    /// Counts a frame received at `now` against the rate limit (4008). Frames with no
    /// meaning here (WebSocket pings and pongs) count too: each ping makes the transport
    /// write a pong, so an unread ping flood would back up the socket.
    pub fn count_frame(&mut self, now: Instant) -> Result<(), Close> {
        if !self.budget.spend(now, self.gw.settings.frames_per_minute) {
            return Err(Close::new(close::RATE_LIMITED, "too many frames"));
        }
        Ok(())
    }

    /// IDENTIFY with a token the transport received with the connection (`?token=`);
    /// it does not count as a frame.
    pub async fn identify_with_token(&mut self, token: String, out: &mut Vec<Outbound>) {
        let req = Identify {
            token,
            properties: None,
            presence: None,
        };
        // Identify and resume are boxed: their (large) futures would otherwise be part of
        // every idle connection's task for its whole life.
        if let Err(c) = Box::pin(self.identify(req)).await {
            out.push(Outbound::Close(c));
        }
    }

    /// A frame received at `now`, as the encoding decoded it.
    pub async fn on_frame(
        &mut self,
        now: Instant,
        frame: Result<ClientCommand, DecodeError>,
        out: &mut Vec<Outbound>,
    ) {
        if let Err(c) = self.handle_frame(now, frame, out).await {
            out.push(Outbound::Close(c));
        }
    }

    async fn handle_frame(
        &mut self,
        now: Instant,
        frame: Result<ClientCommand, DecodeError>,
        out: &mut Vec<Outbound>,
    ) -> Result<(), Close> {
        self.count_frame(now)?;
        let op = match &frame {
            Ok(command) => command.op(),
            Err(DecodeError::InvalidPayload(op)) => *op,
            Err(DecodeError::Malformed(reason)) => return Err(Close::undecodable(reason)),
            Err(DecodeError::UnknownOp) => {
                return Err(Close::new(close::UNKNOWN_OPCODE, "unknown op code"));
            }
        };
        // Whether the op may be sent now is decided before its payload counts.
        let identified = self.handle.is_some();
        match op {
            ClientOp::Identify | ClientOp::Resume if identified => {
                return Err(Close::new(
                    close::ALREADY_AUTHENTICATED,
                    "already identified",
                ));
            }
            ClientOp::PresenceSet | ClientOp::Typing | ClientOp::VoiceStateSet if !identified => {
                return Err(Close::IDENTIFY_FIRST);
            }
            _ => {}
        }
        let command = frame.map_err(|_| Close::undecodable("invalid payload"))?;
        match command {
            ClientCommand::Heartbeat(h) => {
                if let (Some(handle), Some(seq)) = (&self.handle, h.seq) {
                    handle.acknowledge(seq);
                }
                self.heartbeat_deadline =
                    now + Duration::from_millis(self.gw.settings.heartbeat_ms) * 2;
                out.push(Outbound::Frame(ServerFrame::HeartbeatAck));
            }
            ClientCommand::Identify(req) => Box::pin(self.identify(req)).await?,
            ClientCommand::Resume(req) => Box::pin(self.resume(req, out)).await?,
            ClientCommand::PresenceSet(mut p) => {
                if p.status == Status::Offline {
                    p.status = Status::Invisible;
                }
                let caller = self.attached()?.caller;
                log_refusal(self.gw.core.gateway_presence_set(&caller, p).await);
            }
            ClientCommand::Typing(t) => {
                let caller = self.attached()?.caller;
                log_refusal(self.gw.core.typing(&caller, t.channel_id).await);
            }
            ClientCommand::VoiceStateSet(v) => {
                let handle = self.attached()?;
                let (caller, id) = (handle.caller, handle.id.clone());
                log_refusal(self.gw.core.set_voice_state(&caller, &id, v).await);
            }
        }
        Ok(())
    }

    /// Waits until there is something to send or the connection must close: the node
    /// shutting down (op 7, then 1012), the session taken from this connection, or
    /// dispatches in the session's queue (up to [`MAX_BATCH`], whatever is already there
    /// after the first). Cancel-safe: nothing is taken before its await completes.
    pub async fn wait(&mut self, out: &mut Vec<Outbound>) {
        loop {
            let handle = self.handle.clone();
            let kicked = async {
                match &handle {
                    Some(h) => h.kicked.notified().await,
                    None => std::future::pending().await,
                }
            };
            let next = async {
                match self.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut self.shutdown => {
                    out.push(Outbound::Frame(ServerFrame::Reconnect));
                    out.push(Outbound::Close(Close::new(
                        close::SERVICE_RESTART,
                        "server restarting",
                    )));
                    return;
                }
                () = kicked => {
                    if self.on_kick(out) {
                        return;
                    }
                }
                item = next => match item {
                    Some(first) => {
                        out.push(Outbound::Dispatch(first));
                        if let Some(rx) = self.rx.as_mut() {
                            for _ in 1..MAX_BATCH {
                                match rx.try_recv() {
                                    Ok(item) => out.push(Outbound::Dispatch(item)),
                                    Err(_) => break,
                                }
                            }
                        }
                        return;
                    }
                    // The dispatcher let go of this connection; the kick says why.
                    None => {
                        self.rx = None;
                        if self.on_kick(out) {
                            return;
                        }
                    }
                },
            }
        }
    }

    /// Resolves when the session is taken from this connection, with the close that
    /// follows; for a transport to stop a write that would otherwise keep a kicked
    /// connection alive. Pending while no session is held.
    pub async fn taken_away(&self) -> Close {
        let Some(h) = &self.handle else {
            return std::future::pending().await;
        };
        loop {
            h.kicked.notified().await;
            // A wake-up meant for another connection of the session leaves this one be.
            match h.kick_for(self.generation) {
                Kick::None => {}
                Kick::Close(code) | Kick::Invalidate(code) => {
                    return Close::new(code, kick_reason(code));
                }
            }
        }
    }

    /// The connection is over, however it ended: the session waits for a resume, the
    /// user may go offline.
    pub async fn finish(mut self) {
        let Some(h) = self.handle.take() else {
            return;
        };
        h.detach(self.generation);
        let core = &self.gw.core;
        core.drop_voice_state(h.user, &h.id).await;
        log_refusal(core.gateway_disconnected(h.user).await);
    }

    /// What a kick means for this connection: `true` when it ends (the close is in `out`),
    /// `false` when the kick was meant for another connection.
    fn on_kick(&self, out: &mut Vec<Outbound>) -> bool {
        let Some(h) = &self.handle else {
            return false;
        };
        match h.kick_for(self.generation) {
            Kick::None => false,
            Kick::Close(code) => {
                out.push(Outbound::Close(Close::new(code, kick_reason(code))));
                true
            }
            Kick::Invalidate(code) => {
                out.push(invalid_session());
                out.push(Outbound::Close(Close::new(code, kick_reason(code))));
                true
            }
        }
    }

    fn attached(&self) -> Result<&SessionHandle, Close> {
        self.handle.as_deref().ok_or(Close::IDENTIFY_FIRST)
    }

    /// The connection serves `handle` from now on, reading `rx`.
    fn attach(
        &mut self,
        handle: Arc<SessionHandle>,
        generation: u64,
        rx: mpsc::Receiver<Sequenced>,
    ) {
        self.generation = generation;
        self.handle = Some(handle);
        self.rx = Some(rx);
        if let Some(f) = self.on_attach.take() {
            f();
        }
    }

    async fn identify(&mut self, req: Identify) -> Result<(), Close> {
        let core = self.gw.core.clone();
        let caller = core
            .authenticate(bare_token(&req.token))
            .map_err(|_| Close::AUTHENTICATION_FAILED)?
            .caller;
        let since = self.gw.index.lock().map_or(0, |i| i.generation());
        let state = core
            .connected_state(&caller)
            .await
            .map_err(|e| match core_failure(&e) {
                CoreFailure::NotAuthenticated => Close::AUTHENTICATION_FAILED,
                CoreFailure::Broken | CoreFailure::Refused => {
                    tracing::error!(error = format!("{e:#}"), "cannot load a gateway session");
                    Close::INTERNAL
                }
            })?;
        let id: Arc<str> = hex::encode(rand::random::<[u8; 16]>()).into();
        let payload = Connected {
            session_id: &id,
            user: xcord_core::Core::self_user(&state.user),
            servers: state
                .servers
                .iter()
                .map(|snap| ConnectedServer {
                    server: snap.view_for(caller.user_id),
                    voice_states: core.voice.of_server(snap.server.id),
                })
                .collect(),
            dm_channels: &state.private_channels,
            read_states: &state.read_states.read_states,
            presences: &state.presences,
        };
        let payload = serde_json::to_string(&payload).map_err(|e| {
            tracing::error!(error = %e, "cannot render CONNECTED");
            Close::INTERNAL
        })?;
        let connected = Arc::new(Dispatch::new(op::CONNECTED, Connected::NAME, &payload));
        let (tx, rx) = mpsc::channel(self.gw.settings.send_queue);
        let handle = Arc::new(SessionHandle::new(
            id,
            caller,
            tx,
            self.gw.settings.replay_limit,
        ));
        // First in the queue, so CONNECTED is s = 1 before any event. It is not kept for
        // replay: a client that resumes has it already.
        let stale = self
            .gw
            .register(&handle, &state, since, |h, _| h.push_unkept(&connected))
            .ok_or(Close::INTERNAL)?;
        refresh_stale(&self.gw, stale).await;
        let generation = handle.generation();
        self.attach(handle, generation, rx);
        metrics::counter!("gateway_identifies_total").increment(1);
        log_refusal(core.gateway_connected(&caller, req.presence).await);
        Ok(())
    }

    async fn resume(&mut self, req: Resume, out: &mut Vec<Outbound>) -> Result<(), Close> {
        let core = self.gw.core.clone();
        let caller = core
            .authenticate(bare_token(&req.token))
            .map_err(|_| Close::AUTHENTICATION_FAILED)?
            .caller;
        let handle = self
            .gw
            .index
            .lock()
            .ok()
            .and_then(|i| i.session(&req.session_id));
        let Some(handle) = handle else {
            // Not held here: a session left by a node that stopped, if any.
            return Box::pin(self.resume_saved(req, caller, out)).await;
        };
        if handle.user != caller.user_id {
            // Someone else's session: refused, and left exactly as it was.
            out.push(invalid_session());
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(self.gw.settings.send_queue);
        let session_id = handle.id.clone();
        let resumed = handle.resume(req.seq, tx, |replayed| resumed(&session_id, replayed));
        let Ok((mut frames, last, generation)) = resumed else {
            out.push(invalid_session());
            return Ok(());
        };
        frames.push(last);
        self.resumed(handle, generation, rx, frames, &caller, out)
            .await;
        Ok(())
    }

    /// The session is this connection's now: the replayed frames and RESUMED go out first
    /// (the transport writes them in batches, as live frames), then live events follow.
    async fn resumed(
        &mut self,
        handle: Arc<SessionHandle>,
        generation: u64,
        rx: mpsc::Receiver<Sequenced>,
        frames: Vec<Sequenced>,
        caller: &xcord_core::Caller,
        out: &mut Vec<Outbound>,
    ) {
        self.attach(handle, generation, rx);
        out.extend(frames.into_iter().map(Outbound::Dispatch));
        metrics::counter!("gateway_resumes_total").increment(1);
        log_refusal(self.gw.core.gateway_connected(caller, None).await);
    }

    /// RESUME of a session this node does not hold: one a stopped node saved. It is taken
    /// (so no other node resumes it too), registered for live events, and caught up from
    /// the event log with what its old node never routed; then everything goes out in
    /// order, numbered after what the client already has.
    async fn resume_saved(
        &mut self,
        req: Resume,
        caller: xcord_core::Caller,
        out: &mut Vec<Outbound>,
    ) -> Result<(), Close> {
        let core = self.gw.core.clone();
        let found = match core
            .store
            .saved_session(&req.session_id, caller.user_id)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot look up a saved session");
                None
            }
        };
        let Some((saved, checkpoint)) = found else {
            out.push(invalid_session());
            return Ok(());
        };
        let gw = self.gw.clone();
        let Ok(_turn) = gw.catch_ups.acquire().await else {
            out.push(invalid_session());
            return Ok(());
        };
        let kept = saved_frames(&saved.frames);
        let seq = u64::try_from(saved.seq).unwrap_or(0);
        let first_kept = kept.first().map_or(seq + 1, |(s, _)| *s);
        if saved.expires_at < core.clock.now().as_millis()
            || req.seq > seq
            || req.seq + 1 < first_kept
            || !core
                .store
                .claim_saved_session(&saved.id, caller.user_id)
                .await
                .unwrap_or(false)
        {
            out.push(invalid_session());
            return Ok(());
        }
        let since = self.gw.index.lock().map_or(0, |i| i.generation());
        let state = core.connected_state(&caller).await.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "cannot load a resumed session");
            Close::INTERNAL
        })?;
        let (tx, rx) = mpsc::channel(self.gw.settings.send_queue);
        let id: Arc<str> = saved.id.into();
        let handle = Arc::new(SessionHandle::taken_over(
            id.clone(),
            caller,
            tx,
            self.gw.settings.replay_limit,
            seq,
            kept,
        ));
        // Registered before the log is read: an event routed here before then is in the log
        // or among the recently routed; a later one arrives live and waits in the session
        // until the replay is numbered.
        // What this node routed before the registration, taken in the same instant: the log
        // may not hold the newest of it yet.
        let mut recent = Vec::new();
        let stale = self
            .gw
            .register(&handle, &state, since, |_, index| {
                recent = index.recently_routed();
            })
            .ok_or(Close::INTERNAL)?;
        refresh_stale(&self.gw, stale).await;
        let missed = match crate::catch_up::missed_events(&core, &checkpoint, &state, recent).await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot read the event log");
                None
            }
        };
        let frames = missed
            .and_then(|missed| handle.release(req.seq, missed, |replayed| resumed(&id, replayed)));
        let Some(frames) = frames else {
            if let Ok(mut index) = self.gw.index.lock() {
                index.remove_session(&id);
            }
            out.push(invalid_session());
            return Ok(());
        };
        let generation = handle.generation();
        self.resumed(handle, generation, rx, frames, &caller, out)
            .await;
        Ok(())
    }
}

fn invalid_session() -> Outbound {
    Outbound::Frame(ServerFrame::InvalidSession(InvalidSession {
        resumable: false,
    }))
}

/// The RESUMED dispatch after `replayed` events.
fn resumed(session_id: &str, replayed: usize) -> Arc<Dispatch> {
    let d = Resumed {
        session_id,
        replayed,
    };
    // A string and a number always serialize; `null` keeps the frame JSON if not.
    let d = serde_json::to_string(&d).unwrap_or_else(|_| "null".to_owned());
    Arc::new(Dispatch::new(op::CONNECTED, Resumed::NAME, &d))
}

/// Reloads servers that changed between an identify's load and its registration, until
/// a reload is not overtaken by another change (a few rounds at most).
async fn refresh_stale(gw: &Gateway, mut stale: Vec<xcord_types::Snowflake>) {
    for _ in 0..5 {
        if stale.is_empty() {
            return;
        }
        let since = gw.index.lock().map_or(0, |i| i.generation());
        let mut snaps = Vec::new();
        for id in &stale {
            match gw.core.server_snapshot(*id).await {
                Ok(Some(s)) => snaps.push(s),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot reload a server");
                    return;
                }
            }
        }
        let Ok(mut index) = gw.index.lock() else {
            return;
        };
        let ids: Vec<_> = snaps.iter().map(|s| s.server.id).collect();
        let again = index.changed_since(since, &ids);
        for s in snaps.iter().filter(|s| !again.contains(&s.server.id)) {
            if index.holds_server(s.server.id) {
                index.refresh_server(s);
            }
        }
        stale = again;
    }
}

/// Frames saved as `[[seq, eventId, head], …]` by a stopping node.
fn saved_frames(text: &str) -> Vec<Sequenced> {
    serde_json::from_str::<Vec<(u64, i64, String)>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(|(seq, event, head)| (seq, Arc::new(Dispatch::from_head(&head, event))))
        .collect()
}

/// The token without a `Bearer ` prefix some clients copy from their HTTP header.
fn bare_token(t: &str) -> &str {
    let t = t.trim();
    t.strip_prefix("Bearer ").unwrap_or(t).trim()
}

fn kick_reason(code: u16) -> &'static str {
    match code {
        close::SLOW_CONSUMER => "send queue overflow",
        1000 => "session resumed elsewhere",
        _ => "session closed",
    }
}

/// What the gateway makes of a core error.
enum CoreFailure {
    /// The caller's identity is gone (user deleted, token revoked).
    NotAuthenticated,
    /// Something broke on the server's side.
    Broken,
    /// The request was refused (no permission, unknown channel, invalid input).
    Refused,
}

/// The one place the gateway looks at the core's error variants.
fn core_failure(e: &CoreError) -> CoreFailure {
    match e {
        CoreError::NotFound(_) | CoreError::Unauthenticated(_) => CoreFailure::NotAuthenticated,
        CoreError::Internal(_) | CoreError::Unavailable(_) => CoreFailure::Broken,
        _ => CoreFailure::Refused,
    }
}

/// Client requests the core refuses (no permission, unknown channel) are dropped, as
/// Discord does; only unexpected failures are logged above debug.
fn log_refusal<T>(r: xcord_core::Result<T>) {
    if let Err(e) = r {
        match core_failure(&e) {
            CoreFailure::Broken => {
                tracing::warn!(error = format!("{e:#}"), "gateway request failed");
            }
            CoreFailure::NotAuthenticated | CoreFailure::Refused => {
                tracing::debug!(error = %e, "gateway request refused");
            }
        }
    }
}
