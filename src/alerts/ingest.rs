//! `App::ingest_alert`: one notification in, decided and committed like a command, so that a
//! 2xx answer means its effect is committed and durable. Under the decision lock it finds the
//! open incident that holds the group (the store's `alert_groups` index), lets the domain
//! decide (`domain::alert`), and commits; after the lock, it waits for the disk.

use crate::app::{App, ReplyKind};
use crate::batch::Batch;
use crate::domain::alert::{AlertNotice, Route, SourcePolicy, alert_open, alert_update};
use crate::domain::{Ctx, IncidentId};

/// What a notification did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// It opened this incident.
    Opened(IncidentId),
    /// It changed this incident (a new alert, a resolve, a flap, an acknowledgement).
    Updated(IncidentId),
    /// It told nothing new about this incident (a repeat or a retry).
    Unchanged(IncidentId),
    /// No open incident holds the group, and the notification opens none (a resolve or an
    /// acknowledge for a group that is not open).
    Ignored,
}

impl Ingested {
    /// The outcome as a metrics label value.
    pub fn outcome(&self) -> &'static str {
        match self {
            Ingested::Opened(_) => "opened",
            Ingested::Updated(_) => "updated",
            Ingested::Unchanged(_) => "unchanged",
            Ingested::Ignored => "ignored",
        }
    }
    pub fn incident(&self) -> Option<IncidentId> {
        match self {
            Ingested::Opened(i) | Ingested::Updated(i) | Ingested::Unchanged(i) => Some(*i),
            Ingested::Ignored => None,
        }
    }
}

/// Why a notification could not be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestError {
    /// The domain refused it (say, a title it cannot use): the sender should not retry.
    Refused(String),
    /// It could not be saved: nothing changed, and the sender should retry (a 5xx).
    Storage(String),
}

impl App {
    /// Decides and commits one alert notification from `source`, then waits until it is on
    /// disk. Repeats and retries decide nothing, so a sender that retries after a lost answer
    /// doubles nothing.
    pub fn ingest_alert(
        &self,
        notice: &AlertNotice,
        source: &SourcePolicy,
        routes: &[Route],
    ) -> Result<Ingested, IngestError> {
        let r = {
            let mut batch = self.lock();
            let r = self.decide_alert(&mut batch, notice, source, routes);
            // This round holds only the alert's decision: commit it now.
            let committed = self.end_round(&mut batch);
            batch.take_failed();
            match committed {
                Ok(()) => r,
                Err(e) => Err(IngestError::Storage(self.storage_failure(e).text)),
            }
        };
        // Also for an unchanged answer: the commit it repeats may still be on its way to disk.
        if let Err(e) = self.store().make_all_durable() {
            let e = self.store().explain(e);
            tracing::error!(error = %e, "cannot make an alert's commit durable");
            return Err(IngestError::Storage(format!(
                "warroom could not confirm the alert reached the disk ({e}); retry"
            )));
        }
        r
    }

    fn decide_alert(
        &self,
        batch: &mut Batch,
        notice: &AlertNotice,
        source: &SourcePolicy,
        routes: &[Route],
    ) -> Result<Ingested, IngestError> {
        let storage = |e: crate::store::StoreError| {
            let e = self.store().explain(e);
            tracing::error!(error = %e, "storage failure on an alert");
            IngestError::Storage(format!(
                "warroom could not save this, so nothing changed ({e}); retry"
            ))
        };
        let ctx = Ctx {
            now: self.clock().now(),
            policy: &self.config().policy,
            overrides: &[],
        };
        let held = match self
            .store()
            .alert_incident(&source.name, &notice.group)
            .map_err(storage)?
        {
            Some(id) => batch
                .incident(self.store(), id)
                .map_err(storage)?
                .filter(|i| {
                    i.is_open()
                        && i.alert
                            .as_ref()
                            .is_some_and(|l| l.source == source.name && l.group == notice.group)
                }),
            None => None,
        };
        let applied = |r: crate::app::Response, what: Ingested| {
            if r.kind == ReplyKind::Error {
                Err(IngestError::Storage(r.text))
            } else {
                Ok(what)
            }
        };
        match held {
            Some(inc) => match alert_update(&ctx, &inc, notice, source) {
                Ok(Some(d)) => {
                    let r = self.apply(batch, Some(&inc), d, None);
                    applied(r, Ingested::Updated(inc.id))
                }
                Ok(None) => Ok(Ingested::Unchanged(inc.id)),
                Err(refusal) => Err(IngestError::Refused(refusal.to_string())),
            },
            None => {
                let id = self.store().next_incident_id().map_err(storage)?;
                match alert_open(&ctx, id, notice, source, routes) {
                    Ok(Some(d)) => {
                        let r = self.apply(batch, None, d, None);
                        applied(r, Ingested::Opened(id))
                    }
                    Ok(None) => Ok(Ingested::Ignored),
                    Err(refusal) => Err(IngestError::Refused(refusal.to_string())),
                }
            }
        }
    }
}
