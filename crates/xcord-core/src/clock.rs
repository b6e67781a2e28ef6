//! Time, injectable where behaviour depends on it (token expiry, typing timeouts, schedules),
//! so tests move time instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use xcord_types::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Notified when the time jumps (a manual clock moved by a test), so that timers
    /// waiting for a time on this clock look again. The wall clock never jumps.
    fn jumps(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>, Arc<tokio::sync::Notify>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(
            Arc::new(AtomicI64::new(start.as_millis())),
            Arc::new(tokio::sync::Notify::new()),
        )
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
        self.1.notify_waiters();
    }

    /// Sets the clock.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
        self.1.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }

    fn jumps(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = ManualClock::new(Timestamp::from_millis(1_000));
        let shared = c.clone();
        assert_eq!(c.now().as_millis(), 1_000);
        shared.advance_millis(15 * 60 * 1000);
        assert_eq!(c.now().as_millis(), 1_000 + 900_000);
        c.set(Timestamp::from_millis(5));
        assert_eq!(shared.now().as_millis(), 5);
    }
}
