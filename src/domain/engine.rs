//! The pure engine: a command or a fired timer, with the incident and the policy, becomes a
//! decision: the new incident state, timeline events and messages to send.
//!
//! No I/O and no clock reads happen here; `Ctx::now` is the only time. Timers are part of the
//! incident's state (`Incident::timers`); the store mirrors them into its deadline index.
//! Commands are handled in `handle.rs`; timers are fired here.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use super::model::*;
use super::policy::{Policy, Principal, SeverityPolicy, Standing, external_label};

/// Lateness below this is scheduling jitter, not worth telling anyone about.
const LATE_NOTICE: TimeDelta = TimeDelta::seconds(5);

/// Discord's limit on buttons under one message: five rows of five.
pub const MAX_BUTTONS: usize = 25;

/// The engine's view of the world for one decision.
pub struct Ctx<'a> {
    pub now: DateTime<Utc>,
    pub policy: &'a Policy,
    /// The stored on-call overrides (empty without schedules).
    pub overrides: &'a [super::oncall::Override],
}

impl<'a> Ctx<'a> {
    /// Who is on call, from the policy's schedules and the stored overrides.
    pub fn oncall(&self) -> super::oncall::OnCall<'a> {
        super::oncall::OnCall {
            schedules: &self.policy.schedules,
            overrides: self.overrides,
        }
    }

    /// `targets` with the person on call for each role target added after it, so that a
    /// nudge to `@l1` also pings whoever holds L1 now.
    pub fn with_on_call(&self, targets: &[Target]) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::with_capacity(targets.len());
        for t in targets {
            if !out.contains(t) {
                out.push(t.clone());
            }
            if let Target::Role(r) = t
                && let Some(h) = self.oncall().holder(r, self.now)
            {
                let u = Target::User(h.user);
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        out
    }
}

/// Who is acting, with the role keys the front end resolved for them.
#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    pub user: UserName,
    pub roles: BTreeSet<RoleKey>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MessageKind {
    /// News in the incident channel.
    Post,
    /// A nudge: pings someone and waits for an answer.
    Nudge,
    /// A card: a handover or summary, posted in the channel.
    Card,
    /// The incident changed: refresh its pinned status card (front ends that have one).
    Status,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Post => "post",
            MessageKind::Nudge => "nudge",
            MessageKind::Card => "card",
            MessageKind::Status => "status",
        }
    }
}

/// A button under a nudge; pressing it runs the matching command.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Button {
    Ack,
    Snooze15m,
    Escalate,
    OpenPlanB,
    /// Tick item `item` (from 1) of a plan's checklist.
    Check {
        plan: Plan,
        item: u32,
    },
    /// Start the due DR drill of this service.
    StartDrill {
        service: String,
    },
    /// Acknowledge this one nudge: under a digest of several reminders, one per nudge.
    AckNudge {
        nudge: NudgeId,
    },
}

/// A message for the incident's channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub at: DateTime<Utc>,
    pub kind: MessageKind,
    pub text: String,
    pub mentions: Vec<Target>,
    pub buttons: Vec<Button>,
    pub nudge: Option<NudgeId>,
}

/// Everything a command or timer changes; the store commits it in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub incident: Incident,
    pub events: Vec<Event>,
    pub messages: Vec<Message>,
    /// The answer to the person who ran the command (empty for timers).
    pub reply: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The actor may not run this command here.
    NotAllowed,
    /// The command does not fit the incident's state.
    Conflict,
    /// A value is wrong (an unknown user, a snooze over the cap).
    Invalid,
}

/// Why a command was refused. Nothing changes when a command is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

pub(super) fn refuse<T>(kind: RefusalKind, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        kind,
        message: message.into(),
    })
}

/// A time for chat: the front end renders `<t:UNIX:t>` as a clock time (Discord natively).
pub fn clock(t: DateTime<Utc>) -> String {
    format!("<t:{}:t>", t.timestamp())
}

/// What a timer says when it fires late, because warroom was down when it fell due.
pub(super) fn late_note(now: DateTime<Utc>, due: DateTime<Utc>) -> String {
    let late = now.signed_duration_since(due);
    if late > LATE_NOTICE {
        format!(
            " (fired {} late: it fell due at {} while warroom was not running)",
            human(late),
            clock(due)
        )
    } else {
        String::new()
    }
}

/// `t + d`, or None when that is beyond what a time can hold.
pub(super) fn later(t: DateTime<Utc>, d: TimeDelta) -> Option<DateTime<Utc>> {
    t.checked_add_signed(d)
}

/// Why a command is refused when one of its timers would fall beyond the last representable
/// time (only a clock set near the end of time gets there).
pub(super) const BEYOND_TIME: &str = "warroom cannot schedule this: one of its timers would fall beyond the latest time it can represent; nothing changed";

/// A time relative to now for chat: `<t:UNIX:R>`.
pub fn relative(t: DateTime<Utc>) -> String {
    format!("<t:{}:R>", t.timestamp())
}

