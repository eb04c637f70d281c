//! Time, read through a trait so that tests and the console can drive it.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// How long to really sleep until `t`; None for a virtual clock, which only moves when told.
    fn real_wait(&self, t: DateTime<Utc>) -> Option<std::time::Duration>;
}

/// The machine's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn real_wait(&self, t: DateTime<Utc>) -> Option<std::time::Duration> {
        Some((t - Utc::now()).to_std().unwrap_or_default())
    }
}

/// A clock that stands still until moved: for tests, demos and drills.
pub struct VirtualClock {
    now: Mutex<DateTime<Utc>>,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> VirtualClock {
        VirtualClock {
            now: Mutex::new(start),
        }
    }
    /// Moves the clock to `t`; it never goes backwards.
    pub fn set(&self, t: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if t > *now {
            *now = t;
        }
    }
    pub fn advance(&self, d: TimeDelta) {
        let t = self.now() + d;
        self.set(t);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn real_wait(&self, _t: DateTime<Utc>) -> Option<std::time::Duration> {
        None
    }
}
