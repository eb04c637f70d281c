//! Group decisions: callers that arrive while another decides queue their commands; whoever
//! holds the decision lock decides them all, in arrival order, and commits them as one
//! transaction followed by one sync. Decisions stay serialised (each one sees the one before),
//! only the storage and the wait for the disk are shared.
//!
//! A `Batch` is the state of one such round: the decisions made but not yet committed, and the
//! incidents as they stand after them, which later decisions in the round read instead of the
//! store. Anything that reads more than one incident (an open checking for duplicates, a
//! timeline) commits the round so far first, so it reads the store as it will be.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use crate::domain::{Actor, Event, Incident, IncidentId};
use crate::spec::Invocation;
use crate::store::{Backend, Commit, DueTimer, Outgoing, StoreError};

use crate::app::Response;

/// One decision waiting for the round's commit.
pub(crate) struct Pending {
    pub before: Option<Arc<Incident>>,
    pub after: Arc<Incident>,
    pub events: Vec<Event>,
    pub outbox: Vec<Outgoing>,
    pub consumed: Option<DueTimer>,
}

/// The decisions of one round, not yet committed.
#[derive(Default)]
pub(crate) struct Batch {
    /// The incidents as the round's decisions left them.
    incidents: HashMap<IncidentId, Arc<Incident>>,
    pending: Vec<Pending>,
    /// For each pending decision, the job (index in the round) whose answer depends on it.
    members: Vec<usize>,
    /// Jobs whose decisions were lost with a failed commit, and why.
    failed: Vec<(usize, StoreError)>,
    /// The job being decided now.
    pub job: usize,
    /// Whether anything was committed in this round (timers or the outbox may have changed).
    pub committed: bool,
    pub queued_messages: bool,
}

impl Batch {
    /// The incident as this round has it, or as the store has it.
    pub fn incident(
        &self,
        store: &dyn Backend,
        id: IncidentId,
    ) -> Result<Option<Arc<Incident>>, StoreError> {
        match self.incidents.get(&id) {
            Some(i) => Ok(Some(i.clone())),
            None => store.incident_shared(id),
        }
    }

    /// Whether this round has already decided something about `id`.
    pub fn touched(&self, id: IncidentId) -> bool {
        self.incidents.contains_key(&id)
    }

    /// Whether a decision of this round, not yet committed, acknowledged a nudge of `id`
    /// (for the time-to-acknowledge metric, which counts only the first).
    pub fn acknowledged(&self, id: IncidentId) -> bool {
        self.pending.iter().any(|p| {
            p.after.id == id
                && p.events
                    .iter()
                    .any(|e| matches!(e.kind, crate::domain::EventKind::Acknowledged { .. }))
        })
    }

    pub fn add(&mut self, p: Pending) {
        self.queued_messages |= !p.outbox.is_empty();
        self.incidents.insert(p.after.id, p.after.clone());
        self.pending.push(p);
        self.members.push(self.job);
    }

    /// Commits the round so far as one transaction. On failure every decision in it is lost
    /// together (nothing half-applied), and their jobs are told.
    pub fn commit(&mut self, store: &dyn Backend) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let commits: Vec<Commit> = self
            .pending
            .iter()
            .map(|p| Commit {
                before: p.before.as_deref(),
                after: &p.after,
                shared: Some(&p.after),
                events: &p.events,
                outbox: &p.outbox,
                consumed: p.consumed.as_ref(),
            })
            .collect();
        let result = store.commit_all(&commits);
        drop(commits);
        self.pending.clear();
        self.incidents.clear();
        let members = std::mem::take(&mut self.members);
        match result {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(e) => {
                self.queued_messages = false;
                for m in members {
                    if !self.failed.iter().any(|(j, _)| *j == m) {
                        self.failed.push((m, e.clone()));
                    }
                }
                Err(e)
            }
        }
    }

    /// Drops the round's uncommitted decisions (after an error or a panic mid-round).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.incidents.clear();
        self.members.clear();
        self.failed.clear();
        self.queued_messages = false;
    }

    /// The jobs whose decisions were lost, and why.
    pub fn take_failed(&mut self) -> Vec<(usize, StoreError)> {
        std::mem::take(&mut self.failed)
    }
}

/// A command waiting for its round.
pub(crate) struct Job {
    pub actor: Actor,
    pub place: Option<IncidentId>,
    pub inv: Invocation,
    state: Mutex<JobState>,
    done: Condvar,
}

enum JobState {
    /// In the queue; `woken` once a round ended and it should decide the next one.
    Waiting {
        woken: bool,
    },
    /// A round has taken it; its answer comes once that round is durable.
    Taken,
    Done(Response),
}

impl Job {
    pub fn new(actor: Actor, place: Option<IncidentId>, inv: Invocation) -> Job {
        Job {
            actor,
            place,
            inv,
            state: Mutex::new(JobState::Waiting { woken: false }),
            done: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the job as taken by a round.
    pub fn take(&self) {
        *self.state() = JobState::Taken;
    }

    /// Whether a round has taken (or answered) the job.
    pub fn is_taken(&self) -> bool {
        !matches!(*self.state(), JobState::Waiting { .. })
    }

    /// Tells a waiting job that the lock came free: it should try to decide the next round.
    pub fn wake(&self) {
        let mut s = self.state();
        if let JobState::Waiting { woken } = &mut *s {
            *woken = true;
            self.done.notify_all();
        }
    }

    /// Sleeps until the job is taken or answered, or woken, or `max` passes.
    pub fn park(&self, max: std::time::Duration) {
        let s = self.state();
        let _ = self
            .done
            .wait_timeout_while(s, max, |s| matches!(s, JobState::Waiting { woken: false }))
            .unwrap_or_else(|p| p.into_inner());
    }

    pub fn finish(&self, r: Response) {
        *self.state() = JobState::Done(r);
        self.done.notify_all();
    }

    /// Waits for the round that took the job to answer it.
    pub fn wait(&self) -> Response {
        let mut s = self.state();
        loop {
            if let JobState::Done(r) = &*s {
                return r.clone();
            }
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Answers every job of a round that was not answered, if the round ends early (a panic in a
/// decision): no caller waits forever.
pub(crate) struct Round<'a> {
    pub jobs: &'a [std::sync::Arc<Job>],
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        for j in self.jobs {
            let unanswered = matches!(*j.state(), JobState::Taken);
            if unanswered {
                j.finish(Response::error(
                    "warroom failed while deciding this, and nothing was saved for it; try again",
                ));
            }
        }
    }
}
