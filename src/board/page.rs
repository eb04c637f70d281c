//! The board's HTML, rendered with maud: pure functions of incidents, their events, delivery
//! trouble and `now` (no I/O, no clock). maud escapes every interpolated string, so titles,
//! updates, vendor names and every other user text reach the page as text; the only markup
//! inserted unescaped is the report's SVG chart, which `domain::chart` escapes itself.
//!
//! Every page is a complete document that works without JavaScript. `board.js` (served as a
//! file, so the Content-Security-Policy needs no inline script) adds the live parts: it
//! listens to the page's Server-Sent Events (`data-events` on `<body>`), re-reads the page and
//! swaps its `<main>` when something changed, counts `data-due` timers down, and says how stale
//! the page is when the connection drops.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::domain::engine::human;
use crate::domain::{
    CallbackOutcome, Event, Incident, IncidentId, IncidentRole, IncidentState, Nudge,
    PlanBDecision, Track, UserName,
};

/// How resolved incidents stay on the index.
pub const RECENT_DAYS: i64 = 7;
/// How many resolved incidents the index lists at most.
pub const RECENT_MAX: usize = 20;
/// How many pending timers each incident shows on the index.
const INDEX_TIMERS: usize = 3;

/// How links on a page are made: the board's own, or a share link's (one incident only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    Board,
    /// The share link's base path, `/share/INC-n/<sig>`.
    Share(String),
}

/// What the index shows.
pub struct IndexView<'a> {
    pub now: DateTime<Utc>,
    /// Every incident; the page picks the open ones and the recently resolved ones.
    pub incidents: &'a [Incident],
    /// Who holds the SDM role on the roster, for incidents with no SDM assigned.
    pub sdm_holders: &'a [&'a UserName],
    /// Delivery trouble, per incident.
    pub trouble: &'a BTreeMap<IncidentId, Vec<String>>,
    /// Delivery trouble of lanes that belong to no incident (the ops channel, DMs).
    pub other_trouble: &'a [String],
}

/// What an incident's page shows.
pub struct IncidentView<'a> {
    pub now: DateTime<Utc>,
    pub incident: &'a Incident,
    pub events: &'a [Event],
    pub sdm_holders: &'a [&'a UserName],
    pub trouble: &'a [String],
    /// The report's SVG chart, as `domain::chart::svg` wrote it.
    pub chart: &'a str,
    pub viewer: Viewer,
    /// The share link's path, shown to board viewers only.
    pub share_path: Option<String>,
}

/// `22:30 UTC`.
fn hm(t: DateTime<Utc>) -> String {
    t.format("%H:%M UTC").to_string()
}

/// `2026-11-23 22:30 UTC`.
fn full(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `<time>` with the machine-readable instant and the full date as its title.
fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(iso(t)) title=(full(t)) { (hm(t)) } }
}

/// `in 12m30s` or `5m ago`: the countdown's text as rendered (board.js keeps it ticking).
fn until(due: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = due.signed_duration_since(now);
    if d > TimeDelta::zero() {
        format!("in {}", human(d))
    } else if d == TimeDelta::zero() {
        "due now".into()
    } else {
        format!("due {} ago", human(-d))
    }
}

fn countdown(due: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(iso(due)) title=(full(due)) data-due=(due.timestamp()) { (until(due, now)) }
        " (" (hm(due)) ")"
    }
}

