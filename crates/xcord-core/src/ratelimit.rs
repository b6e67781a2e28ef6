//! Rate limits (SPEC §3, seed 000 §5.2). Fixed windows per tier and key, counted in memory
//! behind a trait so the Redis counter of multi-node mode can take its place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::Clock;

/// The limited actions, each with its own budget and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Account creation (register, guest), per client address.
    Register,
    /// Login attempts, per client address.
    Login,
    /// Password-reset mails, per e-mail address.
    PasswordReset,
    /// Posting messages, per user.
    MessageSend,
    /// Editing messages, per user.
    MessageEdit,
    /// Every authenticated call, per user.
    General,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 6] = [
        Tier::Register,
        Tier::Login,
        Tier::PasswordReset,
        Tier::MessageSend,
        Tier::MessageEdit,
        Tier::General,
    ];

    /// Name used in configuration (`XCORD_RATE_LIMIT_<NAME>`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Register => "register",
            Tier::Login => "login",
            Tier::PasswordReset => "password_reset",
            Tier::MessageSend => "message_send",
            Tier::MessageEdit => "message_edit",
            Tier::General => "general",
        }
    }

    /// Seed 000 §5.2's budget.
    pub fn default_limit(self) -> Limit {
        match self {
            Tier::Register => Limit {
                max: 3,
                window_secs: 3600,
            },
            Tier::Login => Limit {
                max: 5,
                window_secs: 60,
            },
            Tier::PasswordReset => Limit {
                max: 3,
                window_secs: 3600,
            },
            Tier::MessageSend => Limit {
                max: 10,
                window_secs: 10,
            },
            Tier::MessageEdit => Limit {
                max: 20,
                window_secs: 60,
            },
            Tier::General => Limit {
                max: 100,
                window_secs: 60,
            },
        }
    }
}

/// `max` requests per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed per window.
    pub max: u32,
    /// Window length in seconds.
    pub window_secs: u64,
}

impl std::str::FromStr for Limit {
    type Err = anyhow::Error;
    /// `COUNT/SECONDS`, e.g. `5/60`; the window may carry a unit: `5/1m`, `3/1h`, `10/10s`.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (max, window) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("expected COUNT/SECONDS, e.g. 5/60"))?;
        let max: u32 = max.trim().parse()?;
        let w = window.trim();
        let (num, mult) = match w.chars().last() {
            Some('s') => (&w[..w.len() - 1], 1),
            Some('m') => (&w[..w.len() - 1], 60),
            Some('h') => (&w[..w.len() - 1], 3600),
            _ => (w, 1),
        };
        let window_secs = num.parse::<u64>()? * mult;
        anyhow::ensure!(
            max > 0 && window_secs > 0,
            "count and window must be positive"
        );
        Ok(Limit { max, window_secs })
    }
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The window's budget.
    pub limit: u32,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Seconds until the window resets (at least 1).
    pub reset_secs: u64,
}

/// Counts requests against limits.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Counts one request of `tier` for `key` and says whether it may proceed.
    async fn hit(&self, tier: Tier, key: &str, limit: Limit) -> anyhow::Result<RateDecision>;
}

/// Fixed-window counters in process memory.
#[derive(Debug)]
pub struct InMemoryRateLimiter {
    clock: Arc<dyn Clock>,
    // No await while locked, so a std Mutex is right; windows are small records.
    windows: Mutex<HashMap<(Tier, String), (i64, u32)>>,
}

impl InMemoryRateLimiter {
    /// A limiter reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn hit(&self, tier: Tier, key: &str, limit: Limit) -> anyhow::Result<RateDecision> {
        let now = self.clock.now().as_millis();
        let window_ms = i64::try_from(limit.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut map = self
            .windows
            .lock()
            .map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?;
        // Keep memory bounded: drop windows that have ended once the map grows.
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now - *start < window_ms.max(3_600_000));
        }
        let entry = map.entry((tier, key.to_owned())).or_insert((now, 0));
        if now - entry.0 >= window_ms {
            *entry = (now, 0);
        }
        let allowed = entry.1 < limit.max;
        if allowed {
            entry.1 += 1;
        }
        let reset_ms = (entry.0 + window_ms - now).max(0);
        Ok(RateDecision {
            allowed,
            limit: limit.max,
            remaining: limit.max.saturating_sub(entry.1),
            reset_secs: u64::try_from(reset_ms.div_euclid(1000) + i64::from(reset_ms % 1000 != 0))
                .unwrap_or(1)
                .max(1),
        })
    }
}

/// Whether limits apply, and each tier's budget.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// `XCORD_RATE_LIMITS`.
    pub enabled: bool,
    /// Budgets; tiers not listed use [`Tier::default_limit`].
    pub limits: HashMap<Tier, Limit>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            limits: HashMap::new(),
        }
    }
}

impl RateLimitSettings {
    /// The budget of `tier`.
    pub fn limit(&self, tier: Tier) -> Limit {
        self.limits
            .get(&tier)
            .copied()
            .unwrap_or_else(|| tier.default_limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use xcord_types::Timestamp;

    #[tokio::test]
    async fn windows_count_reset_and_separate_keys() -> anyhow::Result<()> {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let rl = InMemoryRateLimiter::new(Arc::new(clock.clone()));
        let lim = Limit {
            max: 3,
            window_secs: 60,
        };
        for left in [2, 1, 0] {
            let d = rl.hit(Tier::Login, "1.2.3.4", lim).await?;
            assert!(d.allowed);
            assert_eq!((d.limit, d.remaining, d.reset_secs), (3, left, 60));
        }
        clock.advance_millis(10_500);
        let d = rl.hit(Tier::Login, "1.2.3.4", lim).await?;
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.reset_secs), (0, 50));
        assert!(
            rl.hit(Tier::Login, "5.6.7.8", lim).await?.allowed,
            "other key"
        );
        assert!(
            rl.hit(Tier::Register, "1.2.3.4", lim).await?.allowed,
            "other tier"
        );
        clock.advance_millis(49_500);
        let d = rl.hit(Tier::Login, "1.2.3.4", lim).await?;
        assert!(d.allowed, "a new window");
        assert_eq!(d.remaining, 2);
        Ok(())
    }

    #[test]
    fn limits_parse() {
        assert_eq!(
            "5/60".parse::<Limit>().ok(),
            Some(Limit {
                max: 5,
                window_secs: 60
            })
        );
        assert_eq!(
            "3/1h".parse::<Limit>().ok(),
            Some(Limit {
                max: 3,
                window_secs: 3600
            })
        );
        assert_eq!(
            "10/10s".parse::<Limit>().ok(),
            Some(Limit {
                max: 10,
                window_secs: 10
            })
        );
        assert!("0/60".parse::<Limit>().is_err());
        assert!("five".parse::<Limit>().is_err());
    }
}
