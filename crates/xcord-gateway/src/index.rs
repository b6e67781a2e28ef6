//! The node's routing index: which sessions may receive which events. It holds, for every
//! server with a member connected to this node, what permissions are computed from (roles,
//! channels and their overwrites, every member's roles), and caches per channel the list of
//! sessions that may view it. Events keep it current; nothing here touches the database.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use xcord_bus::BusEvent;
use xcord_core::realtime::ServerSnapshot;
use xcord_permissions::{
    ChannelKind, MemberView, Overwrite, OverwriteTarget, bits, compute_channel_permissions,
};
use xcord_types::Snowflake;
use xcord_types::events::Event;
use xcord_types::rest::channels::{Channel, ChannelKind as WireKind, PermissionOverwrite};
use xcord_types::rest::users::RelationshipKind;

use crate::session::{Dispatch, SessionHandle};

type Sessions = Arc<[Arc<SessionHandle>]>;

#[derive(Debug, Clone)]
struct ChannelState {
    kind: ChannelKind,
    overwrites: Vec<Overwrite>,
    /// The channel as CHANNEL_CREATE carries it, for members who come to see it.
    wire: Arc<str>,
}

/// What decides visibility inside one server.
#[derive(Debug)]
struct ServerState {
    owner: Snowflake,
    roles: HashMap<Snowflake, u64>,
    channels: HashMap<Snowflake, ChannelState>,
    members: HashMap<Snowflake, Vec<Snowflake>>,
    /// Members with sessions on this node.
    local: HashSet<Snowflake>,
    /// Channel → sessions that may view it; cleared by any change that can alter it.
    visible: HashMap<Snowflake, Sessions>,
}

fn kind_of(kind: WireKind) -> ChannelKind {
    xcord_core::servers::channel_kind(kind)
}

impl ServerState {
    fn from_snapshot(s: &ServerSnapshot) -> Self {
        Self {
            owner: s.server.owner_id,
            roles: s
                .roles
                .iter()
                .map(|r| (r.id, r.permissions as u64))
                .collect(),
            channels: s
                .channels
                .iter()
                .map(|(c, ow)| {
                    (
                        c.id,
                        ChannelState {
                            kind: kind_of(c.kind),
                            overwrites: xcord_core::servers::to_overwrites(ow),
                            wire: serde_json::to_string(&ServerSnapshot::channel_view(c, ow))
                                .map_or_else(|_| Arc::from("null"), Arc::from),
                        },
                    )
                })
                .collect(),
            members: s.members.iter().cloned().collect(),
            local: HashSet::new(),
            visible: HashMap::new(),
        }
    }

    fn can_view(&self, server: Snowflake, user: Snowflake, channel: &ChannelState) -> bool {
        let Some(mine) = self.members.get(&user) else {
            return false;
        };
        let roles: Vec<(i64, u64)> = mine
            .iter()
            .filter_map(|r| self.roles.get(r).map(|p| (r.get(), *p)))
            .collect();
        let view = MemberView {
            user_id: user.get(),
            server_id: server.get(),
            owner_id: self.owner.get(),
            everyone: self.roles.get(&server).copied().unwrap_or(0),
            roles: &roles,
        };
        compute_channel_permissions(&view, channel.kind, &channel.overwrites) & bits::VIEW_CHANNELS
            != 0
    }

    /// Which `(channel, user)` pairs of `users` may view, over every channel.
    fn sight(&self, server: Snowflake, users: &[Snowflake]) -> HashSet<(Snowflake, Snowflake)> {
        let mut out = HashSet::new();
        for (id, c) in &self.channels {
            for u in users {
                if self.can_view(server, *u, c) {
                    out.insert((*id, *u));
                }
            }
        }
        out
    }
}

/// What one event becomes for the sessions of a node.
#[derive(Debug, Default)]
pub struct Routed {
    /// Sessions that receive the event itself.
    pub audience: Vec<Arc<SessionHandle>>,
    /// Other frames the event causes: CHANNEL_DELETE for sessions that lost sight of a
    /// channel, CHANNEL_CREATE for those that came to see one.
    pub extra: Vec<(Arc<Dispatch>, Vec<Arc<SessionHandle>>)>,
    /// Work left for outside the index lock.
    pub follow: FollowUp,
}

