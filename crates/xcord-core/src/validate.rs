//! Input rules of SPEC §3, checked once at the edge of a use-case. Every failing field is
//! reported, not just the first.

use time::{Date, Month};
use xcord_types::{FieldError, Timestamp};

use crate::Error;

/// Collects field failures; [`Violations::finish`] turns them into one 422.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Records `r`'s failure, if any, and passes its value on.
    pub fn check<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// Adds a failure.
    pub fn push(&mut self, field: &str, rule: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, rule, message));
    }

    /// `Ok` when nothing failed, else a 422 listing every failure.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

/// 3–32 of `[A-Za-z0-9_.-]`.
pub fn username(field: &str, s: &str) -> Result<String, FieldError> {
    let n = s.chars().count();
    if !(3..=32).contains(&n) {
        return Err(FieldError::new(field, "length", "must be 3–32 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(FieldError::new(
            field,
            "pattern",
            "may contain only letters, digits, `_`, `.` and `-`",
        ));
    }
    Ok(s.to_owned())
}

/// 8–128 characters with an upper-case letter, a lower-case letter and a digit.
pub fn password(field: &str, s: &str) -> Result<(), FieldError> {
    let n = s.chars().count();
    if !(8..=128).contains(&n) {
        return Err(FieldError::new(field, "length", "must be 8–128 characters"));
    }
    if !(s.chars().any(char::is_uppercase)
        && s.chars().any(char::is_lowercase)
        && s.chars().any(|c| c.is_ascii_digit()))
    {
        return Err(FieldError::new(
            field,
            "strength",
            "must contain an upper-case letter, a lower-case letter and a digit",
        ));
    }
    Ok(())
}

/// A plausible address, returned lower-cased.
pub fn email(field: &str, s: &str) -> Result<String, FieldError> {
    let s = s.trim();
    let bad = || FieldError::new(field, "email", "must be an e-mail address");
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err(bad());
    }
    Ok(s.to_lowercase())
}

/// A birth date (`YYYY-MM-DD` or an RFC 3339 time) of someone at least 13 at `today`,
/// returned as `YYYY-MM-DD`.
pub fn date_of_birth(field: &str, s: &str, today: Timestamp) -> Result<String, FieldError> {
    let bad = || FieldError::new(field, "date", "must be a date like 2000-01-31");
    let day = s.get(..10).ok_or_else(bad)?;
    if s.len() > 10 && Timestamp::parse_rfc3339(s).is_none() {
        return Err(bad());
    }
    let mut parts = day.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i32, u8, u8) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let born = Date::from_calendar_date(y, Month::try_from(m).map_err(|_| bad())?, d)
        .map_err(|_| bad())?;
    let now = time::OffsetDateTime::from_unix_timestamp(today.as_millis().div_euclid(1000))
        .map_err(|_| bad())?
        .date();
    if y < 1900 || born > now {
        return Err(FieldError::new(
            field,
            "date",
            "must be a real date in the past",
        ));
    }
    let mut age = now.year() - born.year();
    if (now.month() as u8, now.day()) < (born.month() as u8, born.day()) {
        age -= 1;
    }
    if age < 13 {
        return Err(FieldError::new(
            field,
            "minimumAge",
            "you must be at least 13 years old",
        ));
    }
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

/// At most `max` characters.
pub fn max_chars(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.chars().count() > max {
        return Err(FieldError::new(
            field,
            "length",
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// A random discriminator, `0001`–`9999`.
pub fn discriminator() -> String {
    format!("{:04}", rand::random_range(1..=9999u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Timestamp = Timestamp::from_millis(1_795_000_000_000); // 2026-11-18

    #[test]
    fn usernames() {
        for ok in ["abc", "A.b-c_9", &"x".repeat(32)] {
            assert!(username("u", ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"x".repeat(33),
            "has space",
            "émile",
            "semi;colon",
            "",
        ] {
            assert!(username("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(password("p", "Secret123").is_ok());
        for bad in [
            "Sh0rt",
            "alllowercase1",
            "ALLUPPER1",
            "NoDigitsHere",
            &format!("Aa1{}", "x".repeat(126)),
        ] {
            assert!(password("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("e", " Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "", "no-at", "@x.io", "a@", "a@nodot", "a b@x.io", "a@x..io", "a@@x.io",
        ] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn birth_dates() {
        assert_eq!(
            date_of_birth("d", "2000-02-29", TODAY).ok().as_deref(),
            Some("2000-02-29")
        );
        assert_eq!(
            date_of_birth("d", "2000-01-01T00:00:00Z", TODAY)
                .ok()
                .as_deref(),
            Some("2000-01-01")
        );
        // 13 on 2026-11-18 exactly: allowed; one day short: refused.
        assert!(date_of_birth("d", "2013-11-18", TODAY).is_ok());
        let young = date_of_birth("d", "2013-11-19", TODAY).expect_err("12");
        assert_eq!(young.rule, "minimumAge");
        for bad in [
            "2001-02-29",
            "yesterday",
            "2030-01-01",
            "1800-01-01",
            "2000-13-01",
            "2000-01-01junk",
        ] {
            assert!(date_of_birth("d", bad, TODAY).is_err(), "{bad}");
        }
    }

    #[test]
    fn violations_collect_everything() {
        let mut v = Violations::default();
        v.check(username("username", "x"));
        v.check(password("password", "weak"));
        assert!(v.check(email("email", "a@b.co")).is_some());
        match v.finish() {
            Err(Error::Validation(f)) => assert_eq!(f.len(), 2),
            other => panic!("{other:?}"),
        }
        let d = discriminator();
        assert_eq!(d.len(), 4);
        assert_ne!(d, "0000");
    }
}
