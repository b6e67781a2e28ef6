//! The core's per-node work, run on every node whatever its roles (STYLE 14): one bus
//! subscriber that applies every event, other nodes' included, to this node's state, and
//! one housekeeping task for expiries and pruning. A node started with `--roles api` posts
//! messages and takes typing requests, so it must end its own typing indicators as surely
//! as a node with a gateway does.
//!
//! Both tasks end when their stop signal is given and are awaited at shutdown. They hold the
//! core weakly, so a core dropped without a shutdown (a test that ends early) ends them too.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xcord_bus::{BusEvent, RecvError, Subscription, Topic, TopicFilter};
use xcord_types::Snowflake;
use xcord_types::events::{Event, Typing};

use crate::Core;

/// How often the housekeeping runs: typing indicators end within a second of their ten.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);
/// The event log is pruned once in this many housekeeping rounds (a minute).
const PRUNE_LOG_EVERY: u64 = 60;
/// This node's voice room records (which live 30 s) are extended once in this many rounds.
const REFRESH_VOICE_ROOMS_EVERY: u64 = 10;
/// Logged events outlive the resume window by this much (ms), so a session saved near the
/// end of its window still finds the events it needs.
const LOG_MARGIN_MS: i64 = 300_000;

/// A background task of the node, named for the shutdown log.
#[derive(Debug)]
pub struct NodeTask {
    name: &'static str,
    handle: JoinHandle<()>,
}

impl NodeTask {
    /// Spawns `fut` as the task called `name`.
    pub fn spawn<F>(name: &'static str, fut: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            handle: tokio::spawn(fut),
        }
    }

    /// What the task does.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Waits up to `limit` for the task to end, once its stop signal was given. A task still
    /// running then is aborted and reported, so one stuck task cannot hold the shutdown.
    /// Returns whether it ended by itself.
    pub async fn join(self, limit: Duration) -> bool {
        let abort = self.handle.abort_handle();
        match tokio::time::timeout(limit, self.handle).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(task = self.name, error = %e, "a node task ended abnormally");
                false
            }
            Err(_) => {
                abort.abort();
                tracing::warn!(task = self.name, "a node task did not end in time; aborted");
                false
            }
        }
    }
}

impl Core {
    /// Starts the per-node tasks every node runs, whatever its roles: the bus follower and
    /// the housekeeping. They end when `stop` is cancelled; shutdown awaits them.
    pub fn start_node_tasks(self: &Arc<Self>, stop: &CancellationToken) -> Vec<NodeTask> {
        // Subscribed here rather than in the task, so no event published from now on is
        // missed.
        let sub = self.bus.subscribe(TopicFilter::All);
        vec![
            NodeTask::spawn(
                "core bus follower",
                follow_bus(Arc::downgrade(self), sub, stop.clone()),
            ),
            NodeTask::spawn(
                "core housekeeping",
                housekeeping(Arc::downgrade(self), stop.clone()),
            ),
        ]
    }

    /// Applies one event from the bus to this node's state.
    async fn follow(&self, ev: &BusEvent) {
        let Some(event) = ev.event() else {
            return;
        };
        self.revocations.apply_event(event);
        self.caches.on_event(&ev.topic, event);
        // Whichever node changed them, permissions apply to this node's voice sessions.
        self.recheck_voice(&ev.topic, event).await;
        // This node applied its own events where it made them.
        if ev.origin_node == self.settings.node_id {
            return;
        }
        match event {
            // CONNECTED lists the voice states of a server, whichever node they were set on.
            // The node holding a media session obeys what other nodes set for it.
            Event::VoiceStateUpdate(state) => {
                self.apply_foreign_voice_state(&ev.topic, state).await;
            }
            Event::VoiceMoved(moved) => self.apply_foreign_voice_move(moved).await,
            // The indicator now belongs to the node that started it again, or it ended
            // there: this node no longer stops it, so the user gets one TYPING_STOP.
            Event::TypingStart(t) | Event::TypingStop(t) => {
                self.activity.forget_typing(t.channel_id, t.user_id);
            }
            // A message posted through another node ends the typing indicator this node
            // started for its author (a client typing over this node's gateway and posting
            // through an api node).
            Event::MessageCreate(m) => {
                if let Topic::Channel(channel) = ev.topic
                    && self.activity.typing_in(channel)
                    && let Some(server) = self.activity.stop_typing(channel, m.author.id)
                {
                    let now = self.clock.now();
                    self.publish_typing_stop(channel, m.author.id, server, now)
                        .await;
                }
            }
            _ => {}
        }
    }

    /// Ends the typing indicators this node started more than ten seconds ago, each with a
    /// TYPING_STOP.
    pub async fn expire_typing(&self) {
        let now = self.clock.now();
        for ((channel, user), server) in self.activity.expire_typing(now.as_millis()) {
            self.publish_typing_stop(channel, user, server, now).await;
        }
    }

    async fn publish_typing_stop(
        &self,
        channel: Snowflake,
        user: Snowflake,
        server: Option<Snowflake>,
        now: xcord_types::Timestamp,
    ) {
        let stop = Event::TypingStop(Typing {
            channel_id: channel,
            user_id: user,
            server_id: server,
            timestamp: now,
        });
        self.publish_ephemeral(Topic::Channel(channel), stop).await;
    }

    /// Forgets logged events no resume can need any more (older than the resume window and
    /// a margin) and saved gateway sessions past their window. Every node writes the log,
    /// so every node keeps it bounded, gateway or not.
    async fn prune_event_log(&self) {
        let now = self.clock.now().as_millis();
        let keep_ms = i64::try_from(self.settings.resume_secs)
            .unwrap_or(i64::MAX / 4_000)
            .saturating_mul(1000)
            .saturating_add(LOG_MARGIN_MS);
        let before = Snowflake::from_parts(now - keep_ms, 0, 0).get();
        if let Err(e) = self.store.prune_gateway_log(before, now).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot prune the gateway event log"
            );
        }
    }
}

/// The core's one bus subscriber.
async fn follow_bus(core: Weak<Core>, mut sub: Subscription, stop: CancellationToken) {
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => return,
            ev = sub.recv() => ev,
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        match ev {
            Ok(ev) => core.follow(&ev).await,
            Err(RecvError::Lagged(lost)) => {
                // Lost invalidations: start the caches afresh. A lost TYPING_STOP or message
                // leaves an indicator that ends by its ten seconds.
                tracing::warn!(lost, "the core's bus subscriber lagged; caches cleared");
                core.caches.clear();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Once a second: typing expiry and slowmode pruning; every ten seconds: this node's voice
/// room records; once a minute: the event log.
async fn housekeeping(core: Weak<Core>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(core) = core.upgrade() else {
            return;
        };
        core.expire_typing().await;
        core.activity.prune_slowmode(core.clock.now().as_millis());
        if let Err(e) = core.relay_unpublished().await {
            tracing::warn!(error = format!("{e:#}"), "cannot relay unpublished events");
        }
        if rounds.is_multiple_of(REFRESH_VOICE_ROOMS_EVERY) {
            // Scale mode: keeps the records of the rooms this node has media sessions in.
            core.refresh_voice_rooms().await;
        }
        if rounds.is_multiple_of(PRUNE_LOG_EVERY) {
            // Pruning a long log takes many batches; a shutdown does not wait for them.
            // Each batch is its own transaction: stopping rolls back at most the one under
            // way, which the next start prunes again.
            tokio::select! {
                () = stop.cancelled() => return,
                () = core.prune_event_log() => {}
            }
        }
        rounds += 1;
    }
}
