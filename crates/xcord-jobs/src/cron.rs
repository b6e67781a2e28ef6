//! The planner of automatic messages: at each time of `XCORD_AUTO_MESSAGES_CRON` (UTC,
//! five fields or six with seconds) it plans that tick through the core, which claims the
//! tick in the database first, so only one node plans it however many run the role.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tokio_util::sync::CancellationToken;
use xcord_core::Core;
use xcord_core::auto_messages::BUILT_IN_POOL;
use xcord_types::Timestamp;

/// Longest wait between looks at the clock (a wall clock that was set back or forward).
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

/// The automatic messages' settings (SPEC §6).
#[derive(Debug, Clone)]
pub struct AutoMessages {
    /// When to plan.
    pub cron: Cron,
    /// Send times are spread over this many seconds after the planning time.
    pub window_secs: u64,
    /// The messages to pick from.
    pub pool: Arc<Vec<String>>,
}

/// Parses a cron pattern: five fields, or six with seconds first.
pub fn parse_cron(pattern: &str) -> anyhow::Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .with_context(|| format!("not a cron pattern (5 fields, or 6 with seconds): {pattern:?}"))
}

/// The pool: one message per non-empty line of `path` (at most 2,000 characters each), or
/// the built-in ten.
pub fn load_pool(path: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let Some(path) = path else {
        return Ok(BUILT_IN_POOL.iter().map(|s| (*s).to_owned()).collect());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the message pool {}", path.display()))?;
    let pool: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if pool.is_empty() {
        anyhow::bail!("the message pool {} has no messages", path.display());
    }
    if let Some(long) = pool.iter().find(|l| l.chars().count() > 2000) {
        anyhow::bail!(
            "a message of the pool {} is longer than 2000 characters: {:.40}…",
            path.display(),
            long
        );
    }
    Ok(pool)
}

/// The first time of `cron` strictly after `after`.
pub fn next_tick(cron: &Cron, after: Timestamp) -> Option<Timestamp> {
    let start = DateTime::<Utc>::from_timestamp_millis(after.as_millis())?;
    let next = cron.find_next_occurrence(&start, false).ok()?;
    Some(Timestamp::from_millis(next.timestamp_millis()))
}

/// Plans every tick from now on until `stop`.
pub async fn plan_loop(core: Arc<Core>, auto: AutoMessages, stop: CancellationToken) {
    let jumps = core.clock.jumps();
    let mut after = core.clock.now();
    loop {
        let Some(tick) = next_tick(&auto.cron, after) else {
            tracing::warn!("the automatic messages' cron pattern has no next time");
            return;
        };
        // Wait for the tick on the core's clock.
        loop {
            let now = core.clock.now();
            if now.as_millis() >= tick.as_millis() {
                break;
            }
            let wait = Duration::from_millis((tick.as_millis() - now.as_millis()) as u64)
                .min(LONGEST_SLEEP);
            let jumped = async {
                match &jumps {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = jumped => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // A few tries for a database that is briefly away; a tick is not planned late.
        for attempt in 0..3 {
            match core
                .plan_auto_messages(tick, auto.window_secs, &auto.pool)
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "automatic messages could not be planned");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
        after = tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_patterns_give_the_next_time_in_utc() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).expect("time");
        let nightly = parse_cron("0 2 * * *").expect("five fields");
        assert_eq!(
            next_tick(&nightly, t("2026-11-28T01:59:00Z")),
            Some(t("2026-11-28T02:00:00Z"))
        );
        assert_eq!(
            next_tick(&nightly, t("2026-11-28T02:00:00Z")),
            Some(t("2026-11-29T02:00:00Z")),
            "strictly after"
        );
        let every_ten_secs = parse_cron("*/10 * * * * *").expect("six fields");
        assert_eq!(
            next_tick(&every_ten_secs, t("2026-11-28T02:00:01Z")),
            Some(t("2026-11-28T02:00:10Z"))
        );
        assert!(parse_cron("not cron").is_err());
        assert!(parse_cron("0 2 * *").is_err());
    }

    #[test]
    fn the_pool_is_the_file_s_non_empty_lines_or_the_built_in_ten() {
        assert_eq!(load_pool(None).expect("built in").len(), 10);
        let dir = std::env::temp_dir().join(format!("xcord-pool-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pool.txt");
        std::fs::write(&file, "hello\n\n  bye  \n").expect("write");
        assert_eq!(load_pool(Some(&file)).expect("pool"), vec!["hello", "bye"]);
        std::fs::write(&file, "\n \n").expect("write");
        assert!(load_pool(Some(&file)).is_err(), "an empty pool is refused");
        assert!(load_pool(Some(&dir.join("missing"))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
