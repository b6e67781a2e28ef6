//! A gateway session: its sequence counter, its replay buffer, and the bounded queue to the
//! connection currently attached to it (none while it waits to be resumed).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};
use xcord_core::Caller;
use xcord_types::Snowflake;

/// One event rendered for every recipient at once: the frame up to its sequence number.
/// The payload is serialized once per event; a recipient only appends its own `s`.
#[derive(Debug)]
pub struct Dispatch {
    /// `{"op":11,"t":"MESSAGE_CREATE","d":{…},"s":`
    head: Box<str>,
    /// When the event was routed (the replay buffer forgets events older than the window).
    pub(crate) at: Instant,
    /// The event's id in the event log (0: a frame made here, such as RESUMED).
    pub event_id: i64,
}

impl Dispatch {
    /// Renders the shared part of a dispatch frame.
    pub fn new(op: u8, name: &str, data: &str) -> Self {
        let mut head = String::with_capacity(data.len() + name.len() + 32);
        // Writing to a String cannot fail.
        let _ = write!(head, r#"{{"op":{op},"t":"{name}","d":{data},"s":"#);
        Self {
            head: head.into_boxed_str(),
            at: Instant::now(),
            event_id: 0,
        }
    }

    /// The same frame, marked as the logged event `id`.
    #[must_use]
    pub fn with_event_id(mut self, id: i64) -> Self {
        self.event_id = id;
        self
    }

    /// A frame saved by [`Dispatch::head`] (a session kept across a restart).
    pub fn from_head(head: &str, event_id: i64) -> Self {
        Self {
            head: head.into(),
            at: Instant::now(),
            event_id,
        }
    }

    /// The frame without its sequence number.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The whole frame for sequence `seq`.
    pub fn frame(&self, seq: u64) -> String {
        let mut out = String::with_capacity(self.head.len() + 21);
        out.push_str(&self.head);
        let _ = write!(out, "{seq}}}");
        out
    }
}

/// An entry of the send queue and the replay buffer.
pub type Sequenced = (u64, Arc<Dispatch>);

/// What a connection should do when the session is taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Nothing (still attached).
    None,
    /// Close with this code.
    Close(u16),
    /// Send INVALID_SESSION (not resumable), then close with this code.
    Invalidate(u16),
}

#[derive(Debug)]
struct Queue {
    seq: u64,
    replay: VecDeque<Sequenced>,
    tx: Option<mpsc::Sender<Sequenced>>,
    /// Bumped on every attach; a connection acts only while it holds the current one.
    generation: u64,
    kick: Kick,
    detached_at: Option<Instant>,
    /// Events were lost for this session (replay overflow while detached, bus lag):
    /// it can no longer be resumed.
    broken: bool,
    /// While a session taken over from a stopped node catches up from the event log, live
    /// events wait here unnumbered, so they follow the replayed ones.
    holding: Option<Vec<Arc<Dispatch>>>,
    /// The newest sequence number the client said it has (its heartbeats).
    acked: u64,
}

impl Queue {
    /// Keeps `item` for replay, forgetting the oldest entry beyond `limit`.
    fn keep(&mut self, item: Sequenced, limit: usize) {
        if self.replay.len() >= limit {
            self.replay.pop_front();
        }
        self.replay.push_back(item);
    }
}

/// A session, shared by the dispatcher (which appends events) and the connection serving it.
#[derive(Debug)]
pub struct SessionHandle {
    /// The session id clients resume with.
    pub id: Arc<str>,
    /// The user.
    pub user: Snowflake,
    /// The identity core calls run as.
    pub caller: Caller,
    queue: Mutex<Queue>,
    /// Wakes the attached connection when it is kicked.
    pub(crate) kicked: Notify,
    replay_limit: usize,
}

/// Why a session cannot be resumed from a given sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// Events after the client's sequence are no longer held, or were lost.
    Gap,
}

