//! The three payload formats, each read into one `AlertNotice`: Alertmanager's webhook
//! (`version` "4"), Grafana's webhook contact point (`version` "1") and the PagerDuty Events API
//! v2. Every optional field is optional (`fingerprint` is missing before Alertmanager 0.19,
//! `truncatedAlerts` before 0.21; `notification_reason` and `routeLabels` are newer). In the
//! webhook formats, fields this version does not know are ignored, so that a newer Alertmanager
//! or Grafana keeps working; the Events API is fixed, so an unknown field there is refused.
//! What is required is checked here, and every refusal names the field and what was expected.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::SourceKind;
use crate::domain::AlertStatus;
use crate::domain::alert::{AlertItem, AlertNotice, NoticeKind};

/// Why a body was refused (a 400: the sender should not retry it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPayload(pub String);

impl std::fmt::Display for BadPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, BadPayload> {
    Err(BadPayload(msg.into()))
}

/// The longest group key, dedup key or label value accepted (PagerDuty's `dedup_key` limit).
pub const MAX_KEY: usize = 255;
/// The longest Events API summary (PagerDuty's own limit).
pub const MAX_SUMMARY: usize = 1024;
/// The most alerts one notification may carry.
pub const MAX_ALERTS: usize = 1000;

type Labels = BTreeMap<String, String>;

#[derive(Deserialize)]
struct WebhookMessage {
    version: Option<String>,
    #[serde(rename = "groupKey")]
    group_key: Option<String>,
    status: Option<String>,
    alerts: Option<Vec<WebhookAlert>>,
    #[serde(rename = "commonLabels")]
    common_labels: Option<Labels>,
    #[serde(rename = "groupLabels")]
    group_labels: Option<Labels>,
    #[serde(rename = "commonAnnotations")]
    common_annotations: Option<Labels>,
    // Grafana's additions, which tell its format apart.
    #[serde(rename = "orgId")]
    org_id: Option<serde_json::Value>,
    state: Option<String>,
    title: Option<String>,
}

#[derive(Deserialize)]
struct WebhookAlert {
    status: Option<String>,
    labels: Option<Labels>,
    annotations: Option<Labels>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
}

/// The Events API v2 is a fixed, documented shape, so its field names are checked: a field it
/// does not have is a mistake worth a 400 (the webhook formats above keep growing, and are not).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsMessage {
    routing_key: Option<String>,
    event_action: Option<String>,
    dedup_key: Option<String>,
    payload: Option<EventsPayload>,
    client_url: Option<String>,
    // Read only to be known: warroom does not use them.
    #[allow(dead_code)]
    client: Option<serde_json::Value>,
    #[allow(dead_code)]
    links: Option<serde_json::Value>,
    #[allow(dead_code)]
    images: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsPayload {
    summary: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    #[allow(dead_code)]
    timestamp: Option<serde_json::Value>,
    #[allow(dead_code)]
    custom_details: Option<serde_json::Value>,
}

/// A parsed notification, plus what authentication needs from the body.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub notice: AlertNotice,
    /// Events API: the `routing_key`, which may carry the source's token.
    pub routing_key: Option<String>,
    /// Events API: the `dedup_key` to answer with (generated when the sender gave none).
    pub dedup_key: Option<String>,
}

