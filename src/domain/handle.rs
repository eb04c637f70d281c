//! The engine's command handlers: `/incident`, `/escalate`, `/plan`, `/update`, `/ack`,
//! `/snooze`, `/role`, `/handover` and `/vendor`, each turned into a decision on one incident.

use chrono::TimeDelta;

use super::command::{Command, Deadline};
use super::engine::{
    Actor, BEYOND_TIME, Button, Ctx, Decision, Message, MessageKind, Refusal, RefusalKind, Work,
    authorize, clock, effective_roles, human, later, refuse, targets_actor,
};
use super::model::*;
use super::policy::{Standing, external_label};

const OPEN_ACTS_ON_NONE: &str = "/incident open starts a new incident; it does not act on one";

/// Runs a command against an open incident.
pub fn handle(
    ctx: &Ctx,
    actor: &Actor,
    inc: &Incident,
    cmd: &Command,
) -> Result<Decision, Refusal> {
    if let Command::Open { .. } = cmd {
        return refuse(RefusalKind::Conflict, OPEN_ACTS_ON_NONE);
    }
    if !inc.is_open() {
        return refuse(
            RefusalKind::Conflict,
            format!(
                "{} is resolved; /{} needs an open incident",
                inc.id,
                cmd.path()
            ),
        );
    }
    // Ack and snooze are authorised against the nudge they answer, below.
    if !matches!(cmd, Command::Ack { .. } | Command::Snooze { .. }) {
        authorize(ctx, actor, Some(inc), cmd.path(), cmd.plan(), None)?;
    }
    let mut w = Work::new(ctx, inc.clone(), Some(&actor.user));
    let now = ctx.now;
    let who = actor.user.clone();
    let id = inc.id;
    let reply = match cmd {
        Command::Open { .. } => return refuse(RefusalKind::Conflict, OPEN_ACTS_ON_NONE),
        Command::Severity { level, reason } => {
            let from = w.inc.severity;
            if *level == from {
                return refuse(RefusalKind::Conflict, format!("{id} is already {from}"));
            }
            w.inc.severity = *level;
            w.recompute_timers();
            w.event(
                EventKind::SeverityChanged { from, to: *level },
                format!("severity {from} → {level}: {reason}"),
            );
            let next = w
                .inc
                .next_timers()
                .first()
                .map(|t| format!(" Next: {} at {}.", t.kind.label(), clock(t.due)))
                .unwrap_or_default();
            w.post(
                MessageKind::Post,
                format!("{id} severity {from} → {level} by {who}: {reason}. Timers recomputed from the {level} policy.{next}"),
                vec![],
            );
            format!("{id} is now {level}; its timers follow the {level} policy.")
        }
        Command::Resolve { summary, plan } => {
            let winner = match plan {
                Some(p) => {
                    if !w.inc.tracks.contains_key(p) {
                        return refuse(
                            RefusalKind::Invalid,
                            format!("option 'plan': Plan {p} was never opened in {id}"),
                        );
                    }
                    Some(*p)
                }
                None if w.inc.tracks.len() == 1 => Some(Plan::A),
                None => None,
            };
            resolve(&mut w, &who, summary, winner);
            let by_plan = winner.map_or(String::new(), |p| format!(" by Plan {p}"));
            format!("{id} resolved{by_plan}; every timer is cancelled.")
        }
        Command::Escalate { tier, reason } => {
            let current = w.inc.tier;
            let to = match tier {
                Some(t) if *t <= current => {
                    return refuse(
                        RefusalKind::Conflict,
                        format!(
                            "{id} is already at {current}; /escalate moves up only, to a higher tier than {current}"
                        ),
                    );
                }
                Some(t) => *t,
                None => match current.next() {
                    Some(n) => n,
                    None => {
                        return refuse(
                            RefusalKind::Conflict,
                            format!("{id} is already at L3, the highest tier"),
                        );
                    }
                },
            };
            w.enter_tier(to, &format!("by {who}: {reason}"), false);
            format!("{id} escalated {current} → {to}.")
        }
        Command::PlanOpen {
            plan,
            title,
            lead,
            team,
            cadence,
        } => {
            let template = ctx
                .policy
                .services
                .get(&w.inc.service)
                .and_then(|s| s.plans.get(plan));
            let title = match (title, template) {
                (Some(t), _) => t.clone(),
                (None, Some(t)) => t.title.clone(),
                (None, None) => {
                    return refuse(
                        RefusalKind::Invalid,
                        format!(
                            "option 'title' is needed: service '{}' has no Plan {plan} template",
                            w.inc.service
                        ),
                    );
                }
            };
            let team = team
                .clone()
                .or_else(|| template.and_then(|t| t.lead_role.clone()));
            let cadence = cadence.or_else(|| template.and_then(|t| t.cadence));
            let checklist: Vec<ChecklistItem> = template
                .filter(|t| title == t.title)
                .map(|t| {
                    t.checklist
                        .iter()
                        .map(|text| ChecklistItem {
                            text: text.clone(),
                            done: None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let (title, team) = (&title, &team);
            if *plan == Plan::A {
                return refuse(
                    RefusalKind::Conflict,
                    "Plan A opens with the incident; open B, C or D",
                );
            }
            if let Some(t) = w.inc.tracks.get(plan) {
                return refuse(
                    RefusalKind::Conflict,
                    format!(
                        "Plan {plan} already exists in {id} ({}); choose another letter",
                        t.state
                    ),
                );
            }
            if let Some(l) = lead {
                w.user_on_roster(l, "lead")?;
                w.staff_only(
                    l,
                    "lead",
                    "lead a plan",
                    &format!(
                        "Open Plan {plan} with a staff lead, then add {l} to its team (/plan assign plan:{plan} member:{l}); {l} can post /update plan:{plan} text:… either way."
                    ),
                )?;
            }
            if let Some(t) = team
                && !ctx.policy.knows_role(t)
            {
                return refuse(
                    RefusalKind::Invalid,
                    format!(
                        "option 'team': '{t}' is not a known role; known roles: {}",
                        ctx.policy.known_roles()
                    ),
                );
            }
            if let Some(c) = cadence
                && c < TimeDelta::minutes(1)
            {
                return refuse(
                    RefusalKind::Invalid,
                    "option 'cadence': it must be at least 1m",
                );
            }
            w.inc.tracks.insert(
                *plan,
                Track {
                    lead: lead.clone(),
                    team: team.clone(),
                    checklist: checklist.clone(),
                    ..Track::new(
                        *plan,
                        title.clone(),
                        who.clone(),
                        now,
                        cadence.map_or(Cadence::Policy, Cadence::Custom),
                    )
                },
            );
            w.arm_silence(*plan, now);
            if *plan == Plan::B && w.inc.plan_b == PlanBDecision::Pending {
                w.inc.plan_b = PlanBDecision::Opened { at: now };
                w.cancel_timers(|k| *k == TimerKind::PlanBDeadline);
                w.answer(|k| *k == NudgeKind::PlanBDue, "Plan B opened");
            }
            let mut mentions = Vec::new();
            if let Some(l) = lead {
                mentions.push(Target::User(l.clone()));
            }
            if let Some(t) = team {
                mentions.push(Target::Role(t.clone()));
            }
            let every = w
                .inc
                .tracks
                .get(plan)
                .and_then(|t| w.cadence(t))
                .map_or("no update cadence".into(), |c| {
                    format!("updates every {}", human(c))
                });
            w.event(
                EventKind::PlanOpened { plan: *plan },
                format!("Plan {plan} opened: {title}"),
            );
            let staff = format!(
                "lead {}, team {}",
                lead.as_ref()
                    .map_or("unassigned".into(), |l| format!("@{l}")),
                team.as_ref()
                    .map_or("unassigned".into(), |t| format!("@{t}"))
            );
            w.post(
                MessageKind::Post,
                format!("Plan {plan} opened by {who}: {title} · {staff} · {every}. It runs in parallel with the other plans."),
                mentions,
            );
            if !checklist.is_empty() {
                let items = checklist
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{}. [ ] {}", i + 1, c.text))
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = w.drill_mark(format!(
                    "Plan {plan} runbook checklist (tick with /plan check plan:{plan} item:N):\n{items}"
                ));
                w.messages.push(Message {
                    at: now,
                    kind: MessageKind::Card,
                    text,
                    mentions: Vec::new(),
                    buttons: (1..=checklist.len() as u32)
                        .map(|item| Button::Check { plan: *plan, item })
                        .collect(),
                    nudge: None,
                });
            }
            format!("Plan {plan} is open ({staff}).")
        }
        Command::PlanCheck { plan, item } => {
            let track = w.active_track(*plan)?;
            let n = track.checklist.len();
            if n == 0 {
                return refuse(
                    RefusalKind::Conflict,
                    format!("Plan {plan} has no checklist; it did not open from a template"),
                );
            }
            let idx = *item as usize;
            let Some(entry) = idx.checked_sub(1).and_then(|i| track.checklist.get(i)) else {
                return refuse(
                    RefusalKind::Invalid,
                    format!("option 'item': Plan {plan}'s checklist has items 1 to {n}"),
                );
            };
            if let Some((at, by)) = &entry.done {
                return refuse(
                    RefusalKind::Conflict,
                    format!(
                        "item {idx} of Plan {plan} was already ticked by {by} at {}",
                        clock(*at)
                    ),
                );
            }
            let text = entry.text.clone();
            let track = w.active_track_mut(*plan)?;
            if let Some(entry) = idx.checked_sub(1).and_then(|i| track.checklist.get_mut(i)) {
                entry.done = Some((now, who.clone()));
            }
            let done = track.checklist.iter().filter(|c| c.done.is_some()).count();
            w.event(
                EventKind::ChecklistTicked {
                    plan: *plan,
                    item: *item,
                },
                format!("Plan {plan} checklist {idx}/{n} done: {text}"),
            );
            w.post(
                MessageKind::Post,
                format!(
                    "{who} ticked Plan {plan} checklist item {idx}: {text} ({done} of {n} done)."
                ),
                vec![],
            );
            format!("Ticked item {idx} of Plan {plan} ({done} of {n} done).")
        }
        Command::PlanAssign { plan, lead, member } => {
            w.active_track(*plan)?;
            if lead.is_none() && member.is_none() {
                return refuse(
                    RefusalKind::Invalid,
                    "/plan assign needs 'lead' or 'member' (or both)",
                );
            }
            let mut said = Vec::new();
            let mut mentions = Vec::new();
            if let Some(l) = lead {
                w.user_on_roster(l, "lead")?;
                w.staff_only(
                    l,
                    "lead",
                    "lead a plan",
                    &format!(
                        "Keep a staff member as Plan {plan}'s lead and add {l} to its team instead (/plan assign plan:{plan} member:{l}); {l} can post /update plan:{plan} text:…"
                    ),
                )?;
                said.push(format!("lead {l}"));
                mentions.push(Target::User(l.clone()));
            }
            if let Some(m) = member {
                w.user_on_roster(m, "member")?;
                said.push(format!("member {m}"));
                mentions.push(Target::User(m.clone()));
            }
            let track = w.active_track_mut(*plan)?;
            if let Some(l) = lead {
                track.lead = Some(l.clone());
            }
            if let Some(m) = member
                && !track.members.contains(m)
            {
                track.members.push(m.clone());
            }
            let said = said.join(", ");
            w.event(
                EventKind::PlanAssigned { plan: *plan },
                format!("Plan {plan}: {said}"),
            );
            w.post(
                MessageKind::Post,
                format!("Plan {plan} staffed by {who}: {said}."),
                mentions,
            );
            format!("Plan {plan}: {said}.")
        }
        Command::PlanClose {
            plan,
            outcome,
            note,
        } => {
            let track = w.active_track_mut(*plan)?;
            track.state = *outcome;
            track.closed_at = Some(now);
            track.outcome_note = note.clone();
            track.handover = None;
            let plan = *plan;
            w.cancel_timers(|k| *k == TimerKind::TrackSilence { plan });
            w.answer(
                |k| {
                    matches!(k, NudgeKind::TrackSilent { plan: p } | NudgeKind::Handover { plan: Some(p) } if *p == plan)
                },
                "plan closed",
            );
            let note = note.as_ref().map_or(String::new(), |n| format!(": {n}"));
            w.event(
                EventKind::PlanClosed {
                    plan,
                    state: *outcome,
                },
                format!("Plan {plan} closed, {outcome}{note}"),
            );
            w.post(
                MessageKind::Post,
                format!("Plan {plan} closed by {who}: {outcome}{note}."),
                vec![],
            );
            format!("Plan {plan} is closed ({outcome}).")
        }
        Command::PlanDecline { reason } => {
            match &w.inc.plan_b {
                PlanBDecision::Pending => {}
                PlanBDecision::Opened { .. } => {
                    return refuse(
                        RefusalKind::Conflict,
                        format!("Plan B is already open in {id}"),
                    );
                }
                PlanBDecision::Declined { by, .. } => {
                    return refuse(
                        RefusalKind::Conflict,
                        format!("Plan B was already declined in {id} by {by}"),
                    );
                }
            }
            w.inc.plan_b = PlanBDecision::Declined {
                at: now,
                by: who.clone(),
                reason: reason.clone(),
            };
            w.cancel_timers(|k| *k == TimerKind::PlanBDeadline);
            w.answer(|k| *k == NudgeKind::PlanBDue, "Plan B declined");
            w.event(
                EventKind::PlanBDeclined,
                format!("Plan B declined: {reason}"),
            );
            w.post(
                MessageKind::Post,
                format!("{who} decided against Plan B: {reason}."),
                vec![],
            );
            "Plan B declined; its deadline nudges stop.".to_string()
        }
        Command::Update { text, plan } => {
            let plan = plan.unwrap_or(Plan::A);
            let track = w.active_track_mut(plan)?;
            track.last_activity = now;
            track.updates = track.updates.saturating_add(1);
            track.last_update = Some(TrackUpdate {
                at: now,
                by: who.clone(),
                text: text.clone(),
            });
            w.arm_silence(plan, now);
            w.answer(|k| *k == NudgeKind::TrackSilent { plan }, "update posted");
            w.event(EventKind::Update { plan }, format!("Plan {plan}: {text}"));
            w.post(
                MessageKind::Post,
                format!("Plan {plan} update from {who}: {text}"),
                vec![],
            );
            format!("Update posted to Plan {plan}.")
        }
        Command::Ack { nudge } => {
            let n = find_nudge(ctx, actor, &w.inc, *nudge, "ack")?.clone();
            if n.kind == NudgeKind::PlanBDue {
                return refuse(
                    RefusalKind::Conflict,
                    format!(
                        "nudge {} (Plan B deadline) is answered only by opening Plan B (/plan open plan:B title:…) or declining it (/plan decline reason:…)",
                        n.id
                    ),
                );
            }
            if let NudgeKind::Handover { plan } = &n.kind {
                accept_handover(&mut w, &n, *plan, actor)?;
            } else {
                w.answer(|k| *k == n.kind, &format!("acknowledged by {who}"));
                w.event(
                    EventKind::Acknowledged { nudge: n.id },
                    format!("{who} acknowledged nudge {} ({})", n.id, n.kind.label()),
                );
                w.post(
                    MessageKind::Post,
                    format!("{who} acknowledged nudge {} ({}).", n.id, n.kind.label()),
                    vec![],
                );
            }
            format!("Acknowledged nudge {} ({}).", n.id, n.kind.label())
        }
        Command::Snooze {
            duration,
            reason,
            nudge,
        } => {
            let n = find_nudge(ctx, actor, &w.inc, *nudge, "snooze")?.clone();
            if n.stopped_at.is_some() {
                return refuse(
                    RefusalKind::Conflict,
                    format!(
                        "nudge {} ({}) has stopped repeating, so there is nothing to snooze; it stays open until answered",
                        n.id,
                        n.kind.label()
                    ),
                );
            }
            let sp = w.sp();
            let sev = w.inc.severity;
            let (Some(max), Some(total)) = (sp.snooze_max, sp.snooze_total) else {
                return refuse(
                    RefusalKind::Invalid,
                    format!("snoozing is off for {sev} incidents"),
                );
            };
            if *duration > max {
                return refuse(
                    RefusalKind::Invalid,
                    format!(
                        "option 'duration': {} is longer than the {sev} limit of {} for one snooze",
                        human(*duration),
                        human(max)
                    ),
                );
            }
            // Stored snoozes are each within a cap, but a sum that overflows is taken as the
            // whole allowance used, never a panic.
            let used = w
                .inc
                .snoozes
                .iter()
                .try_fold(TimeDelta::zero(), |a, s| a.checked_add(&s.length))
                .unwrap_or(TimeDelta::MAX);
            let after = used.checked_add(duration).unwrap_or(TimeDelta::MAX);
            if after > total {
                let left = total
                    .checked_sub(&used)
                    .unwrap_or_default()
                    .max(TimeDelta::zero());
                return refuse(
                    RefusalKind::Invalid,
                    format!(
                        "option 'duration': {id} has used {} of its {} snooze allowance ({sev}); at most {} is left",
                        human(used),
                        human(total),
                        human(left)
                    ),
                );
            }
            let Some(until) = w.after(now, *duration) else {
                return refuse(RefusalKind::Invalid, BEYOND_TIME);
            };
            if let Some(nn) = w.inc.nudges.iter_mut().find(|x| x.id == n.id) {
                nn.snoozed_until = Some(until);
            }
            w.cancel_timers(|k| *k == TimerKind::NudgeRepeat { nudge: n.id });
            w.add_timer(until, TimerKind::NudgeRepeat { nudge: n.id });
            w.inc.snoozes.push(Snooze {
                at: now,
                by: who.clone(),
                nudge: n.id,
                length: *duration,
                reason: reason.clone(),
            });
            let count = w.inc.snoozes.len();
            w.event(
                EventKind::Snoozed { nudge: n.id },
                format!(
                    "{who} snoozed nudge {} ({}) for {}: {reason}",
                    n.id,
                    n.kind.label(),
                    human(*duration)
                ),
            );
            w.post(
                MessageKind::Post,
                format!(
                    "{who} snoozed nudge {} ({}) until {}: {reason}. Snooze {count} of this incident; {} of {} used.",
                    n.id,
                    n.kind.label(),
                    clock(until),
                    human(after),
                    human(total)
                ),
                vec![],
            );
            if count == 3 {
                let sdm = w.sdm_target();
                w.post(
                    MessageKind::Post,
                    format!("{sdm}: {id} has now been snoozed 3 times; latest by {who}: {reason}."),
                    vec![sdm.clone()],
                );
            }
            format!("Nudge {} snoozed until {}.", n.id, clock(until))
        }
        Command::RoleAssign { role, user } => {
            w.user_on_roster(user, "user")?;
            w.staff_only(
                user,
                "user",
                &format!("be the {role}"),
                &format!(
                    "Choose a staff member; {user} stays in the war room and posts /update and /vendor news."
                ),
            )?;
            w.inc.assignments.insert(*role, user.clone());
            w.event(EventKind::RoleAssigned, format!("{user} is {role}"));
            w.post(
                MessageKind::Post,
                format!("{who} made {user} the {role} of {id}."),
                vec![Target::User(user.clone())],
            );
            format!("{user} is now {role} of {id}.")
        }
        Command::ParticipantAdd { user, kind } => {
            if w.inc.participants.contains_key(user) {
                return refuse(
                    RefusalKind::Conflict,
                    format!("{user} is already in the {id} war room"),
                );
            }
            participant_kind_fits(&w, user, kind)?;
            let what = match kind.as_str() {
                "fm" => "on-site facilities (fm)",
                "vendor" => "vendor staff",
                _ => "staff",
            };
            w.inc.participants.insert(user.clone(), kind.clone());
            w.event(
                EventKind::ParticipantAdded,
                format!("{user} joined as {what}"),
            );
            w.post(
                MessageKind::Post,
                format!("{who} added {user} to the war room as {what}."),
                vec![Target::User(user.clone())],
            );
            format!("{user} is in the {id} war room as {what}.")
        }
        Command::Handover { to, summary, plan } => offer_handover(&mut w, to, summary, plan)?,
        Command::VendorAdd {
            vendor,
            case,
            callback,
        } => {
            if w.inc
                .vendor_cases
                .iter()
                .any(|c| c.case == *case && c.closed_at.is_none())
            {
                return refuse(
                    RefusalKind::Conflict,
                    format!("vendor case {case} is already tracked in {id}"),
                );
            }
            let due = match callback.map(|d| d.resolve(now)) {
                None => None,
                Some(None) => return refuse(RefusalKind::Invalid, BEYOND_TIME),
                Some(Some(due)) => Some(due),
            };
            if let Some(due) = due
                && due <= now
            {
                return refuse(
                    RefusalKind::Invalid,
                    "option 'callback': the callback time must be in the future",
                );
            }
            if let Some(due) = due
                && later(now, Deadline::MAX_AHEAD).is_some_and(|last| due > last)
            {
                return refuse(
                    RefusalKind::Invalid,
                    format!(
                        "option 'callback': {} is too far ahead; a callback must fall within {} from now",
                        clock(due),
                        human(Deadline::MAX_AHEAD)
                    ),
                );
            }
            w.inc.vendor_cases.push(VendorCase {
                vendor: vendor.clone(),
                case: case.clone(),
                added_at: now,
                added_by: who.clone(),
                callback: due,
                callback_outcome: CallbackOutcome::Waiting,
                last_update: None,
                closed_at: None,
            });
            let promise = match due {
                Some(due) => {
                    w.add_timer(due, TimerKind::VendorCallback { case: case.clone() });
                    format!("; callback promised by {}", clock(due))
                }
                None => String::new(),
            };
            w.event(
                EventKind::VendorAdded,
                format!("vendor case {vendor} {case} tracked{promise}"),
            );
            w.post(
                MessageKind::Post,
                format!("{who} is tracking {vendor} case {case}{promise}."),
                vec![],
            );
            format!("Tracking {vendor} case {case}{promise}.")
        }
        Command::VendorUpdate { case, text } => {
            let vc = open_case(&mut w.inc, case)?;
            vc.last_update = Some(TrackUpdate {
                at: now,
                by: who.clone(),
                text: text.clone(),
            });
            let met = vc.callback.is_some() && vc.callback_outcome == CallbackOutcome::Waiting;
            if met {
                vc.callback_outcome = CallbackOutcome::Met { at: now };
            }
            let vendor = vc.vendor.clone();
            w.settle_callback(case, "vendor update recorded");
            w.event(
                EventKind::VendorUpdated,
                format!("{vendor} case {case}: {text}"),
            );
            w.post(
                MessageKind::Post,
                format!("{vendor} case {case} update from {who}: {text}"),
                vec![],
            );
            format!("Recorded on {vendor} case {case}.")
        }
        Command::VendorClose { case, note } => {
            let vc = open_case(&mut w.inc, case)?;
            vc.closed_at = Some(now);
            let vendor = vc.vendor.clone();
            w.settle_callback(case, "vendor case closed");
            let note = note.as_ref().map_or(String::new(), |n| format!(": {n}"));
            w.event(
                EventKind::VendorClosed,
                format!("{vendor} case {case} closed{note}"),
            );
            w.post(
                MessageKind::Post,
                format!("{who} closed {vendor} case {case}{note}."),
                vec![],
            );
            format!("Closed {vendor} case {case}.")
        }
    };
    let reply = sdm_engaged(&mut w, actor, inc, cmd, reply);
    w.finish_command(reply)
}

/// Resolves the incident: `winner` succeeded, every other active track stands down, every nudge
/// is answered and every timer cancelled. Used by `/incident resolve` and by an alert source
/// with `auto_resolve`.
pub(super) fn resolve(w: &mut Work, who: &UserName, summary: &str, winner: Option<Plan>) {
    let now = w.now();
    let id = w.inc.id;
    w.inc.state = IncidentState::Resolved {
        at: now,
        by: who.clone(),
        summary: summary.to_string(),
        plan: winner,
    };
    for t in w.inc.tracks.values_mut() {
        if t.state == TrackState::Active {
            t.state = if Some(t.plan) == winner {
                TrackState::Succeeded
            } else {
                TrackState::StandingDown
            };
            t.closed_at = Some(now);
            t.handover = None;
        }
    }
    w.inc.handover = None;
    w.answer(|_| true, "incident resolved");
    let cancelled = w.inc.timers.len();
    w.inc.timers.clear();
    let by_plan = winner.map_or(String::new(), |p| format!(" by Plan {p}"));
    w.event(
        EventKind::Resolved { plan: winner },
        format!("resolved{by_plan}: {summary}"),
    );
    w.post(
        MessageKind::Post,
        format!(
            "{id} resolved{by_plan} after {} by {who}: {summary}. {cancelled} pending timer(s) cancelled.",
            human(now - w.inc.opened_at)
        ),
        vec![],
    );
}

/// The SDM acting in an incident has seen it: a state-changing command of theirs answers
/// their open SDM alert there (a snooze excepted: it asks to be reminded later).
fn sdm_engaged(
    w: &mut Work,
    actor: &Actor,
    inc: &Incident,
    cmd: &Command,
    reply: String,
) -> String {
    if matches!(cmd, Command::Snooze { .. })
        || !effective_roles(actor, Some(inc)).contains(&RoleKey::sdm())
    {
        return reply;
    }
    let how = format!("answered by {}'s /{}", actor.user, cmd.path());
    let closed = w.answer(|k| *k == NudgeKind::SdmAlert, &how);
    for id in &closed {
        w.event(
            EventKind::Acknowledged { nudge: *id },
            format!("nudge {id} ({}) {how}", NudgeKind::SdmAlert.label()),
        );
    }
    if closed.is_empty() {
        return reply;
    }
    let ids = closed
        .iter()
        .map(NudgeId::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!("{reply} It also answers your SDM alert (nudge {ids}).")
}

/// `/participant add` classifies only people the roster gives no role: it cannot make roster
/// staff into facilities or vendor staff, nor facilities or vendor staff into staff (who could
/// then be given a lead). Nor can it make someone who holds a position here facilities or
/// vendor staff.
fn participant_kind_fits(w: &Work, user: &UserName, kind: &RoleKey) -> Result<(), Refusal> {
    let roster = w.ctx.policy.roster.roles_of(user);
    let wanted = Standing::of(&Default::default(), Some(kind));
    let held = roster
        .iter()
        .map(RoleKey::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match (Standing::of(&roster, None), wanted) {
        (Standing::Staff, Standing::External) => {
            return refuse(
                RefusalKind::NotAllowed,
                format!(
                    "option 'kind': {user} holds {held} on the roster, so {user} is staff in every incident; the roster, not /participant add, says who is facilities or vendor staff. Add them as kind:staff, or change the roster."
                ),
            );
        }
        (Standing::External, Standing::Staff) => {
            return refuse(
                RefusalKind::NotAllowed,
                format!(
                    "option 'kind': {user} is {} on the roster, and /participant add cannot make facilities or vendor staff into staff: they never lead a plan, command or act as SDM. Add them as kind:fm or kind:vendor (they can post /update either way), or change the roster.",
                    external_label(&roster)
                ),
            );
        }
        _ => {}
    }
    let positions = w.positions_of(user);
    if wanted == Standing::External && !positions.is_empty() {
        return refuse(
            RefusalKind::NotAllowed,
            format!(
                "option 'kind': {user} is {} of {}, and facilities and vendor staff hold no such position. Hand it to a staff member first (/handover, /role assign, /plan assign).",
                positions.join(", "),
                w.inc.id
            ),
        );
    }
    Ok(())
}

fn open_case<'i>(inc: &'i mut Incident, case: &str) -> Result<&'i mut VendorCase, Refusal> {
    let known = inc
        .vendor_cases
        .iter()
        .filter(|c| c.closed_at.is_none())
        .map(|c| c.case.clone())
        .collect::<Vec<_>>()
        .join(", ");
    match inc
        .vendor_cases
        .iter_mut()
        .find(|c| c.case == case && c.closed_at.is_none())
    {
        Some(c) => Ok(c),
        None => refuse(
            RefusalKind::Invalid,
            format!(
                "option 'case': no open vendor case '{case}' in {}; open cases: {}",
                inc.id,
                if known.is_empty() {
                    "none".into()
                } else {
                    known
                }
            ),
        ),
    }
}

/// Offers a handover of `plan` (or the whole incident) to `to`: the card, the nudge, the
/// pending handover. Shared by `/handover` and the automatic handover at a shift handoff.
fn offer_handover(
    w: &mut Work,
    to: &UserName,
    summary: &str,
    plan: &Option<Plan>,
) -> Result<String, Refusal> {
    let id = w.inc.id;
    let now = w.ctx.now;
    w.user_on_roster(to, "to")?;
    let scope = plan.map_or(format!("{id}"), |p| format!("Plan {p}"));
    w.staff_only(
        to,
        "to",
        &format!("take over {scope}"),
        &format!(
            "Hand it to a staff member (the SDM can name one); {to} keeps posting updates with /update."
        ),
    )?;
    let from = match plan {
        Some(p) => w.active_track(*p)?.lead.clone(),
        None => Some(w.inc.commander().clone()),
    };
    if from.as_ref() == Some(to) {
        return refuse(
            RefusalKind::Invalid,
            format!("option 'to': {to} already leads it"),
        );
    }
    // A newer handover replaces one still waiting.
    let plan_v = *plan;
    w.answer(
        |k| *k == NudgeKind::Handover { plan: plan_v },
        "replaced by a newer handover",
    );
    let card = handover_card(w, plan_v, summary);
    let nudge = w.raise(
        NudgeKind::Handover { plan: *plan },
        vec![Target::User(to.clone())],
        format!(
            "Handover of {scope} from {} to @{to}. @{to}: acknowledge with /ack to take it over.\n{card}",
            from.as_ref().map_or("nobody".into(), |f| f.to_string())
        ),
    );
    let pending = PendingHandover {
        from: from.clone(),
        to: to.clone(),
        summary: summary.to_string(),
        at: now,
        nudge,
    };
    match plan {
        Some(p) => w.active_track_mut(*p)?.handover = Some(pending),
        None => w.inc.handover = Some(pending),
    }
    w.event(
        EventKind::HandoverOffered { plan: *plan },
        format!("handover of {scope} offered to {to}: {summary}"),
    );
    Ok(format!(
        "Handover card sent to {to}; until they acknowledge, nudges for {scope} reach you both."
    ))
}

/// The automatic handover of a shift handoff: Plan A, the tier's own track (or, without an
/// active Plan A, the incident), passes to the person now on call for the tier, with the same
/// card and acknowledgement as `/handover`, so its nudges reach both until they acknowledge.
/// No one runs it: the schedule is the authority, so it is not authorised against a person.
/// None when there is nothing to hand over: the incoming person already leads it, or has it
/// offered.
pub fn shift_handover(
    ctx: &Ctx,
    inc: &Incident,
    to: &UserName,
    summary: &str,
) -> Result<Option<Decision>, Refusal> {
    if !inc.is_open() {
        return refuse(RefusalKind::Conflict, format!("{} is resolved", inc.id));
    }
    let plan_a = inc.active_tracks().find(|t| t.plan == Plan::A);
    let (plan, lead, pending) = match plan_a {
        Some(t) => (Some(Plan::A), t.lead.clone(), t.handover.as_ref()),
        None => (None, Some(inc.commander().clone()), inc.handover.as_ref()),
    };
    if lead.as_ref() == Some(to) || pending.is_some_and(|h| h.to == *to) {
        return Ok(None);
    }
    let mut w = Work::new(ctx, inc.clone(), None);
    let reply = offer_handover(&mut w, to, summary, &plan)?;
    Ok(Some(w.finish(reply)))
}

fn handover_card(w: &Work, plan: Option<Plan>, summary: &str) -> String {
    let inc = &w.inc;
    let mut lines = vec![format!(
        "Handover card · {} · {} · {} · tier {}",
        inc.id, inc.title, inc.severity, inc.tier
    )];
    for t in inc.active_tracks() {
        if plan.is_some_and(|p| p != t.plan) {
            continue;
        }
        let last = t.last_update.as_ref().map_or("no update yet".into(), |u| {
            format!("{} ({})", u.text, clock(u.at))
        });
        lines.push(format!(
            "Plan {} · {} · lead {} · last: {last}",
            t.plan,
            t.title,
            t.lead.as_ref().map_or("none".into(), |l| l.to_string())
        ));
    }
    for c in inc.vendor_cases.iter().filter(|c| c.closed_at.is_none()) {
        let cb = c
            .callback
            .map_or(String::new(), |t| format!(", callback by {}", clock(t)));
        lines.push(format!("Vendor {} case {}{cb}", c.vendor, c.case));
    }
    for t in inc.next_timers().into_iter().take(3) {
        lines.push(format!("Next: {} at {}", t.kind.label(), clock(t.due)));
    }
    lines.push(format!("Summary: {summary}"));
    lines.join("\n")
}

fn accept_handover(
    w: &mut Work,
    n: &Nudge,
    plan: Option<Plan>,
    actor: &Actor,
) -> Result<(), Refusal> {
    let pending = match plan {
        Some(p) => w.inc.tracks.get(&p).and_then(|t| t.handover.clone()),
        None => w.inc.handover.clone(),
    };
    let Some(h) = pending else {
        return refuse(
            RefusalKind::Conflict,
            format!("nudge {} has no pending handover", n.id),
        );
    };
    if h.to != actor.user {
        return refuse(
            RefusalKind::NotAllowed,
            format!(
                "nudge {} is a handover to {}; only {} can accept it",
                n.id, h.to, h.to
            ),
        );
    }
    let scope = match plan {
        Some(p) => {
            let Some(t) = w.inc.tracks.get_mut(&p) else {
                return refuse(
                    RefusalKind::Conflict,
                    format!("nudge {} has no pending handover", n.id),
                );
            };
            t.lead = Some(h.to.clone());
            t.handover = None;
            format!("Plan {p}")
        }
        None => {
            w.inc
                .assignments
                .insert(IncidentRole::Commander, h.to.clone());
            w.inc.handover = None;
            format!("{}", w.inc.id)
        }
    };
    w.answer(|k| *k == n.kind, &format!("accepted by {}", h.to));
    // Open silence nudges now target the new lead only.
    if let Some(p) = plan
        && let Some(track) = w.inc.tracks.get(&p).cloned()
    {
        let targets = w.silence_targets(&track);
        for nn in w.inc.nudges.iter_mut() {
            if nn.is_open() && nn.kind == (NudgeKind::TrackSilent { plan: p }) {
                nn.targets = targets.clone();
            }
        }
    }
    w.event(
        EventKind::HandoverAccepted { plan },
        format!(
            "{} took over {scope} from {}",
            h.to,
            h.from.as_ref().map_or("nobody".into(), |f| f.to_string())
        ),
    );
    w.post(
        MessageKind::Post,
        format!("{} accepted the handover and now leads {scope}.", h.to),
        vec![],
    );
    Ok(())
}

/// The nudge an /ack or /snooze answers: the numbered one, or the actor's latest.
fn find_nudge<'i>(
    ctx: &Ctx,
    actor: &Actor,
    inc: &'i Incident,
    id: Option<NudgeId>,
    path: &str,
) -> Result<&'i Nudge, Refusal> {
    let roles = effective_roles(actor, Some(inc));
    let n = match id {
        Some(id) => match inc.nudge(id) {
            Some(n) if n.is_open() => n,
            Some(Nudge {
                state: NudgeState::HandedOff { to, .. },
                kind,
                ..
            }) => {
                return refuse(
                    RefusalKind::Conflict,
                    format!(
                        "nudge {id} ({}) went unanswered and was handed on as nudge {to}; answer that one (/{path} nudge:{})",
                        kind.label(),
                        to.0
                    ),
                );
            }
            Some(n) => {
                return refuse(
                    RefusalKind::Conflict,
                    format!("nudge {} ({}) is already answered", n.id, n.kind.label()),
                );
            }
            None => {
                return refuse(
                    RefusalKind::Invalid,
                    format!("option 'nudge': {} has no nudge {id}", inc.id),
                );
            }
        },
        None => {
            // A snooze is for a nudge that still repeats.
            let open = || {
                inc.nudges
                    .iter()
                    .filter(|n| n.is_open() && (path != "snooze" || n.is_repeating()))
                    .rev()
            };
            // An /ack prefers a nudge it can answer; the Plan B nudge needs a decision.
            // A handover waiting for this very person comes first: it is theirs alone.
            let handover = open().find(|n| {
                path == "ack"
                    && matches!(n.kind, NudgeKind::Handover { .. })
                    && n.targets.contains(&Target::User(actor.user.clone()))
            });
            let mine = handover
                .or_else(|| {
                    open()
                        .filter(|n| targets_actor(&n.targets, actor, &roles))
                        .find(|n| path != "ack" || n.kind != NudgeKind::PlanBDue)
                })
                .or_else(|| open().find(|n| targets_actor(&n.targets, actor, &roles)));
            let any = || {
                open()
                    .find(|n| path != "ack" || n.kind != NudgeKind::PlanBDue)
                    .or_else(|| open().next())
            };
            match mine.or_else(|| roles.contains(&RoleKey::sdm()).then(any).flatten()) {
                Some(n) => n,
                None => {
                    return refuse(
                        RefusalKind::Conflict,
                        format!("{} has no open nudge for {}", inc.id, actor.user),
                    );
                }
            }
        }
    };
    authorize(ctx, actor, Some(inc), path, None, Some(n))?;
    Ok(n)
}
