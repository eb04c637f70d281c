//! Alerts from monitoring, in the domain's terms: one notification about one alert group
//! (`AlertNotice`), how it is routed to a severity and a service (`Route`, `route`), and the
//! decisions it makes on the group's incident: open it, append a new alert, report it resolved
//! (or resolve it, with `auto_resolve`), note that it flapped, acknowledge its pickup nudge.
//!
//! Payload formats (Alertmanager, Grafana, the Events API) are parsed in `crate::alerts`; this
//! module never sees JSON, a socket or a clock. The rules:
//! - one group maps to one open incident (the store indexes `Incident::alert` by source and
//!   group, in the commit's own transaction);
//! - a notification that tells nothing new decides nothing (`alert_update` returns `None`), so
//!   repeats and retries add nothing;
//! - firing or resolved comes from the sender's `status`, never from `endsAt`.

use std::collections::BTreeMap;

use super::engine::{Ctx, Decision, MessageKind, Refusal, Work, opening};
use super::handle::resolve;
use super::model::*;

/// At most this many alerts are written out in one post; the rest are counted.
const LISTED: usize = 10;
/// A label value or URL is cut to this many characters in chat and on the timeline.
const VALUE_CHARS: usize = 200;
/// At most this many labels of one alert are written out in chat and on the timeline (the
/// incident keeps them all, and the report lists them all).
const LABELS_SHOWN: usize = 30;
/// A title is cut to this many characters.
const TITLE_CHARS: usize = 200;

/// One alert as a source reports it now.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertItem {
    /// Its fingerprint, or its labels written out when the sender gives none.
    pub identity: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub generator_url: Option<String>,
}

impl AlertItem {
    /// The identity of an alert without a fingerprint: its labels, which Alertmanager's own
    /// fingerprint is a hash of.
    pub fn identity_of(labels: &BTreeMap<String, String>) -> String {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a notification is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Alertmanager or Grafana: the state of the group and of each alert in it.
    Report,
    /// Events API `trigger`.
    Trigger,
    /// Events API `acknowledge`.
    Acknowledge,
    /// Events API `resolve`.
    Resolve,
}

/// One notification about one alert group.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertNotice {
    /// The source's name, such as `prom` (it is served at `POST /alerts/prom`).
    pub source: String,
    /// The group key: Alertmanager's `groupKey`, Grafana's, or the Events `dedup_key`.
    pub group: String,
    pub kind: NoticeKind,
    /// The group's status as the sender states it.
    pub status: AlertStatus,
    pub alerts: Vec<AlertItem>,
    /// The labels that routes match against: the group's common labels.
    pub labels: BTreeMap<String, String>,
    /// The summary the sender gives (`annotations.summary`, Events `payload.summary`).
    pub summary: Option<String>,
}

/// A source's own settings that decisions need.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SourcePolicy {
    pub name: String,
    /// Resolve the incident when the source reports the group resolved (off by default:
    /// the current tier is asked to confirm instead).
    pub auto_resolve: bool,
    /// The service when no label names one.
    pub service: Option<String>,
}

/// One `[[alerts.routes]]` entry: when every label in `matchers` matches exactly, it sets the
/// severity and, if given, the service. The first matching route wins.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Route {
    pub matchers: BTreeMap<String, String>,
    pub severity: Option<Severity>,
    pub service: Option<String>,
}

/// The severity a `severity` label (or Events `payload.severity`) means when no route says:
/// critical → 1, error or major → 2, warning → 3, info → 4, anything else → 3.
pub fn default_severity(label: Option<&str>) -> Severity {
    match label.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("critical") => Severity::Sev1,
        Some("error" | "major") => Severity::Sev2,
        Some("info") => Severity::Sev4,
        _ => Severity::Sev3,
    }
}

/// The severity and service of a new incident for `labels` from `source`.
pub fn route(
    routes: &[Route],
    source: &SourcePolicy,
    labels: &BTreeMap<String, String>,
) -> (Severity, String) {
    let hit = routes
        .iter()
        .find(|r| r.matchers.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let severity = hit
        .and_then(|r| r.severity)
        .unwrap_or_else(|| default_severity(labels.get("severity").map(String::as_str)));
    let named = |s: &String| {
        let s = cut(s.trim(), 100);
        (!s.is_empty()).then_some(s)
    };
    let service = hit
        .and_then(|r| r.service.as_ref())
        .and_then(named)
        .or_else(|| labels.get("service").and_then(named))
        .or_else(|| labels.get("job").and_then(named))
        .or_else(|| source.service.as_ref().and_then(named))
        .unwrap_or_else(|| source.name.clone());
    (severity, service)
}

/// The incident's title: the summary, else the `alertname`, else the source's name.
pub fn title(notice: &AlertNotice) -> String {
    let first = notice.alerts.first();
    let candidates = [
        notice.summary.clone(),
        first.and_then(|a| a.annotations.get("summary").cloned()),
        notice.labels.get("alertname").cloned(),
        first.and_then(|a| a.labels.get("alertname").cloned()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|s| cut(s.trim(), TITLE_CHARS))
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| format!("Alert from {}", notice.source))
}

/// The actor an alert source acts as on the timeline: `alert:prom`.
pub fn opener(source: &str) -> UserName {
    UserName::new(&format!("alert:{source}"))
}

/// `s` cut to at most `n` characters, with an ellipsis when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n).collect();
    out.push('…');
    out
}

