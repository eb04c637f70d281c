//! The outbox courier: one lane per destination, in order within a lane, lanes in parallel with
//! a bounded number in flight. A lane that fails waits on its own backoff; the others go on.
//! Failures are sorted the way the port classifies them: retry later, destination unreachable
//! (fallback copies, a notice, and retries with capped backoff), or refused for good (a dead
//! letter, with notices). The loop never ends on an error: it logs and goes on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::fallback;
use super::health::Trouble;
use super::{Destination, lane, place};
use crate::app::App;
use crate::domain::MessageKind;
use crate::port::{ChatPort, DeliveryError};
use crate::store::Outgoing;

/// A lane's backoff: 1 s, doubling, capped where a person still accepts the wait for a nudge,
/// so that a backlog drains within seconds of the platform's recovery.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A pause after a storage error, before the courier tries again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Deliveries in flight at once, across lanes.
pub const MAX_IN_FLIGHT: usize = 8;
/// One delivery (which may take several requests) that has not ended by then is abandoned and
/// retried; the port's own request timeouts normally end it well before.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one pass over the outbox.
#[derive(Debug, PartialEq)]
pub enum Drained {
    /// Everything deliverable was delivered (or dead-lettered).
    Empty,
    /// Some lane failed; the soonest of them may try again after this long. Later messages of
    /// a failed lane wait, to keep its order.
    RetryAfter(Duration),
}

struct LaneState {
    backoff: Duration,
    not_before: Option<Instant>,
    busy: bool,
    /// The unreachable notice went out in this episode of trouble.
    notified: bool,
}

impl LaneState {
    fn new() -> LaneState {
        LaneState {
            backoff: BACKOFF_START,
            not_before: None,
            busy: false,
            notified: false,
        }
    }
}

/// What settling one delivery decided.
struct Settled {
    /// The lane waits this long before its next attempt.
    wait: Option<Duration>,
    /// New messages (copies, notices) were queued.
    queued: bool,
}

pub struct Courier {
    app: Arc<App>,
    port: Arc<dyn ChatPort>,
    lanes: HashMap<String, LaneState>,
}