/// Only the `routing_key` of an Events body, for authentication before anything else is
/// read. None when the body has none (or is not JSON: the parser says why later).
pub fn routing_key(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Key {
        routing_key: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Key>(body)
        .ok()
        .and_then(|k| k.routing_key)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// Reads `body` as `kind`'s format for `source`.
pub fn parse(kind: SourceKind, source: &str, body: &[u8]) -> Result<Parsed, BadPayload> {
    // The body must be one JSON object; say so before the format's own rules.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BadPayload(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return bad(format!(
            "the body must be a JSON object, found {}",
            json_type(&value)
        ));
    }
    match kind {
        SourceKind::Alertmanager | SourceKind::Grafana => webhook(kind, source, value),
        SourceKind::Events => events(source, value, body),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn status_of(field: &str, s: &str) -> Result<AlertStatus, BadPayload> {
    match s {
        "firing" => Ok(AlertStatus::Firing),
        "resolved" => Ok(AlertStatus::Resolved),
        other => bad(format!(
            "{field}: expected \"firing\" or \"resolved\", found \"{}\"",
            shown(other)
        )),
    }
}

/// A value from the body, shortened and with control characters escaped, for a message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).flat_map(char::escape_default).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

fn key_field(field: &str, v: Option<String>) -> Result<String, BadPayload> {
    match v {
        None => bad(format!("{field} is missing; it is required")),
        Some(k) if k.trim().is_empty() => bad(format!("{field} is empty; it is required")),
        Some(k) if k.chars().count() > 4 * MAX_KEY => bad(format!(
            "{field} is {} characters long; at most {} are accepted",
            k.chars().count(),
            4 * MAX_KEY
        )),
        Some(k) => Ok(k),
    }
}

fn webhook(kind: SourceKind, source: &str, value: serde_json::Value) -> Result<Parsed, BadPayload> {
    let format = match kind {
        SourceKind::Grafana => "a Grafana webhook payload",
        _ => "an Alertmanager webhook payload (version 4)",
    };
    let m: WebhookMessage = serde_json::from_value(value)
        .map_err(|e| BadPayload(format!("the body is not {format}: {e}")))?;
    let grafana_marks = m.org_id.is_some() || m.state.is_some();
    match (kind, m.version.as_deref()) {
        (SourceKind::Grafana, Some("1")) => {}
        (SourceKind::Grafana, None) if grafana_marks => {}
        (SourceKind::Grafana, Some(v)) => {
            return bad(format!(
                "version: expected Grafana's webhook version \"1\", found \"{}\"{}",
                shown(v),
                if v == "4" && !grafana_marks {
                    " (this looks like an Alertmanager payload: give this source kind = \"alertmanager\")"
                } else {
                    ""
                }
            ));
        }
        (SourceKind::Grafana, None) => {
            return bad(
                "version is missing, and neither orgId nor state is there: this is not a Grafana webhook payload",
            );
        }
        (_, Some("4")) => {}
        (_, Some(v)) => {
            return bad(format!(
                "version: expected Alertmanager's webhook version \"4\", found \"{}\"{}",
                shown(v),
                if grafana_marks {
                    " (this looks like a Grafana payload: give this source kind = \"grafana\")"
                } else {
                    ""
                }
            ));
        }
        (_, None) => return bad("version is missing; expected \"4\" (Alertmanager's webhook)"),
    }
    let group = key_field("groupKey", m.group_key)?;
    let status = match m.status.as_deref() {
        Some(s) => status_of("status", s)?,
        None => return bad("status is missing; expected \"firing\" or \"resolved\""),
    };
    let Some(raw) = m.alerts else {
        return bad("alerts is missing; expected a list of alerts");
    };
    if raw.is_empty() {
        return bad("alerts is empty; a notification carries at least one alert");
    }
    if raw.len() > MAX_ALERTS {
        return bad(format!(
            "alerts holds {} alerts; at most {MAX_ALERTS} are accepted in one notification",
            raw.len()
        ));
    }
    let mut alerts = Vec::with_capacity(raw.len());
    for (i, a) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("alerts[{i}].{f}");
        let Some(labels) = a.labels else {
            return bad(format!(
                "{} is missing; every alert has labels",
                field("labels")
            ));
        };
        if labels.is_empty() {
            return bad(format!(
                "{} is empty; every alert has labels",
                field("labels")
            ));
        }
        // An alert without its own status (hand-written senders) takes the group's.
        let status = match a.status.as_deref() {
            Some(s) => status_of(&field("status"), s)?,
            None => status,
        };
        let identity = match a.fingerprint.filter(|f| !f.trim().is_empty()) {
            Some(f) => f,
            None => AlertItem::identity_of(&labels),
        };
        alerts.push(AlertItem {
            identity,
            status,
            labels,
            annotations: a.annotations.unwrap_or_default(),
            generator_url: a.generator_url,
        });
    }
    let mut labels = m.common_labels.unwrap_or_default();
    for (k, v) in m.group_labels.unwrap_or_default() {
        labels.entry(k).or_insert(v);
    }
    let summary = m
        .common_annotations
        .and_then(|a| a.get("summary").cloned())
        .or_else(|| {
            alerts
                .first()
                .and_then(|a| a.annotations.get("summary").cloned())
        })
        .or(m.title.filter(|_| kind == SourceKind::Grafana));
    Ok(Parsed {
        notice: AlertNotice {
            source: source.to_string(),
            group,
            kind: NoticeKind::Report,
            status,
            alerts,
            labels,
            summary,
        },
        routing_key: None,
        dedup_key: None,
    })
}