/// Chat text with its `<t:UNIX:t>` and `<t:UNIX:R>` stamps (Discord's) written as times, so
/// the page shows `22:30 UTC` where chat shows a localised time. Everything else is kept as
/// it is (and escaped later by maud).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("<t:") {
        let (before, at) = rest.split_at(i);
        out.push_str(before);
        let after = at.get(3..).unwrap_or("");
        let digits: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        let tail = after.get(digits.len()..).unwrap_or("");
        let mut chars = tail.chars();
        let stamp = match (chars.next(), chars.next(), chars.next()) {
            (Some(':'), Some(_), Some('>')) => digits
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)),
            _ => None,
        };
        match stamp {
            Some(t) => {
                out.push_str(&hm(t));
                rest = tail.get(3..).unwrap_or("");
            }
            None => {
                out.push_str("<t:");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn sdm_line(inc: &Incident, holders: &[&UserName]) -> String {
    match inc.assignments.get(&IncidentRole::Sdm) {
        Some(u) => u.to_string(),
        None if holders.is_empty() => "none on the roster".into(),
        None => holders
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn sdm(inc: &Incident, holders: &[&UserName]) -> Markup {
    html! {
        (sdm_line(inc, holders)) " · "
        @match inc.sdm_alerted_at {
            Some(t) => { span.ok { "alerted " (time(t)) } }
            None => { span.muted { "not alerted" } }
        }
    }
}

fn sev_class(inc: &Incident) -> String {
    format!("incident sev{}", inc.severity.level())
}

fn drill_badge(inc: &Incident) -> Markup {
    html! {
        @if inc.is_drill() { " " strong.badge.drill { "DRILL" } }
    }
}

fn track_line(t: &Track) -> Markup {
    html! {
        strong { "Plan " (t.plan) } " · " (t.title)
        " · " span.state { (t.state) }
        " · lead " (t.lead.as_ref().map_or("none".to_string(), |l| l.to_string()))
        br;
        @match &t.last_update {
            Some(u) => { span.update { "Last update " (time(u.at)) " by " (u.by) ": " q { (plain(&u.text)) } } }
            None => { span.muted { "No update yet" } }
        }
        @if let Some(h) = &t.handover {
            br; "Handover to " (h.to) " pending since " (time(h.at))
        }
    }
}

fn nudge_line(n: &Nudge, now: DateTime<Utc>) -> Markup {
    let to = n
        .targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        "Nudge " (n.id) " · " (n.kind.label()) " · to " (to)
        " · raised " (time(n.raised_at)) " (" (human(now.signed_duration_since(n.raised_at))) " ago)"
        " · sent " (n.sends) " time(s)"
        @if let Some(until) = n.snoozed_until { " · snoozed until " (time(until)) }
    }
}

fn open_nudges(inc: &Incident) -> Vec<&Nudge> {
    inc.nudges.iter().filter(|n| n.is_open()).collect()
}

/// The document around a page's `<main>`.
fn shell(title: &str, events: Option<&str>, now: DateTime<Utc>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="referrer" content="no-referrer";
                title { (title) }
                link rel="stylesheet" href="/board.css";
                script src="/board.js" defer {}
            }
            body data-events=[events] {
                a.skip href="#main" { "Skip to the content" }
                header {
                    p.brand { "warroom board" }
                    p #live role="status" aria-live="polite" {
                        "Rendered " (time(now)) ". Live updates need JavaScript; reload to refresh."
                    }
                }
                main #main data-now=(now.timestamp()) { (main) }
            }
        }
    }
}

/// A short page for a refusal or a missing page: its heading and what to do.
pub fn message(title: &str, text: &str, login: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="referrer" content="no-referrer";
                title { (title) " · warroom board" }
                link rel="stylesheet" href="/board.css";
            }
            body {
                main #main {
                    h1 { (title) }
                    p #message { (text) }
                    @if login { (login_form()) }
                }
            }
        }
    }
}

