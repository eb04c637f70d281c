//! `/metrics`, scraped and read by a Prometheus text-format parser (`prometheus-parse`), not by
//! string matching: the figures move as a scenario runs. Also `/health` and `/ready`.

use prometheus_parse::{Scrape, Value};

use warroom::app::ReplyKind;
use warroom::clock::Clock;
use warroom::domain::{IncidentId, UserName};

use crate::alerts::{Intake, am_body};

async fn scrape(h: &Intake) -> Scrape {
    let resp = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = resp.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`; 0 when there is none.
/// Counters read as untyped here: OpenMetrics names a counter's family without `_total`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => panic!("{name} is a histogram"),
        })
        .sum()
}

/// A histogram's observation count (its `+Inf` bucket).
fn observations(s: &Scrape, name: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match &x.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_move_as_a_scenario_runs() {
    let h = Intake::start().await;
    let s = scrape(&h).await;
    // The families are there from the start, with their help texts, named by convention.
    for family in [
        "warroom_commands",
        "warroom_nudges",
        "warroom_delivery_failures",
        "warroom_alerts_received",
        "warroom_timer_lateness_seconds",
        "warroom_time_to_acknowledge_seconds",
        "warroom_time_to_resolve_seconds",
        "warroom_open_incidents",
        "warroom_outbox_depth",
        "warroom_outbox_oldest_age_seconds",
    ] {
        assert!(s.docs.contains_key(family), "no HELP for {family}");
    }
    assert_eq!(
        value(
            &s,
            "warroom_open_incidents",
            &[("severity", "1"), ("tier", "L1")]
        ),
        0.0
    );
    assert_eq!(observations(&s, "warroom_timer_lateness_seconds"), 0.0);

    // An alert opens a SEV1 incident at L1, with a pickup nudge.
    let group = "{}:{alertname=\"DiskFull\"}";
    let (code, _) = h
        .send("prom", &am_body(group, "firing", &[("a", "firing")]))
        .await;
    assert_eq!(code, 200);
    let (code, _) = h
        .send("prom", &am_body(group, "firing", &[("a", "firing")]))
        .await;
    assert_eq!(code, 200);
    let (code, _) = h
        .post(
            "/alerts/prom",
            b"{}".to_vec(),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(code, 401);
    let s = scrape(&h).await;
    let received = |s: &Scrape, outcome: &str| {
        value(
            s,
            "warroom_alerts_received_total",
            &[("source", "prom"), ("outcome", outcome)],
        )
    };
    assert_eq!(received(&s, "opened"), 1.0);
    assert_eq!(received(&s, "unchanged"), 1.0);
    assert_eq!(received(&s, "unauthorized"), 1.0);
    assert_eq!(
        value(
            &s,
            "warroom_open_incidents",
            &[("severity", "1"), ("tier", "L1")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "warroom_nudges_total", &[("kind", "tier_pickup")]),
        1.0
    );
    // Nothing delivers here, so the outbox holds the opening post and the nudge.
    assert!(value(&s, "warroom_outbox_depth", &[("destination", "incident")]) >= 2.0);

    // Ten minutes later, L1 acknowledges: a command, and the time to acknowledge.
    h.clock.set(h.clock.now() + chrono::TimeDelta::minutes(10));
    let alice = h.app.actor(&UserName::new("alice"));
    let r = h.app.run_line(&alice, Some(IncidentId(1)), "/ack");
    assert_eq!(r.kind, ReplyKind::Reply, "{}", r.text);
    let r = h.app.run_line(&alice, Some(IncidentId(1)), "/ack");
    assert_eq!(r.kind, ReplyKind::Error, "nothing left to acknowledge");
    let s = scrape(&h).await;
    assert_eq!(
        value(
            &s,
            "warroom_commands_total",
            &[("command", "ack"), ("outcome", "reply")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "warroom_commands_total",
            &[("command", "ack"), ("outcome", "error")]
        ),
        1.0
    );
    assert_eq!(observations(&s, "warroom_time_to_acknowledge_seconds"), 1.0);
    assert_eq!(
        value(&s, "warroom_time_to_acknowledge_seconds_sum", &[]),
        600.0
    );
    assert!(
        value(
            &s,
            "warroom_outbox_oldest_age_seconds",
            &[("destination", "incident")]
        ) >= 600.0
    );

    // The L1 budget (30 min for SEV1) runs out: a timer fires, the incident moves to L2.
    let clock = h.clock.clone();
    let target = h.clock.now() + chrono::TimeDelta::minutes(25);
    let fired = h.app.advance_to(&clock, target).unwrap();
    assert!(fired >= 1);
    let s = scrape(&h).await;
    assert!(observations(&s, "warroom_timer_lateness_seconds") >= 1.0);
    assert_eq!(
        value(
            &s,
            "warroom_open_incidents",
            &[("severity", "1"), ("tier", "L2")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "warroom_open_incidents",
            &[("severity", "1"), ("tier", "L1")]
        ),
        0.0
    );
    assert!(value(&s, "warroom_nudges_total", &[("kind", "tier_pickup")]) >= 2.0);

    // Resolution: the time to resolve, and no open incident left.
    let sam = h.app.actor(&UserName::new("sam"));
    let r = h.app.run_line(
        &sam,
        Some(IncidentId(1)),
        "/incident resolve summary:\"disk cleaned\"",
    );
    assert_eq!(r.kind, ReplyKind::Reply, "{}", r.text);
    let s = scrape(&h).await;
    assert_eq!(observations(&s, "warroom_time_to_resolve_seconds"), 1.0);
    assert_eq!(
        value(&s, "warroom_time_to_resolve_seconds_sum", &[]),
        35.0 * 60.0
    );
    let open: f64 = ["L1", "L2", "L3"]
        .iter()
        .map(|t| value(&s, "warroom_open_incidents", &[("tier", t)]))
        .sum();
    assert_eq!(open, 0.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer() {
    let h = Intake::start().await;
    let (code, body) = h.get("/health").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"ok\""), "{body}");
    let (code, body) = h.get("/ready").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["store"], "open");
    assert_eq!(v["scheduler"], "running");
    assert!(v.get("gateway").is_none(), "the console has no gateway");
    h.stop().await;

    // A front end with a gateway is not ready until it connects.
    let r = warroom::http::Readiness::with_gateway();
    r.set_scheduler(true);
    assert_eq!(r.gateway(), Some(false));
    r.set_gateway(true);
    assert_eq!(r.gateway(), Some(true));
}
