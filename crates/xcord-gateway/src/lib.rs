//! The real-time gateway (SPEC §4): WebSocket sessions with identify, heartbeat and resume,
//! fed by one bus subscription per node and routed to sessions by what they may see.
//!
//! Shape: the node's [`dispatch`] task reads every bus event once, renders its frame once,
//! asks the [`index::Index`] who may receive it (membership, roles, overwrites, all kept
//! current from the events themselves, with no database query per event), and appends it to
//! each recipient's [`session::SessionHandle`]: numbered, kept for replay, and offered to a
//! bounded queue. Each connection's protocol (identify, heartbeat, resume, client ops) is a
//! transport-free state machine, [`protocol::GatewaySession`]; each WebSocket is served by
//! one task ([`connection`]) that decodes what its client sends into the session and writes
//! what the session yields.

mod catch_up;
pub mod connection;
pub mod dispatch;
pub mod hype_ws;
pub mod index;
pub mod protocol;
pub mod session;
pub mod socketio;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xcord_core::{Core, NodeTask};

use crate::index::Index;
use crate::session::SessionHandle;
use xcord_core::realtime::ConnectedState;

/// Each private channel of `state` with all its members (the user included).
pub(crate) fn private_channels(
    state: &ConnectedState,
    user: xcord_types::Snowflake,
) -> Vec<(xcord_types::Snowflake, Vec<xcord_types::Snowflake>)> {
    state
        .private_channels
        .iter()
        .map(|c| {
            let mut ids: Vec<_> = c.recipients.iter().flatten().map(|u| u.id).collect();
            if !ids.contains(&user) {
                ids.push(user);
            }
            (c.id, ids)
        })
        .collect()
}

/// Behaviour taken from configuration.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Heartbeat interval announced in HELLO (`XCORD_GATEWAY_HEARTBEAT_MS`).
    pub heartbeat_ms: u64,
    /// How long a closed session can be resumed (`XCORD_GATEWAY_RESUME_SECS`).
    pub resume_secs: u64,
    /// Frames a connection's send queue holds before it is closed with 4010.
    pub send_queue: usize,
    /// Events a session keeps for replay.
    pub replay_limit: usize,
    /// Frames a client may send per minute before it is closed with 4008.
    pub frames_per_minute: u32,
    /// Time a connection has to IDENTIFY or RESUME before it is closed with 4003
    /// (`XCORD_GATEWAY_IDENTIFY_SECS`); heartbeats do not extend it.
    pub identify_secs: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 41_250,
            resume_secs: 120,
            send_queue: 1024,
            replay_limit: 1024,
            frames_per_minute: 120,
            identify_secs: 10,
        }
    }
}

impl GatewaySettings {
    fn resume_window(&self) -> Duration {
        Duration::from_secs(self.resume_secs)
    }
}

/// What the HTTP transport hands the gateway with an upgrade request: it may evict the
/// socket (at its connection cap) until the session identifies, and never after.
#[derive(Clone)]
pub struct Eviction {
    /// Notified when the transport evicts the connection.
    pub evicted: Arc<tokio::sync::Notify>,
    /// Makes the connection exempt from eviction (called once it identified).
    pub protect: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eviction").finish_non_exhaustive()
    }
}

/// Catch-ups from the event log that run at once; the others wait their turn.
const CONCURRENT_CATCH_UPS: usize = 4;

/// The gateway of one node.
pub struct Gateway {
    pub(crate) core: Arc<Core>,
    pub(crate) settings: GatewaySettings,
    // Locked by the dispatcher per event and by connections when they identify, resume
    // or close; no await happens while it is held, so a std Mutex is right.
    pub(crate) index: Mutex<Index>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) connections: TaskTracker,
    /// Bounds the catch-ups from the event log running at once: after a restart every
    /// client resumes together, and each reads the log and loads its user's state.
    pub(crate) catch_ups: tokio::sync::Semaphore,
    /// Servers to reload from the database after late (relayed) events, at most once a
    /// second each: a burst of relayed events must not stall the dispatcher.
    pub(crate) reloads: Mutex<dispatch::Reloads>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts the node's gateway: its bus subscription, dispatcher and housekeeping. The
    /// tasks returned end once [`Gateway::shutdown`] began; the caller awaits them.
    pub fn start(core: Arc<Core>, settings: GatewaySettings) -> (Arc<Self>, Vec<NodeTask>) {
        let gw = Arc::new(Self {
            core,
            settings,
            index: Mutex::new(Index::default()),
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            catch_ups: tokio::sync::Semaphore::new(CONCURRENT_CATCH_UPS),
            reloads: Mutex::default(),
        });
        let tasks = dispatch::spawn(&gw);
        (gw, tasks)
    }

    /// The routes: `GET /api/ws` and `GET /gateway`, and Socket.IO at `/socket.io/`
    /// (SPEC §7, [`socketio`]).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/ws", get(connection::upgrade))
            .route("/gateway", get(connection::upgrade))
            .merge(socketio::routes(self.clone()))
            .merge(hype_ws::routes(self.clone()))
            .with_state(self.clone())
    }

    /// Sessions held (attached or waiting for resume).
    pub fn session_count(&self) -> usize {
        self.index.lock().map_or(0, |i| i.len())
    }

    /// Whether session `id` has a connection attached (`None`: no such session).
    pub fn session_attached(&self, id: &str) -> Option<bool> {
        let h = self.index.lock().ok()?.session(id)?;
        Some(h.attached())
    }

    /// Saves the sessions so that any node can resume them within the window (routing
    /// stops at that instant), then asks every connection to reconnect elsewhere (op 7,
    /// then close) and waits up to `limit` for them to finish. Saving comes first because
    /// a client told to reconnect may be on another node a moment later. The dispatcher and
    /// housekeeping end from here on.
    pub async fn shutdown(&self, limit: Duration) {
        if let Err(e) = catch_up::save_sessions(self).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "gateway sessions not saved; clients will identify anew"
            );
        }
        self.shutdown.cancel();
        self.connections.close();
        let _ = tokio::time::timeout(limit, self.connections.wait()).await;
    }

    /// Registers a session loaded from `state` (the index generation `since` was read
    /// before the load); `first` runs under the index lock, before any event can reach
    /// the session. Returns the servers that changed during the load (to reload).
    pub(crate) fn register(
        &self,
        handle: &Arc<SessionHandle>,
        state: &ConnectedState,
        since: u64,
        first: impl FnOnce(&SessionHandle, &Index),
    ) -> Option<Vec<xcord_types::Snowflake>> {
        let user = handle.user;
        let private = private_channels(state, user);
        let ids: Vec<_> = state.servers.iter().map(|s| s.server.id).collect();
        let mut index = self.index.lock().ok()?;
        // Servers the node already holds are current; ones it takes from this load may
        // have changed while the load ran.
        let new = index.missing_servers(&ids);
        index.add_session(
            handle.clone(),
            &state.servers,
            &private,
            &state.personal_contacts,
        );
        first(handle, &index);
        Some(index.changed_since(since, &new))
    }
}
