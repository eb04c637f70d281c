//! On-call in the service: `/oncall` and its overrides, the handoff timers (one per scheduled
//! role, in the store's `oncall_handoffs` tree) and what a handoff does: the incoming person is
//! told, and every open incident at the role's tier is handed over to them.

use chrono::{DateTime, TimeDelta, Utc};

use super::{App, ReplyKind, Response};
use crate::batch::Batch;
use crate::delivery::Destination;
use crate::domain::engine::{self, clock};
use crate::domain::oncall::{self, OnCall};
use crate::domain::{Actor, Ctx, IncidentId, Message, MessageKind, RoleKey, Target, Tier};
use crate::spec::Request;
use crate::store::{Outgoing, StoreError};

/// Who now holds a scheduled role, and who else may have its chat role: for a front end that
/// mirrors the holder in chat (Discord's `sync_roles`).
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSync {
    pub role: RoleKey,
    pub holder: crate::domain::UserName,
    /// Everyone else the schedule or its overrides name.
    pub others: Vec<crate::domain::UserName>,
}

/// A handoff fired this much after its time says it is late.
const LATE: TimeDelta = TimeDelta::minutes(1);

impl App {
    /// Who is on call at `at`, for `warroom oncall` and `/oncall show`.
    pub fn oncall_text(&self, role: Option<&RoleKey>, at: DateTime<Utc>) -> String {
        let overrides = self.overrides_now();
        let oc = OnCall {
            schedules: &self.config.policy.schedules,
            overrides: &overrides,
        };
        oncall::render(&oc, role, at)
    }

    /// `/oncall …`: answered anywhere, in a channel or not.
    pub(super) fn oncall_request(
        &self,
        batch: &mut Batch,
        ctx: &Ctx,
        actor: &Actor,
        place: Option<IncidentId>,
        request: &Request,
    ) -> Response {
        let reply = |text: String| Response {
            kind: ReplyKind::Reply,
            text,
            incident: place,
        };
        match request {
            Request::OnCall(role) => {
                if let Some(r) = role
                    && !self.config.policy.knows_role(r)
                {
                    return Response::error(format!(
                        "option 'role': '{r}' is not a role key; expected one of: {}",
                        self.config.policy.known_roles()
                    ));
                }
                reply(oncall::render(&ctx.oncall(), role.as_ref(), ctx.now))
            }
            Request::Overrides => reply(oncall::render_overrides(&ctx.oncall(), ctx.now)),
            Request::Override {
                role,
                user,
                from,
                to,
                reason,
            } => {
                let usage = self
                    .specs
                    .find("oncall override")
                    .map(|c| c.usage())
                    .unwrap_or_default();
                // Check first (ids are cheap, but a refused override should not use one).
                if let Err(r) = oncall::make_override(ctx, actor, 0, role, user, *from, *to, reason)
                {
                    return Response::error(format!("{r}\nusage: {usage}"));
                }
                let id = match self.store.override_id() {
                    Ok(id) => id,
                    Err(e) => return self.storage_failure(e),
                };
                let (o, text) =
                    match oncall::make_override(ctx, actor, id, role, user, *from, *to, reason) {
                        Ok(x) => x,
                        Err(r) => return Response::error(format!("{r}\nusage: {usage}")),
                    };
                // Commit the round so far: the handoff timer is rescheduled outside it.
                if let Err(e) = self.end_round(batch) {
                    return self.storage_failure(e);
                }
                if let Err(e) = self.store.put_override(&o) {
                    return self.storage_failure(e);
                }
                self.overrides
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(o.clone());
                if let Err(e) = self.reschedule_handoff(&o.role, ctx.now) {
                    return self.storage_failure(e);
                }
                reply(text)
            }
            Request::RemoveOverride(n) => {
                let n = u64::from(*n);
                let Some(mut o) = ctx.oncall().overrides.iter().find(|o| o.id == n).cloned() else {
                    return Response::error(format!(
                        "option 'override': there is no override {n}; list them with /oncall overrides"
                    ));
                };
                if let Err(r) = oncall::may_remove(ctx, actor, &o) {
                    return Response::error(r.to_string());
                }
                if let Some((by, at)) = &o.removed {
                    return reply(format!(
                        "Override {n} was already removed, by {by} at {}; nothing changed.",
                        clock(*at)
                    ));
                }
                if let Err(e) = self.end_round(batch) {
                    return self.storage_failure(e);
                }
                o.removed = Some((actor.user.clone(), ctx.now));
                if let Err(e) = self.store.put_override(&o) {
                    return self.storage_failure(e);
                }
                for x in self
                    .overrides
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter_mut()
                    .filter(|x| x.id == n)
                {
                    x.removed = o.removed.clone();
                }
                if let Err(e) = self.reschedule_handoff(&o.role, ctx.now) {
                    return self.storage_failure(e);
                }
                reply(format!(
                    "Override {n} removed: {} is no longer on call for {} from {} to {}.",
                    o.user,
                    o.role,
                    clock(o.from),
                    clock(o.to)
                ))
            }
            _ => Response::error("not an /oncall command"),
        }
    }