fn login_form() -> Markup {
    html! {
        form #login method="post" action="/login" {
            label for="token" { "Viewer token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    }
}

/// `/login`: the form, with a note when a token was refused.
pub fn login(note: Option<&str>) -> Markup {
    message(
        "Sign in to the incident board",
        note.unwrap_or("The board is read-only. Enter the viewer token you were given."),
        true,
    )
}

/// `/`: every open incident, then the recently resolved ones.
pub fn index(v: &IndexView) -> Markup {
    let open: Vec<&Incident> = v.incidents.iter().filter(|i| i.is_open()).collect();
    let since = v
        .now
        .checked_sub_signed(TimeDelta::days(RECENT_DAYS))
        .unwrap_or(v.now);
    let mut resolved: Vec<(&Incident, DateTime<Utc>)> = v
        .incidents
        .iter()
        .filter_map(|i| match &i.state {
            IncidentState::Resolved { at, .. } if *at >= since => Some((i, *at)),
            _ => None,
        })
        .collect();
    resolved.sort_by_key(|r| std::cmp::Reverse(r.1));
    resolved.truncate(RECENT_MAX);
    let now = v.now;
    let main = html! {
        h1 { "Open incidents " span.count { "(" (open.len()) ")" } }
        @if !v.other_trouble.is_empty() {
            section.trouble aria-labelledby="trouble-h" {
                h2 #trouble-h { "Delivery trouble" }
                ul { @for line in v.other_trouble { li { (plain(line)) } } }
            }
        }
        @if open.is_empty() {
            p #none-open { "No open incidents." }
        }
        ol.incidents #open {
            @for inc in &open {
                li {
                    article class=(sev_class(inc)) id=(format!("{}", inc.id)) aria-labelledby=(format!("{}-h", inc.id)) {
                        h2 id=(format!("{}-h", inc.id)) {
                            a href=(format!("/incidents/{}", inc.id)) {
                                span.sev { (inc.severity) } " " (inc.id) ": " span.title { (inc.title) }
                            }
                            (drill_badge(inc))
                        }
                        dl.facts {
                            div { dt { "Service" } dd { (inc.service) } }
                            div { dt { "Tier" } dd.tier { (inc.tier) " since " (time(inc.tier_entered_at)) } }
                            div { dt { "Age" } dd { (human(now.signed_duration_since(inc.opened_at))) } }
                            div { dt { "SDM" } dd { (sdm(inc, v.sdm_holders)) } }
                        }
                        h3 { "Plans" }
                        ul.plans { @for t in inc.tracks.values() { li { (track_line(t)) } } }
                        @let nudges = open_nudges(inc);
                        @if !nudges.is_empty() {
                            h3 { "Unanswered nudges" }
                            ul.nudges { @for n in nudges { li { (nudge_line(n, now)) } } }
                        }
                        h3 { "Next timers" }
                        @let timers = inc.next_timers();
                        @if timers.is_empty() { p.muted { "None pending." } }
                        ul.timers {
                            @for t in timers.into_iter().take(INDEX_TIMERS) {
                                li { (t.kind.label()) " " (countdown(t.due, now)) }
                            }
                        }
                        @if let Some(lines) = v.trouble.get(&inc.id) {
                            @if !lines.is_empty() {
                                h3 { "Delivery trouble" }
                                ul.trouble { @for line in lines { li { (plain(line)) } } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="resolved-h" {
            h2 #resolved-h { "Recently resolved" }
            @if resolved.is_empty() { p.muted { "None in the last " (RECENT_DAYS) " days." } }
            ul.resolved #resolved {
                @for (inc, at) in &resolved {
                    li {
                        a href=(format!("/incidents/{}", inc.id)) {
                            (inc.severity) " " (inc.id) ": " (inc.title)
                        }
                        (drill_badge(inc))
                        " · " (inc.service) " · resolved " (time(*at))
                        " after " (human(at.signed_duration_since(inc.opened_at)))
                        @if let IncidentState::Resolved { plan: Some(p), .. } = &inc.state { " by Plan " (p) }
                    }
                }
            }
        }
    };
    shell(
        &format!("{} open · warroom board", open.len()),
        Some("/events"),
        now,
        main,
    )
}

/// The chart without an XML prolog, to sit inside the page.
fn inline_svg(chart: &str) -> &str {
    match chart.find("<svg") {
        Some(i) => chart.get(i..).unwrap_or(""),
        None => "",
    }
}

/// `/incidents/INC-n` (and a share link's page).
pub fn incident(v: &IncidentView) -> Markup {
    let inc = v.incident;
    let now = v.now;
    let base = match &v.viewer {
        Viewer::Board => format!("/incidents/{}", inc.id),
        Viewer::Share(path) => path.clone(),
    };
    let events_url = format!("{base}/events");
    let main = html! {
        @if v.viewer == Viewer::Board {
            nav aria-label="Board" { a href="/" { "← All incidents" } }
        }
        article class=(sev_class(inc)) {
            h1 #title {
                span.sev { (inc.severity) } " " (inc.id) ": " span.title { (inc.title) } (drill_badge(inc))
            }
            section aria-labelledby="status-h" {
                h2 #status-h { "Status" }
                dl.facts #status {
                    div { dt { "State" } dd #state {
                        @match &inc.state {
                            IncidentState::Open => { "open for " (human(now.signed_duration_since(inc.opened_at))) }
                            IncidentState::Resolved { at, by, summary, plan } => {
                                "resolved " (time(*at)) " by " (by)
                                @if let Some(p) = plan { " (Plan " (p) ")" }
                                ": " (plain(summary))
                            }
                        }
                    } }
                    div { dt { "Service" } dd { (inc.service) } }
                    div { dt { "Tier" } dd.tier #tier { (inc.tier) " since " (time(inc.tier_entered_at)) } }
                    div { dt { "Opened" } dd { (time(inc.opened_at)) " by " (inc.opener) } }
                    div { dt { "SDM" } dd { (sdm(inc, v.sdm_holders)) } }
                    div { dt { "Commander" } dd { (inc.commander()) } }
                    div { dt { "Plan B" } dd {
                        @match &inc.plan_b {
                            PlanBDecision::Pending => { "not decided" }
                            PlanBDecision::Opened { at } => { "started " (time(*at)) }
                            PlanBDecision::Declined { by, reason, .. } => { "declined by " (by) ": " (plain(reason)) }
                        }
                    } }
                    @if let Some(link) = &inc.alert {
                        div { dt { "Alert" } dd {
                            (link.source) " · " (link.alerts.len()) " alert(s)"
                            @if link.reported_resolved { " · reported resolved" }
                        } }
                    }
                }
                @if !v.trouble.is_empty() {
                    h3 { "Delivery trouble" }
                    ul.trouble { @for line in v.trouble { li { (plain(line)) } } }
                }
            }
            section aria-labelledby="plans-h" {
                h2 #plans-h { "Plans" }
                @for t in inc.tracks.values() {
                    section.plan aria-labelledby=(format!("plan-{}-h", t.plan)) {
                        h3 id=(format!("plan-{}-h", t.plan)) { "Plan " (t.plan) ": " (t.title) " · " span.state { (t.state) } }
                        dl.facts {
                            div { dt { "Lead" } dd { (t.lead.as_ref().map_or("none".to_string(), |l| l.to_string())) } }
                            @if let Some(team) = &t.team { div { dt { "Team" } dd { (team) } } }
                            @if !t.members.is_empty() {
                                div { dt { "Members" } dd { (t.members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")) } }
                            }
                            div { dt { "Updates" } dd { (t.updates) } }
                        }
                        p { (track_line(t)) }
                        @if !t.checklist.is_empty() {
                            h4 { "Checklist" }
                            ul.checklist {
                                @for item in &t.checklist {
                                    li {
                                        @match &item.done {
                                            Some((at, by)) => { span.done { "Done: " } (item.text) " · " (by) " at " (time(*at)) }
                                            None => { span.todo { "To do: " } (item.text) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @let nudges = open_nudges(inc);
            @if !nudges.is_empty() {
                section aria-labelledby="nudges-h" {
                    h2 #nudges-h { "Unanswered nudges" }
                    ul.nudges { @for n in nudges { li { (nudge_line(n, now)) } } }
                }
            }
            section aria-labelledby="timers-h" {
                h2 #timers-h { "Next timers" }
                @let timers = inc.next_timers();
                @if timers.is_empty() { p.muted { "None pending." } }
                ul.timers #timers { @for t in timers { li { (t.kind.label()) " " (countdown(t.due, now)) } } }
            }
            section aria-labelledby="vendors-h" {
                h2 #vendors-h { "Vendor cases" }
                @if inc.vendor_cases.is_empty() { p.muted { "None." } }
                @else {
                    div.scroll {
                        table #vendors {
                            thead { tr { th scope="col" { "Vendor" } th scope="col" { "Case" } th scope="col" { "Callback" } th scope="col" { "Last update" } } }
                            tbody {
                                @for c in &inc.vendor_cases {
                                    tr {
                                        td { (c.vendor) }
                                        td { (c.case) @if c.closed_at.is_some() { " (closed)" } }
                                        td {
                                            @match (c.callback, &c.callback_outcome) {
                                                (None, _) => { span.muted { "none promised" } }
                                                (Some(t), CallbackOutcome::Waiting) => { "due " (countdown(t, now)) }
                                                (Some(t), CallbackOutcome::Met { at }) => { "promised " (time(t)) ", met " (time(*at)) }
                                                (Some(t), CallbackOutcome::Missed) => { strong.bad { "missed" } " (promised " (time(t)) ")" }
                                            }
                                        }
                                        td {
                                            @match &c.last_update {
                                                Some(u) => { (time(u.at)) " " (u.by) ": " (plain(&u.text)) }
                                                None => { span.muted { "—" } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="chart-h" {
                h2 #chart-h { "Chart" }
                figure.chart role="group" aria-labelledby="chart-caption" {
                    div.scroll { (PreEscaped(inline_svg(v.chart))) }
                    figcaption #chart-caption { "Tiers and plans over time, with nudges as marks." }
                }
                p.links {
                    "The report as "
                    a href=(format!("{base}/report.md")) { "Markdown" } ", "
                    a href=(format!("{base}/report.json")) { "JSON" } " and "
                    a href=(format!("{base}/chart.svg")) { "SVG" } "."
                }
            }
            section aria-labelledby="timeline-h" {
                h2 #timeline-h { "Timeline " span.count { "(" (v.events.len()) " events)" } }
                div.scroll {
                    table #timeline {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Who" } th scope="col" { "What" } } }
                        tbody {
                            @for e in v.events {
                                tr {
                                    td { (time(e.at)) }
                                    td { (e.actor.as_ref().map_or("warroom".to_string(), |a| a.to_string())) }
                                    td { (plain(&e.text)) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(path) = &v.share_path {
                section aria-labelledby="share-h" {
                    h2 #share-h { "Share" }
                    p {
                        "Anyone with this link sees this incident only, until it resolves plus a day: "
                        a #share-link href=(path) { (path) }
                    }
                }
            }
        }
    };
    shell(
        &format!("{}: {} · warroom board", inc.id, inc.title),
        Some(&events_url),
        now,
        main,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_stamps_become_times_and_the_rest_stays() {
        assert_eq!(
            plain("due <t:1795000000:t>, <t:1795000000:R>!"),
            "due 11:06 UTC, 11:06 UTC!"
        );
        assert_eq!(plain("<t:x:t> <t:12"), "<t:x:t> <t:12");
        assert_eq!(plain("<img src=x>"), "<img src=x>");
    }

    #[test]
    fn countdown_words() {
        let now = DateTime::<Utc>::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!(until(now + TimeDelta::minutes(5), now), "in 5m");
        assert_eq!(until(now, now), "due now");
        assert_eq!(until(now - TimeDelta::seconds(30), now), "due 30s ago");
    }
}
