//! The report's picture: an SVG timeline with the tiers and each plan as bars over time, and
//! nudges as marks, so people can see at a glance who held the incident and when.

use chrono::{DateTime, TimeDelta, Utc};

use super::model::*;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 30.0;
const ROW: f64 = 34.0;
const BAR: f64 = 20.0;
const TOP: f64 = 56.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn tier_colour(t: Tier) -> &'static str {
    match t {
        Tier::L1 => "#5dade2",
        Tier::L2 => "#f5b041",
        Tier::L3 => "#ec7063",
    }
}

fn plan_colour(p: Plan) -> &'static str {
    match p {
        Plan::A => "#7f8c8d",
        Plan::B => "#27ae60",
        Plan::C => "#8e44ad",
        Plan::D => "#2c3e50",
    }
}

/// A tick spacing that gives five to twelve ticks; beyond twelve days, whole days that still
/// give at most about twelve, however long the span.
fn tick_step(span: TimeDelta) -> TimeDelta {
    let mins = span.num_minutes().max(1);
    for step in [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440] {
        if mins / step <= 12 {
            return TimeDelta::minutes(step);
        }
    }
    TimeDelta::try_days(span.num_days() / 12 + 1).unwrap_or(TimeDelta::MAX)
}

/// Renders the incident as an SVG chart. `now` ends the chart for an open incident.
pub fn svg(inc: &Incident, events: &[Event], now: DateTime<Utc>) -> String {
    let start = inc.opened_at;
    let end = match &inc.state {
        IncidentState::Resolved { at, .. } => *at,
        IncidentState::Open => now.max(
            start
                .checked_add_signed(TimeDelta::minutes(1))
                .unwrap_or(start),
        ),
    };
    let span = (end - start).max(TimeDelta::minutes(1));
    let x = |t: DateTime<Utc>| {
        LEFT + (WIDTH - LEFT - RIGHT)
            * ((t - start).num_seconds() as f64 / span.num_seconds() as f64)
    };
    let plans: Vec<&Track> = inc.tracks.values().collect();
    let rows = 2 + plans.len();
    let height = TOP + ROW * rows as f64 + 80.0;
    let mut out = String::new();
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    ));
    out.push_str(&format!(
        "<rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>\n"
    ));
    let drill = if inc.is_drill() { "DRILL · " } else { "" };
    out.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        esc(&format!(
            "{drill}{} · {} · {}",
            inc.id, inc.severity, inc.title
        ))
    ));
    out.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"40\" fill=\"#555\">{}</text>\n",
        esc(&format!(
            "{} → {} UTC",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%Y-%m-%d %H:%M")
        ))
    ));

    let row_y = |i: usize| TOP + ROW * i as f64;
    // Time axis and grid first, so that the bars sit on top.
    let mut grid = String::new();
    let axis_y = row_y(rows - 1) + ROW + 6.0;
    grid.push_str(&format!(
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{axis_y:.1}\" y2=\"{axis_y:.1}\" stroke=\"#999\"/>\n",
        WIDTH - RIGHT
    ));
    let step = tick_step(span);
    let step_s = step.num_seconds();
    let first = start.timestamp().div_euclid(step_s) * step_s + step_s;
    let mut t = DateTime::<Utc>::from_timestamp(first, 0).unwrap_or(start);
    while t <= end {
        let xt = x(t);
        grid.push_str(&format!(
            "<line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n<text x=\"{xt:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
            TOP - 4.0,
            axis_y,
            axis_y + 16.0,
            t.format("%H:%M")
        ));
        match t.checked_add_signed(step) {
            Some(next) => t = next,
            None => break,
        }
    }
    out.push_str(&grid);
    let legend_y = axis_y + 36.0;
    let mut lx = LEFT;
    for (colour, label) in [
        ("#e67e22", "tier pickup"),
        ("#c0392b", "SDM alert"),
        ("#27ae60", "Plan B deadline"),
        ("#34495e", "silence or other"),
    ] {
        out.push_str(&format!(
            "<circle cx=\"{lx:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">{label}</text>\n",
            legend_y - 4.0,
            lx + 9.0,
            legend_y
        ));
        lx += 135.0;
    }
    out.push_str(&format!(
        "<text x=\"{lx:.1}\" y=\"{legend_y:.1}\" fill=\"#555\">small: a repeat · tick: an update</text>\n"
    ));

    // Tier bars, from the escalation events.
    out.push_str(&format!(
        "<text x=\"10\" y=\"{}\">Tier</text>\n",
        row_y(0) + 15.0
    ));
    let mut segments: Vec<(Tier, DateTime<Utc>)> = vec![(Tier::L1, start)];
    for e in events {
        if let EventKind::Escalated { to, .. } = e.kind {
            segments.push((to, e.at));
        }
    }
    for (i, (tier, from)) in segments.iter().enumerate() {
        let to = segments.get(i + 1).map_or(end, |s| s.1);
        let (x0, x1) = (x(*from), x(to));
        out.push_str(&format!(
            "<rect class=\"tier\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{}\"><title>{tier} from {}</title></rect>\n",
            row_y(0),
            (x1 - x0).max(1.0),
            tier_colour(*tier),
            from.format("%H:%M")
        ));
        if x1 - x0 > 24.0 {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#fff\">{tier}</text>\n",
                x0 + 4.0,
                row_y(0) + 14.0
            ));
        }
    }

    // Plan bars.
    for (i, t) in plans.iter().enumerate() {
        let y = row_y(1 + i);
        let to = t.closed_at.unwrap_or(end);
        let (x0, x1) = (x(t.opened_at), x(to));
        out.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\">Plan {}</text>\n",
            y + 15.0,
            t.plan
        ));
        let opacity = if t.state == TrackState::Succeeded || t.state == TrackState::Active {
            "1"
        } else {
            "0.55"
        };
        out.push_str(&format!(
            "<rect class=\"plan\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{}\" fill-opacity=\"{opacity}\"><title>{}</title></rect>\n",
            (x1 - x0).max(1.0),
            plan_colour(t.plan),
            esc(&format!("Plan {}: {} ({})", t.plan, t.title, t.state))
        ));
        for e in events {
            if e.kind == (EventKind::Update { plan: t.plan }) {
                out.push_str(&format!(
                    "<line class=\"update\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#fff\" stroke-width=\"2\"/>\n",
                    x(e.at),
                    y + 3.0,
                    y + BAR - 3.0
                ));
            }
        }
    }

    // Nudges as marks.
    let ny = row_y(1 + plans.len());
    out.push_str(&format!(
        "<text x=\"10\" y=\"{:.1}\">Nudges</text>\n",
        ny + 15.0
    ));
    for e in events {
        if let EventKind::Nudged { nudge, repeat } = e.kind {
            let label = inc.nudge(nudge).map_or("nudge".into(), |n| n.kind.label());
            let colour = match inc.nudge(nudge).map(|n| &n.kind) {
                Some(NudgeKind::PlanBDue) => "#27ae60",
                Some(NudgeKind::SdmAlert) => "#c0392b",
                Some(NudgeKind::TierPickup { .. }) => "#e67e22",
                _ => "#34495e",
            };
            let r = if repeat > 1 { 4.0 } else { 6.0 };
            out.push_str(&format!(
                "<circle class=\"nudge\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{colour}\"><title>{}</title></circle>\n",
                x(e.at),
                ny + BAR / 2.0,
                esc(&format!("{} {nudge} {label} (send {repeat})", e.at.format("%H:%M")))
            ));
        }
    }

    out.push_str("</svg>\n");
    out
}