    /// Sets a role's handoff timer to its next change of holder after `now`.
    fn reschedule_handoff(&self, role: &RoleKey, now: DateTime<Utc>) -> Result<(), StoreError> {
        let overrides = self.overrides_now();
        let oc = OnCall {
            schedules: &self.config.policy.schedules,
            overrides: &overrides,
        };
        self.store
            .set_handoff(role.as_str(), oc.next_change(role, now), &[])?;
        self.timers_changed.notify_one();
        Ok(())
    }

    /// Brings the handoff timers in line with the configuration: a scheduled role without one
    /// gets its next handoff; a role whose schedule is gone loses it. A stored handoff already
    /// due is kept, so that it fires (late) after a restart.
    pub fn init_handoffs(&self) -> Result<(), StoreError> {
        let _guard = self.lock();
        let now = self.clock.now();
        let pending = self.store.handoffs()?;
        for s in &self.config.policy.schedules {
            if !pending.iter().any(|(_, r)| r == s.role.as_str()) {
                self.reschedule_handoff(&s.role, now)?;
            }
        }
        for (_, role) in pending {
            if !self
                .config
                .policy
                .schedules
                .iter()
                .any(|s| s.role.as_str() == role)
            {
                self.store.set_handoff(&role, None, &[])?;
            }
        }
        self.timers_changed.notify_one();
        Ok(())
    }

