//! Mention parsing: `<@id>` / `<@!id>` users, `<@&id>` roles, `<#id>` channels, and the
//! literal words `@everyone` / `@here`.

use xcord_types::Snowflake;

/// What a message's text mentions (before permission and membership checks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedMentions {
    /// User ids, in order, without repeats.
    pub users: Vec<Snowflake>,
    /// Role ids.
    pub roles: Vec<Snowflake>,
    /// Channel ids.
    pub channels: Vec<Snowflake>,
    /// `@everyone` or `@here` appears.
    pub everyone: bool,
}

fn push_unique(v: &mut Vec<Snowflake>, id: Snowflake) {
    if !v.contains(&id) {
        v.push(id);
    }
}

/// Parses the mentions of `text`. At most 100 of each kind are kept.
pub fn parse_mentions(text: &str) -> ParsedMentions {
    let mut out = ParsedMentions::default();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &text[i + 1..];
            let (kind, skip) = if rest.starts_with("@&") {
                (2, 2)
            } else if rest.starts_with("@!") {
                (1, 2)
            } else if rest.starts_with('@') {
                (1, 1)
            } else if rest.starts_with('#') {
                (3, 1)
            } else {
                (0, 0)
            };
            if kind != 0 {
                let digits: String = rest[skip..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let end = skip + digits.len();
                if !digits.is_empty() && rest[end..].starts_with('>') {
                    if let Ok(id) = digits.parse::<Snowflake>() {
                        let list = match kind {
                            1 => &mut out.users,
                            2 => &mut out.roles,
                            _ => &mut out.channels,
                        };
                        if list.len() < 100 {
                            push_unique(list, id);
                        }
                    }
                    i += 1 + end + 1;
                    continue;
                }
            }
        }
        if bytes[i] == b'@'
            && (text[i..].starts_with("@everyone") || text[i..].starts_with("@here"))
        {
            out.everyone = true;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sf(n: i64) -> Snowflake {
        Snowflake::from_i64(n)
    }

    #[test]
    fn every_kind_is_found_once() {
        let m = parse_mentions("hi <@1> and <@!2> and <@1> in <#3> ping <@&4> @here");
        assert_eq!(m.users, vec![sf(1), sf(2)]);
        assert_eq!(m.channels, vec![sf(3)]);
        assert_eq!(m.roles, vec![sf(4)]);
        assert!(m.everyone);
    }

    #[test]
    fn near_misses_are_not_mentions() {
        let m =
            parse_mentions("<@> <@abc> <@12 <#> email@everyone.com? <@-5> <@99999999999999999999>");
        assert!(m.users.is_empty() && m.channels.is_empty() && m.roles.is_empty());
        assert!(
            m.everyone,
            "the word @everyone counts wherever it appears, as on Discord"
        );
        assert!(!parse_mentions("everyone here").everyone);
        assert_eq!(parse_mentions("ünïcödé <@7>").users, vec![sf(7)]);
    }
}
