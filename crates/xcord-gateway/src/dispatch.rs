//! The node's dispatcher: one bus subscription, one task. Each event is rendered once and
//! appended to the sessions the index names; the index is updated from the event first.
//! The gateway's housekeeping (expired sessions, replay age) runs beside it. Work every node
//! needs whatever its roles (typing expiry, other nodes' voice states, the event log's
//! pruning) is the core's (`xcord_core::node`).

use std::sync::Arc;
use std::time::Duration;

use xcord_bus::{BusEvent, RecvError, Topic, TopicFilter};
use xcord_core::NodeTask;
use xcord_types::events::{Event, TokenRevoked};
use xcord_types::gateway::close;

use crate::Gateway;
use crate::index::{FollowUp, Index};
use crate::session::{Dispatch, SessionHandle};

/// Starts the dispatcher and the housekeeping task; both end when the gateway shuts down.
pub(crate) fn spawn(gw: &Arc<Gateway>) -> Vec<NodeTask> {
    // Subscribe now, not inside the task, so no event published after start() is missed.
    let mut sub = gw.core.bus.subscribe(TopicFilter::All);
    let d = gw.clone();
    let dispatcher = NodeTask::spawn("gateway dispatcher", async move {
        loop {
            tokio::select! {
                () = d.shutdown.cancelled() => break,
                ev = sub.recv() => match ev {
                    Ok(ev) => route(&d, &ev).await,
                    Err(RecvError::Lagged(n)) => lost_events(&d, n),
                    Err(RecvError::Closed) => break,
                },
            }
        }
    });
    let gw = gw.clone();
    let housekeeper = NodeTask::spawn("gateway housekeeping", async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = gw.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    housekeeping(&gw);
                    reload_pending(&gw).await;
                }
            }
        }
    });
    vec![dispatcher, housekeeper]
}

/// What one event becomes on this node: the event's own audience, other frames it causes
/// (with theirs), and work left for outside the index lock.
pub(crate) struct Routing {
    pub audience: Vec<Arc<SessionHandle>>,
    pub extra: Vec<(Arc<Dispatch>, Vec<Arc<SessionHandle>>)>,
    pub follow: FollowUp,
}

/// Applies `ev` to `index` and says who receives what. Live routing and the catch-up of a
/// session taken over from a stopped node both go through here.
pub(crate) fn audience(index: &mut Index, ev: &BusEvent) -> Routing {
    let mut extra = Vec::new();
    let (audience, follow) = match ev.topic {
        Topic::Channel(c) => (
            index
                .channel_audience(c)
                .map(|l| l.to_vec())
                .unwrap_or_default(),
            FollowUp::None,
        ),
        Topic::Server(s) => {
            let routed = index.server_event(s, ev);
            extra = routed.extra;
            (routed.audience, routed.follow)
        }
        Topic::User(u) => index.user_event(u, ev),
        Topic::Global => (index.all_sessions().cloned().collect(), FollowUp::None),
    };
    Routing {
        audience,
        extra,
        follow,
    }
}

/// Routes one event to the sessions that may receive it.
pub async fn route(gw: &Gateway, ev: &Arc<BusEvent>) {
    let Some(op) = ev.op() else {
        if let Some(Event::TokenRevoked(revoked)) = ev.event() {
            end_revoked_sessions(gw, revoked);
        }
        return;
    };
    let d = Arc::new(Dispatch::new(op, ev.name, &ev.data).with_event_id(ev.id));
    let follow = {
        let Ok(mut index) = gw.index.lock() else {
            return;
        };
        if index.frozen() {
            return;
        }
        if !index.note_routed(ev) {
            return;
        }
        if let Topic::Channel(c) = ev.topic {
            // The hot path: the cached viewer list, delivered without copying it.
            if let Some(list) = index.channel_audience(c) {
                deliver(&list, &d);
            }
            FollowUp::None
        } else {
            let r = audience(&mut index, ev);
            deliver(&r.audience, &d);
            // What the event did to who sees which channel, after the event itself.
            for (frame, sessions) in &r.extra {
                deliver(sessions, frame);
            }
            r.follow
        }
    };
    metrics::counter!("gateway_events_routed_total").increment(1);
    if ev.relayed
        && let Topic::Server(server) = ev.topic
    {
        // A late event may be older than changes already applied: the database says
        // what the server is now. Once a second per server at most; later ones wait for
        // the housekeeping.
        let now = std::time::Instant::now();
        let due = gw.reloads.lock().is_ok_and(|mut r| r.due(server, now));
        if due {
            reload_server(gw, server).await;
        }
    }
    if let FollowUp::LoadServer { server, user } = follow {
        // A member connected here joined a server this node does not hold: load it once.
        // The dispatcher waits, so no later event of that server overtakes the load.
        match gw.core.server_snapshot(server).await {
            Ok(Some(snap)) => {
                if let Ok(mut index) = gw.index.lock() {
                    index.add_server(&snap);
                    index.attach_user_to_server(user, server);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), %server, "cannot load a joined server")
            }
        }
    }
}