/// `1h30m`, `45m`, `2d3h`: the same form users type.
pub fn human(d: TimeDelta) -> String {
    let mut s = d.num_seconds().max(0);
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

/// The channel name for an incident: `inc-42-core-mail-server`, at most 100 characters.
pub fn channel_name(id: IncidentId, title: &str, exercise: Exercise) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    // Keep names readable in a channel list: at most 40 characters of title, cut at a word.
    let slug = slug.trim_matches('-');
    // The slug is ASCII, so these cuts fall on character boundaries; `get` keeps it total.
    let slug = match slug.get(..40) {
        Some(cut) if slug.len() > 40 => cut.rfind('-').and_then(|i| cut.get(..i)).unwrap_or(cut),
        _ => slug,
    };
    let prefix = match exercise {
        Exercise::Real => format!("inc-{}", id.0),
        Exercise::Drill => format!("inc-{}-drill", id.0),
    };
    let mut name = if slug.is_empty() {
        prefix
    } else {
        format!("{prefix}-{slug}")
    };
    name.truncate(100);
    name.trim_end_matches('-').to_string()
}

/// Where the actor stands within an incident (or outside any): staff, facilities or vendor
/// staff, or nobody the war room knows. See `Standing`.
pub fn standing(actor: &Actor, inc: Option<&Incident>) -> Standing {
    Standing::of(
        &actor.roles,
        inc.and_then(|i| i.participants.get(&actor.user)),
    )
}

/// Where a roster person stands in an incident, judged as when they act (for a grant to them).
pub fn standing_of(policy: &Policy, inc: &Incident, user: &UserName) -> Standing {
    Standing::of(&policy.roster.roles_of(user), inc.participants.get(user))
}

/// The role keys an actor holds within an incident: their own, the kind they were added with,
/// and what incident assignments grant. Assignments grant nothing to facilities or vendor staff,
/// even where an older warroom stored one for them.
pub fn effective_roles(actor: &Actor, inc: Option<&Incident>) -> BTreeSet<RoleKey> {
    let mut roles = actor.roles.clone();
    if let Some(inc) = inc {
        if let Some(role) = inc.participants.get(&actor.user) {
            roles.insert(role.clone());
        }
        if standing(actor, Some(inc)) != Standing::External {
            for (role, user) in &inc.assignments {
                if *user == actor.user
                    && let Some(key) = role.grants()
                {
                    roles.insert(key);
                }
            }
        }
    }
    roles
}

pub(super) fn targets_actor(targets: &[Target], actor: &Actor, roles: &BTreeSet<RoleKey>) -> bool {
    targets.iter().any(|t| match t {
        Target::User(u) => *u == actor.user,
        Target::Role(r) => roles.contains(r),
    })
}

/// Checks a command path against its "who may" list (`Permissions`, from `commands/` and
/// `[permissions]`): the one place a command's actor is authorised. Facilities and vendor staff
/// are admitted only by `participant` and `anyone` (`Principal::admits_external`).
pub fn authorize(
    ctx: &Ctx,
    actor: &Actor,
    inc: Option<&Incident>,
    path: &str,
    plan: Option<Plan>,
    nudge: Option<&Nudge>,
) -> Result<(), Refusal> {
    authorize_replacing(ctx, actor, inc, path, plan, nudge, None)
}

