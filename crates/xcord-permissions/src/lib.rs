//! Permissions: the bits (seed 000, then ours appended from bit 18) and the one pure function
//! every route and the gateway use to compute what a member may do (SPEC §3, Discord's order).
//!
//! Nothing here does I/O: callers gather the server owner, the roles and the channel's
//! overwrites, and this crate answers.

/// Permission bits.
pub mod bits {
    /// See channels (and their messages' existence).
    pub const VIEW_CHANNELS: u64 = 1 << 0;
    /// Post messages.
    pub const SEND_MESSAGES: u64 = 1 << 1;
    /// Reserved for link previews: links are not unfurled yet, `embeds` is always empty.
    pub const EMBED_LINKS: u64 = 1 << 2;
    /// Upload files.
    pub const ATTACH_FILES: u64 = 1 << 3;
    /// Add new reactions.
    pub const ADD_REACTIONS: u64 = 1 << 4;
    /// Delete and pin others' messages.
    pub const MANAGE_MESSAGES: u64 = 1 << 5;
    /// Use @everyone and @here.
    pub const MENTION_EVERYONE: u64 = 1 << 6;
    /// Use emojis from other servers.
    pub const USE_EXTERNAL_EMOJIS: u64 = 1 << 7;
    /// Join voice channels.
    pub const CONNECT: u64 = 1 << 8;
    /// Talk in voice channels.
    pub const SPEAK: u64 = 1 << 9;
    /// Server-mute others.
    pub const MUTE_MEMBERS: u64 = 1 << 10;
    /// Server-deafen others.
    pub const DEAFEN_MEMBERS: u64 = 1 << 11;
    /// Move others between voice channels.
    pub const MOVE_MEMBERS: u64 = 1 << 12;
    /// Create, edit and delete channels.
    pub const MANAGE_CHANNELS: u64 = 1 << 13;
    /// Edit the server.
    pub const MANAGE_SERVER: u64 = 1 << 14;
    /// Kick members.
    pub const KICK_MEMBERS: u64 = 1 << 15;
    /// Ban members.
    pub const BAN_MEMBERS: u64 = 1 << 16;
    /// Everything, and overwrites do not apply.
    pub const ADMINISTRATOR: u64 = 1 << 17;
    // Appended by xcord (documented in docs/permissions.md).
    /// Create invites.
    pub const CREATE_INVITE: u64 = 1 << 18;
    /// Create, edit, assign roles below one's own, and edit channel overwrites.
    pub const MANAGE_ROLES: u64 = 1 << 19;
    /// Change others' nicknames.
    pub const MANAGE_NICKNAMES: u64 = 1 << 20;
    /// Read messages posted before now.
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 21;
    /// Read the audit log.
    pub const VIEW_AUDIT_LOG: u64 = 1 << 22;
    /// Time members out.
    pub const MODERATE_MEMBERS: u64 = 1 << 23;
    /// Share a screen or camera in voice channels.
    pub const STREAM: u64 = 1 << 24;
    /// Change one's own nickname.
    pub const CHANGE_NICKNAME: u64 = 1 << 25;

    /// Every bit defined.
    pub const ALL: u64 = (1 << 26) - 1;

    /// What `@everyone` gets in a new server (Discord's defaults, in our bits).
    pub const EVERYONE_DEFAULT: u64 = VIEW_CHANNELS
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | ADD_REACTIONS
        | MENTION_EVERYONE
        | USE_EXTERNAL_EMOJIS
        | CONNECT
        | SPEAK
        | CREATE_INVITE
        | READ_MESSAGE_HISTORY
        | STREAM
        | CHANGE_NICKNAME;

    /// Bits that only mean something inside a channel; the rest are server-wide.
    pub const CHANNEL_SCOPED: u64 = VIEW_CHANNELS
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | ADD_REACTIONS
        | MANAGE_MESSAGES
        | MENTION_EVERYONE
        | USE_EXTERNAL_EMOJIS
        | CONNECT
        | SPEAK
        | MUTE_MEMBERS
        | DEAFEN_MEMBERS
        | MOVE_MEMBERS
        | MANAGE_CHANNELS
        | CREATE_INVITE
        | MANAGE_ROLES
        | READ_MESSAGE_HISTORY
        | STREAM;

