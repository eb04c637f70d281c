//! Read-only views of an incident: the status card, the timeline and the post-incident report.

use chrono::{DateTime, TimeDelta, Utc};

use super::engine::{clock, human};
use super::model::*;

fn lead_name(t: &Track) -> String {
    t.lead.as_ref().map_or("no lead".into(), |l| l.to_string())
}

/// The status card: tier, people, tracks with their last update, next timers, vendor cases.
pub fn status(inc: &Incident, sdm_holders: &[&UserName]) -> String {
    let mut out = Vec::new();
    let drill = if inc.is_drill() { " · DRILL" } else { "" };
    let state = match &inc.state {
        IncidentState::Open => "open".to_string(),
        IncidentState::Resolved { at, plan, .. } => format!(
            "resolved {}{}",
            clock(*at),
            plan.map_or(String::new(), |p| format!(" by Plan {p}"))
        ),
    };
    out.push(format!(
        "{} · {} · {} · {}{drill}",
        inc.id, inc.title, inc.severity, state
    ));
    out.push(format!(
        "Service {} · tier {} since {} · opened {} by {}",
        inc.service,
        inc.tier,
        clock(inc.tier_entered_at),
        clock(inc.opened_at),
        inc.opener
    ));
    let sdm = match inc.assignments.get(&IncidentRole::Sdm) {
        Some(u) => u.to_string(),
        None if sdm_holders.is_empty() => "none on the roster".into(),
        None => sdm_holders
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let alerted = inc
        .sdm_alerted_at
        .map_or("not alerted".into(), |t| format!("alerted {}", clock(t)));
    out.push(format!(
        "SDM {sdm} ({alerted}) · commander {}",
        inc.commander()
    ));
    if let Some(link) = &inc.alert {
        out.push(format!(
            "Alert source {} · {} alert(s){}",
            link.source,
            link.alerts.len(),
            if link.reported_resolved {
                " · reported resolved"
            } else {
                ""
            }
        ));
    }
    match &inc.plan_b {
        PlanBDecision::Pending => {}
        PlanBDecision::Opened { at } => out.push(format!("Plan B started {}", clock(*at))),
        PlanBDecision::Declined { by, reason, .. } => {
            out.push(format!("Plan B declined by {by}: {reason}"))
        }
    }
    for t in inc.tracks.values() {
        let last = t.last_update.as_ref().map_or("no update yet".into(), |u| {
            format!("{} by {}: {}", clock(u.at), u.by, u.text)
        });
        let team = t
            .team
            .as_ref()
            .map_or(String::new(), |r| format!(", team {r}"));
        let hand = t.handover.as_ref().map_or(String::new(), |h| {
            format!(" · handover to {} pending", h.to)
        });
        out.push(format!(
            "Plan {} [{}] {} · lead {}{team} · {} update(s), last {last}{hand}",
            t.plan,
            t.state,
            t.title,
            lead_name(t),
            t.updates
        ));
    }
    for c in &inc.vendor_cases {
        let cb = match (c.callback, &c.callback_outcome) {
            (None, _) => String::new(),
            (Some(t), CallbackOutcome::Waiting) => format!(" · callback due {}", clock(t)),
            (Some(t), CallbackOutcome::Met { .. }) => format!(" · callback {} met", clock(t)),
            (Some(t), CallbackOutcome::Missed) => format!(" · callback {} MISSED", clock(t)),
        };
        let closed = if c.closed_at.is_some() {
            " (closed)"
        } else {
            ""
        };
        out.push(format!("Vendor {} case {}{cb}{closed}", c.vendor, c.case));
    }
    let open: Vec<&Nudge> = inc.nudges.iter().filter(|n| n.is_open()).collect();
    for n in &open {
        let to = n
            .targets
            .iter()
            .map(Target::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let stopped = n.stopped_at.map_or(String::new(), |at| {
            format!(" · stopped repeating {}, answer it to close it", clock(at))
        });
        out.push(format!(
            "Open nudge {} · {} · to {to} · sent {} time(s){stopped}",
            n.id,
            n.kind.label(),
            n.sends
        ));
    }
    let timers = inc.next_timers();
    if timers.is_empty() {
        out.push("No pending timers.".into());
    }
    for t in timers.into_iter().take(6) {
        out.push(format!("Next: {} at {}", t.kind.label(), clock(t.due)));
    }
    out.join("\n")
}

fn actor(e: &Event) -> String {
    e.actor.as_ref().map_or("warroom".into(), |a| a.to_string())
}

/// The timeline, one line an event, with its time and actor.
pub fn timeline(inc: &Incident, events: &[Event]) -> String {
    let mut out = vec![format!("Timeline of {} ({} events)", inc.id, events.len())];
    for e in events {
        out.push(format!("{} {} · {}", clock(e.at), actor(e), e.text));
    }
    out.join("\n")
}

/// The first event matching a predicate, as a duration from opening.
fn since_open(
    inc: &Incident,
    events: &[Event],
    pred: impl Fn(&EventKind) -> bool,
) -> Option<TimeDelta> {
    events
        .iter()
        .find(|e| pred(&e.kind))
        .map(|e| e.at - inc.opened_at)
}

/// Key durations from opening: to L2, to L3, to the SDM alert, to Plan B, to resolution.
pub fn durations(inc: &Incident, events: &[Event]) -> Vec<(&'static str, Option<TimeDelta>)> {
    vec![
        (
            "open → L2",
            since_open(
                inc,
                events,
                |k| matches!(k, EventKind::Escalated { to, .. } if *to >= Tier::L2),
            ),
        ),
        (
            "open → L3",
            since_open(inc, events, |k| {
                matches!(k, EventKind::Escalated { to: Tier::L3, .. })
            }),
        ),
        (
            "open → SDM alert",
            since_open(inc, events, |k| *k == EventKind::SdmAlerted),
        ),
        (
            "open → Plan B start",
            since_open(inc, events, |k| {
                *k == EventKind::PlanOpened { plan: Plan::B }
            }),
        ),
        (
            "open → resolution",
            since_open(inc, events, |k| matches!(k, EventKind::Resolved { .. })),
        ),
    ]
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The post-incident report as Markdown.
pub fn report(inc: &Incident, events: &[Event]) -> String {
    let mut md = String::new();
    let drill = if inc.is_drill() { "DRILL: " } else { "" };
    md.push_str(&format!("# {drill}{}: {}\n\n", inc.id, inc.title));
    if inc.is_drill() {
        md.push_str("> This was a DR drill, not a real incident.\n\n");
    }
    md.push_str(&format!(
        "- Severity: {}\n- Service: {}\n- Opened: {} by {}\n",
        inc.severity,
        inc.service,
        stamp(inc.opened_at),
        inc.opener
    ));
    match &inc.state {
        IncidentState::Open => md.push_str("- State: still open\n"),
        IncidentState::Resolved {
            at,
            by,
            summary,
            plan,
        } => {
            md.push_str(&format!(
                "- Resolved: {} by {by}\n- Resolved by plan: {}\n- Summary: {summary}\n",
                stamp(*at),
                plan.map_or("not recorded".into(), |p| format!("Plan {p}"))
            ));
        }
    }
    md.push_str(&format!("- Highest tier: {}\n\n## Durations\n\n", inc.tier));
    md.push_str("| milestone | after opening |\n|---|---|\n");
    for (name, d) in durations(inc, events) {
        md.push_str(&format!("| {name} | {} |\n", d.map_or("—".into(), human)));
    }
    md.push_str("\n## Tracks\n\n| plan | goal | lead | team | updates | outcome |\n|---|---|---|---|---|---|\n");
    for t in inc.tracks.values() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}{} |\n",
            t.plan,
            t.title,
            lead_name(t),
            t.team.as_ref().map_or("—".into(), |r| r.to_string()),
            t.updates,
            t.state,
            t.outcome_note
                .as_ref()
                .map_or(String::new(), |n| format!(": {n}"))
        ));
    }
    if let PlanBDecision::Declined { by, reason, .. } = &inc.plan_b {
        md.push_str(&format!("\nPlan B was declined by {by}: {reason}\n"));
    }
    md.push_str("\n## Snoozes\n\n");
    if inc.snoozes.is_empty() {
        md.push_str("None.\n");
    }
    for s in &inc.snoozes {
        md.push_str(&format!(
            "- {} {} snoozed nudge {} for {}: {}\n",
            stamp(s.at),
            s.by,
            s.nudge,
            human(s.length),
            s.reason
        ));
    }
    md.push_str("\n## Handovers\n\n");
    let handovers: Vec<&Event> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::HandoverOffered { .. } | EventKind::HandoverAccepted { .. }
            )
        })
        .collect();
    if handovers.is_empty() {
        md.push_str("None.\n");
    }
    for e in handovers {
        md.push_str(&format!("- {} {}: {}\n", stamp(e.at), actor(e), e.text));
    }
    md.push_str("\n## Vendor cases\n\n");
    if inc.vendor_cases.is_empty() {
        md.push_str("None.\n");
    }
    for c in &inc.vendor_cases {
        let cb = match (c.callback, &c.callback_outcome) {
            (None, _) => "no callback promised".to_string(),
            (Some(t), CallbackOutcome::Met { at }) => {
                format!("callback by {} met at {}", stamp(t), stamp(*at))
            }
            (Some(t), CallbackOutcome::Missed) => format!("callback by {} missed", stamp(t)),
            (Some(t), CallbackOutcome::Waiting) => format!("callback by {} pending", stamp(t)),
        };
        md.push_str(&format!("- {} case {}: {cb}\n", c.vendor, c.case));
    }
    if let Some(link) = &inc.alert {
        md.push_str(&super::alert::report_section(link));
    }
    md.push_str("\n## Timeline\n\n| time | who | what |\n|---|---|---|\n");
    for e in events {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            stamp(e.at),
            actor(e),
            e.text.replace('|', "\\|").replace('\n', " ")
        ));
    }
    md
}

