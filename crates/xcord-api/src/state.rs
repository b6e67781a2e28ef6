use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use xcord_core::Core;

/// Everything a handler can reach. Cloning is one `Arc` increment.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

/// The shared parts of [`AppState`].
pub struct AppStateInner {
    /// The use-cases and the services under them.
    pub core: Arc<Core>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once shutdown begins: readiness turns 503 so balancers drain this node.
    pub shutting_down: AtomicBool,
    /// When the process started serving.
    pub started_at: Instant,
    /// Sends voice signaling to the node holding a channel's room.
    pub voice_forwarder: crate::VoiceForwarder,
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }

    /// Marks the node as draining (readiness 503).
    pub fn begin_shutdown(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.0.shutting_down.load(Ordering::SeqCst)
    }
}

impl Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}
