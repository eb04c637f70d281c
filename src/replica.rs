//! Replicas on PostgreSQL: of all the processes on one database, exactly one is **active** (it
//! holds the lease, a row in `warroom_lease` with a fencing term) and the others are
//! **standby**, waiting to take it over once it lapses.
//!
//! The contract:
//! - `Replica::become_active` returns only once this process holds the lease, and has fenced
//!   its store with the lease's term: from then on every write it makes checks that term inside
//!   its own transaction (`PgStore::fence`).
//! - `Replica::keep` renews the lease every third of its length and returns as soon as it is
//!   lost: another replica holds it, or PostgreSQL could not be reached before the lease would
//!   end. The store stays fenced with the old term, so nothing it still tries is kept.
//! - While active, `PgStore::may_act` is true only a margin before the lease's end by this
//!   process's clock, so a process resumed from a pause past its lease sends nothing before
//!   it notices (and `keep` then returns).
//!
//! Safety never rests on clocks: a deposed replica's commits and deliveries are refused by the
//! database whatever it believes. Clocks decide only how soon a standby takes over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;
use crate::store::StoreError;
use crate::store::postgres::PgStore;

/// One process's part in the lease.
pub struct Replica {
    store: Arc<PgStore>,
    clock: Arc<dyn Clock>,
    holder: String,
    ttl: Duration,
}

/// Why the lease was lost, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds it (it took over once this one's lapsed).
    TakenBy { holder: String, term: i64 },
    /// PostgreSQL did not answer before the lease would have ended.
    Unreachable(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy { holder, term } => {
                write!(f, "{holder} holds the lease now, at term {term}")
            }
            Lost::Unreachable(e) => write!(
                f,
                "PostgreSQL could not be reached before the lease ended ({e})"
            ),
        }
    }
}

impl Replica {
    /// `holder` names this process in the lease and the logs; `ttl` is `[store] lease`.
    pub fn new(store: Arc<PgStore>, clock: Arc<dyn Clock>, holder: String, ttl: Duration) -> Self {
        Replica {
            store,
            clock,
            holder,
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// A name for this process: host and pid.
    pub fn default_holder() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host} pid {}", std::process::id())
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often the lease is renewed, and a standby tries to take it.
    fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// The end of acting on a lease renewed at `at`: a fifth of the lease before it ends, so
    /// that this process stops before a standby may start (up to that much clock skew).
    fn acting_end(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let margin = self.ttl.saturating_sub(self.ttl / 5);
        TimeDelta::from_std(margin)
            .ok()
            .and_then(|d| at.checked_add_signed(d))
    }

    async fn try_acquire(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Option<crate::store::postgres::Lease>, StoreError> {
        let (store, holder, ttl) = (self.store.clone(), self.holder.clone(), self.ttl);
        tokio::task::spawn_blocking(move || store.try_acquire(&holder, at, ttl))
            .await
            .unwrap_or_else(|e| Err(StoreError::Sled(format!("the lease task failed: {e}"))))
    }

    /// Waits until this process holds the lease, then fences the store with its term and
    /// returns it. Logs once who holds it meanwhile.
    pub async fn become_active(&self) -> i64 {
        let mut said: Option<String> = None;
        loop {
            let at = self.clock.now();
            match self.try_acquire(at).await {
                Ok(Some(lease)) => {
                    self.store.fence(Some(lease.term));
                    self.store.act_until(self.acting_end(at));
                    return lease.term;
                }
                Ok(None) => {
                    let held = self.store.lease().ok().flatten();
                    let now = held
                        .as_ref()
                        .map(|l| format!("{} at term {}", l.holder, l.term))
                        .unwrap_or_default();
                    if said.as_deref() != Some(now.as_str()) {
                        tracing::warn!(
                            holder = %self.holder,
                            active = %now,
                            "standby: another replica is active; taking over if its lease lapses"
                        );
                        said = Some(now);
                    }
                }
                Err(e) => {
                    tracing::warn!(holder = %self.holder, error = %e, "standby: cannot reach PostgreSQL to try the lease");
                }
            }
            tokio::time::sleep(self.period()).await;
        }
    }

    /// Renews the lease of `term` until it is lost, and says why. A lapse that no other replica
    /// used is taken again at a new term (the store is re-fenced with it) without stopping.
    pub async fn keep(&self, mut term: i64) -> Lost {
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(self.period()).await;
            let at = self.clock.now();
            match self.try_acquire(at).await {
                Ok(Some(lease)) => {
                    if lease.term != term {
                        tracing::warn!(holder = %self.holder, term = lease.term, was = term, "active: the lease lapsed unused and was taken again at a new term");
                        term = lease.term;
                        self.store.fence(Some(term));
                    }
                    self.store.act_until(self.acting_end(at));
                }
                Ok(None) => {
                    self.store.act_until(None);
                    let held = self.store.lease().ok().flatten();
                    return Lost::TakenBy {
                        holder: held
                            .as_ref()
                            .map_or("another replica".into(), |l| l.holder.clone()),
                        term: held.map_or(0, |l| l.term),
                    };
                }
                Err(e) => {
                    last_error = e.to_string();
                    tracing::warn!(holder = %self.holder, term, error = %e, "active: cannot renew the lease; still acting until it would end");
                }
            }
            let acting = self
                .store
                .fenced_term()
                .is_some_and(|_| self.store.may_act_locally(self.clock.now()));
            if !acting {
                self.store.act_until(None);
                return Lost::Unreachable(last_error);
            }
        }
    }

    /// Gives the lease up at a clean stop, so that a standby takes over at once.
    pub async fn release(&self, term: i64) {
        let (store, holder, at) = (self.store.clone(), self.holder.clone(), self.clock.now());
        self.store.act_until(None);
        let done = tokio::task::spawn_blocking(move || store.release(&holder, term, at)).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "cannot give the lease up; a standby takes over once it lapses");
        }
    }
}