impl SessionHandle {
    /// A new session with nothing sent yet, attached to `tx`.
    pub fn new(
        id: Arc<str>,
        caller: Caller,
        tx: mpsc::Sender<Sequenced>,
        replay_limit: usize,
    ) -> Self {
        Self {
            id,
            user: caller.user_id,
            caller,
            queue: Mutex::new(Queue {
                seq: 0,
                replay: VecDeque::new(),
                tx: Some(tx),
                generation: 1,
                kick: Kick::None,
                detached_at: None,
                broken: false,
                holding: None,
                acked: 0,
            }),
            kicked: Notify::new(),
            replay_limit,
        }
    }

    /// A session taken over from a stopped node: numbered up to `seq`, holding `kept`
    /// (frames the client may not have), and holding live events back until
    /// [`SessionHandle::release`].
    pub fn taken_over(
        id: Arc<str>,
        caller: Caller,
        tx: mpsc::Sender<Sequenced>,
        replay_limit: usize,
        seq: u64,
        kept: Vec<Sequenced>,
    ) -> Self {
        let h = Self::new(id, caller, tx, replay_limit);
        if let Ok(mut q) = h.queue.lock() {
            q.seq = seq;
            q.replay = kept.into();
            q.holding = Some(Vec::new());
        }
        h
    }

    /// Ends the catch-up of a taken-over session: numbers the `replayed` events, then the
    /// live ones held meanwhile (those already among `replayed` once), then the RESUMED
    /// frame made by `resumed` from their count. Returns the frames after `client_seq`,
    /// in order, for the connection to write (nothing goes to the queue for them); `None`
    /// when the session broke meanwhile.
    pub fn release(
        &self,
        client_seq: u64,
        replayed: Vec<Arc<Dispatch>>,
        resumed: impl FnOnce(usize) -> Arc<Dispatch>,
    ) -> Option<Vec<Sequenced>> {
        let mut q = self.queue.lock().ok()?;
        if q.broken {
            // More live events arrived during the catch-up than a session may hold.
            return None;
        }
        let held = q.holding.take().unwrap_or_default();
        let logged: std::collections::HashSet<i64> = replayed
            .iter()
            .map(|d| d.event_id)
            .filter(|id| *id != 0)
            .collect();
        let mut out: Vec<Sequenced> = q
            .replay
            .iter()
            .filter(|(s, _)| *s > client_seq)
            .cloned()
            .collect();
        let live = held
            .into_iter()
            .filter(|d| d.event_id == 0 || !logged.contains(&d.event_id));
        for d in replayed.into_iter().chain(live) {
            q.seq += 1;
            let item = (q.seq, d);
            q.keep(item.clone(), self.replay_limit);
            out.push(item);
        }
        let count = out.len();
        q.seq += 1;
        // RESUMED is numbered but never replayed: a later resume has its own.
        out.push((q.seq, resumed(count)));
        Some(out)
    }

    /// Records the sequence number a client's heartbeat says it has.
    pub fn acknowledge(&self, seq: u64) {
        if let Ok(mut q) = self.queue.lock()
            && seq <= q.seq
        {
            q.acked = q.acked.max(seq);
        }
    }

    /// What a stopping node saves of this session: its last sequence number and the
    /// frames after what the client acknowledged; `None` when it cannot be resumed.
    pub fn saved(&self) -> Option<(u64, Vec<Sequenced>)> {
        let q = self.queue.lock().ok()?;
        if q.broken {
            return None;
        }
        let frames = q
            .replay
            .iter()
            .filter(|(s, _)| *s > q.acked)
            .cloned()
            .collect();
        Some((q.seq, frames))
    }

