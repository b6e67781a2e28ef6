//! The node's dispatcher: one bus subscription, one task. Each event is rendered once and
//! appended to the sessions the index names; the index is updated from the event first.
//! Housekeeping (expired sessions, replay age, typing expiry) runs beside it.

use std::sync::Arc;
use std::time::Duration;

use xcord_bus::{BusEvent, RecvError, Topic, TopicFilter};
use xcord_types::gateway::{VoiceState, close, dispatch_op};

use crate::Gateway;
use crate::index::{FollowUp, Index};
use crate::session::{Dispatch, SessionHandle};

/// Starts the dispatcher and the housekeeping task.
pub(crate) fn spawn(gw: Arc<Gateway>) {
    // Subscribe now, not inside the task, so no event published after start() is missed.
    let mut sub = gw.core.bus.subscribe(TopicFilter::All);
    let d = gw.clone();
    tokio::spawn(async move {
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
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                () = gw.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    housekeeping(&gw).await;
                    ticks += 1;
                    if ticks % PRUNE_EVERY_TICKS == 1 {
                        prune_event_log(&gw).await;
                    }
                }
            }
        }
    });
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
pub(crate) fn audience(index: &mut Index, topic: Topic, name: &str, data: &str) -> Routing {
    let mut extra = Vec::new();
    let (audience, follow) = match topic {
        Topic::Channel(c) => (
            index
                .channel_audience(c)
                .map(|l| l.to_vec())
                .unwrap_or_default(),
            FollowUp::None,
        ),
        Topic::Server(s) => {
            let routed = index.server_event(s, name, data);
            extra = routed.extra;
            (routed.audience, routed.follow)
        }
        Topic::User(u) => index.user_event(u, name, data),
        Topic::Global => (index.all_sessions().cloned().collect(), FollowUp::None),
    };
    Routing {
        audience,
        extra,
        follow,
    }
}

/// Routes one event to the sessions that may receive it.
pub async fn route(gw: &Gateway, ev: &BusEvent) {
    if ev.name == "VOICE_STATE_UPDATE"
        && ev.origin_node != gw.core.settings.node_id
        && let Ok(state) = serde_json::from_str::<VoiceState>(&ev.data)
    {
        gw.core.voice.apply(&state);
    }
    if ev.name == "TOKEN_REVOKED" {
        end_revoked_sessions(gw, &ev.data);
        return;
    }
    let Some(op) = dispatch_op(&ev.name) else {
        return;
    };
    let d = Arc::new(Dispatch::new(op, &ev.name, &ev.data).with_event_id(ev.id));
    let follow = {
        let Ok(mut index) = gw.index.lock() else {
            return;
        };
        index.note_routed(ev.id);
        if let Topic::Channel(c) = ev.topic {
            // The hot path: the cached viewer list, delivered without copying it.
            if let Some(list) = index.channel_audience(c) {
                deliver(&list, &d);
            }
            FollowUp::None
        } else {
            let r = audience(&mut index, ev.topic, &ev.name, &ev.data);
            deliver(&r.audience, &d);
            // What the event did to who sees which channel, after the event itself.
            for (frame, sessions) in &r.extra {
                deliver(sessions, frame);
            }
            r.follow
        }
    };
    metrics::counter!("gateway_events_routed_total").increment(1);
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

fn deliver(list: &[Arc<SessionHandle>], d: &Arc<Dispatch>) {
    for h in list {
        h.push(d);
    }
}

/// A logout, refresh-token reuse or password reset revoked an auth session: gateway
/// sessions identified with its tokens end too (op 9, then close 4004).
fn end_revoked_sessions(gw: &Gateway, data: &str) {
    let Ok((key, _until)) = serde_json::from_str::<(String, i64)>(data) else {
        return;
    };
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

/// The event log and saved sessions are pruned once a minute.
const PRUNE_EVERY_TICKS: u64 = 60;

/// Forgets logged events no resume can need any more (older than the resume window and a
/// margin) and saved sessions past their window.
async fn prune_event_log(gw: &Gateway) {
    let now = gw.core.clock.now().as_millis();
    let keep_ms = i64::try_from(gw.settings.resume_secs)
        .unwrap_or(i64::MAX / 4_000)
        .saturating_mul(1000)
        .saturating_add(300_000);
    let before = (now - keep_ms - xcord_types::snowflake::EPOCH_MS).max(0) << 22;
    if let Err(e) = gw.core.store.prune_gateway_log(before, now).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "cannot prune the gateway event log"
        );
    }
}

async fn housekeeping(gw: &Gateway) {
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
    gw.core.expire_typing().await;
}