fn events(source: &str, value: serde_json::Value, body: &[u8]) -> Result<Parsed, BadPayload> {
    let m: EventsMessage = serde_json::from_value(value).map_err(|e| {
        BadPayload(format!(
            "the body is not a PagerDuty Events API v2 event: {e}"
        ))
    })?;
    let action = match m.event_action.as_deref() {
        Some("trigger") => NoticeKind::Trigger,
        Some("acknowledge") => NoticeKind::Acknowledge,
        Some("resolve") => NoticeKind::Resolve,
        Some(other) => {
            return bad(format!(
                "event_action: expected \"trigger\", \"acknowledge\" or \"resolve\", found \"{}\"",
                shown(other)
            ));
        }
        None => {
            return bad(
                "event_action is missing; expected \"trigger\", \"acknowledge\" or \"resolve\"",
            );
        }
    };
    if let Some(k) = &m.dedup_key
        && k.chars().count() > MAX_KEY
    {
        return bad(format!(
            "dedup_key is {} characters long; at most {MAX_KEY} are accepted",
            k.chars().count()
        ));
    }
    let dedup = m.dedup_key.filter(|k| !k.trim().is_empty());
    if action != NoticeKind::Trigger {
        let Some(dedup) = dedup else {
            return bad(format!(
                "dedup_key is missing; an {} names the alert it is about by its dedup_key",
                m.event_action.as_deref().unwrap_or("event")
            ));
        };
        let status = if action == NoticeKind::Resolve {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        };
        let alerts = if action == NoticeKind::Resolve {
            vec![AlertItem {
                identity: dedup.clone(),
                status,
                labels: Labels::new(),
                annotations: Labels::new(),
                generator_url: None,
            }]
        } else {
            Vec::new()
        };
        return Ok(Parsed {
            notice: AlertNotice {
                source: source.to_string(),
                group: dedup.clone(),
                kind: action,
                status,
                alerts,
                labels: Labels::new(),
                summary: None,
            },
            routing_key: m.routing_key,
            dedup_key: Some(dedup),
        });
    }
    let Some(p) = m.payload else {
        return bad(
            "payload is missing; a trigger needs payload.summary, payload.source and payload.severity",
        );
    };
    let summary = match p.summary {
        Some(s) if s.trim().is_empty() => return bad("payload.summary is empty; it is required"),
        Some(s) if s.chars().count() > MAX_SUMMARY => {
            return bad(format!(
                "payload.summary is {} characters long; at most {MAX_SUMMARY} are accepted",
                s.chars().count()
            ));
        }
        Some(s) => s,
        None => return bad("payload.summary is missing; it is required for a trigger"),
    };
    let origin = match p.source {
        Some(s) if !s.trim().is_empty() => s,
        _ => {
            return bad(
                "payload.source is missing; it is required for a trigger (the host or service affected)",
            );
        }
    };
    let severity = match p.severity.as_deref() {
        Some(s @ ("critical" | "error" | "warning" | "info")) => s.to_string(),
        Some(other) => {
            return bad(format!(
                "payload.severity: expected \"critical\", \"error\", \"warning\" or \"info\", found \"{}\"",
                shown(other)
            ));
        }
        None => {
            return bad(
                "payload.severity is missing; expected \"critical\", \"error\", \"warning\" or \"info\"",
            );
        }
    };
    // PagerDuty makes up a key when none is given; this one is the body's digest, so that a
    // retried trigger is the same alert, not a second one.
    let dedup = dedup.unwrap_or_else(|| {
        Sha256::digest(body)
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    let mut labels = Labels::new();
    labels.insert("severity".into(), severity);
    labels.insert("source".into(), origin);
    for (k, v) in [
        ("component", p.component),
        ("group", p.group),
        ("class", p.class),
    ] {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            labels.insert(k.into(), v);
        }
    }
    let mut annotations = Labels::new();
    annotations.insert("summary".into(), summary.clone());
    Ok(Parsed {
        notice: AlertNotice {
            source: source.to_string(),
            group: dedup.clone(),
            kind: NoticeKind::Trigger,
            status: AlertStatus::Firing,
            alerts: vec![AlertItem {
                identity: dedup.clone(),
                status: AlertStatus::Firing,
                labels: labels.clone(),
                annotations,
                generator_url: m.client_url,
            }],
            labels,
            summary: Some(summary),
        },
        routing_key: m.routing_key,
        dedup_key: Some(dedup),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_status_not_ends_at() {
        let body = br#"{"version":"4","groupKey":"g","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A"},"endsAt":"2018-11-04T22:46:58Z"}]}"#;
        let p = parse(SourceKind::Alertmanager, "prom", body).unwrap();
        assert_eq!(p.notice.status, AlertStatus::Firing);
        assert_eq!(p.notice.alerts[0].status, AlertStatus::Firing);
        assert_eq!(p.notice.alerts[0].identity, "alertname=\"A\"");
    }

    #[test]
    fn an_alertmanager_source_refuses_a_grafana_body_and_says_why() {
        let body = br#"{"version":"1","orgId":1,"groupKey":"g","status":"firing","alerts":[]}"#;
        let e = parse(SourceKind::Alertmanager, "prom", body).unwrap_err();
        assert!(e.0.contains("kind = \"grafana\""), "{e}");
    }
}
