//! The service: parses a command, runs the engine on the stored incident, commits the decision,
//! and answers. Fired timers take the same path. Every front end goes through here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

pub mod oncall;

use crate::batch::{Batch, Job, Pending, Round};
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::{Destination, Health, fallback};
use crate::domain::engine::{self, authorize};
use crate::domain::oncall::Override;
use crate::domain::{
    Actor, Ctx, Decision, Exercise, Incident, IncidentId, RoleKey, UserName, render,
};
use crate::spec::{CommandSet, Invocation, Request};
use crate::store::{Backend, Outgoing, StoreError};

/// The longest a waiting caller sleeps before it contends for the decision lock itself, should
/// no round wake or answer it.
const PARK_MAX: std::time::Duration = std::time::Duration::from_millis(10);

/// Told how late a fired timer was.
pub type FireHook = Arc<dyn Fn(chrono::TimeDelta) + Send + Sync>;

/// How a reply is shown: errors only to the sender (ephemeral on Discord).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    Reply,
    Error,
}

impl ReplyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Reply => "reply",
            ReplyKind::Error => "error",
        }
    }
}

/// The answer to one command.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub kind: ReplyKind,
    pub text: String,
    /// The incident the command acted on or opened.
    pub incident: Option<IncidentId>,
}

impl Response {
    pub(crate) fn error(text: impl Into<String>) -> Response {
        Response {
            kind: ReplyKind::Error,
            text: text.into(),
            incident: None,
        }
    }
}

pub struct App {
    store: Arc<dyn Backend>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    specs: &'static CommandSet,
    /// One decision at a time: the engine reads, decides and commits under this lock, so no two
    /// decisions interleave on the same incident. A std Mutex: the critical section is short,
    /// synchronous sled work, never held across an await.
    write: Mutex<Batch>,
    /// Commands waiting for the next round of decisions (see `batch`).
    queue: Mutex<Vec<Arc<Job>>>,
    /// Told how late each fired timer was once its messages are durable (metrics, the bench).
    on_fire: Option<FireHook>,
    /// Poked whenever timers may have changed, so the scheduler re-reads the next deadline.
    pub timers_changed: Arc<Notify>,
    /// Poked whenever the outbox has something new.
    pub outbox_ready: Arc<Notify>,
    /// Counts committed rounds (commands, fired timers, alerts): the board's live pages watch
    /// it to know when to re-read.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Which delivery lanes are in trouble; the courier writes it, status shows it.
    pub health: Arc<Health>,
    /// The people the front end can reach by direct message (none for the console).
    reach: BTreeSet<UserName>,
    /// Whether nudges for the SDM also go to them by direct message.
    dm_sdm: bool,
    /// Whether the front end keeps a status card, so that every change queues a refresh.
    cards: bool,
    /// Counters and histograms for `/metrics` (see `metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    /// The stored on-call overrides, read at start and kept in step with every change (made
    /// under the decision lock).
    overrides: std::sync::RwLock<Vec<Override>>,
    /// Told at each handoff who now holds a role, for a front end that mirrors it (Discord's
    /// `sync_roles`).
    role_sync: Option<tokio::sync::mpsc::UnboundedSender<oncall::RoleSync>>,
}

impl App {
    pub fn new(store: impl Backend + 'static, config: Arc<Config>, clock: Arc<dyn Clock>) -> App {
        Self::on(Arc::new(store), config, clock)
    }