/// `authorize`, for a command that replaces someone on call (`/oncall override`): `replaced`
/// is who the rotation has on call then, admitted by the `replaced` principal.
pub fn authorize_replacing(
    ctx: &Ctx,
    actor: &Actor,
    inc: Option<&Incident>,
    path: &str,
    plan: Option<Plan>,
    nudge: Option<&Nudge>,
    replaced: Option<&UserName>,
) -> Result<(), Refusal> {
    let who = ctx.policy.permissions.for_command(path);
    let mut roles = effective_roles(actor, inc);
    // The person on call for a role holds it, as long as they are on.
    roles.extend(ctx.oncall().roles_of(&actor.user, ctx.now));
    let standing = standing(actor, inc);
    let admitted = who.iter().any(|p| {
        (standing != Standing::External || p.admits_external())
            && match p {
                Principal::Anyone => true,
                Principal::Participant => !roles.is_empty(),
                Principal::AnyTier => roles.iter().any(RoleKey::is_tier),
                Principal::CurrentTier => inc.is_some_and(|i| roles.contains(&i.tier.role())),
                Principal::Lead => inc.is_some_and(|i| match plan {
                    Some(p) => i
                        .tracks
                        .get(&p)
                        .is_some_and(|t| t.lead.as_ref() == Some(&actor.user)),
                    None => *i.commander() == actor.user,
                }),
                Principal::Nudged => {
                    nudge.is_some_and(|n| targets_actor(&n.targets, actor, &roles))
                }
                Principal::Replaced => replaced == Some(&actor.user),
                Principal::Role(r) => roles.contains(r),
            }
    });
    if admitted {
        return Ok(());
    }
    let allowed = who
        .iter()
        .map(|p| match (p, inc) {
            (Principal::CurrentTier, Some(i)) => format!("the current tier ({})", i.tier.role()),
            (Principal::Lead, Some(i)) => match plan {
                Some(p) => match i.tracks.get(&p).and_then(|t| t.lead.as_ref()) {
                    Some(lead) => format!("Plan {p}'s lead ({lead})"),
                    None => format!("Plan {p}'s lead"),
                },
                None => format!("the commander ({})", i.commander()),
            },
            (Principal::Replaced, _) => match replaced {
                Some(u) => format!("the person on call whom it replaces ({u})"),
                None => p.to_string(),
            },
            (Principal::Lead, None) => match plan {
                Some(p) => format!("Plan {p}'s lead"),
                None => "the commander".into(),
            },
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let list = roles
        .iter()
        .map(RoleKey::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let held = match standing {
        Standing::Outsider if inc.is_some() => format!(
            "{} holds no role in this war room (the SDM or the commander can add them with /participant add)",
            actor.user
        ),
        Standing::Outsider => format!("{} holds no role on the roster", actor.user),
        Standing::External => format!(
            "{} is {}: facilities and vendor staff post /update and /vendor news, tick checklists and read /incident status, /timeline and /report, and everything else is for staff, even where an incident names them lead, commander or SDM. Answer a silence nudge with /update, and ask {} or the SDM for the rest",
            actor.user,
            external_label(&roles),
            inc.map_or("the commander".to_string(), |i| format!(
                "the commander ({})",
                i.commander()
            ))
        ),
        Standing::Staff => format!("{} holds {list}", actor.user),
    };
    refuse(
        RefusalKind::NotAllowed,
        format!("/{path} is refused: it is for {allowed}, and {held}."),
    )
}

/// A decision in progress: the incident being changed plus what to record and send.
pub(super) struct Work<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) inc: Incident,
    pub(super) events: Vec<Event>,
    pub(super) messages: Vec<Message>,
    pub(super) actor: Option<UserName>,
    /// A timer was left out because its time could not be represented: a command that gets
    /// here is refused; a fired timer goes on without it.
    pub(super) beyond_time: bool,
}

impl<'a> Work<'a> {
    pub(super) fn new(ctx: &'a Ctx<'a>, inc: Incident, actor: Option<&UserName>) -> Work<'a> {
        Work {
            ctx,
            inc,
            events: Vec::new(),
            messages: Vec::new(),
            actor: actor.cloned(),
            beyond_time: false,
        }
    }

    /// `from + after`, for a timer; None (and the decision marked `beyond_time`) when it
    /// cannot be represented.
    pub(super) fn after(&mut self, from: DateTime<Utc>, after: TimeDelta) -> Option<DateTime<Utc>> {
        let t = later(from, after);
        self.beyond_time |= t.is_none();
        t
    }

    /// The finished decision of a command, or its refusal if a timer fell beyond time.
    pub(super) fn finish_command(self, reply: String) -> Result<Decision, Refusal> {
        if self.beyond_time {
            return refuse(RefusalKind::Invalid, BEYOND_TIME);
        }
        Ok(self.finish(reply))
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    pub(super) fn sp(&self) -> &'a SeverityPolicy {
        self.ctx.policy.for_severity(self.inc.severity)
    }

    pub(super) fn finish(self, reply: String) -> Decision {
        Decision {
            incident: self.inc,
            events: self.events,
            messages: self.messages,
            reply,
        }
    }

    pub(super) fn next_seq(&mut self) -> u32 {
        self.inc.next_seq = self.inc.next_seq.saturating_add(1);
        self.inc.next_seq
    }

    pub(super) fn event(&mut self, kind: EventKind, text: impl Into<String>) {
        let seq = self.inc.timeline_len;
        self.inc.timeline_len = self.inc.timeline_len.saturating_add(1);
        self.events.push(Event {
            seq,
            at: self.now(),
            actor: self.actor.clone(),
            kind,
            text: text.into(),
        });
    }

    pub(super) fn drill_mark(&self, text: String) -> String {
        if self.inc.is_drill() {
            format!("[DRILL] {text}")
        } else {
            text
        }
    }

    pub(super) fn post(&mut self, kind: MessageKind, text: String, mentions: Vec<Target>) {
        let text = self.drill_mark(text);
        self.messages.push(Message {
            at: self.now(),
            kind,
            text,
            mentions,
            buttons: Vec::new(),
            nudge: None,
        });
    }

    pub(super) fn add_timer(&mut self, due: DateTime<Utc>, kind: TimerKind) {
        let seq = TimerSeq(self.next_seq());
        self.inc.timers.push(PendingTimer { seq, due, kind });
    }

    pub(super) fn cancel_timers(&mut self, pred: impl Fn(&TimerKind) -> bool) {
        self.inc.timers.retain(|t| !pred(&t.kind));
    }

    pub(super) fn tier_target(&self, tier: Tier) -> Target {
        match self.inc.assignments.get(&IncidentRole::Lead(tier)) {
            Some(u) => Target::User(u.clone()),
            None => Target::Role(tier.role()),
        }
    }

    pub(super) fn sdm_target(&self) -> Target {
        match self.inc.assignments.get(&IncidentRole::Sdm) {
            Some(u) => Target::User(u.clone()),
            None => Target::Role(RoleKey::sdm()),
        }
    }

    pub(super) fn cadence(&self, track: &Track) -> Option<TimeDelta> {
        match track.cadence {
            Cadence::Custom(d) => Some(d),
            Cadence::Policy => self.sp().update_cadence,
        }
    }

    /// How often a nudge repeats: a handover card follows its track's cadence.
    pub(super) fn repeat_interval(&self, kind: &NudgeKind) -> Option<TimeDelta> {
        match kind {
            NudgeKind::Handover { plan: Some(p) } => self
                .inc
                .tracks
                .get(p)
                .and_then(|t| self.cadence(t))
                .or(self.sp().nudge_repeat),
            NudgeKind::Handover { plan: None } => {
                self.sp().update_cadence.or(self.sp().nudge_repeat)
            }
            _ => self.sp().nudge_repeat,
        }
    }

    pub(super) fn buttons_for(&self, kind: &NudgeKind) -> Vec<Button> {
        let mut b = vec![Button::Ack, Button::Snooze15m];
        match kind {
            NudgeKind::PlanBDue => b = vec![Button::OpenPlanB, Button::Snooze15m],
            NudgeKind::Handover { .. } => b = vec![Button::Ack],
            // Confirming a resolve is /incident resolve, or an acknowledgement that it is not
            // over yet; escalating or starting Plan B are no answer to it.
            NudgeKind::ConfirmResolved => b = vec![Button::Ack, Button::Snooze15m],
            _ => {
                if self.inc.tier != Tier::L3 {
                    b.push(Button::Escalate);
                }
                if self.inc.plan_b == PlanBDecision::Pending
                    && !self.inc.tracks.contains_key(&Plan::B)
                {
                    b.push(Button::OpenPlanB);
                }
            }
        }
        b
    }

    /// The number the next raised nudge gets: 1, 2, 3… within the incident, so people can say
    /// `/ack nudge:3`.
    pub(super) fn next_nudge_id(&self) -> NudgeId {
        NudgeId(u32::try_from(self.inc.nudges.len()).map_or(u32::MAX, |n| n.saturating_add(1)))
    }

    /// Raises a nudge: posts it now and schedules its repeat.
    pub(super) fn raise(&mut self, kind: NudgeKind, targets: Vec<Target>, text: String) -> NudgeId {
        let id = self.next_nudge_id();
        let now = self.now();
        self.send_nudge(id, &kind, &targets, format!("Nudge {id} · {text}"), 1, "to");
        if let Some(every) = self.repeat_interval(&kind)
            && let Some(due) = self.after(now, every)
        {
            self.add_timer(due, TimerKind::NudgeRepeat { nudge: id });
        }
        self.inc.nudges.push(Nudge {
            id,
            kind,
            targets,
            text,
            raised_at: now,
            last_sent: now,
            sends: 1,
            snoozed_until: None,
            state: NudgeState::Open,
            from: None,
            stopped_at: None,
        });
        id
    }

    /// Posts a nudge (first send or a repeat) and records it on the timeline.
    pub(super) fn send_nudge(
        &mut self,
        id: NudgeId,
        kind: &NudgeKind,
        targets: &[Target],
        text: String,
        send: u32,
        verb: &str,
    ) {
        let buttons = self.buttons_for(kind);
        let text = self.drill_mark(text);
        self.messages.push(Message {
            at: self.now(),
            kind: MessageKind::Nudge,
            text,
            mentions: self.ctx.with_on_call(targets),
            buttons,
            nudge: Some(id),
        });
        let who = targets
            .iter()
            .map(Target::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        self.event(
            EventKind::Nudged {
                nudge: id,
                repeat: send,
            },
            format!("nudge {id} ({}) {verb} {who}", kind.label()),
        );
    }

    /// Closes every open nudge that matches, and stops its repeats.
    pub(super) fn answer(&mut self, pred: impl Fn(&NudgeKind) -> bool, how: &str) -> Vec<NudgeId> {
        let now = self.now();
        let by = self.actor.clone();
        let mut closed = Vec::new();
        for n in self.inc.nudges.iter_mut() {
            if n.is_open() && pred(&n.kind) {
                n.state = NudgeState::Answered {
                    at: now,
                    by: by.clone(),
                    how: how.to_string(),
                };
                closed.push(n.id);
            }
        }
        self.cancel_timers(
            |k| matches!(k, TimerKind::NudgeRepeat { nudge } if closed.contains(nudge)),
        );
        closed
    }

    /// A vendor case got news or closed: its callback timer and nudge are done with.
    pub(super) fn settle_callback(&mut self, case: &str, how: &str) {
        let kind = TimerKind::VendorCallback {
            case: case.to_string(),
        };
        self.cancel_timers(|k| *k == kind);
        let nudge = NudgeKind::VendorCallback {
            case: case.to_string(),
        };
        self.answer(|k| *k == nudge, how);
    }

    /// Moves the incident into a tier: new budget timer, pickup nudge, SDM alert if due.
    pub(super) fn enter_tier(&mut self, to: Tier, why: &str, auto: bool) {
        let from = self.inc.tier;
        let now = self.now();
        self.inc.tier = to;
        self.inc.tier_entered_at = now;
        self.cancel_timers(|k| matches!(k, TimerKind::TierBudget { .. }));
        self.answer(
            |k| matches!(k, NudgeKind::TierPickup { .. }),
            &format!("superseded by the escalation to {to}"),
        );
        let next = match (self.sp().budget(to), to.next()) {
            (Some(budget), Some(next)) => match self.after(now, budget) {
                Some(due) => {
                    self.add_timer(due, TimerKind::TierBudget { tier: to });
                    format!(" Auto-escalation to {next} at {}.", clock(due))
                }
                None => String::new(),
            },
            _ => String::new(),
        };
        self.event(
            EventKind::Escalated { from, to, auto },
            format!("escalated {from} → {to}: {why}"),
        );
        // Plan A belongs to whichever tier holds the incident: its silence nudges follow.
        let plan_a_lead = self.inc.assignments.get(&IncidentRole::Lead(to)).cloned();
        if let Some(a) = self.inc.tracks.get_mut(&Plan::A)
            && a.state == TrackState::Active
            && a.handover.is_none()
        {
            a.team = Some(to.role());
            a.lead = plan_a_lead;
        }
        let target = self.tier_target(to);
        self.raise(
            NudgeKind::TierPickup { tier: to },
            vec![target.clone()],
            format!(
                "{} escalated {from} → {to} ({why}). {target}: you own it now, Plan A included; acknowledge with /ack.{next}",
                self.inc.id
            ),
        );
        self.maybe_alert_sdm();
    }

    pub(super) fn maybe_alert_sdm(&mut self) {
        let Some(alert_tier) = self.sp().sdm_alert_tier else {
            return;
        };
        if self.inc.tier < alert_tier || self.inc.sdm_alerted_at.is_some() {
            return;
        }
        self.inc.sdm_alerted_at = Some(self.now());
        let sdm = self.sdm_target();
        let tracks = self
            .inc
            .active_tracks()
            .map(|t| {
                let last = match &t.last_update {
                    Some(u) => format!("last update {}: {}", clock(u.at), u.text),
                    None => "no update yet".into(),
                };
                format!(
                    "Plan {} ({}) {last}",
                    t.plan,
                    t.lead.as_ref().map_or("no lead".into(), |l| l.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let deadline = match (&self.inc.plan_b, self.sp().plan_b_after) {
            (PlanBDecision::Pending, Some(after)) => later(self.inc.opened_at, after)
                .map_or(String::new(), |t| format!(" Plan B deadline {}.", clock(t))),
            _ => String::new(),
        };
        self.event(
            EventKind::SdmAlerted,
            format!("SDM alerted at {}", self.inc.tier),
        );
        self.raise(
            NudgeKind::SdmAlert,
            vec![sdm.clone()],
            format!(
                "SDM alert: {} ({}, {}) is at {}. {tracks}.{deadline} {sdm}: acknowledge with /ack.",
                self.inc.id, self.inc.title, self.inc.severity, self.inc.tier
            ),
        );
    }

    pub(super) fn silence_targets(&self, track: &Track) -> Vec<Target> {
        let mut targets = vec![match (&track.lead, &track.team) {
            (Some(lead), _) => Target::User(lead.clone()),
            (None, Some(team)) => Target::Role(team.clone()),
            (None, None) => self.tier_target(self.inc.tier),
        }];
        if let Some(h) = &track.handover {
            targets.push(Target::User(h.to.clone()));
        }
        targets
    }

    pub(super) fn arm_silence(&mut self, plan: Plan, from: DateTime<Utc>) {
        self.cancel_timers(|k| *k == TimerKind::TrackSilence { plan });
        let cadence = self.inc.tracks.get(&plan).and_then(|t| self.cadence(t));
        if let Some(c) = cadence
            && let Some(due) = self.after(from, c)
        {
            self.add_timer(due, TimerKind::TrackSilence { plan });
        }
    }

    /// After a severity change: every pending timer is recomputed from the new policy.
    /// Deadlines that already passed are due now, so they fire at once.
    pub(super) fn recompute_timers(&mut self) {
        let now = self.now();
        let at_least_now = |t: DateTime<Utc>| t.max(now);
        let sp = self.sp();
        let tier = self.inc.tier;
        self.cancel_timers(|k| matches!(k, TimerKind::TierBudget { .. }));
        if let Some(b) = sp.budget(tier)
            && let Some(due) = self.after(self.inc.tier_entered_at, b)
        {
            self.add_timer(at_least_now(due), TimerKind::TierBudget { tier });
        }
        let plan_b_pending = self.inc.plan_b == PlanBDecision::Pending
            && !self
                .inc
                .nudges
                .iter()
                .any(|n| n.kind == NudgeKind::PlanBDue);
        self.cancel_timers(|k| *k == TimerKind::PlanBDeadline);
        if plan_b_pending
            && let Some(after) = sp.plan_b_after
            && let Some(due) = self.after(self.inc.opened_at, after)
        {
            self.add_timer(at_least_now(due), TimerKind::PlanBDeadline);
        }
        let plans: Vec<(Plan, DateTime<Utc>)> = self
            .inc
            .active_tracks()
            .map(|t| (t.plan, t.last_activity))
            .collect();
        for (plan, last) in plans {
            self.cancel_timers(|k| *k == TimerKind::TrackSilence { plan });
            let cadence = self.inc.tracks.get(&plan).and_then(|t| self.cadence(t));
            if let Some(c) = cadence
                && let Some(due) = self.after(last, c)
            {
                self.add_timer(at_least_now(due), TimerKind::TrackSilence { plan });
            }
        }
        type OpenNudge = (NudgeId, NudgeKind, DateTime<Utc>, Option<DateTime<Utc>>);
        let open: Vec<OpenNudge> = self
            .inc
            .nudges
            .iter()
            .filter(|n| n.is_repeating())
            .map(|n| (n.id, n.kind.clone(), n.last_sent, n.snoozed_until))
            .collect();
        for (id, kind, last_sent, snoozed) in open {
            self.cancel_timers(|k| *k == TimerKind::NudgeRepeat { nudge: id });
            let due = match (snoozed, self.repeat_interval(&kind)) {
                (Some(until), _) if until > now => Some(until),
                (_, Some(every)) => self.after(last_sent, every).map(at_least_now),
                (_, None) => None,
            };
            if let Some(due) = due {
                self.add_timer(due, TimerKind::NudgeRepeat { nudge: id });
            }
        }
        self.maybe_alert_sdm();
    }

    pub(super) fn user_on_roster(&self, user: &UserName, option: &str) -> Result<(), Refusal> {
        if self.ctx.policy.roster.contains(user) {
            Ok(())
        } else {
            refuse(
                RefusalKind::Invalid,
                format!(
                    "option '{option}': '{user}' is not on the roster; known people: {}",
                    self.ctx.policy.roster.names()
                ),
            )
        }
    }

    /// Refuses to make `user` hold `position` (lead a plan, be the SDM, commander or a tier
    /// lead, take over a plan or the incident) when they are facilities or vendor staff: every
    /// position runs privileged commands, and those are for staff. `instead` says what to do.
    pub(super) fn staff_only(
        &self,
        user: &UserName,
        option: &str,
        position: &str,
        instead: &str,
    ) -> Result<(), Refusal> {
        if standing_of(self.ctx.policy, &self.inc, user) != Standing::External {
            return Ok(());
        }
        let mut roles = self.ctx.policy.roster.roles_of(user);
        roles.extend(self.inc.participants.get(user).cloned());
        refuse(
            RefusalKind::NotAllowed,
            format!(
                "option '{option}': {user} is {}, and facilities and vendor staff cannot {position}: that runs privileged commands, which are for staff. {instead}",
                external_label(&roles)
            ),
        )
    }

    /// The positions `user` holds in this incident, for people: `the commander`, `Plan B's lead`.
    pub(super) fn positions_of(&self, user: &UserName) -> Vec<String> {
        let inc = &self.inc;
        let mut out = Vec::new();
        if inc.commander() == user {
            out.push("the commander".to_string());
        }
        for (role, u) in &inc.assignments {
            if u == user && *role != IncidentRole::Commander {
                out.push(format!("the {role}"));
            }
        }
        for t in inc.active_tracks() {
            if t.lead.as_ref() == Some(user) {
                out.push(format!("Plan {}'s lead", t.plan));
            }
            if t.handover.as_ref().is_some_and(|h| h.to == *user) {
                out.push(format!("taking over Plan {}", t.plan));
            }
        }
        if inc.handover.as_ref().is_some_and(|h| h.to == *user) {
            out.push(format!("taking over {}", inc.id));
        }
        out
    }

    /// The active track, to change: refused as `active_track` is.
    pub(super) fn active_track_mut(&mut self, plan: Plan) -> Result<&mut Track, Refusal> {
        self.active_track(plan)?;
        match self.inc.tracks.get_mut(&plan) {
            Some(t) => Ok(t),
            None => refuse(RefusalKind::Conflict, format!("Plan {plan} is not open")),
        }
    }

    pub(super) fn active_track(&self, plan: Plan) -> Result<&Track, Refusal> {
        match self.inc.tracks.get(&plan) {
            Some(t) if t.state == TrackState::Active => Ok(t),
            Some(t) => refuse(
                RefusalKind::Conflict,
                format!("Plan {plan} is {}; it takes no more changes", t.state),
            ),
            None => {
                let open = self
                    .inc
                    .active_tracks()
                    .map(|t| t.plan.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                refuse(
                    RefusalKind::Conflict,
                    format!(
                        "Plan {plan} is not open in {}; open plans: {open}",
                        self.inc.id
                    ),
                )
            }
        }
    }
}

/// Opens a new incident: Plan A, the L1 budget, the Plan B deadline, the silence timer.
pub fn open(
    ctx: &Ctx,
    actor: &Actor,
    id: IncidentId,
    title: &str,
    severity: Severity,
    service: &str,
    exercise: Exercise,
) -> Result<Decision, Refusal> {
    authorize(ctx, actor, None, "incident open", None, None)?;
    let (mut w, schedule) = opening(
        ctx,
        &actor.user,
        Some(&actor.user),
        id,
        title,
        severity,
        service,
        exercise,
    )?;
    let kind = if exercise == Exercise::Drill {
        "DR drill"
    } else {
        "incident"
    };
    let (title, service) = (w.inc.title.clone(), w.inc.service.clone());
    w.post(
        MessageKind::Post,
        format!(
            "{id} opened by {}: {title} · {severity} · service {service} · {kind}. L1 owns it; Plan A (troubleshoot) is led by {}.{schedule}",
            actor.user, actor.user
        ),
        vec![Target::Role(Tier::L1.role())],
    );
    w.maybe_alert_sdm();
    let channel = w.inc.channel.clone();
    w.finish_command(format!("Opened {id} ({severity}) in #{channel}."))
}

/// A new incident with Plan A, the L1 budget, the Plan B deadline and the silence timer, and
/// its `Opened` event; no post yet. Returns the work and the schedule, for the opening post.
/// The caller has authorised `opener`; `lead` leads Plan A (none: L1 as a team).
#[allow(clippy::too_many_arguments)]
pub(super) fn opening<'a>(
    ctx: &'a Ctx<'a>,
    opener: &UserName,
    lead: Option<&UserName>,
    id: IncidentId,
    title: &str,
    severity: Severity,
    service: &str,
    exercise: Exercise,
) -> Result<(Work<'a>, String), Refusal> {
    let title = title.trim();
    let service = service.trim();
    if title.is_empty() || service.is_empty() {
        return refuse(
            RefusalKind::Invalid,
            "/incident open needs a non-empty title and service",
        );
    }
    let now = ctx.now;
    let plan_a = Track {
        lead: lead.cloned(),
        team: Some(Tier::L1.role()),
        ..Track::new(
            Plan::A,
            "Troubleshoot and restore the service".into(),
            opener.clone(),
            now,
            Cadence::Policy,
        )
    };
    let inc = Incident {
        id,
        title: title.to_string(),
        service: service.to_string(),
        severity,
        exercise,
        opener: opener.clone(),
        channel: channel_name(id, title, exercise),
        opened_at: now,
        state: IncidentState::Open,
        tier: Tier::L1,
        tier_entered_at: now,
        sdm_alerted_at: None,
        plan_b: PlanBDecision::Pending,
        assignments: Default::default(),
        tracks: [(Plan::A, plan_a)].into_iter().collect(),
        nudges: Vec::new(),
        timers: Vec::new(),
        snoozes: Vec::new(),
        vendor_cases: Vec::new(),
        handover: None,
        participants: Default::default(),
        alert: None,
        next_seq: 0,
        timeline_len: 0,
    };
    let mut w = Work::new(ctx, inc, Some(opener));
    let sp = w.sp();
    let mut plan_lines = Vec::new();
    if let Some(b) = sp.l1_budget
        && let Some(due) = w.after(now, b)
    {
        w.add_timer(due, TimerKind::TierBudget { tier: Tier::L1 });
        plan_lines.push(format!("L2 at {} unless resolved", clock(due)));
    }
    if let Some(after) = sp.plan_b_after
        && let Some(due) = w.after(now, after)
    {
        w.add_timer(due, TimerKind::PlanBDeadline);
        plan_lines.push(format!("Plan B deadline {}", clock(due)));
    }
    if let Some(c) = sp.update_cadence
        && let Some(due) = w.after(now, c)
    {
        w.add_timer(due, TimerKind::TrackSilence { plan: Plan::A });
        plan_lines.push(format!("Plan A updates every {}", human(c)));
    }
    w.event(
        EventKind::Opened,
        format!("opened {id} ({severity}, {service}): {title}"),
    );
    if let Some(svc) = ctx.policy.services.get(service)
        && !svc.runbook.is_empty()
    {
        plan_lines.push(format!("DR runbook: {}", svc.runbook.join(" ")));
    }
    let schedule = if plan_lines.is_empty() {
        String::new()
    } else {
        format!(" {}.", plan_lines.join("; "))
    };
    Ok((w, schedule))
}

/// The nudge to the SDM that a service's DR drill is due.
pub fn drill_due(
    service: &str,
    every: TimeDelta,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Message {
    let late = now - due;
    let lateness = if late > LATE_NOTICE {
        format!(
            " (fired {} late: warroom was not running when it fell due)",
            human(late)
        )
    } else {
        String::new()
    };
    let sdm = Target::Role(RoleKey::sdm());
    Message {
        at: now,
        kind: MessageKind::Nudge,
        text: format!(
            "DR drill due for service {service} (policy: every {}; due {}){lateness}. {sdm}: start it with the button, or /incident open title:\"DR drill: {service}\" severity:2 service:{service} drill:true",
            human(every),
            clock(due)
        ),
        mentions: vec![sdm],
        buttons: vec![Button::StartDrill {
            service: service.to_string(),
        }],
        nudge: None,
    }
}

pub use super::alert::{alert_open, alert_update};
pub use super::handle::{handle, shift_handover};

/// Fires one of the incident's timers. The timer is consumed whatever it decides.
pub fn fire(ctx: &Ctx, inc: &Incident, seq: TimerSeq) -> Decision {
    let mut w = Work::new(ctx, inc.clone(), None);
    let Some(pos) = w.inc.timers.iter().position(|t| t.seq == seq) else {
        return w.finish(String::new());
    };
    let timer = w.inc.timers.remove(pos);
    if !w.inc.is_open() {
        return w.finish(String::new());
    }
    let now = ctx.now;
    let lateness = late_note(now, timer.due);
    let id = w.inc.id;
    match timer.kind {
        TimerKind::TierBudget { tier } => {
            if w.inc.tier == tier
                && let Some(next) = tier.next()
            {
                let budget = w
                    .sp()
                    .budget(tier)
                    .map_or(String::new(), |b| format!(" of {}", human(b)));
                let why = format!(
                    "auto: the {tier} budget{budget} for {} ran out{lateness}",
                    w.inc.severity
                );
                w.enter_tier(next, &why, true);
            }
        }
        TimerKind::PlanBDeadline => {
            if w.inc.plan_b == PlanBDecision::Pending && !w.inc.tracks.contains_key(&Plan::B) {
                let sdm = w.sdm_target();
                let after = w.sp().plan_b_after.map_or(String::new(), |a| {
                    format!(" ({} policy: {})", w.inc.severity, human(a))
                });
                let plan_a = w
                    .inc
                    .tracks
                    .get(&Plan::A)
                    .and_then(|t| t.last_update.as_ref())
                    .map_or("no Plan A update yet".into(), |u| {
                        format!("Plan A's last update {}: {}", clock(u.at), u.text)
                    });
                w.raise(
                    NudgeKind::PlanBDue,
                    vec![sdm.clone()],
                    format!(
                        "Plan B deadline reached for {id}: open {} and unresolved{after}{lateness}. {plan_a}. {sdm}: start Plan B now (/plan open plan:B title:… lead:… team:…) or record why not (/plan decline reason:…).",
                        human(now - w.inc.opened_at)
                    ),
                );
            }
        }
        TimerKind::TrackSilence { plan } => {
            let track = w.inc.tracks.get(&plan).cloned();
            if let Some(track) = track.filter(|t| t.state == TrackState::Active) {
                let already = w
                    .inc
                    .nudges
                    .iter()
                    .any(|n| n.is_open() && n.kind == NudgeKind::TrackSilent { plan });
                if !already {
                    let targets = w.silence_targets(&track);
                    let since = match &track.last_update {
                        Some(u) => format!("last update {}", clock(u.at)),
                        None => format!("no update since it opened at {}", clock(track.opened_at)),
                    };
                    let who = targets
                        .iter()
                        .map(Target::to_string)
                        .collect::<Vec<_>>()
                        .join(" ");
                    w.raise(
                        NudgeKind::TrackSilent { plan },
                        targets,
                        format!(
                            "Plan {plan} ({}) has been silent for {} ({since}){lateness}. {who}: post an update with /update plan:{plan} text:…",
                            track.title,
                            human(now - track.last_activity)
                        ),
                    );
                }
                if let Some(c) = w.cadence(&track)
                    && let Some(due) = w.after(now, c)
                {
                    w.add_timer(due, TimerKind::TrackSilence { plan });
                }
            }
        }
        TimerKind::NudgeRepeat { nudge } => w.remind(nudge, timer.due),
        TimerKind::VendorCallback { case } => {
            let vc = w
                .inc
                .vendor_cases
                .iter_mut()
                .find(|c| c.case == case && c.closed_at.is_none());
            if let Some(vc) = vc
                && vc.callback_outcome == CallbackOutcome::Waiting
            {
                vc.callback_outcome = CallbackOutcome::Missed;
                let vendor = vc.vendor.clone();
                let since = vc.added_at;
                let lead = w.tier_target(w.inc.tier);
                let sdm = w.sdm_target();
                w.event(
                    EventKind::VendorCallbackMissed,
                    format!(
                        "{vendor} case {case}: callback due {} missed",
                        clock(timer.due)
                    ),
                );
                w.raise(
                    NudgeKind::VendorCallback { case: case.clone() },
                    vec![lead.clone(), sdm.clone()],
                    format!(
                        "{vendor} promised a callback on case {case} by {}; nothing recorded since {}{lateness}. {lead} {sdm}: chase the vendor, then /vendor update case:{case} text:…",
                        clock(timer.due),
                        clock(since)
                    ),
                );
            }
        }
    }
    w.finish(String::new())
}