/// The index of all incidents, drills set apart from real incidents.
pub fn index(all: &[(&Incident, &[Event])]) -> String {
    let mut md = String::from("# Incidents\n");
    for (heading, drill) in [("Incidents", false), ("DR drills", true)] {
        md.push_str(&format!(
            "\n## {heading}\n\n| id | severity | service | title | opened | state | winning plan | open → resolution |\n|---|---|---|---|---|---|---|---|\n"
        ));
        let mut any = false;
        for (inc, events) in all.iter().filter(|(i, _)| i.is_drill() == drill) {
            any = true;
            let (state, plan) = match &inc.state {
                IncidentState::Open => ("open".to_string(), "—".to_string()),
                IncidentState::Resolved { plan, .. } => (
                    "resolved".to_string(),
                    plan.map_or("not recorded".into(), |p| format!("Plan {p}")),
                ),
            };
            let total = durations(inc, events)
                .last()
                .and_then(|(_, d)| *d)
                .map_or("—".into(), human);
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {state} | {plan} | {total} |\n",
                inc.id,
                inc.severity,
                inc.service,
                inc.title.replace('|', "\\|"),
                stamp(inc.opened_at)
            ));
        }
        if !any {
            md.push_str("| — | | | | | | | |\n");
        }
    }
    md
}
