//! Reminders of unanswered nudges: one digest per person or role and interval, and the
//! hand-off to the next tier (or the SDM) after `nudge_handoff_after` unanswered reminders.
//!
//! Pure like the rest of the engine: `Work::now` is the only time, and every sum of a time and
//! a duration is checked.

use chrono::{DateTime, Utc};

use super::engine::{Button, MAX_BUTTONS, Message, MessageKind, Work, clock, late_note, later};
use super::model::*;

/// A reminder about to go out: which nudge, and when its repeat timer fell due.
struct Due {
    id: NudgeId,
    due: DateTime<Utc>,
}

/// The tier whose people hold this role key, if it is a tier role.
fn tier_of(role: &RoleKey) -> Option<Tier> {
    Tier::ALL.into_iter().find(|tier| tier.role() == *role)
}

fn who(targets: &[Target]) -> String {
    targets
        .iter()
        .map(Target::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Work<'_> {
    /// The targets of a nudge once it repeats: whatever nobody else answered reaches the SDM
    /// too, except a handover, which is the incoming person's alone to accept.
    pub(super) fn reminder_targets(&self, n: &Nudge) -> Vec<Target> {
        let mut targets = n.targets.clone();
        let sdm = self.sdm_target();
        if !matches!(n.kind, NudgeKind::Handover { .. }) && !targets.contains(&sdm) {
            targets.push(sdm);
        }
        targets
    }

    /// When the nudge's pending repeat timer falls due, if it has one.
    fn repeat_due(&self, id: NudgeId) -> Option<DateTime<Utc>> {
        self.inc
            .timers
            .iter()
            .filter(|t| t.kind == TimerKind::NudgeRepeat { nudge: id })
            .map(|t| t.due)
            .min()
    }

    /// Whether the next reminder of this nudge is a hand-off instead.
    fn due_for_handoff(&self, n: &Nudge) -> bool {
        let after = self.sp().nudge_handoff_after;
        after > 0 && n.reminders() >= after
    }

    /// A nudge's repeat timer fired: hand it on if its reminders ran out, else remind, taking
    /// along every other reminder to the same people that falls due within one interval.
    pub(super) fn remind(&mut self, id: NudgeId, due: DateTime<Utc>) {
        let Some(n) = self.inc.nudge(id).filter(|n| n.is_repeating()).cloned() else {
            return;
        };
        if self.due_for_handoff(&n) {
            self.hand_off(&n);
            return;
        }
        let now = self.now();
        let targets = self.reminder_targets(&n);
        let horizon = self
            .repeat_interval(&n.kind)
            .and_then(|every| later(now, every))
            .unwrap_or(now);
        let mut others: Vec<Due> = self
            .inc
            .nudges
            .iter()
            .filter(|m| {
                m.id != id
                    && m.is_repeating()
                    // Snoozed: its snooze holds. Sent this very moment: no reminder yet.
                    && m.snoozed_until.is_none_or(|until| until <= now)
                    && m.last_sent < now
                    && !self.due_for_handoff(m)
                    && self
                        .reminder_targets(m)
                        .iter()
                        .any(|t| targets.contains(t))
            })
            .filter_map(|m| {
                self.repeat_due(m.id)
                    .filter(|d| *d <= horizon)
                    .map(|due| Due { id: m.id, due })
            })
            .collect();
        others.sort_by_key(|d| (d.due, d.id));
        if others.is_empty() {
            self.remind_one(&n, due);
        } else {
            let mut group = vec![Due { id, due }];
            group.extend(others);
            self.remind_digest(&group);
        }
    }

    /// Counts a reminder on the nudge and returns its line, `Nudge #4 · reminder 2 (…): text`.
    fn count_reminder(&mut self, id: NudgeId, due: DateTime<Utc>) -> Option<(Nudge, String)> {
        let now = self.now();
        let targets = self.inc.nudge(id).map(|n| self.reminder_targets(n))?;
        let n = self.inc.nudges.iter_mut().find(|n| n.id == id)?;
        n.sends = n.sends.saturating_add(1);
        n.last_sent = now;
        n.snoozed_until = None;
        n.targets = targets;
        let line = format!(
            "Nudge {} · reminder {} (unanswered since {}){}: {}",
            n.id,
            n.reminders(),
            clock(n.raised_at),
            late_note(now, due),
            n.text
        );
        Some((n.clone(), line))
    }

    /// Replaces the nudge's repeat timer with one an interval from now.
    fn rearm(&mut self, n: &Nudge) {
        self.cancel_timers(|k| *k == TimerKind::NudgeRepeat { nudge: n.id });
        let now = self.now();
        if let Some(every) = self.repeat_interval(&n.kind)
            && let Some(next) = self.after(now, every)
        {
            self.add_timer(next, TimerKind::NudgeRepeat { nudge: n.id });
        }
    }

    /// One reminder on its own, as it always was.
    fn remind_one(&mut self, n: &Nudge, due: DateTime<Utc>) {
        let Some((n, text)) = self.count_reminder(n.id, due) else {
            return;
        };
        self.send_nudge(n.id, &n.kind, &n.targets, text, n.sends, "repeated to");
        self.rearm(&n);
    }

    /// Several reminders to the same people in one message: a line and a button each.
    fn remind_digest(&mut self, group: &[Due]) {
        let ids = group
            .iter()
            .map(|d| d.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut lines = Vec::new();
        let mut mentions: Vec<Target> = Vec::new();
        let mut sent = Vec::new();
        for d in group {
            let Some((n, line)) = self.count_reminder(d.id, d.due) else {
                continue;
            };
            lines.push(line);
            for t in &n.targets {
                if !mentions.contains(t) {
                    mentions.push(t.clone());
                }
            }
            self.event(
                EventKind::Nudged {
                    nudge: n.id,
                    repeat: n.sends,
                },
                format!(
                    "nudge {} ({}) repeated to {}, in one message for nudges {ids}",
                    n.id,
                    n.kind.label(),
                    who(&n.targets)
                ),
            );
            sent.push(n);
        }
        let Some(first) = sent.first().map(|n| n.id) else {
            return;
        };
        let buttons = self.digest_buttons(&sent);
        let text = self.drill_mark(lines.join("\n"));
        let mentions = self.ctx.with_on_call(&mentions);
        self.messages.push(Message {
            at: self.now(),
            kind: MessageKind::Nudge,
            text,
            mentions,
            buttons,
            nudge: Some(first),
        });
        for n in &sent {
            self.rearm(n);
        }
    }

    /// A digest's buttons: Ack #N for each nudge an /ack answers, then Escalate and Open Plan
    /// B once if any of its nudges offers them; never more than Discord takes.
    fn digest_buttons(&self, nudges: &[Nudge]) -> Vec<Button> {
        let mut shared = Vec::new();
        for n in nudges {
            for b in self.buttons_for(&n.kind) {
                if matches!(b, Button::Escalate | Button::OpenPlanB) && !shared.contains(&b) {
                    shared.push(b);
                }
            }
        }
        let room = MAX_BUTTONS.saturating_sub(shared.len());
        let mut buttons: Vec<Button> = nudges
            .iter()
            .filter(|n| n.kind != NudgeKind::PlanBDue)
            .map(|n| Button::AckNudge { nudge: n.id })
            .take(room)
            .collect();
        buttons.extend(shared);
        buttons
    }

    /// The tier a nudge is for: a tier pickup's own, or the highest tier it targets: a tier
    /// role, or a person who is that tier's lead in this incident or holds its role.
    fn nudge_tier(&self, n: &Nudge) -> Option<Tier> {
        let from_kind = match n.kind {
            NudgeKind::TierPickup { tier } => Some(tier),
            _ => None,
        };
        let from_targets = n
            .targets
            .iter()
            .filter_map(|t| match t {
                Target::Role(r) => tier_of(r),
                Target::User(u) => {
                    let leads = Tier::ALL.into_iter().filter(|tier| {
                        self.inc.assignments.get(&IncidentRole::Lead(*tier)) == Some(u)
                    });
                    let holds = self.ctx.policy.roster.roles_of(u);
                    leads.chain(holds.iter().filter_map(tier_of)).max()
                }
            })
            .max();
        from_kind.max(from_targets)
    }

    /// Where an unanswered nudge goes next: the next tier above its own (at least the tier
    /// holding the incident), else the SDM. A handover goes only to the SDM. None: it already
    /// reaches the SDM and there is nobody further.
    fn handoff_targets(&self, n: &Nudge) -> Option<Vec<Target>> {
        let sdm = self.sdm_target();
        let to_sdm = || {
            if n.targets.contains(&sdm) {
                return None;
            }
            let mut targets = vec![sdm.clone()];
            // The incoming person alone can accept a handover: keep them on it.
            if matches!(n.kind, NudgeKind::Handover { .. }) {
                targets.extend(n.targets.iter().cloned());
            }
            Some(targets)
        };
        if matches!(n.kind, NudgeKind::Handover { .. }) {
            return to_sdm();
        }
        match self.nudge_tier(n).and_then(Tier::next) {
            Some(next) => Some(vec![self.tier_target(next.max(self.inc.tier))]),
            None => to_sdm(),
        }
    }

    /// The first nudge of a hand-off chain (the nudge itself if it was never handed on).
    fn origin<'n>(&'n self, n: &'n Nudge) -> &'n Nudge {
        let mut cur = n;
        for _ in 0..self.inc.nudges.len() {
            match cur.from.and_then(|f| self.inc.nudge(f)) {
                Some(prev) => cur = prev,
                None => break,
            }
        }
        cur
    }

    /// The nudge's reminders ran out: close it and raise it anew for the next people, or, with
    /// nobody further, stop its repeats for good and say so once.
    fn hand_off(&mut self, n: &Nudge) {
        let Some(targets) = self.handoff_targets(n) else {
            self.stop_repeating(n);
            return;
        };
        let now = self.now();
        let reminders = n.reminders();
        // Who is new on it (a handover keeps its incoming person, who alone can accept it).
        let added: Vec<Target> = targets
            .iter()
            .filter(|t| !n.targets.contains(t))
            .cloned()
            .collect();
        let to = who(&added);
        let new = self.next_nudge_id();
        let origin = self.origin(n);
        let first = if origin.id == n.id {
            String::new()
        } else {
            format!(
                " (first raised as nudge {} at {})",
                origin.id,
                clock(origin.raised_at)
            )
        };
        let text = format!(
            "handed to {to} after {reminders} unanswered reminders of nudge {}{first}: {}",
            n.id, origin.text
        );
        if let Some(old) = self.inc.nudges.iter_mut().find(|m| m.id == n.id) {
            old.state = NudgeState::HandedOff { at: now, to: new };
        }
        self.cancel_timers(|k| *k == TimerKind::NudgeRepeat { nudge: n.id });
        self.event(
            EventKind::HandedOff {
                nudge: n.id,
                to: new,
            },
            format!(
                "nudge {} ({}) handed to {to} as nudge {new} after {reminders} unanswered reminders",
                n.id,
                n.kind.label()
            ),
        );
        let raised = self.raise(n.kind.clone(), targets, text);
        if let Some(m) = self.inc.nudges.iter_mut().find(|m| m.id == raised) {
            m.from = Some(n.id);
        }
        // A pending handover now waits on the new card.
        let pending = self.inc.handover.iter_mut().chain(
            self.inc
                .tracks
                .values_mut()
                .filter_map(|t| t.handover.as_mut()),
        );
        for h in pending.filter(|h| h.nudge == n.id) {
            h.nudge = raised;
        }
    }

    /// The last word on a nudge nobody further can take: it stays open, without reminders.
    fn stop_repeating(&mut self, n: &Nudge) {
        let now = self.now();
        if let Some(m) = self.inc.nudges.iter_mut().find(|m| m.id == n.id) {
            m.stopped_at = Some(now);
        }
        self.cancel_timers(|k| *k == TimerKind::NudgeRepeat { nudge: n.id });
        let reminders = n.reminders();
        self.event(
            EventKind::NudgeStopped { nudge: n.id },
            format!(
                "nudge {} ({}) stopped repeating after {reminders} unanswered reminders; nobody further to hand it to, it stays open",
                n.id,
                n.kind.label()
            ),
        );
        let text = self.drill_mark(format!(
            "Nudge {} · stops repeating after {reminders} unanswered reminders ({}, unanswered since {}): there is nobody further to hand it to. It stays open; {}: answer it with {}.",
            n.id,
            n.kind.label(),
            clock(n.raised_at),
            who(&n.targets),
            answer_hint(n)
        ));
        let buttons = match n.kind {
            NudgeKind::PlanBDue => vec![Button::OpenPlanB],
            _ => vec![Button::AckNudge { nudge: n.id }],
        };
        self.messages.push(Message {
            at: now,
            kind: MessageKind::Post,
            text,
            mentions: n.targets.clone(),
            buttons,
            nudge: Some(n.id),
        });
    }
}

/// How a nudge is answered, for the post that says it stops repeating.
fn answer_hint(n: &Nudge) -> String {
    let id = n.id.0;
    match &n.kind {
        NudgeKind::PlanBDue => {
            "/plan open plan:B title:… (or record why not with /plan decline reason:…)".into()
        }
        NudgeKind::TrackSilent { plan } => {
            format!("an update, /update plan:{plan} text:…, or /ack nudge:{id}")
        }
        NudgeKind::VendorCallback { case } => {
            format!("/vendor update case:{case} text:… or /ack nudge:{id}")
        }
        NudgeKind::Handover { .. } => {
            format!("/ack nudge:{id} by the incoming person, who takes it over")
        }
        NudgeKind::TierPickup { .. } | NudgeKind::SdmAlert | NudgeKind::DrillDue { .. } => {
            format!("/ack nudge:{id}")
        }
        NudgeKind::ConfirmResolved => {
            format!("/incident resolve summary:… (or /ack nudge:{id} if it is not over)")
        }
    }
}