async fn deliver_bounded(port: &dyn ChatPort, msg: &Outgoing) -> Result<(), DeliveryError> {
    match tokio::time::timeout(DELIVERY_TIMEOUT, port.deliver(msg)).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Retry {
            after: None,
            reason: format!(
                "no answer from the chat platform within {}s",
                DELIVERY_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// A notice about another message (as opposed to a copy of one): it never causes notices.
fn is_notice(msg: &Outgoing) -> bool {
    msg.about.is_some() && msg.kind == MessageKind::Post
}

impl Courier {
    pub fn new(app: Arc<App>, port: Arc<dyn ChatPort>) -> Courier {
        Courier {
            app,
            port,
            lanes: HashMap::new(),
        }
    }

    /// One pass (the console's and tests' way): delivers, in outbox order, every message whose
    /// lane has not failed in this pass, until nothing more can go. Lane waits are not slept.
    pub async fn drain(&mut self) -> Drained {
        let mut failed: HashMap<String, Duration> = HashMap::new();
        loop {
            // Nothing goes out before the commit that queued it is durable.
            if let Err(e) = self.app.store().make_all_durable() {
                tracing::error!(error = %e, "cannot make the outbox durable");
                return Drained::RetryAfter(ERROR_PAUSE);
            }
            let msgs = match self.app.store().outbox() {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    return Drained::RetryAfter(ERROR_PAUSE);
                }
            };
            let mut by_lane: BTreeMap<String, Vec<Outgoing>> = BTreeMap::new();
            for m in &msgs {
                by_lane.entry(m.lane()).or_default().push(m.clone());
            }
            let mut progressed = false;
            for msg in msgs {
                let lane = msg.lane();
                if failed.contains_key(&lane) {
                    continue;
                }
                let result = deliver_bounded(&*self.port, &msg).await;
                let in_lane = by_lane.get(&lane).map_or(&[][..], |v| v.as_slice());
                let s = self.settle(&lane, &msg, result, in_lane);
                progressed |= s.queued || s.wait.is_none();
                if s.wait.is_none()
                    && let Some(v) = by_lane.get_mut(&lane)
                {
                    // Settled: what waits in the lane no longer includes it.
                    v.retain(|m| m.id != msg.id);
                }
                if let Some(w) = s.wait {
                    failed.insert(lane, w);
                }
            }
            if !progressed {
                break;
            }
        }
        match failed.values().min() {
            Some(w) => Drained::RetryAfter(*w),
            None => Drained::Empty,
        }
    }

    /// Records a delivery's outcome: the outbox, the lane's backoff, health, and any copies or
    /// notices it calls for. `in_lane` is what waits in the lane, the delivered message first.
    fn settle(
        &mut self,
        lane: &str,
        msg: &Outgoing,
        result: Result<(), DeliveryError>,
        in_lane: &[Outgoing],
    ) -> Settled {
        let app = self.app.clone();
        let state = self
            .lanes
            .entry(lane.to_string())
            .or_insert_with(LaneState::new);
        let dest = lane;
        match result {
            Ok(()) => {
                if let Err(e) = app.store().delivered(msg.id) {
                    // It stays in the outbox and goes again: at least once.
                    tracing::error!(error = %e, outbox_id = msg.id, destination = dest, "cannot mark a message delivered");
                    return Settled {
                        wait: Some(ERROR_PAUSE),
                        queued: false,
                    };
                }
                self.port.delivered(msg.id);
                state.backoff = BACKOFF_START;
                state.notified = false;
                if let Some(t) = app.health.clear(lane) {
                    tracing::info!(incident = %msg.incident, destination = dest, since = %t.since, "delivery recovered");
                }
                Settled {
                    wait: None,
                    queued: false,
                }
            }
            Err(DeliveryError::Retry { after, reason }) => {
                app.metrics().delivery_failure("retry");
                let wait = after.unwrap_or(state.backoff).min(BACKOFF_MAX);
                state.backoff = state.backoff.saturating_mul(2).min(BACKOFF_MAX);
                tracing::warn!(incident = %msg.incident, outbox_id = msg.id, destination = dest, %reason, ?wait, "delivery failed; will retry");
                app.health
                    .trouble(lane, self.trouble(msg, &reason, in_lane.len(), false));
                Settled {
                    wait: Some(wait),
                    queued: false,
                }
            }
            Err(DeliveryError::Unreachable { reason }) => {
                app.metrics().delivery_failure("unreachable");
                let wait = state.backoff.min(BACKOFF_MAX);
                state.backoff = state.backoff.saturating_mul(2).min(BACKOFF_MAX);
                let first = !state.notified;
                state.notified = true;
                tracing::warn!(incident = %msg.incident, outbox_id = msg.id, destination = dest, %reason, ?wait, "destination unreachable; nudges take the fallback route, and it is retried");
                app.health
                    .trouble(lane, self.trouble(msg, &reason, in_lane.len(), true));
                let mut queued = false;
                for m in in_lane {
                    queued |= self.fall_back(m, &reason);
                }
                if first && !is_notice(msg) {
                    let text = fallback::unreachable_text(msg, &place(msg), &reason);
                    queued |= self.notify(msg, lane, text);
                }
                Settled {
                    wait: Some(wait),
                    queued,
                }
            }
            Err(DeliveryError::Permanent { reason }) => {
                app.metrics().delivery_failure("permanent");
                tracing::error!(incident = %msg.incident, outbox_id = msg.id, destination = dest, %reason, "the chat platform refused a message for good; kept in dead_letters");
                let copies = self.fallback_copies(msg, &reason);
                // A notice that fails gets no notice of its own: no loops. A copy that fails
                // (the SDM's DMs closed, say) does.
                let notices = if !is_notice(msg) && msg.kind != MessageKind::Status {
                    let text = fallback::dead_letter_text(msg, &place(msg), &reason);
                    self.notices(msg, lane, text)
                } else {
                    Vec::new()
                };
                let mut all = copies;
                all.extend(notices);
                if let Err(e) = app.store().dead_letter(msg, &reason, &all) {
                    tracing::error!(error = %e, outbox_id = msg.id, destination = dest, "cannot move a message to dead_letters");
                    return Settled {
                        wait: Some(ERROR_PAUSE),
                        queued: false,
                    };
                }
                if !all.is_empty() {
                    app.outbox_ready.notify_one();
                }
                if in_lane.iter().all(|m| m.id == msg.id) {
                    // Nothing else waits in the lane: its trouble is over.
                    app.health.clear(lane);
                }
                Settled {
                    wait: None,
                    queued: !all.is_empty(),
                }
            }
        }
    }

    fn trouble(&self, msg: &Outgoing, reason: &str, waiting: usize, unreachable: bool) -> Trouble {
        Trouble {
            incident: (msg.incident.0 != 0).then_some(msg.incident),
            place: place(msg),
            since: self.app.clock().now(),
            reason: reason.to_string(),
            waiting,
            unreachable,
        }
    }

    /// Fresh outbox ids for `n` messages.
    fn ids(&self, n: usize) -> Option<Vec<u64>> {
        (0..n)
            .map(|_| self.app.store().outbox_id())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tracing::error!(error = %e, "cannot allocate outbox ids"))
            .ok()
    }

    /// The fallback copies of a nudge that cannot reach its incident's channel: direct messages
    /// to its targets (the SDM always) and a copy in the ops channel. Empty for anything else.
    fn fallback_copies(&self, msg: &Outgoing, reason: &str) -> Vec<Outgoing> {
        if msg.fallback_done
            || msg.kind != MessageKind::Nudge
            || msg.to != Destination::Incident
            || msg.incident.0 == 0
        {
            return Vec::new();
        }
        let app = &self.app;
        let inc = app.store().incident(msg.incident).ok().flatten();
        let policy = &app.config().policy;
        let already = fallback::direct_copies(policy, inc.as_ref(), msg, app.reach(), app.dm_sdm());
        let people = fallback::fallback_people(policy, inc.as_ref(), msg, app.reach(), &already);
        let text = fallback::fallback_text(msg, reason);
        let mut dests: Vec<Destination> = people
            .into_iter()
            .map(|user| Destination::Direct { user })
            .collect();
        dests.push(Destination::Ops);
        let Some(ids) = self.ids(dests.len()) else {
            return Vec::new();
        };
        ids.into_iter()
            .zip(dests)
            .map(|(id, to)| fallback::copy(msg, id, to, text.clone()))
            .collect()
    }

    /// Queues a message's fallback copies once, if it still waits; returns whether any were
    /// queued.
    fn fall_back(&self, msg: &Outgoing, reason: &str) -> bool {
        let copies = self.fallback_copies(msg, reason);
        if copies.is_empty() {
            return false;
        }
        match self.app.store().queue_fallback(msg, &copies) {
            Ok(true) => {
                tracing::info!(incident = %msg.incident, outbox_id = msg.id, copies = copies.len(), "nudge sent by the fallback route");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(error = %e, outbox_id = msg.id, "cannot queue fallback copies");
                false
            }
        }
    }

    /// Notices about `msg` to the SDM's direct messages and the ops channel, except the lane
    /// that failed.
    fn notices(&self, msg: &Outgoing, failed_lane: &str, text: String) -> Vec<Outgoing> {
        let app = &self.app;
        let inc = if msg.incident.0 == 0 {
            None
        } else {
            app.store().incident(msg.incident).ok().flatten()
        };
        let mut dests: Vec<Destination> = fallback::sdm_people(&app.config().policy, inc.as_ref())
            .into_iter()
            .filter(|u| app.reach().contains(u))
            .map(|user| Destination::Direct { user })
            .collect();
        dests.push(Destination::Ops);
        dests.retain(|d| lane(msg.incident, d) != failed_lane);
        let Some(ids) = self.ids(dests.len()) else {
            return Vec::new();
        };
        ids.into_iter()
            .zip(dests)
            .map(|(id, to)| fallback::notice(msg, id, to, text.clone()))
            .collect()
    }

    fn notify(&self, msg: &Outgoing, failed_lane: &str, text: String) -> bool {
        let notices = self.notices(msg, failed_lane, text);
        if notices.is_empty() {
            return false;
        }
        match self.app.store().queue(&notices) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, outbox_id = msg.id, "cannot queue a delivery notice");
                false
            }
        }
    }

    /// Delivers until shutdown: lanes in parallel, each in order, waking on new messages, on a
    /// finished delivery, or when a lane's wait is over.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let ready = self.app.outbox_ready.clone();
        let mut inflight: JoinSet<(String, Outgoing, Result<(), DeliveryError>)> = JoinSet::new();
        let mut queues: BTreeMap<String, VecDeque<Outgoing>> = BTreeMap::new();
        let mut lane_of: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut rescan = true;
        let mut pause: Option<Instant> = None;
        let mut turn: usize = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if rescan {
                let mut again = false;
                // Nothing goes out before the commit that queued it is durable; the sync
                // blocks, so it runs off the async threads.
                let app = self.app.clone();
                let durable =
                    tokio::task::spawn_blocking(move || app.store().make_all_durable()).await;
                if !matches!(durable, Ok(Ok(()))) {
                    tracing::error!("cannot make the outbox durable; retrying");
                    pause = Some(Instant::now() + ERROR_PAUSE);
                    rescan = true;
                    tokio::select! {
                        _ = tokio::time::sleep(ERROR_PAUSE) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                match self.app.store().outbox() {
                    Ok(all) => {
                        queues.clear();
                        for m in all {
                            queues.entry(m.lane()).or_default().push_back(m);
                        }
                        pause = None;
                        // A nudge queued to a lane already known unreachable takes the
                        // fallback route now, not at the lane's next failed retry.
                        for (lane, q) in &queues {
                            if let Some(t) = self.app.health.get(lane).filter(|t| t.unreachable) {
                                for m in q.iter().filter(|m| !m.fallback_done) {
                                    again |= self.fall_back(m, &t.reason);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the outbox");
                        pause = Some(Instant::now() + ERROR_PAUSE);
                    }
                }
                rescan = false;
                if again {
                    // Fallback copies were just queued: read them in the next round.
                    self.app.outbox_ready.notify_one();
                }
            }
            let now = Instant::now();
            let mut wake = pause;
            // Start each round at another lane, so that lanes early in the order cannot keep
            // every slot.
            turn = turn.wrapping_add(1);
            let skip = turn % queues.len().max(1);
            for (lane, q) in queues.iter().cycle().skip(skip).take(queues.len()) {
                if inflight.len() >= MAX_IN_FLIGHT {
                    break;
                }
                let Some(head) = q.front() else {
                    continue;
                };
                let st = self
                    .lanes
                    .entry(lane.clone())
                    .or_insert_with(LaneState::new);
                if st.busy {
                    continue;
                }
                if let Some(nb) = st.not_before
                    && nb > now
                {
                    wake = Some(wake.map_or(nb, |w| w.min(nb)));
                    continue;
                }
                st.busy = true;
                let port = self.port.clone();
                let msg = head.clone();
                let task_lane = lane.clone();
                let handle = inflight.spawn(async move {
                    let r = deliver_bounded(&*port, &msg).await;
                    (task_lane, msg, r)
                });
                lane_of.insert(handle.id(), lane.clone());
            }
            tokio::select! {
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => match done {
                    Ok((id, (lane, msg, result))) => {
                        lane_of.remove(&id);
                        let in_lane: Vec<Outgoing> = queues
                            .get(&lane)
                            .map(|q| q.iter().cloned().collect())
                            .unwrap_or_default();
                        let s = self.settle(&lane, &msg, result, &in_lane);
                        if let Some(st) = self.lanes.get_mut(&lane) {
                            st.busy = false;
                            st.not_before = s.wait.map(|w| Instant::now() + w);
                        }
                        if s.wait.is_none()
                            && let Some(q) = queues.get_mut(&lane)
                            && q.front().is_some_and(|m| m.id == msg.id)
                        {
                            q.pop_front();
                        }
                        rescan |= s.queued;
                    }
                    Err(e) => {
                        // A delivery task panicked. Its message is still queued; its lane
                        // pauses, then tries again.
                        let lane = lane_of.remove(&e.id()).unwrap_or_default();
                        tracing::error!(error = %e, destination = lane, "a delivery task failed");
                        if let Some(st) = self.lanes.get_mut(&lane) {
                            st.busy = false;
                            st.not_before = Some(Instant::now() + ERROR_PAUSE);
                        }
                    }
                },
                _ = ready.notified() => rescan = true,
                _ = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {
                    if pause.is_some() {
                        rescan = true;
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
        // Whatever is still in flight stays in the outbox and goes again: at least once.
        inflight.abort_all();
    }
}