/// One line for an alert: its name, its labels, its generator URL.
pub fn describe(labels: &BTreeMap<String, String>, url: Option<&str>) -> String {
    let name = labels.get("alertname").map_or("alert", String::as_str);
    let mut shown = labels
        .iter()
        .take(LABELS_SHOWN)
        .map(|(k, v)| format!("{}={}", cut(k, 60), cut(v, VALUE_CHARS)))
        .collect::<Vec<_>>();
    if labels.len() > LABELS_SHOWN {
        shown.push(format!("and {} more", labels.len() - LABELS_SHOWN));
    }
    let labels = shown.join(", ");
    let url = url
        .filter(|u| !u.is_empty())
        .map_or(String::new(), |u| format!(" · {}", cut(u, VALUE_CHARS * 2)));
    format!("{} [{labels}]{url}", cut(name, 100))
}

fn listing(items: &[&SeenAlert]) -> String {
    let mut lines: Vec<String> = items
        .iter()
        .take(LISTED)
        .map(|a| {
            format!(
                "\n- {} ({})",
                describe(&a.labels, a.generator_url.as_deref()),
                a.status
            )
        })
        .collect();
    if items.len() > LISTED {
        lines.push(format!("\n- and {} more", items.len() - LISTED));
    }
    lines.concat()
}

fn seen(item: &AlertItem, now: chrono::DateTime<chrono::Utc>) -> SeenAlert {
    SeenAlert {
        identity: item.identity.clone(),
        labels: item.labels.clone(),
        generator_url: item.generator_url.clone().filter(|u| !u.is_empty()),
        status: item.status,
        first_seen: now,
    }
}

/// Opens the incident for a group no open incident holds. `None` when nothing in the
/// notification fires (a resolve for a group warroom holds no incident for opens nothing).
pub fn alert_open(
    ctx: &Ctx,
    id: IncidentId,
    notice: &AlertNotice,
    source: &SourcePolicy,
    routes: &[Route],
) -> Result<Option<Decision>, Refusal> {
    let firing = notice.status == AlertStatus::Firing
        && matches!(notice.kind, NoticeKind::Report | NoticeKind::Trigger);
    if !firing {
        return Ok(None);
    }
    let who = opener(&source.name);
    let mut labels = notice.labels.clone();
    if labels.is_empty()
        && let Some(first) = notice.alerts.first()
    {
        labels = first.labels.clone();
    }
    let (severity, service) = route(routes, source, &labels);
    let title = title(notice);
    let (mut w, schedule) = opening(
        ctx,
        &who,
        None,
        id,
        &title,
        severity,
        &service,
        Exercise::Real,
    )?;
    let now = ctx.now;
    let alerts: Vec<SeenAlert> = notice.alerts.iter().map(|a| seen(a, now)).collect();
    for a in &alerts {
        w.event(
            EventKind::AlertFired,
            format!(
                "alert from {} ({}): {}",
                source.name,
                a.status,
                describe(&a.labels, a.generator_url.as_deref())
            ),
        );
    }
    let list = listing(&alerts.iter().collect::<Vec<_>>());
    let (title, service) = (w.inc.title.clone(), w.inc.service.clone());
    w.post(
        MessageKind::Post,
        format!(
            "{id} opened by {who}: {title} · {severity} · service {service} · incident. The monitoring source {} reports it (group {}). L1 owns it; Plan A (troubleshoot) is L1's until someone leads it.{schedule}\nAlerts:{list}",
            source.name,
            cut(&notice.group, VALUE_CHARS)
        ),
        vec![],
    );
    let target = w.tier_target(Tier::L1);
    w.raise(
        NudgeKind::TierPickup { tier: Tier::L1 },
        vec![target.clone()],
        format!(
            "{id} was opened by the monitoring source {}: {title}. {target}: pick it up; acknowledge with /ack.",
            source.name
        ),
    );
    w.maybe_alert_sdm();
    w.inc.alert = Some(AlertLink {
        source: source.name.clone(),
        group: notice.group.clone(),
        alerts,
        reported_resolved: false,
        acknowledged: false,
    });
    let channel = w.inc.channel.clone();
    w.finish_command(format!("Opened {id} ({severity}) in #{channel}."))
        .map(Some)
}