    /// `(name, bit)` for every bit, in bit order.
    pub const NAMES: [(&str, u64); 26] = [
        ("VIEW_CHANNELS", VIEW_CHANNELS),
        ("SEND_MESSAGES", SEND_MESSAGES),
        ("EMBED_LINKS", EMBED_LINKS),
        ("ATTACH_FILES", ATTACH_FILES),
        ("ADD_REACTIONS", ADD_REACTIONS),
        ("MANAGE_MESSAGES", MANAGE_MESSAGES),
        ("MENTION_EVERYONE", MENTION_EVERYONE),
        ("USE_EXTERNAL_EMOJIS", USE_EXTERNAL_EMOJIS),
        ("CONNECT", CONNECT),
        ("SPEAK", SPEAK),
        ("MUTE_MEMBERS", MUTE_MEMBERS),
        ("DEAFEN_MEMBERS", DEAFEN_MEMBERS),
        ("MOVE_MEMBERS", MOVE_MEMBERS),
        ("MANAGE_CHANNELS", MANAGE_CHANNELS),
        ("MANAGE_SERVER", MANAGE_SERVER),
        ("KICK_MEMBERS", KICK_MEMBERS),
        ("BAN_MEMBERS", BAN_MEMBERS),
        ("ADMINISTRATOR", ADMINISTRATOR),
        ("CREATE_INVITE", CREATE_INVITE),
        ("MANAGE_ROLES", MANAGE_ROLES),
        ("MANAGE_NICKNAMES", MANAGE_NICKNAMES),
        ("READ_MESSAGE_HISTORY", READ_MESSAGE_HISTORY),
        ("VIEW_AUDIT_LOG", VIEW_AUDIT_LOG),
        ("MODERATE_MEMBERS", MODERATE_MEMBERS),
        ("STREAM", STREAM),
        ("CHANGE_NICKNAME", CHANGE_NICKNAME),
    ];
}

/// Whom an overwrite applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverwriteTarget {
    /// Members with this role (the server id means `@everyone`).
    Role(i64),
    /// This member.
    Member(i64),
}

/// A channel's allow/deny pair for one role or member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overwrite {
    /// Whom it applies to.
    pub target: OverwriteTarget,
    /// Bits granted.
    pub allow: u64,
    /// Bits taken away.
    pub deny: u64,
}

/// What kind of channel permissions are computed for; voice channels without CONNECT lose
/// their voice bits, text channels without SEND_MESSAGES lose what only matters for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Text (and DM-like) channels.
    Text,
    /// Voice channels.
    Voice,
    /// Categories.
    Category,
}

/// Everything the computation needs about a member of a server.
#[derive(Debug, Clone, Copy)]
pub struct MemberView<'a> {
    /// The member's user id.
    pub user_id: i64,
    /// The server's id (also the `@everyone` role's id).
    pub server_id: i64,
    /// The server owner's user id.
    pub owner_id: i64,
    /// The `@everyone` role's permissions.
    pub everyone: u64,
    /// `(role id, permissions)` of each other role the member has.
    pub roles: &'a [(i64, u64)],
}

/// Server-wide permissions: the owner has all; otherwise `@everyone` | the member's roles,
/// and ADMINISTRATOR means all.
pub fn compute_base_permissions(m: &MemberView<'_>) -> u64 {
    if m.user_id == m.owner_id {
        return bits::ALL;
    }
    let base = m.roles.iter().fold(m.everyone, |acc, (_, p)| acc | p);
    if base & bits::ADMINISTRATOR != 0 {
        bits::ALL
    } else {
        base & bits::ALL
    }
}

/// Permissions in one channel, in Discord's order: base; the owner and administrators stop
/// here with everything; then the channel's `@everyone` overwrite, then all of the member's
/// role overwrites together (deny, then allow), then the member's own overwrite. Without
/// VIEW_CHANNELS nothing else is left: the channel does not exist for them.
pub fn compute_channel_permissions(
    m: &MemberView<'_>,
    kind: ChannelKind,
    overwrites: &[Overwrite],
) -> u64 {
    let base = compute_base_permissions(m);
    if base & bits::ADMINISTRATOR != 0 {
        return bits::ALL;
    }
    let mut p = base;
    if let Some(o) = overwrites
        .iter()
        .find(|o| o.target == OverwriteTarget::Role(m.server_id))
    {
        p = (p & !o.deny) | o.allow;
    }
    let (mut allow, mut deny) = (0, 0);
    for o in overwrites {
        if let OverwriteTarget::Role(r) = o.target
            && r != m.server_id
            && m.roles.iter().any(|(id, _)| *id == r)
        {
            allow |= o.allow;
            deny |= o.deny;
        }
    }
    p = (p & !deny) | allow;
    if let Some(o) = overwrites
        .iter()
        .find(|o| o.target == OverwriteTarget::Member(m.user_id))
    {
        p = (p & !o.deny) | o.allow;
    }
    p &= bits::ALL;
    if p & bits::VIEW_CHANNELS == 0 {
        return 0;
    }
    match kind {
        ChannelKind::Text if p & bits::SEND_MESSAGES == 0 => {
            p & !(bits::MENTION_EVERYONE | bits::ATTACH_FILES | bits::EMBED_LINKS)
        }
        ChannelKind::Voice if p & bits::CONNECT == 0 => {
            p & !(bits::SPEAK
                | bits::MUTE_MEMBERS
                | bits::DEAFEN_MEMBERS
                | bits::MOVE_MEMBERS
                | bits::STREAM)
        }
        _ => p,
    }
}

