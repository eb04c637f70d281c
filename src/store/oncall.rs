//! The on-call part of the store: shift handoff timers (`oncall_handoffs`, due ‖ role key →
//! role key, so the first key is the next handoff) and overrides (`oncall_overrides`, id →
//! override as JSON).
//!
//! The contract, for any backend: `set_handoff` replaces a role's handoff timer and queues its
//! messages in one transaction (so a handoff is claimed exactly once with what it said);
//! `put_override` (which also records a removal: removed overrides are kept, marked) is durable
//! when it returns.

use chrono::{DateTime, TimeZone, Utc};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::sled::{millis_key, to_json};
use super::{Outgoing, Store, StoreError};
use crate::domain::oncall::Override;

fn handoff_key(due: DateTime<Utc>, role: &str) -> Vec<u8> {
    let mut k = millis_key(due).to_vec();
    k.extend_from_slice(role.as_bytes());
    k
}

fn due_of(k: &[u8]) -> Option<DateTime<Utc>> {
    let ms = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Utc.timestamp_millis_opt(ms as i64).single()
}

impl Store {
    /// The earliest shift handoff: (due, role key).
    pub fn handoff_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        Ok(self
            .handoffs
            .first()?
            .and_then(|(k, v)| Some((due_of(&k)?, String::from_utf8_lossy(&v).into_owned()))))
    }

    /// Every pending shift handoff: (due, role key).
    pub fn handoffs(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.handoffs.iter() {
            let (k, v) = kv?;
            if let Some(due) = due_of(&k) {
                out.push((due, String::from_utf8_lossy(&v).into_owned()));
            }
        }
        Ok(out)
    }

    /// Sets (or with `due` None, removes) a role's next handoff, and queues `outbox` with it in
    /// one transaction.
    pub fn set_handoff(
        &self,
        role: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        let old: Vec<Vec<u8>> = self
            .handoffs()?
            .into_iter()
            .filter(|(_, r)| r == role)
            .map(|(d, r)| handoff_key(d, &r))
            .collect();
        let new = due.map(|d| handoff_key(d, role));
        let out: Vec<([u8; 8], Vec<u8>)> = outbox
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        (&self.handoffs, &self.outbox)
            .transaction(|(h, ob)| {
                for k in &old {
                    h.remove(k.as_slice())?;
                }
                if let Some(k) = &new {
                    h.insert(k.as_slice(), role.as_bytes())?;
                }
                for (k, v) in &out {
                    ob.insert(k, v.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(StoreError::from)?;
        self.make_all_durable()?;
        Ok(())
    }

    /// Every stored override, oldest first.
    pub fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let mut out = Vec::new();
        for kv in self.overrides.iter() {
            let (_, v) = kv?;
            match serde_json::from_slice::<Override>(&v) {
                Ok(o) => out.push(o),
                Err(e) => tracing::error!(error = %e, "skipping an unreadable on-call override"),
            }
        }
        Ok(out)
    }

    /// The next override number: one past the highest stored. Removed overrides stay stored
    /// (marked), so a number is never handed out twice.
    pub fn override_id(&self) -> Result<u64, StoreError> {
        let last = self
            .overrides
            .last()?
            .and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes));
        Ok(last.unwrap_or(0).saturating_add(1))
    }

    /// Stores an override, durably.
    pub fn put_override(&self, o: &Override) -> Result<(), StoreError> {
        self.overrides.insert(o.id.to_be_bytes(), to_json(o)?)?;
        self.make_all_durable()?;
        Ok(())
    }
}