    /// An app on a store that something else also holds (the replicas' lease loop keeps the
    /// PostgreSQL store across its turns as active).
    pub fn on(store: Arc<dyn Backend>, config: Arc<Config>, clock: Arc<dyn Clock>) -> App {
        let specs = CommandSet::builtin();
        let metrics = crate::metrics::Metrics::new();
        metrics.prime(
            specs.runnable().into_iter().map(|c| c.path.as_str()),
            config.alerts.sources.keys().map(String::as_str),
        );
        let overrides = store.overrides().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the on-call overrides");
            Vec::new()
        });
        App {
            overrides: std::sync::RwLock::new(overrides),
            role_sync: None,
            store,
            config,
            clock,
            specs,
            write: Mutex::new(Batch::default()),
            queue: Mutex::new(Vec::new()),
            on_fire: None,
            timers_changed: Arc::new(Notify::new()),
            outbox_ready: Arc::new(Notify::new()),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            health: Arc::new(Health::default()),
            reach: BTreeSet::new(),
            dm_sdm: false,
            cards: true,
            metrics: Arc::new(metrics),
        }
    }

    /// For a front end that mirrors who is on call (Discord's `sync_roles`): each handoff, and
    /// each scheduled role at start, is sent here.
    pub fn with_role_sync(
        mut self,
        tx: tokio::sync::mpsc::UnboundedSender<oncall::RoleSync>,
    ) -> App {
        self.role_sync = Some(tx);
        self
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Calls `hook` with each fired timer's lateness (from its deadline to its messages being
    /// durable in the outbox).
    pub fn on_fire(mut self, hook: FireHook) -> App {
        self.on_fire = Some(hook);
        self
    }

    /// For a front end without a status card (the console): no refreshes are queued.
    pub fn without_cards(mut self) -> App {
        self.cards = false;
        self
    }

    /// For a front end with direct messages: the people it can reach, and whether the SDM gets
    /// a direct copy of each nudge meant for them.
    pub fn with_direct(mut self, reach: BTreeSet<UserName>, dm_sdm: bool) -> App {
        self.reach = reach;
        self.dm_sdm = dm_sdm;
        self
    }

    pub fn reach(&self) -> &BTreeSet<UserName> {
        &self.reach
    }
    pub fn dm_sdm(&self) -> bool {
        self.dm_sdm
    }

    /// The direct copies to queue with `o`: the SDM's, where the front end has direct messages.
    fn direct_copies(
        &self,
        inc: Option<&Incident>,
        o: &Outgoing,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let who = fallback::direct_copies(&self.config.policy, inc, o, &self.reach, self.dm_sdm);
        let text = if o.incident.0 == 0 {
            o.text.clone()
        } else {
            format!("{} in #{}: {}", o.incident, o.channel, o.text)
        };
        who.into_iter()
            .map(|user| {
                Ok(fallback::copy(
                    o,
                    self.store.outbox_id()?,
                    Destination::Direct { user },
                    text.clone(),
                ))
            })
            .collect()
    }

    pub fn store(&self) -> &dyn Backend {
        &*self.store
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn specs(&self) -> &'static CommandSet {
        self.specs
    }

    /// The on-call overrides as stored now.
    pub fn overrides_now(&self) -> Vec<Override> {
        self.overrides
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The actor for a roster user (console and tests).
    pub fn actor(&self, user: &UserName) -> Actor {
        Actor {
            user: user.clone(),
            roles: self.config.policy.roster.roles_of(user),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        // A panic while holding the lock leaves no half-written state (sled transactions are
        // atomic), so a poisoned lock is safe to take over.
        self.write.lock().unwrap_or_else(|p| {
            // A round that panicked leaves its decisions uncommitted: they are dropped, never
            // committed by the next round.
            let mut batch = p.into_inner();
            batch.discard();
            batch
        })
    }

    pub(crate) fn storage_failure(&self, e: StoreError) -> Response {
        let e = self.store.explain(e);
        tracing::error!(error = %e, "storage failure");
        if let StoreError::Corrupt { .. } | StoreError::Unconfirmed { .. } = e {
            // The damaged-folder and unconfirmed-write messages, each with its advice.
            return Response::error(e.to_string());
        }
        Response::error(format!(
            "warroom could not save this, so nothing changed ({e}). Try again; if it keeps failing, check the data folder."
        ))
    }

    /// Parses and runs one command line from `place` (the incident whose channel it came from).
    pub fn run_line(&self, actor: &Actor, place: Option<IncidentId>, line: &str) -> Response {
        match self.specs.parse(line) {
            Ok(inv) => self.execute(actor, place, &inv),
            Err(e) => {
                self.metrics
                    .command("(unparsed)", ReplyKind::Error.as_str());
                Response::error(e.to_string())
            }
        }
    }

    /// Runs a parsed invocation. The reply goes out only once its commit is durable. Callers
    /// that arrive while a decision is being made queue up; the next holder of the decision
    /// lock decides every queued command in order and commits them together, and one sync then
    /// covers them all (see `batch`).
    pub fn execute(&self, actor: &Actor, place: Option<IncidentId>, inv: &Invocation) -> Response {
        let mine = Arc::new(Job::new(actor.clone(), place, inv.clone()));
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(mine.clone());
        // While a round is being decided, wait to be answered by it or by the next one, or to
        // be woken to decide the next round yourself: only one waiting caller at a time
        // contends for the lock.
        let mut batch = match self.try_lock() {
            Some(b) => b,
            None => {
                mine.park(PARK_MAX);
                if mine.is_taken() {
                    return mine.wait();
                }
                self.lock()
            }
        };
        if mine.is_taken() {
            // Another caller's round took it; the answer comes once that round is durable.
            drop(batch);
            self.wake_next();
            return mine.wait();
        }
        let jobs: Vec<Arc<Job>> =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        for j in &jobs {
            j.take();
        }
        let round = Round { jobs: &jobs };
        let mut answers = Vec::with_capacity(jobs.len());
        for (i, j) in jobs.iter().enumerate() {
            batch.job = i;
            answers.push(self.decide(&mut batch, &j.actor, j.place, &j.inv));
        }
        let _ = self.end_round(&mut batch);
        for (i, e) in batch.take_failed() {
            if let Some(a) = answers.get_mut(i) {
                *a = self.storage_failure(e);
            }
        }
        drop(batch);
        self.wake_next();
        if let Err(e) = self.store.make_all_durable() {
            let e = self.store.explain(e);
            tracing::error!(error = %e, "cannot make a commit durable");
            for a in answers.iter_mut() {
                *a = Response::error(format!(
                    "warroom recorded this but could not confirm it reached the disk ({e}); check the data folder's disk, then look at /incident status before trying again"
                ));
            }
        }
        let mut own = None;
        for (j, a) in jobs.iter().zip(answers) {
            self.metrics.command(&j.inv.path, a.kind.as_str());
            if Arc::ptr_eq(j, &mine) {
                own = Some(a.clone());
            }
            j.finish(a);
        }
        drop(round);
        own.unwrap_or_else(|| Response::error("warroom lost track of this command; try again"))
    }

    /// The decision lock if it is free now.
    fn try_lock(&self) -> Option<std::sync::MutexGuard<'_, Batch>> {
        match self.write.try_lock() {
            Ok(b) => Some(b),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let mut batch = p.into_inner();
                batch.discard();
                Some(batch)
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Wakes the first waiting caller to decide the next round (called once the lock is free).
    fn wake_next(&self) {
        let first = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned();
        if let Some(j) = first {
            j.wake();
        }
    }

    /// Commits what the round decided so far and pokes the loops that care.
    pub(crate) fn end_round(&self, batch: &mut Batch) -> Result<(), StoreError> {
        let r = batch.commit(self.store());
        if std::mem::take(&mut batch.committed) {
            self.timers_changed.notify_one();
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        if std::mem::take(&mut batch.queued_messages) && r.is_ok() {
            self.outbox_ready.notify_one();
        }
        r
    }

    /// Decides one invocation into the round (the caller holds the decision lock).
    fn decide(
        &self,
        batch: &mut Batch,
        actor: &Actor,
        place: Option<IncidentId>,
        inv: &Invocation,
    ) -> Response {
        let request = match inv.to_request() {
            Ok(r) => r,
            Err(e) => return Response::error(e),
        };
        // Written out only for a refusal: the decision lock is held here.
        let usage = || {
            self.specs
                .find(&inv.path)
                .map(|c| c.usage())
                .unwrap_or_default()
        };
        let now = self.clock.now();
        let overrides = self.overrides_now();
        let ctx = Ctx {
            now,
            policy: &self.config.policy,
            overrides: &overrides,
        };
        if let Request::Help(topic) = &request {
            return self.help(topic.as_deref(), place);
        }
        if matches!(
            request,
            Request::OnCall(_)
                | Request::Override { .. }
                | Request::Overrides
                | Request::RemoveOverride(_)
        ) {
            return self.oncall_request(batch, &ctx, actor, place, &request);
        }
        if let Request::Change(crate::domain::Command::Open {
            title,
            severity,
            service,
            drill,
            force,
        }) = &request
        {
            // An open reads other incidents (duplicates, the next id): the round so far first.
            if let Err(e) = self.end_round(batch) {
                return self.storage_failure(e);
            }
            if !*force {
                match self.recent_duplicate(actor, service, now) {
                    Ok(Some(dup)) => {
                        return Response {
                            kind: ReplyKind::Reply,
                            text: format!(
                                "{} is already open for {}: you opened it {} ago, in #{}. Nothing new was opened. To open a second incident anyway, add force:true.",
                                dup.id,
                                dup.service,
                                engine::human(now.signed_duration_since(dup.opened_at)),
                                dup.channel
                            ),
                            incident: Some(dup.id),
                        };
                    }
                    Ok(None) => {}
                    Err(e) => return self.storage_failure(e),
                }
            }
            let id = match self.store.next_incident_id() {
                Ok(id) => id,
                Err(e) => return self.storage_failure(e),
            };
            let exercise = if *drill {
                Exercise::Drill
            } else {
                Exercise::Real
            };
            return match engine::open(&ctx, actor, id, title, *severity, service, exercise) {
                Ok(d) => {
                    let r = self.apply(batch, None, d, None);
                    // A drill restarts its service's drill clock.
                    let every = self
                        .config
                        .policy
                        .services
                        .get(service.trim())
                        .and_then(|s| s.drill_every);
                    if *drill
                        && r.kind == ReplyKind::Reply
                        && let Some(every) = every
                    {
                        // The drill clock moves only with a committed drill.
                        if let Err(e) = self.end_round(batch) {
                            return self.storage_failure(e);
                        }
                        if let Err(e) =
                            self.store
                                .set_drill(service.trim(), now.checked_add_signed(every), &[])
                        {
                            tracing::error!(error = %e, "cannot reschedule the drill");
                        }
                    }
                    r
                }
                Err(r) => Response::error(format!("{r}\nusage: {}", usage())),
            };
        }
        let Some(id) = place else {
            return Response::error(format!(
                "/{} runs in an incident's channel, and this is not one. Open an incident with /incident open, or (console) switch with /use INC-n.",
                inv.path
            ));
        };
        let inc = match batch.incident(self.store(), id) {
            Ok(Some(i)) => i,
            Ok(None) => return Response::error(format!("{id} does not exist")),
            Err(e) => return self.storage_failure(e),
        };
        let read = |text: String| Response {
            kind: ReplyKind::Reply,
            text,
            incident: Some(id),
        };
        match request {
            Request::Change(cmd) => match engine::handle(&ctx, actor, &inc, &cmd) {
                Ok(d) => self.apply(batch, Some(&inc), d, None),
                Err(r) => {
                    let hint = if r.kind == engine::RefusalKind::Invalid {
                        format!("\nusage: {}", usage())
                    } else {
                        String::new()
                    };
                    Response::error(format!("{r}{hint}"))
                }
            },
            Request::Status | Request::Timeline | Request::Report => {
                if let Err(r) = authorize(&ctx, actor, Some(&inc), &inv.path, None, None) {
                    return Response::error(r.to_string());
                }
                if request != Request::Status
                    && batch.touched(id)
                    && let Err(e) = self.end_round(batch)
                {
                    return self.storage_failure(e);
                }
                match request {
                    Request::Status => read(self.status_card(&inc)),
                    _ => match self.store.events(id) {
                        Ok(events) if request == Request::Timeline => {
                            read(render::timeline(&inc, &events))
                        }
                        Ok(events) => read(render::report(&inc, &events)),
                        Err(e) => self.storage_failure(e),
                    },
                }
            }
            // Answered above, before any incident is read; answered the same way here.
            Request::Help(topic) => self.help(topic.as_deref(), Some(id)),
            Request::OnCall(_)
            | Request::Override { .. }
            | Request::Overrides
            | Request::RemoveOverride(_) => {
                self.oncall_request(batch, &ctx, actor, Some(id), &request)
            }
        }
    }

    /// `/help`, anywhere.
    fn help(&self, topic: Option<&str>, place: Option<IncidentId>) -> Response {
        match self.specs.help(topic) {
            Ok(text) => Response {
                kind: ReplyKind::Reply,
                text,
                incident: place,
            },
            Err(e) => Response::error(e),
        }
    }

    /// How long a repeated `/incident open` by the same person for the same service is taken
    /// for a retry (their answer was lost, or they were unsure) rather than a second outage.
    pub const DUPLICATE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

    /// An open incident for `service` that `actor` opened within the duplicate window.
    fn recent_duplicate(
        &self,
        actor: &Actor,
        service: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Incident>, StoreError> {
        let since = now
            .checked_sub_signed(Self::DUPLICATE_WINDOW)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let service = service.trim();
        Ok(self
            .store
            .incidents_opened_since(since)?
            .into_iter()
            .find(|i| {
                i.is_open()
                    && i.opener == actor.user
                    && i.service.eq_ignore_ascii_case(service)
                    && i.opened_at <= now
            }))
    }

    pub fn status_card(&self, inc: &Incident) -> String {
        let sdm = self.config.policy.roster.holders(&RoleKey::sdm());
        let mut card = render::status(inc, &sdm);
        for line in self.health.lines_for(inc.id) {
            card.push_str("\nDelivery: ");
            card.push_str(&line);
        }
        card
    }

    /// Commits a decision and queues its messages. The reply goes out only after the commit.
    pub(crate) fn apply(
        &self,
        batch: &mut Batch,
        before: Option<&Arc<Incident>>,
        d: Decision,
        fired: Option<&crate::store::DueTimer>,
    ) -> Response {
        self.observe(batch, before.map(|b| &**b), &d);
        let mut messages = d.messages;
        if self.cards && before.map(|b| &**b) != Some(&d.incident) {
            messages.push(crate::domain::Message {
                at: self.clock.now(),
                kind: crate::domain::MessageKind::Status,
                text: String::new(),
                mentions: Vec::new(),
                buttons: Vec::new(),
                nudge: None,
            });
        }
        let mut outbox = Vec::with_capacity(messages.len());
        for m in messages {
            let o = match self.store.outbox_id() {
                Ok(id) => Outgoing::new(id, d.incident.id, &d.incident.channel, m),
                Err(e) => return self.storage_failure(e),
            };
            // The SDM's direct copy is its own message in its own lane, so that it never
            // depends on the channel post.
            let copies = match self.direct_copies(Some(&d.incident), &o) {
                Ok(c) => c,
                Err(e) => return self.storage_failure(e),
            };
            outbox.push(o);
            outbox.extend(copies);
        }
        let id = d.incident.id;
        batch.add(Pending {
            before: before.cloned(),
            after: Arc::new(d.incident),
            events: d.events,
            outbox,
            consumed: fired.cloned(),
        });
        Response {
            kind: ReplyKind::Reply,
            text: d.reply,
            incident: Some(id),
        }
    }

    /// Counts what a decision did, for `/metrics`: its nudges, and the time to its incident's
    /// first acknowledgement or to its resolution. Counted when decided; a round whose commit
    /// then fails (the store is failing) has counted decisions it did not keep.
    fn observe(&self, batch: &Batch, before: Option<&Incident>, d: &Decision) {
        use crate::domain::EventKind;
        for m in &d.messages {
            if let Some(n) = m.nudge.and_then(|id| d.incident.nudge(id)) {
                self.metrics.nudge(&n.kind);
            }
        }
        let acked = |e: &crate::domain::Event| matches!(e.kind, EventKind::Acknowledged { .. });
        if let Some(before) = before
            && d.events.iter().any(acked)
            && !batch.acknowledged(before.id)
            && self
                .store
                .events(before.id)
                .is_ok_and(|old| !old.iter().any(acked))
        {
            self.metrics
                .acknowledged(self.clock.now().signed_duration_since(d.incident.opened_at));
        }
        if before.is_some_and(Incident::is_open)
            && let crate::domain::IncidentState::Resolved { at, .. } = &d.incident.state
        {
            self.metrics
                .resolved(at.signed_duration_since(d.incident.opened_at));
        }
    }

    /// The channel name for messages that belong to no incident (drill reminders).
    pub const OPS_CHANNEL: &'static str = "warroom";

    /// Brings the drill schedule in line with the configuration: a service with `drill_every`
    /// and no schedule gets its first drill one interval from now; one without loses it.
    pub fn init_drills(&self) -> Result<(), StoreError> {
        let _guard = self.lock();
        let now = self.clock.now();
        let scheduled = self.store.drills()?;
        for (name, svc) in &self.config.policy.services {
            let has = scheduled.iter().any(|(_, s)| s == name);
            match svc.drill_every {
                // A drill beyond the last representable time is no drill at all.
                Some(every) if !has => {
                    self.store
                        .set_drill(name, now.checked_add_signed(every), &[])?
                }
                _ => {}
            }
        }
        for (_, name) in scheduled {
            let wanted = self
                .config
                .policy
                .services
                .get(&name)
                .is_some_and(|s| s.drill_every.is_some());
            if !wanted {
                self.store.set_drill(&name, None, &[])?;
            }
        }
        self.timers_changed.notify_one();
        Ok(())
    }

    /// The next deadline, if any timer or drill is pending.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let timer = self.store.next_timer()?.map(|t| t.due);
        let drill = self.store.drill_first()?.map(|(d, _)| d);
        let handoff = self.store.handoff_first()?.map(|(d, _)| d);
        Ok([timer, drill, handoff].into_iter().flatten().min())
    }

    /// Nudges the SDM about a due drill and schedules a daily reminder until one is opened.
    fn fire_drill(
        &self,
        service: &str,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let every = self
            .config
            .policy
            .services
            .get(service)
            .and_then(|s| s.drill_every);
        let Some(every) = every else {
            return self.store.set_drill(service, None, &[]);
        };
        let m = engine::drill_due(service, every, due, now);
        let mut out = Outgoing::new(self.store.outbox_id()?, IncidentId(0), Self::OPS_CHANNEL, m);
        out.to = Destination::Ops;
        let mut queued = self.direct_copies(None, &out)?;
        queued.insert(0, out);
        self.store.set_drill(
            service,
            now.checked_add_signed(chrono::TimeDelta::days(1)),
            &queued,
        )?;
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Fires the earliest timer if it is due at `now`. Returns whether one was fired.
    pub fn fire_one(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.fire_round(now, now, 1)?.0 > 0)
    }

    /// Fires every timer due at `now`, in deadline order. Returns how many fired.
    pub fn fire_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut n = 0;
        loop {
            let (fired, full) = self.fire_round(now, now, Self::FIRE_BATCH)?;
            n += fired;
            if !full {
                return Ok(n);
            }
        }
    }

    /// How many due timers one round claims before one transaction and one sync cover them.
    pub const FIRE_BATCH: usize = 256;

    /// Fires up to `FIRE_BATCH` timers due at `now` in one round: decided one after another
    /// under one hold of the decision lock, committed as one transaction, then made durable
    /// with one sync. Each decision is made at the clock's time when it is made (never before
    /// `now`), so a late message says how late it really is.
    pub fn fire_batch(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self.fire_round(now, now, Self::FIRE_BATCH)?.0)
    }

    /// One round of firing: returns how many fired, and whether the round was full (more may
    /// be due).
    fn fire_round(
        &self,
        now: DateTime<Utc>,
        at_least: DateTime<Utc>,
        limit: usize,
    ) -> Result<(usize, bool), StoreError> {
        let mut dues = Vec::new();
        let (fired, full) = {
            let mut batch = self.lock();
            match self.fire_listed(&mut batch, now, at_least, limit, &mut dues) {
                Ok(r) => r,
                Err(e) => {
                    // Nothing of a failed round is kept: it is decided again next time.
                    batch.discard();
                    return Err(e);
                }
            }
        };
        if fired > 0 {
            // Its messages go out only once the claims and the decisions are on disk.
            self.store.make_all_durable()?;
            let done = self.clock.now();
            for due in dues {
                let late = done.signed_duration_since(due);
                self.metrics.timer_late(late);
                if let Some(hook) = &self.on_fire {
                    hook(late);
                }
            }
        }
        Ok((fired, full))
    }

    /// Decides and commits one round of firing (the caller holds the decision lock).
    fn fire_listed(
        &self,
        batch: &mut Batch,
        now: DateTime<Utc>,
        at_least: DateTime<Utc>,
        limit: usize,
        dues: &mut Vec<DateTime<Utc>>,
    ) -> Result<(usize, bool), StoreError> {
        let mut fired = 0;
        // Drills first, one by one: they are rare, and live outside incidents.
        while fired < limit {
            let Some((due, service)) = self.store.drill_first()? else {
                break;
            };
            if due > now {
                break;
            }
            let at = self.clock.now().max(at_least);
            self.fire_drill(&service, due, at)?;
            dues.push(due);
            fired += 1;
        }
        // Then shift handoffs, one by one: their handovers see the incidents as they are.
        while fired < limit {
            let Some((due, role)) = self.store.handoff_first()? else {
                break;
            };
            if due > now {
                break;
            }
            let at = self.clock.now().max(at_least);
            self.fire_handoff(batch, &role, due, at)?;
            dues.push(due);
            fired += 1;
        }
        let listed = self.store.due_timers(now, limit.saturating_sub(fired))?;
        let full = fired + listed.len() >= limit && limit > 0;
        for t in listed {
            let at = self.clock.now().max(at_least);
            if self.fire_locked(batch, &t, at)? {
                dues.push(t.due);
                fired += 1;
            }
        }
        let r = self.end_round(batch);
        batch.take_failed();
        r?;
        Ok((fired, full))
    }

    /// Fires one listed timer into the round, deciding at `at`. Returns whether it fired: a
    /// timer that an earlier decision in the round cancelled does not.
    fn fire_locked(
        &self,
        batch: &mut Batch,
        t: &crate::store::DueTimer,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inc = match batch.incident(self.store(), t.incident)? {
            Some(inc) if inc.timers.iter().any(|p| p.seq == t.seq) => inc,
            // Cancelled by an earlier decision in this round: its removal is in the round.
            _ if batch.touched(t.incident) => return Ok(false),
            _ => {
                tracing::warn!(incident = %t.incident, "dropping a timer its incident no longer holds");
                self.store.drop_timer(t)?;
                return Ok(false);
            }
        };
        let overrides = self.overrides_now();
        let ctx = Ctx {
            now: at,
            policy: &self.config.policy,
            overrides: &overrides,
        };
        let d = engine::fire(&ctx, &inc, t.seq);
        let r = self.apply(batch, Some(&inc), d, Some(t));
        if r.kind == ReplyKind::Error {
            return Err(StoreError::Sled(r.text));
        }
        Ok(true)
    }

    /// Moves a virtual clock to `target`, firing each timer at its own due time on the way.
    pub fn advance_to(
        &self,
        clock: &crate::clock::VirtualClock,
        target: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        while let Some(due) = self.next_due()? {
            if due > target {
                break;
            }
            clock.set(due);
            if self.fire_one(clock.now())? {
                n += 1;
            }
        }
        clock.set(target);
        Ok(n)
    }

    /// The newest open incident, for a console that starts without one.
    pub fn latest_open(&self) -> Result<Option<Incident>, StoreError> {
        self.store.latest_open()
    }
}