/// Whether `have` includes every bit of `need` (ADMINISTRATOR includes everything).
pub fn has(have: u64, need: u64) -> bool {
    have & bits::ADMINISTRATOR != 0 || have & need == need
}

#[cfg(test)]
mod tests {
    use super::bits::*;
    use super::*;
    use proptest::prelude::*;

    const SERVER: i64 = 1000;
    const OWNER: i64 = 1;
    const ME: i64 = 2;

    fn view(roles: &[(i64, u64)], everyone: u64) -> MemberView<'_> {
        MemberView {
            user_id: ME,
            server_id: SERVER,
            owner_id: OWNER,
            everyone,
            roles,
        }
    }

    /// docs/permissions.md states the default `@everyone` permissions in words and as a
    /// number; both must be what new servers actually get.
    #[test]
    fn documented_everyone_default_is_the_constant() {
        let doc = include_str!("../../../docs/permissions.md");
        let start = doc
            .find("A new server's `@everyone` gets ")
            .expect("the docs describe @everyone's defaults");
        let sentence = &doc[start..];
        let sentence = &sentence[..sentence.find(").").expect("sentence end") + 2];
        let number: String = sentence[sentence.find("EVERYONE_DEFAULT` =").expect("number")..]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        assert_eq!(
            number.parse::<u64>().ok(),
            Some(EVERYONE_DEFAULT),
            "{sentence}"
        );
        let named: u64 = NAMES
            .iter()
            .filter(|(name, _)| {
                sentence
                    .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .any(|word| word == *name)
            })
            .map(|(_, bit)| bit)
            .sum();
        assert_eq!(named, EVERYONE_DEFAULT, "{sentence}");
    }

    #[test]
    fn worked_example_from_the_docs() {
        // @everyone may view and send; role 7 ("Muted") may not send; in #announcements
        // @everyone is denied SEND_MESSAGES, role 8 ("Staff") is allowed it back.
        let roles = [(7, 0), (8, MANAGE_MESSAGES)];
        let overwrites = [
            Overwrite {
                target: OverwriteTarget::Role(SERVER),
                allow: 0,
                deny: SEND_MESSAGES,
            },
            Overwrite {
                target: OverwriteTarget::Role(8),
                allow: SEND_MESSAGES,
                deny: 0,
            },
        ];
        let everyone = VIEW_CHANNELS | SEND_MESSAGES | READ_MESSAGE_HISTORY;
        let staff =
            compute_channel_permissions(&view(&roles, everyone), ChannelKind::Text, &overwrites);
        assert_eq!(
            staff,
            VIEW_CHANNELS | SEND_MESSAGES | READ_MESSAGE_HISTORY | MANAGE_MESSAGES
        );
        let plain =
            compute_channel_permissions(&view(&[(7, 0)], everyone), ChannelKind::Text, &overwrites);
        assert_eq!(plain, VIEW_CHANNELS | READ_MESSAGE_HISTORY);
    }

    #[test]
    fn implied_denials() {
        let m = view(
            &[],
            VIEW_CHANNELS | MENTION_EVERYONE | ATTACH_FILES | CONNECT | SPEAK,
        );
        assert_eq!(
            compute_channel_permissions(&m, ChannelKind::Text, &[])
                & (MENTION_EVERYONE | ATTACH_FILES),
            0
        );
        let mute = [Overwrite {
            target: OverwriteTarget::Member(ME),
            allow: 0,
            deny: CONNECT,
        }];
        assert_eq!(
            compute_channel_permissions(&m, ChannelKind::Voice, &mute) & SPEAK,
            0
        );
        assert!(has(ADMINISTRATOR, BAN_MEMBERS | KICK_MEMBERS));
        assert!(!has(KICK_MEMBERS, BAN_MEMBERS | KICK_MEMBERS));
    }

    fn arb_overwrites() -> impl Strategy<Value = Vec<Overwrite>> {
        let target = prop_oneof![
            Just(OverwriteTarget::Role(SERVER)),
            (1i64..6).prop_map(OverwriteTarget::Role),
            Just(OverwriteTarget::Member(ME)),
            Just(OverwriteTarget::Member(99)),
        ];
        proptest::collection::vec((target, 0..=ALL, 0..=ALL), 0..6).prop_map(|v| {
            // One overwrite per target, as storage guarantees.
            let mut seen = std::collections::HashSet::new();
            v.into_iter()
                .filter(|(t, _, _)| seen.insert(*t))
                .map(|(target, allow, deny)| Overwrite {
                    target,
                    allow,
                    deny,
                })
                .collect()
        })
    }

    fn arb_roles() -> impl Strategy<Value = Vec<(i64, u64)>> {
        proptest::collection::vec((1i64..6, 0..=ALL), 0..4)
    }

    fn arb_kind() -> impl Strategy<Value = ChannelKind> {
        prop_oneof![
            Just(ChannelKind::Text),
            Just(ChannelKind::Voice),
            Just(ChannelKind::Category)
        ]
    }

    proptest! {
        #[test]
        fn the_owner_has_everything(roles in arb_roles(), everyone in 0..=ALL, ow in arb_overwrites(), kind in arb_kind()) {
            let m = MemberView { user_id: OWNER, server_id: SERVER, owner_id: OWNER, everyone, roles: &roles };
            prop_assert_eq!(compute_base_permissions(&m), ALL);
            prop_assert_eq!(compute_channel_permissions(&m, kind, &ow), ALL);
        }

        #[test]
        fn administrators_have_everything_whatever_the_overwrites(
            mut roles in arb_roles(), everyone in 0..=ALL, ow in arb_overwrites(), kind in arb_kind()
        ) {
            roles.push((5, ADMINISTRATOR));
            let m = view(&roles, everyone);
            prop_assert_eq!(compute_channel_permissions(&m, kind, &ow), ALL);
        }

        #[test]
        fn without_view_nothing_else_exists(roles in arb_roles(), everyone in 0..=ALL, ow in arb_overwrites(), kind in arb_kind()) {
            let p = compute_channel_permissions(&view(&roles, everyone), kind, &ow);
            prop_assert!(p == 0 || p & VIEW_CHANNELS != 0);
        }

        #[test]
        fn the_member_overwrite_has_the_last_word(
            roles in arb_roles(), everyone in 0..=ALL, mut ow in arb_overwrites(), allow in 0..=ALL, deny in 0..=ALL
        ) {
            prop_assume!(!roles.iter().any(|(_, p)| p & ADMINISTRATOR != 0) && everyone & ADMINISTRATOR == 0);
            ow.retain(|o| o.target != OverwriteTarget::Member(ME));
            ow.push(Overwrite { target: OverwriteTarget::Member(ME), allow, deny: deny & !allow });
            let p = compute_channel_permissions(&view(&roles, everyone), ChannelKind::Category, &ow);
            if p != 0 {
                // Whatever the roles and their overwrites say, the member's allow holds and
                // the member's deny holds.
                prop_assert_eq!(p & allow, allow);
                prop_assert_eq!(p & (deny & !allow), 0);
            } else {
                prop_assert!(allow & VIEW_CHANNELS == 0);
            }
        }

        #[test]
        fn role_allows_beat_role_denies_and_the_everyone_overwrite(
            everyone in 0..=ALL, bit in 0u32..26, deny_everyone in any::<bool>()
        ) {
            let b = 1u64 << bit;
            prop_assume!(b != ADMINISTRATOR && everyone & ADMINISTRATOR == 0);
            let roles = [(3, 0), (4, 0)];
            let ow = [
                Overwrite { target: OverwriteTarget::Role(SERVER), allow: VIEW_CHANNELS, deny: if deny_everyone { b } else { 0 } },
                Overwrite { target: OverwriteTarget::Role(3), allow: 0, deny: b },
                Overwrite { target: OverwriteTarget::Role(4), allow: b, deny: 0 },
            ];
            let p = compute_channel_permissions(&view(&roles, everyone), ChannelKind::Category, &ow);
            // Deny then allow: among role overwrites, an allow wins over a deny.
            prop_assert!(p & b != 0 || b == VIEW_CHANNELS && p == 0);
        }

        #[test]
        fn overwrites_for_others_change_nothing(roles in arb_roles(), everyone in 0..=ALL, allow in 0..=ALL, deny in 0..=ALL) {
            let m = view(&roles, everyone);
            let other = [Overwrite { target: OverwriteTarget::Member(99), allow, deny }];
            prop_assert_eq!(
                compute_channel_permissions(&m, ChannelKind::Category, &other),
                compute_channel_permissions(&m, ChannelKind::Category, &[])
            );
        }

        #[test]
        fn base_is_the_union_of_roles(roles in arb_roles(), everyone in 0..=ALL) {
            let m = view(&roles, everyone);
            let union = roles.iter().fold(everyone, |a, (_, p)| a | p);
            let expected = if union & ADMINISTRATOR != 0 { ALL } else { union };
            prop_assert_eq!(compute_base_permissions(&m), expected);
        }
    }
}