/// A change the dispatcher must complete outside the index lock (it needs the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FollowUp {
    /// Nothing.
    #[default]
    None,
    /// `user`, connected here, is now in `server`, which this node does not hold yet.
    LoadServer {
        /// The server.
        server: Snowflake,
        /// The member.
        user: Snowflake,
    },
}

/// The routing index of one node.
#[derive(Debug, Default)]
pub struct Index {
    sessions: HashMap<Arc<str>, Arc<SessionHandle>>,
    by_user: HashMap<Snowflake, Vec<Arc<SessionHandle>>>,
    servers: HashMap<Snowflake, ServerState>,
    channel_server: HashMap<Snowflake, Snowflake>,
    /// Private channels of users connected here → their recipients.
    private: HashMap<Snowflake, Vec<Snowflake>>,
    /// Watched user → local users who see their presence as a friend or DM partner.
    watchers: HashMap<Snowflake, HashSet<Snowflake>>,
    /// Counts server-topic events; with `recent`, tells an identify whether a server it
    /// loaded from the database changed before the session was registered.
    generation: u64,
    recent: std::collections::VecDeque<(u64, Snowflake)>,
    /// Logged events routed lately, in routing order, and the newest id among them: what a
    /// stopping node records so that a resume elsewhere replays exactly what it never routed,
    /// and what a resume here adds to the log (whose writes trail the bus a little).
    routed: HashMap<u16, RoutedFrom>,
    /// Set when the node saved its sessions for shutdown: nothing more is routed.
    frozen: bool,
}

/// How far back (in the origin's event time) a stopping node's record of routed ids reaches.
const ROUTED_WINDOW_MS: i64 = 10_000;
/// How far back whole routed events are kept for a resume here (the log trails the bus by
/// its writer's lag, normally milliseconds).
const RECENT_EVENTS_MS: i64 = 3_000;
/// At most this many routed ids are remembered per origin, whatever the window.
const ROUTED_MAX: usize = 100_000;

/// What this node routed lately from one origin node, judged by that node's clock (the ids
/// are its snowflakes), so that clocks of different nodes need not agree.
#[derive(Debug, Default)]
struct RoutedFrom {
    high_water: i64,
    ids: std::collections::VecDeque<i64>,
    /// The same ids, to tell a late copy of an event (an outbox relay's) at once.
    known: HashSet<i64>,
    events: std::collections::VecDeque<Arc<BusEvent>>,
}

/// A stopping node's record of what it routed: per origin node, the newest id and the ids
/// within the window before it.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutedRecord {
    /// Origin node → the newest event id routed from it.
    pub high_water: HashMap<u16, i64>,
    /// Every id routed within each origin's window.
    pub ids: Vec<i64>,
}

/// Milliseconds of a snowflake (the bits above node and sequence).
pub(crate) fn snowflake_ms(id: i64) -> i64 {
    id >> 22
}

const CHANNEL_CREATE_OP: u8 = 20;
const CHANNEL_DELETE_OP: u8 = 22;