/// Servers whose state a late event made uncertain.
#[derive(Debug, Default)]
pub(crate) struct Reloads {
    last: std::collections::HashMap<xcord_types::Snowflake, std::time::Instant>,
    pending: std::collections::HashSet<xcord_types::Snowflake>,
}

impl Reloads {
    /// Whether `server` may be reloaded now; if not, it is reloaded by the housekeeping.
    fn due(&mut self, server: xcord_types::Snowflake, now: std::time::Instant) -> bool {
        let recent = self
            .last
            .get(&server)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1));
        if recent {
            self.pending.insert(server);
            return false;
        }
        self.last.insert(server, now);
        self.last
            .retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        true
    }

    fn take_pending(&mut self, now: std::time::Instant) -> Vec<xcord_types::Snowflake> {
        let out: Vec<_> = self.pending.drain().collect();
        for s in &out {
            self.last.insert(*s, now);
        }
        out
    }
}

/// Reloads the servers late events left uncertain while they came too fast.
async fn reload_pending(gw: &Gateway) {
    let now = std::time::Instant::now();
    let pending = gw
        .reloads
        .lock()
        .map(|mut r| r.take_pending(now))
        .unwrap_or_default();
    for server in pending {
        reload_server(gw, server).await;
    }
}

/// Replaces the index's state of `server` (when it holds it) with what the database says.
async fn reload_server(gw: &Gateway, server: xcord_types::Snowflake) {
    let held = gw.index.lock().is_ok_and(|i| i.holds_server(server));
    if !held {
        return;
    }
    match gw.core.server_snapshot(server).await {
        Ok(Some(snap)) => {
            if let Ok(mut index) = gw.index.lock() {
                index.refresh_server(&snap);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = format!("{e:#}"), %server, "cannot reload a server"),
    }
}

fn deliver(list: &[Arc<SessionHandle>], d: &Arc<Dispatch>) {
    for h in list {
        h.push(d);
    }
}

/// A logout, refresh-token reuse or password reset revoked an auth session: gateway
/// sessions identified with its tokens end too (op 9, then close 4004).
fn end_revoked_sessions(gw: &Gateway, TokenRevoked(key, _until): &TokenRevoked) {
    let Some(sid) = key.strip_prefix("sid:").and_then(|s| s.parse::<i64>().ok()) else {
        return;
    };
    if let Ok(index) = gw.index.lock() {
        for h in index.all_sessions() {
            if h.caller.session_id.get() == sid {
                h.invalidate(close::AUTHENTICATION_FAILED);
            }
        }
    }
}

/// The dispatcher fell behind the bus and events were dropped for every session here: no
/// session can be resumed gap-free, so each is invalidated and its client identifies anew,
/// reloading state from the database.
fn lost_events(gw: &Gateway, n: u64) {
    tracing::warn!(lost = n, "gateway dispatcher lagged; invalidating sessions");
    if let Ok(index) = gw.index.lock() {
        for h in index.all_sessions() {
            h.invalidate(close::SLOW_CONSUMER);
        }
    }
}

/// Forgets sessions whose resume window passed and trims what the others keep for replay.
fn housekeeping(gw: &Gateway) {
    let window = gw.settings.resume_window();
    if let Ok(mut index) = gw.index.lock() {
        let expired: Vec<Arc<str>> = index
            .all_sessions()
            .filter(|h| {
                h.trim(window);
                h.expired(window)
            })
            .map(|h| h.id.clone())
            .collect();
        for id in expired {
            index.remove_session(&id);
        }
        metrics::gauge!("gateway_sessions").set(index.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_reloaded_at_most_once_a_second_and_the_rest_waits() {
        let mut r = Reloads::default();
        let s = xcord_types::Snowflake::from_i64(7);
        let t0 = std::time::Instant::now();
        assert!(r.due(s, t0));
        assert!(!r.due(s, t0 + Duration::from_millis(10)));
        assert!(!r.due(s, t0 + Duration::from_millis(20)));
        assert_eq!(r.take_pending(t0 + Duration::from_millis(500)), [s]);
        assert!(r.take_pending(t0 + Duration::from_millis(600)).is_empty());
        assert!(r.due(s, t0 + Duration::from_millis(1600)));
    }
}