/// What a notification changes on the open incident of its group; `None` when it tells
/// nothing new (a repeat, a retry, an acknowledge already recorded).
pub fn alert_update(
    ctx: &Ctx,
    inc: &Incident,
    notice: &AlertNotice,
    source: &SourcePolicy,
) -> Result<Option<Decision>, Refusal> {
    let Some(mut link) = inc.alert.clone() else {
        return Ok(None);
    };
    if !inc.is_open() {
        return Ok(None);
    }
    let who = opener(&source.name);
    let mut w = Work::new(ctx, inc.clone(), Some(&who));
    let id = inc.id;
    let now = ctx.now;
    let mut changed = false;
    let mut news: Vec<String> = Vec::new();

    if notice.kind == NoticeKind::Acknowledge {
        if link.acknowledged {
            return Ok(None);
        }
        link.acknowledged = true;
        let answered = w.answer(
            |k| matches!(k, NudgeKind::TierPickup { .. }),
            &format!("acknowledged at the monitoring source {}", source.name),
        );
        let which = if answered.is_empty() {
            "no pickup nudge was open".to_string()
        } else {
            format!(
                "answers nudge {}",
                answered
                    .iter()
                    .map(NudgeId::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        for n in &answered {
            w.event(
                EventKind::Acknowledged { nudge: *n },
                format!(
                    "nudge {n} acknowledged at the monitoring source {}",
                    source.name
                ),
            );
        }
        w.event(
            EventKind::AlertAcknowledged,
            format!(
                "acknowledged at the monitoring source {} ({which})",
                source.name
            ),
        );
        w.post(
            MessageKind::Post,
            format!(
                "{id}: the monitoring source {} acknowledged the alert ({which}).",
                source.name
            ),
            vec![],
        );
        w.inc.alert = Some(link);
        return w.finish_command(format!("{id} acknowledged.")).map(Some);
    }

    for item in &notice.alerts {
        match link.alerts.iter_mut().find(|a| a.identity == item.identity) {
            None => {
                let a = seen(item, now);
                let line = describe(&a.labels, a.generator_url.as_deref());
                match a.status {
                    AlertStatus::Firing => {
                        w.event(
                            EventKind::AlertFired,
                            format!("new alert in the group from {}: {line}", source.name),
                        );
                        news.push(format!("New alert in the group: {line}"));
                    }
                    AlertStatus::Resolved => w.event(
                        EventKind::AlertResolved,
                        format!(
                            "alert in the group from {}, already resolved: {line}",
                            source.name
                        ),
                    ),
                }
                link.alerts.push(a);
                changed = true;
            }
            Some(a) if a.status != item.status => {
                a.status = item.status;
                if item.generator_url.as_deref().is_some_and(|u| !u.is_empty()) {
                    a.generator_url = item.generator_url.clone();
                }
                let line = describe(&a.labels, a.generator_url.as_deref());
                match item.status {
                    AlertStatus::Firing => {
                        w.event(
                            EventKind::AlertFired,
                            format!("alert fired again at {}: {line}", source.name),
                        );
                        news.push(format!("Fired again: {line}"));
                    }
                    AlertStatus::Resolved => {
                        w.event(
                            EventKind::AlertResolved,
                            format!("alert resolved at {}: {line}", source.name),
                        );
                        news.push(format!("Resolved at the source: {line}"));
                    }
                }
                changed = true;
            }
            Some(_) => {}
        }
    }
    if notice.status == AlertStatus::Resolved {
        for a in &mut link.alerts {
            if a.status != AlertStatus::Resolved {
                a.status = AlertStatus::Resolved;
                changed = true;
            }
        }
    }

    let tier = w.inc.tier;
    let target = w.tier_target(tier);
    let mut reply = format!("{id} updated.");
    match (notice.status, link.reported_resolved) {
        (AlertStatus::Resolved, false) => {
            link.reported_resolved = true;
            changed = true;
            w.event(
                EventKind::AlertResolved,
                format!(
                    "the monitoring source {} reports this resolved",
                    source.name
                ),
            );
            if !news.is_empty() {
                w.post(
                    MessageKind::Post,
                    format!("{id}: {}", news.join("\n")),
                    vec![],
                );
                news.clear();
            }
            if source.auto_resolve {
                let plan = (w.inc.tracks.len() == 1).then_some(Plan::A);
                resolve(
                    &mut w,
                    &who,
                    &format!(
                        "the monitoring source {} reports this resolved (auto_resolve)",
                        source.name
                    ),
                    plan,
                );
                reply = format!("{id} resolved: the source reports it resolved (auto_resolve).");
            } else {
                w.raise(
                    NudgeKind::ConfirmResolved,
                    vec![target.clone()],
                    format!(
                        "{id}: the monitoring source reports this resolved ({}). {target}: once the service is back, confirm with /incident resolve summary:…",
                        source.name
                    ),
                );
                reply = format!("{id}: resolve reported; {tier} is asked to confirm.");
            }
        }
        (AlertStatus::Firing, true) => {
            link.reported_resolved = false;
            changed = true;
            w.answer(
                |k| *k == NudgeKind::ConfirmResolved,
                "the alert fired again",
            );
            w.event(
                EventKind::AlertFired,
                format!(
                    "fired again after {} reported it resolved (flapping)",
                    source.name
                ),
            );
            news.push(format!(
                "The alert fired again after {} reported it resolved (flapping): this is still {id}; do not resolve it yet.",
                source.name
            ));
        }
        _ => {}
    }
    if !changed {
        return Ok(None);
    }
    if !news.is_empty() {
        w.post(
            MessageKind::Post,
            format!("{id}: {}", news.join("\n")),
            vec![],
        );
    }
    w.inc.alert = Some(link);
    w.finish_command(reply).map(Some)
}

/// The alert section of a report: the source, the group and each alert with its labels and
/// generator URL.
pub fn report_section(link: &AlertLink) -> String {
    let mut md = format!(
        "\n## Alerts\n\n- Source: {}\n- Group: `{}`\n- Reported resolved: {}\n\n| alert | status | labels | generator |\n|---|---|---|---|\n",
        link.source,
        link.group.replace('`', "'"),
        if link.reported_resolved { "yes" } else { "no" },
    );
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    for a in &link.alerts {
        let labels = a
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            esc(a.labels.get("alertname").map_or("alert", String::as_str)),
            a.status,
            esc(&labels),
            esc(a.generator_url.as_deref().unwrap_or("—"))
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_line_for_an_alert_stays_short_whatever_its_labels() {
        let many: BTreeMap<String, String> = (0..500)
            .map(|i| (format!("l{i:03}"), "v".repeat(5000)))
            .collect();
        let line = describe(&many, Some(&"u".repeat(10_000)));
        assert!(line.contains("and 470 more"), "{}", &line[..200]);
        assert!(line.chars().count() < 30 * 270 + 500, "{}", line.len());
    }

    #[test]
    fn default_severity_follows_the_issue_table() {
        assert_eq!(default_severity(Some("critical")), Severity::Sev1);
        assert_eq!(default_severity(Some("Error")), Severity::Sev2);
        assert_eq!(default_severity(Some("major")), Severity::Sev2);
        assert_eq!(default_severity(Some("Warning")), Severity::Sev3);
        assert_eq!(default_severity(Some("info")), Severity::Sev4);
        assert_eq!(default_severity(Some("page")), Severity::Sev3);
        assert_eq!(default_severity(None), Severity::Sev3);
    }

    #[test]
    fn the_first_matching_route_wins_and_service_falls_back_in_order() {
        let src = SourcePolicy {
            name: "prom".into(),
            auto_resolve: false,
            service: Some("mail".into()),
        };
        let routes = vec![
            Route {
                matchers: labels(&[("team", "db")]),
                severity: Some(Severity::Sev2),
                service: Some("postgres".into()),
            },
            Route {
                matchers: labels(&[("team", "db"), ("severity", "info")]),
                severity: Some(Severity::Sev4),
                service: None,
            },
        ];
        let l = labels(&[("team", "db"), ("severity", "info")]);
        assert_eq!(
            route(&routes, &src, &l),
            (Severity::Sev2, "postgres".into())
        );
        let l = labels(&[("severity", "critical"), ("job", "node")]);
        assert_eq!(route(&routes, &src, &l), (Severity::Sev1, "node".into()));
        let l = labels(&[("service", "web"), ("job", "node")]);
        assert_eq!(route(&routes, &src, &l), (Severity::Sev3, "web".into()));
        assert_eq!(
            route(&routes, &src, &BTreeMap::new()),
            (Severity::Sev3, "mail".into())
        );
        let bare = SourcePolicy {
            name: "prom".into(),
            ..Default::default()
        };
        assert_eq!(
            route(&[], &bare, &BTreeMap::new()),
            (Severity::Sev3, "prom".into())
        );
    }
}