/// CHANNEL_DELETE as sent to a member who can no longer see the channel: only its ids.
fn channel_gone(channel: Snowflake, server: Snowflake) -> Arc<Dispatch> {
    let d = format!(r#"{{"id":"{channel}","serverId":"{server}"}}"#);
    Arc::new(Dispatch::new(CHANNEL_DELETE_OP, "CHANNEL_DELETE", &d))
}

/// How many recent server changes the index remembers for identifies in flight.
const RECENT_CHANGES: usize = 4096;

impl Index {
    /// Stops routing for good (the node saved its sessions and is stopping).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Whether routing has stopped.
    pub fn frozen(&self) -> bool {
        self.frozen
    }

    /// Records that the logged event `ev` is being routed; `false` when it was already
    /// (a relay published it again), and then it must not be routed twice.
    pub fn note_routed(&mut self, ev: &Arc<BusEvent>) -> bool {
        if ev.id == 0 {
            return true;
        }
        let from = self
            .routed
            .entry(Snowflake::from_i64(ev.id).node_id())
            .or_default();
        if !from.known.insert(ev.id) {
            return false;
        }
        from.high_water = from.high_water.max(ev.id);
        from.ids.push_back(ev.id);
        from.events.push_back(ev.clone());
        let newest = snowflake_ms(from.high_water);
        while from.ids.len() > ROUTED_MAX
            || from
                .ids
                .front()
                .is_some_and(|f| snowflake_ms(*f) < newest - ROUTED_WINDOW_MS)
        {
            if let Some(old) = from.ids.pop_front() {
                from.known.remove(&old);
            }
        }
        while from.events.len() > ROUTED_MAX
            || from
                .events
                .front()
                .is_some_and(|f| snowflake_ms(f.id) < newest - RECENT_EVENTS_MS)
        {
            from.events.pop_front();
        }
        true
    }

    /// What a stopping node saves of what it routed.
    pub fn routed_record(&self) -> RoutedRecord {
        RoutedRecord {
            high_water: self
                .routed
                .iter()
                .map(|(node, r)| (*node, r.high_water))
                .collect(),
            ids: self
                .routed
                .values()
                .flat_map(|r| r.ids.iter().copied())
                .collect(),
        }
    }

    /// The whole events routed in the last moments, for a resume here.
    pub fn recently_routed(&self) -> Vec<Arc<BusEvent>> {
        self.routed
            .values()
            .flat_map(|r| r.events.iter().cloned())
            .collect()
    }

    /// The current change generation (read before loading state for a new session).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Which of `servers` changed after generation `since` (all of them when the record
    /// no longer reaches back that far).
    pub fn changed_since(&self, since: u64, servers: &[Snowflake]) -> Vec<Snowflake> {
        let reaches = self.recent.front().is_none_or(|(g, _)| *g <= since + 1);
        servers
            .iter()
            .copied()
            .filter(|s| {
                !reaches
                    || self
                        .recent
                        .iter()
                        .rev()
                        .take_while(|(g, _)| *g > since)
                        .any(|(_, id)| id == s)
            })
            .collect()
    }

    /// Replaces a server's state with a newer snapshot, keeping who is connected.
    pub fn refresh_server(&mut self, snap: &ServerSnapshot) {
        let id = snap.server.id;
        let local = self
            .servers
            .remove(&id)
            .map(|s| s.local)
            .unwrap_or_default();
        self.add_server(snap);
        if let Some(s) = self.servers.get_mut(&id) {
            s.local = local;
        }
    }

    /// Which of `servers` this node does not hold yet.
    pub fn missing_servers(&self, servers: &[Snowflake]) -> Vec<Snowflake> {
        servers
            .iter()
            .copied()
            .filter(|s| !self.servers.contains_key(s))
            .collect()
    }

    /// A session by id.
    pub fn session(&self, id: &str) -> Option<Arc<SessionHandle>> {
        self.sessions.get(id).cloned()
    }

    /// Every session.
    pub fn all_sessions(&self) -> impl Iterator<Item = &Arc<SessionHandle>> {
        self.sessions.values()
    }

    /// How many sessions the node holds (attached or waiting for resume).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the node holds no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether this node holds `server`'s state.
    pub fn holds_server(&self, server: Snowflake) -> bool {
        self.servers.contains_key(&server)
    }

    /// Adds a server's state (unless held already: the held one is kept current by events
    /// and wins over a snapshot that may be older).
    pub fn add_server(&mut self, snap: &ServerSnapshot) {
        let id = snap.server.id;
        if self.servers.contains_key(&id) {
            return;
        }
        for (c, _) in &snap.channels {
            self.channel_server.insert(c.id, id);
        }
        self.servers.insert(id, ServerState::from_snapshot(snap));
    }

    /// Makes `user`'s sessions receive `server`'s events.
    pub fn attach_user_to_server(&mut self, user: Snowflake, server: Snowflake) {
        if let Some(s) = self.servers.get_mut(&server) {
            s.members.entry(user).or_default();
            s.local.insert(user);
            s.visible.clear();
        }
    }

    /// Registers a new session with what it starts from.
    pub fn add_session(
        &mut self,
        handle: Arc<SessionHandle>,
        servers: &[ServerSnapshot],
        private: &[(Snowflake, Vec<Snowflake>)],
        contacts: &[Snowflake],
    ) {
        let user = handle.user;
        for snap in servers {
            self.add_server(snap);
            self.attach_user_to_server(user, snap.server.id);
        }
        for (channel, recipients) in private {
            self.private.insert(*channel, recipients.clone());
        }
        for c in contacts {
            self.watchers.entry(*c).or_default().insert(user);
        }
        self.sessions.insert(handle.id.clone(), handle.clone());
        self.by_user.entry(user).or_default().push(handle);
    }

    /// Forgets a session; with the user's last one, forgets what only they needed.
    pub fn remove_session(&mut self, id: &str) {
        let Some(handle) = self.sessions.remove(id) else {
            return;
        };
        let user = handle.user;
        let last = match self.by_user.get_mut(&user) {
            Some(list) => {
                list.retain(|h| !Arc::ptr_eq(h, &handle));
                list.is_empty()
            }
            None => true,
        };
        let mut emptied = Vec::new();
        for (id, s) in &mut self.servers {
            if s.local.contains(&user) {
                s.visible.clear();
                if last {
                    s.local.remove(&user);
                }
            }
            if s.local.is_empty() {
                emptied.push(*id);
            }
        }
        if last {
            self.by_user.remove(&user);
            for w in self.watchers.values_mut() {
                w.remove(&user);
            }
            self.watchers.retain(|_, w| !w.is_empty());
            let by_user = &self.by_user;
            self.private
                .retain(|_, recipients| recipients.iter().any(|r| by_user.contains_key(r)));
        }
        for id in emptied {
            self.drop_server(id);
        }
    }

    fn drop_server(&mut self, id: Snowflake) {
        if let Some(s) = self.servers.remove(&id) {
            for c in s.channels.keys() {
                self.channel_server.remove(c);
            }
        }
    }

    fn sessions_of(&self, user: Snowflake, out: &mut Vec<Arc<SessionHandle>>) {
        if let Some(list) = self.by_user.get(&user) {
            out.extend(list.iter().cloned());
        }
    }

    /// Sessions that may view `channel` of `server` (cached until something changes).
    fn viewers(&mut self, server: Snowflake, channel: Snowflake) -> Option<Sessions> {
        let s = self.servers.get_mut(&server)?;
        if let Some(v) = s.visible.get(&channel) {
            return Some(v.clone());
        }
        let c = s.channels.get(&channel)?;
        let mut out = Vec::new();
        for user in &s.local {
            if s.can_view(server, *user, c)
                && let Some(list) = self.by_user.get(user)
            {
                out.extend(list.iter().cloned());
            }
        }
        let list: Sessions = out.into();
        s.visible.insert(channel, list.clone());
        Some(list)
    }

    fn server_sessions(&self, server: Snowflake, out: &mut Vec<Arc<SessionHandle>>) {
        if let Some(s) = self.servers.get(&server) {
            for u in &s.local {
                self.sessions_of(*u, out);
            }
        }
    }

    /// The sessions an event on a channel reaches: viewers of a server channel, or the
    /// recipients of a private one.
    pub fn channel_audience(&mut self, channel: Snowflake) -> Option<Sessions> {
        if let Some(server) = self.channel_server.get(&channel).copied() {
            return self.viewers(server, channel);
        }
        let recipients = self.private.get(&channel)?;
        let mut out = Vec::new();
        for r in recipients {
            self.sessions_of(*r, &mut out);
        }
        Some(out.into())
    }

    /// The sessions of `user`.
    pub fn user_audience(&self, user: Snowflake) -> Vec<Arc<SessionHandle>> {
        let mut out = Vec::new();
        self.sessions_of(user, &mut out);
        out
    }

    /// Everyone who sees `user`'s presence here: their own sessions, members of a server
    /// they are in, friends and DM partners; each session once.
    pub fn presence_audience(&self, user: Snowflake) -> Vec<Arc<SessionHandle>> {
        let mut users: HashSet<Snowflake> = HashSet::new();
        users.insert(user);
        for s in self.servers.values() {
            if s.members.contains_key(&user) {
                users.extend(s.local.iter().copied());
            }
        }
        if let Some(w) = self.watchers.get(&user) {
            users.extend(w.iter().copied());
        }
        let mut out = Vec::new();
        for u in users {
            self.sessions_of(u, &mut out);
        }
        out
    }

    /// Applies a server-topic event to the index and returns who receives what.
    pub fn server_event(&mut self, server: Snowflake, ev: &BusEvent) -> Routed {
        let mut routed = Routed::default();
        self.generation += 1;
        if self.recent.len() >= RECENT_CHANGES {
            self.recent.pop_front();
        }
        self.recent.push_back((self.generation, server));
        // Only another version's node can publish an event this one cannot read. A channel
        // event is then sent to nobody (better than to the wrong people); anything else
        // goes to the server's sessions, as the index cannot apply it.
        let Some(event) = ev.event() else {
            if !matches!(
                ev.name,
                "CHANNEL_CREATE" | "CHANNEL_UPDATE" | "CHANNEL_DELETE"
            ) {
                self.server_sessions(server, &mut routed.audience);
            }
            return routed;
        };
        match event {
            Event::ChannelCreate(c) | Event::ChannelUpdate(c) | Event::ChannelDelete(c) => {
                self.channel_event(server, event, c, &ev.data, &mut routed);
                return routed;
            }
            _ => {}
        }
        // Who may see which channel, for those whose view this event can change.
        let watched: Vec<Snowflake> = match event {
            Event::RoleCreate(_)
            | Event::RoleUpdate(_)
            | Event::RoleDelete(_)
            | Event::ServerUpdate(_) => self
                .servers
                .get(&server)
                .map(|s| s.local.iter().copied().collect())
                .unwrap_or_default(),
            Event::ServerMemberUpdate(m) => Some(m.member.user.id)
                .filter(|u| self.by_user.contains_key(u))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let before = self.sight_of(server, &watched);
        match event {
            Event::RoleCreate(r) | Event::RoleUpdate(r) => {
                debug_assert_eq!(r.server_id, server);
                if let Some(s) = self.servers.get_mut(&server) {
                    s.roles.insert(r.role.id, r.role.permissions);
                    s.visible.clear();
                }
            }
            Event::RoleDelete(r) => {
                debug_assert_eq!(r.server_id, server);
                if let Some(s) = self.servers.get_mut(&server) {
                    s.roles.remove(&r.role_id);
                    for roles in s.members.values_mut() {
                        roles.retain(|x| *x != r.role_id);
                    }
                    s.visible.clear();
                }
            }
            Event::ServerMemberAdd(m) | Event::ServerMemberUpdate(m) => {
                let user = m.member.user.id;
                let here = self.by_user.contains_key(&user);
                match self.servers.get_mut(&m.server_id) {
                    Some(s) => {
                        s.members.insert(user, m.member.roles.clone());
                        if here {
                            s.local.insert(user);
                        }
                        s.visible.clear();
                    }
                    None if here => {
                        routed.follow = FollowUp::LoadServer {
                            server: m.server_id,
                            user,
                        };
                    }
                    None => {}
                }
            }
            Event::ServerMemberRemove(m) => {
                if let Some(s) = self.servers.get_mut(&m.server_id) {
                    s.members.remove(&m.user_id);
                    s.local.remove(&m.user_id);
                    s.visible.clear();
                    if s.local.is_empty() {
                        self.drop_server(m.server_id);
                    }
                }
            }
            Event::ServerUpdate(update) => {
                if let Some(s) = self.servers.get_mut(&update.id) {
                    s.owner = update.owner_id;
                    s.visible.clear();
                }
            }
            Event::ServerDelete(_) => {
                self.server_sessions(server, &mut routed.audience);
                self.drop_server(server);
                return routed;
            }
            _ => {}
        }
        self.server_sessions(server, &mut routed.audience);
        if !watched.is_empty() {
            let after = self.sight_of(server, &watched);
            self.sight_changes(server, &before, &after, &mut routed);
        }
        routed
    }

    /// `users`' sight of `server`'s channels (empty when the server is not held).
    fn sight_of(&self, server: Snowflake, users: &[Snowflake]) -> HashSet<(Snowflake, Snowflake)> {
        if users.is_empty() {
            return HashSet::new();
        }
        self.servers
            .get(&server)
            .map(|s| s.sight(server, users))
            .unwrap_or_default()
    }

    /// Frames for the pairs that lost sight (CHANNEL_DELETE `{id, serverId}`) and those
    /// that gained it (CHANNEL_CREATE with the whole channel).
    fn sight_changes(
        &self,
        server: Snowflake,
        before: &HashSet<(Snowflake, Snowflake)>,
        after: &HashSet<(Snowflake, Snowflake)>,
        routed: &mut Routed,
    ) {
        let mut lost: HashMap<Snowflake, Vec<Arc<SessionHandle>>> = HashMap::new();
        for (channel, user) in before.difference(after) {
            self.sessions_of(*user, lost.entry(*channel).or_default());
        }
        for (channel, sessions) in lost {
            routed.extra.push((channel_gone(channel, server), sessions));
        }
        let mut gained: HashMap<Snowflake, Vec<Arc<SessionHandle>>> = HashMap::new();
        for (channel, user) in after.difference(before) {
            self.sessions_of(*user, gained.entry(*channel).or_default());
        }
        let Some(s) = self.servers.get(&server) else {
            return;
        };
        for (channel, sessions) in gained {
            if let Some(c) = s.channels.get(&channel) {
                routed.extra.push((
                    Arc::new(Dispatch::new(CHANNEL_CREATE_OP, "CHANNEL_CREATE", &c.wire)),
                    sessions,
                ));
            }
        }
    }

    /// A channel created, changed or deleted: the event reaches those who see the channel
    /// after it (before it, for a deletion); those who lose sight of it by a change get
    /// CHANNEL_DELETE instead, and those who come to see it get CHANNEL_CREATE.
    fn channel_event(
        &mut self,
        server: Snowflake,
        event: &Event,
        c: &Channel,
        data: &Arc<str>,
        routed: &mut Routed,
    ) {
        let deleted = matches!(event, Event::ChannelDelete(_));
        let created = matches!(event, Event::ChannelCreate(_));
        let users_before = self.viewing_users(server, c.id);
        if let Some(s) = self.servers.get_mut(&server) {
            s.visible.remove(&c.id);
            if deleted {
                s.channels.remove(&c.id);
                self.channel_server.remove(&c.id);
            } else {
                s.channels.insert(
                    c.id,
                    ChannelState {
                        kind: kind_of(c.kind),
                        overwrites: overwrites_of(c.permission_overwrites.as_deref()),
                        wire: data.clone(),
                    },
                );
                self.channel_server
                    .insert(c.id, c.server_id.unwrap_or(server));
            }
        }
        if deleted {
            for u in &users_before {
                self.sessions_of(*u, &mut routed.audience);
            }
            return;
        }
        let users_after = self.viewing_users(server, c.id);
        let mut lost = Vec::new();
        let mut gained = Vec::new();
        for u in &users_before {
            if users_after.contains(u) {
                self.sessions_of(*u, &mut routed.audience);
            } else {
                self.sessions_of(*u, &mut lost);
            }
        }
        for u in users_after.difference(&users_before) {
            if created {
                self.sessions_of(*u, &mut routed.audience);
            } else {
                self.sessions_of(*u, &mut gained);
            }
        }
        if !lost.is_empty() {
            routed.extra.push((channel_gone(c.id, server), lost));
        }
        if !gained.is_empty() {
            routed.extra.push((
                Arc::new(Dispatch::new(CHANNEL_CREATE_OP, "CHANNEL_CREATE", data)),
                gained,
            ));
        }
    }

    /// Local users who may view `channel` of `server`.
    fn viewing_users(&self, server: Snowflake, channel: Snowflake) -> HashSet<Snowflake> {
        let Some(s) = self.servers.get(&server) else {
            return HashSet::new();
        };
        let Some(c) = s.channels.get(&channel) else {
            return HashSet::new();
        };
        s.local
            .iter()
            .copied()
            .filter(|u| s.can_view(server, *u, c))
            .collect()
    }

    /// Applies a user-topic event and returns its audience.
    pub fn user_event(
        &mut self,
        user: Snowflake,
        ev: &BusEvent,
    ) -> (Vec<Arc<SessionHandle>>, FollowUp) {
        let mut follow = FollowUp::None;
        match ev.event() {
            // Unreadable (another version's node): it still reaches the user's sessions.
            None => {}
            Some(Event::PresenceUpdate(_)) => return (self.presence_audience(user), follow),
            Some(Event::ChannelCreate(c)) if c.server_id.is_none() => {
                let recipients: Vec<Snowflake> =
                    c.recipients.iter().flatten().map(|r| r.id).collect();
                for r in &recipients {
                    if *r != user {
                        self.watchers.entry(*r).or_default().insert(user);
                    }
                }
                if !recipients.contains(&user) {
                    let mut all = recipients;
                    all.push(user);
                    self.private.insert(c.id, all);
                } else {
                    self.private.insert(c.id, recipients);
                }
            }
            Some(Event::RelationshipUpdate(r)) if r.kind == Some(RelationshipKind::Friend) => {
                self.watchers.entry(r.user_id).or_default().insert(user);
            }
            Some(Event::ServerCreate(created)) => {
                if self.servers.contains_key(&created.id) {
                    self.attach_user_to_server(user, created.id);
                } else if self.by_user.contains_key(&user) {
                    follow = FollowUp::LoadServer {
                        server: created.id,
                        user,
                    };
                }
            }
            Some(_) => {}
        }
        (self.user_audience(user), follow)
    }
}

/// The permission overwrites of a channel as an event carries them.
fn overwrites_of(list: Option<&[PermissionOverwrite]>) -> Vec<Overwrite> {
    list.unwrap_or_default()
        .iter()
        .map(|o| Overwrite {
            target: if o.kind == "user" || o.kind == "member" {
                OverwriteTarget::Member(o.id.get())
            } else {
                OverwriteTarget::Role(o.id.get())
            },
            allow: o.allow,
            deny: o.deny,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sf(n: i64) -> Snowflake {
        Snowflake::from_i64(n)
    }

    /// An event the index cannot read: it still counts as a change of its server.
    fn unreadable(server: i64, name: &str) -> BusEvent {
        BusEvent::from_parts(xcord_bus::Topic::Server(sf(server)), name, "{}", 0)
            .expect("a known name")
    }

    #[test]
    fn identifies_learn_which_servers_changed_while_they_loaded() {
        let mut i = Index::default();
        let before = i.generation();
        i.server_event(sf(1), &unreadable(1, "ROLE_UPDATE"));
        let mid = i.generation();
        i.server_event(sf(2), &unreadable(2, "CHANNEL_UPDATE"));
        assert_eq!(
            i.changed_since(before, &[sf(1), sf(2), sf(3)]),
            [sf(1), sf(2)]
        );
        assert_eq!(i.changed_since(mid, &[sf(1), sf(2), sf(3)]), [sf(2)]);
        assert!(i.changed_since(i.generation(), &[sf(1)]).is_empty());
        // When the record no longer reaches back, everything counts as changed.
        for _ in 0..RECENT_CHANGES + 1 {
            i.server_event(sf(9), &unreadable(9, "ROLE_UPDATE"));
        }
        assert_eq!(i.changed_since(before, &[sf(3)]), [sf(3)]);
    }
}
