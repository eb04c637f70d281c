//! The on-call part of the store: shift handoff timers (`oncall_handoffs`, due ‖ role key →
//! role key, so the first key is the next handoff) and overrides (`oncall_overrides`, id →
//! override as JSON).
//!
//! The contract, for any backend: `set_handoff` replaces a role's handoff timer and queues its
//! messages in one transaction (so a handoff is claimed exactly once with what it said);
//! `put_override` (which also records a removal: removed overrides are kept, marked) is durable
//! when it returns.

use chrono::{DateTime, Utc};

use super::sled::{deadline_first, deadlines, to_json};
use super::{Outgoing, Store, StoreError};
use crate::domain::oncall::Override;

impl Store {
    /// The earliest shift handoff: (due, role key).
    pub fn handoff_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        self.wp.settle()?;
        deadline_first(&self.handoffs)
    }

    /// Every pending shift handoff: (due, role key).
    pub fn handoffs(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        self.wp.settle()?;
        deadlines(&self.handoffs)
    }

    /// Sets (or with `due` None, removes) a role's next handoff, and queues `outbox` with it in
    /// one transaction.
    pub fn set_handoff(
        &self,
        role: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        self.set_deadline(super::journal::T::Handoffs, role, due, outbox)
    }

    /// Every stored override, oldest first.
    pub fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        self.wp.settle()?;
        self.decode_all("an on-call override", self.overrides.iter())
    }

    /// The next override number: one past the highest stored. Removed overrides stay stored
    /// (marked), so a number is never handed out twice.
    pub fn override_id(&self) -> Result<u64, StoreError> {
        self.wp.settle()?;
        let last = self
            .overrides
            .last()?
            .and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes));
        Ok(last.unwrap_or(0).saturating_add(1))
    }

    /// Stores an override, durably.
    pub fn put_override(&self, o: &Override) -> Result<(), StoreError> {
        let _writing = self.writing();
        let value = to_json(o)?;
        self.wp.write_with(super::commit::Mode::Durable, |ws| {
            ws.put(super::journal::T::Overrides, o.id.to_be_bytes(), &value);
            Ok(())
        })?;
        self.wrote();
        Ok(())
    }
}
