//! Sessions that outlive their node (SPEC §4): a stopping node saves each session (its
//! last sequence number and the frames its client may not have) with a checkpoint of what
//! its dispatcher had routed; the node that gets the RESUME — the restarted one or any
//! other — replays from the event log what the old node never routed, filtered by what the
//! session may see.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use xcord_bus::{BusEvent, Topic};
use xcord_core::Core;
use xcord_core::realtime::ConnectedState;
use xcord_store::{Checkpoint, SavedSession};
use xcord_types::Snowflake;
use xcord_types::events::Event;

use crate::Gateway;
use crate::dispatch::audience;
use crate::index::{Index, RoutedRecord, snowflake_ms};
use crate::session::{Dispatch, SessionHandle};

/// Events stamped this long before the newest event the old node routed from their origin
/// are taken as routed by it (its record of routed ids reaches twice as far back).
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
        let mut index = gw
            .index
            .lock()
            .map_err(|_| anyhow::anyhow!("routing index poisoned"))?;
        // Nothing is routed after this snapshot: what comes later is in the log, and the
        // saved sessions' numbering stays what their clients can have.
        index.freeze();
        let record = index.routed_record();
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
                high_water: record.high_water.values().copied().max().unwrap_or(0),
                seen: serde_json::to_string(&record)?,
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
    recent: Vec<Arc<BusEvent>>,
) -> anyhow::Result<Option<Vec<Arc<Dispatch>>>> {
    let record: RoutedRecord =
        serde_json::from_str(&checkpoint.seen).context("the checkpoint's routed ids")?;
    let seen: HashSet<i64> = record.ids.iter().copied().collect();
    // Per origin node, by that node's clock: events stamped a margin before the newest one
    // the old node routed from it count as routed (their ids are in `seen` if they were).
    // From nodes it routed nothing of, everything since shortly before it stopped counts.
    let unknown_floor = checkpoint.created_at - xcord_types::snowflake::EPOCH_MS - MARGIN_MS;
    let floor_of = |id: i64| -> i64 {
        let node = xcord_types::Snowflake::from_i64(id).node_id();
        record
            .high_water
            .get(&node)
            .map_or(unknown_floor, |hw| snowflake_ms(*hw) - MARGIN_MS)
    };
    let lowest_ms = record
        .high_water
        .values()
        .map(|hw| snowflake_ms(*hw) - MARGIN_MS)
        .chain([unknown_floor])
        .min()
        .unwrap_or(unknown_floor);
    let floor = lowest_ms.max(0) << 22;
    let logged = core.store.events_after(floor, MAX_EVENTS).await?;
    if logged.len() as i64 >= MAX_EVENTS {
        anyhow::bail!("the gap holds more than {MAX_EVENTS} events");
    }
    // The log and what this node routed lately, once each, in id order.
    let mut events: std::collections::BTreeMap<i64, Arc<BusEvent>> = logged
        .into_iter()
        .filter_map(|e| {
            let node = xcord_types::Snowflake::from_i64(e.id).node_id();
            let ev = BusEvent::from_parts(Topic::parse(&e.topic)?, &e.name, e.data, node)?;
            Some((e.id, Arc::new(ev.with_id(e.id))))
        })
        .collect();
    for e in recent.into_iter().filter(|e| e.id > floor) {
        events.entry(e.id).or_insert(e);
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
    // A message deleted within the gap is not shown again, not even for a moment.
    let deleted: HashSet<Snowflake> = events
        .values()
        .filter_map(|ev| match ev.event() {
            Some(Event::MessageDelete(d)) => Some(d.id),
            _ => None,
        })
        .collect();
    let my_servers: HashSet<Snowflake> = state.servers.iter().map(|s| s.server.id).collect();
    let mut out = Vec::new();
    for (id, ev) in events {
        if seen.contains(&id) || snowflake_ms(id) < floor_of(id) {
            continue;
        }
        let Some(op) = ev.op() else {
            continue;
        };
        let routed = audience(&mut index, &ev);
        let mine = match ev.topic {
            Topic::Server(server) => my_servers.contains(&server),
            _ => is_probe(&routed.audience),
        };
        // An event this node cannot read is judged by its name, on the safe side.
        let sight = ev.event().map_or_else(
            || {
                matches!(
                    ev.name,
                    "ROLE_CREATE"
                        | "ROLE_UPDATE"
                        | "ROLE_DELETE"
                        | "CHANNEL_UPDATE"
                        | "SERVER_UPDATE"
                        | "SERVER_CREATE"
                        | "SERVER_DELETE"
                        | "SERVER_MEMBER_ADD"
                        | "SERVER_MEMBER_UPDATE"
                        | "SERVER_MEMBER_REMOVE"
                )
            },
            |e| changes_sight(e, user),
        );
        if mine && sight {
            // The replay judges visibility with today's permissions, which is only right
            // while they did not change in the gap: otherwise the client identifies anew.
            return Ok(None);
        }
        if is_probe(&routed.audience) {
            if let Some(Event::MessageCreate(m) | Event::MessageUpdate(m)) = ev.event()
                && deleted.contains(&m.id)
            {
                continue;
            }
            out.push(Arc::new(
                Dispatch::new(op, ev.name, &ev.data).with_event_id(id),
            ));
        }
        for (frame, sessions) in routed.extra {
            if is_probe(&sessions) {
                out.push(frame);
            }
        }
    }
    Ok(Some(out))
}

/// Whether an event that reached the user can change what they may see: a role, a
/// channel's overwrites, the owner, or their own membership.
fn changes_sight(event: &Event, me: Snowflake) -> bool {
    match event {
        Event::RoleCreate(_)
        | Event::RoleUpdate(_)
        | Event::RoleDelete(_)
        | Event::ChannelUpdate(_)
        | Event::ServerUpdate(_)
        | Event::ServerCreate(_)
        | Event::ServerDelete(_) => true,
        Event::ServerMemberAdd(m) | Event::ServerMemberUpdate(m) => m.member.user.id == me,
        Event::ServerMemberRemove(m) => m.user_id == me,
        _ => false,
    }
}