    /// Fires a due handoff (the caller holds the decision lock): the automatic handovers go
    /// into the round and are committed first, then the timer is claimed with the incoming
    /// person's message in one transaction. A crash between the two fires it again after the
    /// restart; the handovers are not repeated, since an incident already offered to (or led
    /// by) the incoming person is skipped.
    pub(super) fn fire_handoff(
        &self,
        batch: &mut Batch,
        role: &str,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let role = RoleKey::new(role);
        let overrides = self.overrides_now();
        let ctx = Ctx {
            now: at,
            policy: &self.config.policy,
            overrides: &overrides,
        };
        let oc = ctx.oncall();
        let Some(sched) = oc.schedule_for(&role) else {
            return self.store.set_handoff(role.as_str(), None, &[]);
        };
        let before = due
            .checked_sub_signed(TimeDelta::seconds(1))
            .and_then(|t| oc.holder(&role, t))
            .map(|h| h.user);
        let next = oc.next_change(&role, at);
        let Some(incoming) = oc.holder(&role, at) else {
            return self.store.set_handoff(role.as_str(), next, &[]);
        };
        if before.as_ref() == Some(&incoming.user) {
            // Same person goes on (an override for them ended where their shift goes on).
            return self.store.set_handoff(role.as_str(), next, &[]);
        }
        let late = at.signed_duration_since(due);
        let late_note = if late > LATE {
            format!(
                " (this handoff fell due at {} while warroom was not running: {} late)",
                oncall::local(due, &sched.zone),
                engine::human(late)
            )
        } else {
            String::new()
        };
        let tier = Tier::ALL.into_iter().find(|t| t.role() == role);
        let open: Vec<_> = self
            .store
            .incidents()?
            .into_iter()
            .filter_map(|i| batch.incident(self.store(), i.id).ok().flatten())
            .filter(|i| i.is_open() && tier.is_none_or(|t| i.tier == t))
            .collect();
        let until = incoming
            .until
            .map_or("further notice".into(), |u| oncall::local(u, &sched.zone));
        let outgoing = before
            .as_ref()
            .map_or("nobody".to_string(), |u| u.to_string());
        for inc in open.iter().filter(|_| tier.is_some()) {
            let summary = format!(
                "shift handoff for {role} ({}): {outgoing} goes off, {} is on call until {until}{late_note}",
                sched.name, incoming.user
            );
            match engine::shift_handover(&ctx, inc, &incoming.user, &summary) {
                Ok(Some(d)) => {
                    let r = self.apply(batch, Some(inc), d, None);
                    if r.kind == ReplyKind::Error {
                        return Err(StoreError::Sled(r.text));
                    }
                }
                Ok(None) => {}
                Err(r) => tracing::warn!(incident = %inc.id, refusal = %r, "no automatic handover"),
            }
        }
        self.end_round(batch)?;
        let list = if open.is_empty() {
            format!("no open incidents at {role}")
        } else {
            open.iter()
                .map(|i| format!("{} {} ({}, #{})", i.id, i.title, i.severity, i.channel))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let text = format!(
            "You are on call for {role} ({}) until {until}, taking over from {outgoing}{late_note}. Open incidents at {role}: {list}.{}",
            sched.name,
            if open.is_empty() || tier.is_none() {
                ""
            } else {
                " Each is handed over to you: acknowledge its handover card with /ack in its channel."
            }
        );
        let m = Message {
            at,
            kind: MessageKind::Post,
            text,
            mentions: vec![Target::User(incoming.user.clone())],
            buttons: Vec::new(),
            nudge: None,
        };
        let mut out = Outgoing::new(
            self.store.outbox_id()?,
            IncidentId(0),
            &format!("@{}", incoming.user),
            m,
        );
        out.to = Destination::Direct {
            user: incoming.user.clone(),
        };
        self.store.set_handoff(role.as_str(), next, &[out])?;
        self.outbox_ready.notify_one();
        self.sync_role(&oc, &role, incoming.user);
        Ok(())
    }

    /// Tells the front end's role mirror who holds `role` now.
    fn sync_role(&self, oc: &OnCall, role: &RoleKey, holder: crate::domain::UserName) {
        let Some(tx) = &self.role_sync else { return };
        let mut others: Vec<crate::domain::UserName> = oc
            .schedule_for(role)
            .map(|s| s.rotation.clone())
            .unwrap_or_default();
        others.extend(
            oc.overrides
                .iter()
                .filter(|o| o.role == *role)
                .map(|o| o.user.clone()),
        );
        others.sort();
        others.dedup();
        others.retain(|u| *u != holder);
        let _ = tx.send(RoleSync {
            role: role.clone(),
            holder,
            others,
        });
    }

    /// At start: the role mirror learns who holds each scheduled role now.
    pub fn sync_all_roles(&self) {
        let overrides = self.overrides_now();
        let oc = OnCall {
            schedules: &self.config.policy.schedules,
            overrides: &overrides,
        };
        let now = self.clock.now();
        for s in &self.config.policy.schedules {
            if let Some(h) = oc.holder(&s.role, now) {
                self.sync_role(&oc, &s.role, h.user);
            }
        }
    }

    /// A notice for the ops channel (and, through its copies, the SDM), outside any incident.
    pub fn notify_ops(&self, text: String) -> Result<(), StoreError> {
        let m = Message {
            at: self.clock.now(),
            kind: MessageKind::Post,
            text,
            mentions: vec![Target::Role(RoleKey::sdm())],
            buttons: Vec::new(),
            nudge: None,
        };
        let mut out = Outgoing::new(
            self.store.outbox_id()?,
            IncidentId(0),
            App::OPS_CHANNEL,
            m.clone(),
        );
        out.to = Destination::Ops;
        let mut queued = vec![out];
        // And to each SDM the front end can reach, by direct message.
        for user in self.config.policy.roster.holders(&RoleKey::sdm()) {
            if self.reach.contains(user) {
                let mut dm = Outgoing::new(
                    self.store.outbox_id()?,
                    IncidentId(0),
                    &format!("@{user}"),
                    m.clone(),
                );
                dm.to = Destination::Direct { user: user.clone() };
                queued.push(dm);
            }
        }
        self.store.queue(&queued)?;
        self.store.make_all_durable()?;
        self.outbox_ready.notify_one();
        Ok(())
    }
}