    /// Numbers `d` for this session, keeps it for replay and hands it to the attached
    /// connection. A connection whose queue is full is detached and told to close with
    /// 4010; the event stays in the replay buffer so the client can resume.
    pub fn push(&self, d: &Arc<Dispatch>) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        if q.broken {
            return;
        }
        if let Some(held) = q.holding.as_mut() {
            if held.len() >= self.replay_limit {
                q.broken = true;
                q.holding = None;
                q.replay.clear();
            } else {
                held.push(d.clone());
            }
            return;
        }
        if q.tx.is_none() && q.replay.len() >= self.replay_limit {
            // Detached and the buffer is full: the gap can no longer be replayed.
            q.broken = true;
            q.replay.clear();
            return;
        }
        q.seq += 1;
        let item = (q.seq, d.clone());
        q.keep(item.clone(), self.replay_limit);
        self.hand_over(&mut q, item);
    }

    /// As [`SessionHandle::push`], without keeping the event for replay (CONNECTED: large,
    /// per session, and never needed by a resume).
    pub fn push_unkept(&self, d: &Arc<Dispatch>) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        q.seq += 1;
        let item = (q.seq, d.clone());
        self.hand_over(&mut q, item);
    }

    /// Offers `item` to the attached connection; one that cannot take it is detached and
    /// kicked with 4010.
    fn hand_over(&self, q: &mut Queue, item: Sequenced) {
        if let Some(tx) = &q.tx
            && tx.try_send(item).is_err()
        {
            metrics::counter!("gateway_slow_consumers_total").increment(1);
            q.tx = None;
            q.detached_at = Some(Instant::now());
            q.kick = Kick::Close(xcord_types::gateway::close::SLOW_CONSUMER);
            self.kicked.notify_one();
        }
    }

    /// Forgets replay entries older than `window`.
    pub fn trim(&self, window: std::time::Duration) {
        if let Ok(mut q) = self.queue.lock() {
            while q
                .replay
                .front()
                .is_some_and(|(_, d)| d.at.elapsed() > window)
            {
                q.replay.pop_front();
            }
        }
    }

    /// The connection holding `generation` closed: the session waits to be resumed.
    pub fn detach(&self, generation: u64) {
        if let Ok(mut q) = self.queue.lock()
            && q.generation == generation
            && q.tx.is_some()
        {
            q.tx = None;
            q.detached_at = Some(Instant::now());
        }
    }

    /// Marks the session as unresumable and tells its connection to invalidate and close.
    pub fn invalidate(&self, code: u16) {
        if let Ok(mut q) = self.queue.lock() {
            q.broken = true;
            q.replay.clear();
            if q.tx.take().is_some() {
                q.kick = Kick::Invalidate(code);
                self.kicked.notify_one();
            }
            q.detached_at.get_or_insert_with(Instant::now);
        }
    }

    /// What the connection of `generation` should do now.
    pub fn kick_for(&self, generation: u64) -> Kick {
        match self.queue.lock() {
            Ok(q) if q.generation == generation => q.kick,
            // Another connection took the session over.
            Ok(_) => Kick::Close(1000),
            Err(_) => Kick::Close(1011),
        }
    }

    /// Whether a connection is attached.
    pub fn attached(&self) -> bool {
        self.queue.lock().is_ok_and(|q| q.tx.is_some())
    }

    /// The current attach generation (the first connection's is 1).
    pub fn generation(&self) -> u64 {
        self.queue.lock().map_or(0, |q| q.generation)
    }

    /// Whether the session should be forgotten: detached for longer than `window`, or
    /// broken and detached.
    pub fn expired(&self, window: std::time::Duration) -> bool {
        self.queue.lock().map_or(true, |q| {
            q.tx.is_none() && (q.broken || q.detached_at.is_some_and(|t| t.elapsed() > window))
        })
    }

    /// Attaches a new connection that last saw `seq`: returns the events to replay (in
    /// order), the RESUMED frame made by `resumed` from their count (numbered next, so every
    /// later event follows it), and the connection's generation; or refuses when the gap
    /// cannot be filled. Any connection still attached is told to close.
    pub fn resume(
        &self,
        seq: u64,
        tx: mpsc::Sender<Sequenced>,
        resumed: impl FnOnce(usize) -> Arc<Dispatch>,
    ) -> Result<(Vec<Sequenced>, Sequenced, u64), ResumeRefused> {
        let Ok(mut q) = self.queue.lock() else {
            return Err(ResumeRefused::Gap);
        };
        if q.broken || seq > q.seq {
            return Err(ResumeRefused::Gap);
        }
        let first_held = q.replay.front().map_or(q.seq + 1, |(s, _)| *s);
        if seq + 1 < first_held {
            return Err(ResumeRefused::Gap);
        }
        let missed: Vec<Sequenced> = q.replay.iter().filter(|(s, _)| *s > seq).cloned().collect();
        let d = resumed(missed.len());
        q.seq += 1;
        // Numbered, but not kept: a later resume replays events, not an old RESUMED.
        let item = (q.seq, d);
        if q.tx.is_some() {
            // A connection the client gave up on: it goes, quietly.
            self.kicked.notify_one();
        }
        q.generation += 1;
        q.kick = Kick::None;
        q.tx = Some(tx);
        q.detached_at = None;
        Ok((missed, item, q.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcord_types::Timestamp;

    fn handle(cap: usize, limit: usize) -> (SessionHandle, mpsc::Receiver<Sequenced>) {
        let (tx, rx) = mpsc::channel(cap);
        let caller = Caller {
            user_id: Snowflake::from_i64(1),
            session_id: Snowflake::from_i64(2),
            expires_at: Timestamp::from_millis(0),
        };
        (SessionHandle::new("s".into(), caller, tx, limit), rx)
    }

    fn ev(n: u32) -> Arc<Dispatch> {
        Arc::new(Dispatch::new(
            11,
            "MESSAGE_CREATE",
            &format!("{{\"n\":{n}}}"),
        ))
    }

    #[test]
    fn frames_carry_the_payload_once_and_the_sequence_last() {
        let d = ev(7);
        assert_eq!(
            d.frame(12),
            r#"{"op":11,"t":"MESSAGE_CREATE","d":{"n":7},"s":12}"#
        );
        let v: serde_json::Value = serde_json::from_str(&d.frame(3)).expect("json");
        assert_eq!(v["s"], 3);
    }

    #[test]
    fn an_overflowing_queue_detaches_with_4010_and_keeps_the_events_for_resume() {
        let (h, mut rx) = handle(2, 100);
        for n in 0..5 {
            h.push(&ev(n));
        }
        assert_eq!(h.kick_for(1), Kick::Close(4010));
        assert_eq!(rx.try_recv().map(|(s, _)| s), Ok(1));
        assert_eq!(rx.try_recv().map(|(s, _)| s), Ok(2));
        let (tx, _rx2) = mpsc::channel(8);
        let (missed, (rseq, _), generation) = h.resume(2, tx, |_| ev(99)).expect("resumable");
        assert_eq!(
            missed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!((rseq, generation), (6, 2));
        assert_eq!(h.kick_for(1), Kick::Close(1000));
        assert_eq!(h.kick_for(2), Kick::None);
    }

    #[test]
    fn a_gap_beyond_the_buffer_is_refused() {
        let (h, _rx) = handle(100, 3);
        for n in 0..6 {
            h.push(&ev(n));
        }
        h.detach(1);
        let (tx, _r) = mpsc::channel(8);
        assert_eq!(
            h.resume(1, tx.clone(), |_| ev(99)).err(),
            Some(ResumeRefused::Gap)
        );
        assert_eq!(
            h.resume(9, tx.clone(), |_| ev(99)).err(),
            Some(ResumeRefused::Gap)
        );
        let (missed, _, _) = h.resume(3, tx, |_| ev(99)).expect("held");
        assert_eq!(missed.len(), 3);
    }

    #[test]
    fn a_detached_session_that_overflows_cannot_be_resumed() {
        let (h, _rx) = handle(100, 2);
        h.push(&ev(0));
        h.detach(1);
        for n in 1..4 {
            h.push(&ev(n));
        }
        let (tx, _r) = mpsc::channel(8);
        assert!(h.resume(1, tx, |_| ev(99)).is_err());
        assert!(h.expired(std::time::Duration::from_secs(60)));
    }
}
