//! Sessions that outlive their node (SPEC §4): a stopping node saves each session (its
//! last sequence number and the frames its client may not have) with a checkpoint of what
//! its dispatcher had routed; the node that gets the RESUME — the restarted one or any
//! other — replays from the event log what the old node never routed, filtered by what the
//! session may see.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use xcord_bus::Topic;
use xcord_core::Core;
use xcord_core::realtime::ConnectedState;
use xcord_store::{Checkpoint, SavedSession};
use xcord_types::gateway::dispatch_op;

use crate::Gateway;
use crate::dispatch::audience;
use crate::index::{Index, snowflake_ms};
use crate::session::{Dispatch, SessionHandle};

/// Events stamped this long before the old node's newest routed event are taken as routed
/// by it (its record of routed ids reaches twice as far, so nothing between is doubted).
const MARGIN_MS: i64 = 5_000;
/// Most events one catch-up reads; a longer gap is not resumable.
const MAX_EVENTS: i64 = 100_000;

/// Saves every resumable session of a stopping node, with the checkpoint they share.
pub(crate) async fn save_sessions(gw: &Gateway) -> anyhow::Result<()> {
    let core = &gw.core;
    let now = core.clock.now().as_millis();
    let checkpoint_id = core.ids.next_id().get();
    let expires_at = now + i64::try_from(gw.settings.resume_secs).unwrap_or(i64::MAX / 2) * 1000;
    let (checkpoint, sessions) = {
        let index = gw
            .index
            .lock()
            .map_err(|_| anyhow::anyhow!("routing index poisoned"))?;
        let (high_water, seen) = index.routed_record();
        let sessions: Vec<SavedSession> = index
            .all_sessions()
            .filter_map(|h| {
                let (seq, frames) = h.saved()?;
                let frames: Vec<(u64, i64, &str)> = frames
                    .iter()
                    .map(|(s, d)| (*s, d.event_id, d.head()))
                    .collect();
                Some(SavedSession {
                    id: h.id.to_string(),
                    user_id: h.user,
                    auth_session_id: h.caller.session_id,
                    auth_expires_at: h.caller.expires_at.as_millis(),
                    seq: i64::try_from(seq).unwrap_or(i64::MAX),
                    frames: serde_json::to_string(&frames).unwrap_or_else(|_| "[]".into()),
                    checkpoint_id,
                    expires_at,
                })
            })
            .collect();
        (
            Checkpoint {
                id: checkpoint_id,
                high_water,
                seen: serde_json::to_string(&seen)?,
                created_at: now,
            },
            sessions,
        )
    };
    if sessions.is_empty() {
        return Ok(());
    }
    core.store
        .save_gateway_sessions(&checkpoint, &sessions)
        .await
        .context("saving gateway sessions")?;
    tracing::info!(
        sessions = sessions.len(),
        "gateway sessions saved for resume"
    );
    Ok(())
}

/// The events a session taken over from a stopped node missed, in log order, as the
/// frames it may receive: each logged event its old node never routed, passed through a
/// routing index holding only this session (built from `state`).
pub(crate) async fn missed_events(
    core: &Core,
    checkpoint: &Checkpoint,
    state: &ConnectedState,
) -> anyhow::Result<Vec<Arc<Dispatch>>> {
    let seen: HashSet<i64> = serde_json::from_str::<Vec<i64>>(&checkpoint.seen)
        .context("the checkpoint's routed ids")?
        .into_iter()
        .collect();
    // With nothing routed, the checkpoint's own time bounds what the old node could have
    // routed.
    let newest_ms = if checkpoint.high_water > 0 {
        snowflake_ms(checkpoint.high_water)
    } else {
        checkpoint.created_at - xcord_types::snowflake::EPOCH_MS
    };
    let floor = (newest_ms - MARGIN_MS).max(0) << 22;
    let events = core.store.events_after(floor, MAX_EVENTS).await?;
    if events.len() as i64 >= MAX_EVENTS {
        anyhow::bail!("the gap holds more than {MAX_EVENTS} events");
    }
    // A private index with only this session in it decides, as the live one would.
    let user = state.user.id;
    let (tx, _rx) = mpsc::channel(1);
    let probe = Arc::new(SessionHandle::new(
        "catch-up".into(),
        xcord_core::Caller {
            user_id: user,
            session_id: xcord_types::Snowflake::from_i64(0),
            expires_at: xcord_types::Timestamp::from_millis(0),
        },
        tx,
        1,
    ));
    let mut index = Index::default();
    index.add_session(
        probe.clone(),
        &state.servers,
        &crate::private_channels(state, user),
        &state.personal_contacts,
    );
    let is_probe = |list: &[Arc<SessionHandle>]| list.iter().any(|h| Arc::ptr_eq(h, &probe));
    let mut out = Vec::new();
    for e in events {
        if seen.contains(&e.id) {
            continue;
        }
        let (Some(topic), Some(op)) = (Topic::parse(&e.topic), dispatch_op(&e.name)) else {
            continue;
        };
        let routed = audience(&mut index, topic, &e.name, &e.data);
        if is_probe(&routed.audience) {
            out.push(Arc::new(
                Dispatch::new(op, &e.name, &e.data).with_event_id(e.id),
            ));
        }
        for (frame, sessions) in routed.extra {
            if is_probe(&sessions) {
                out.push(frame);
            }
        }
    }
    Ok(out)
}
