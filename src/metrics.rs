//! warroom's own metrics, kept with the Prometheus organisation's `prometheus-client` crate and
//! served as text exposition at `GET /metrics`.
//!
//! Names follow Prometheus conventions: the `warroom_` prefix, base units (seconds), `_total`
//! on counters (the crate adds it). Counters and histograms move as things happen, from `App`,
//! the courier and the alert intake; the gauges (open incidents, outbox depth and age) are read
//! from the store at scrape time, so they are never out of step with what is stored. Label
//! values come from fixed sets (command paths, nudge kinds, outcomes) or from configuration
//! (source names), never from request bodies, so the series stay few.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::delivery::Destination;
use crate::domain::{Incident, NudgeKind, Severity, Tier};
use crate::store::Outgoing;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    severity: String,
    tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

/// The outcomes of `warroom_alerts_received_total`.
pub const ALERT_OUTCOMES: [&str; 7] = [
    "opened",
    "updated",
    "unchanged",
    "ignored",
    "refused",
    "unauthorized",
    "failed",
];

/// Every metric warroom keeps.
pub struct Metrics {
    registry: Mutex<Registry>,
    commands: Family<CommandLabels, Counter>,
    nudges: Family<KindLabels, Counter>,
    delivery_failures: Family<ReasonLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
    timer_lateness: Histogram,
    time_to_ack: Histogram,
    time_to_resolve: Histogram,
    open_incidents: Family<OpenLabels, Gauge>,
    outbox_depth: Family<DestinationLabels, Gauge>,
    outbox_oldest: Family<DestinationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    active: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A nudge kind as a label value.
pub fn nudge_kind(kind: &NudgeKind) -> &'static str {
    match kind {
        NudgeKind::TierPickup { .. } => "tier_pickup",
        NudgeKind::SdmAlert => "sdm_alert",
        NudgeKind::PlanBDue => "plan_b_due",
        NudgeKind::TrackSilent { .. } => "track_silent",
        NudgeKind::VendorCallback { .. } => "vendor_callback",
        NudgeKind::Handover { .. } => "handover",
        NudgeKind::DrillDue { .. } => "drill_due",
        NudgeKind::ConfirmResolved => "confirm_resolved",
    }
}

/// A destination's kind as a label value.
pub fn destination_kind(to: &Destination) -> &'static str {
    match to {
        Destination::Incident => "incident",
        Destination::Ops => "ops",
        Destination::Direct { .. } => "direct",
    }
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    // Milliseconds fit an f64 exactly for any duration a time can hold.
    d.num_milliseconds().max(0) as f64 / 1000.0
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warroom");
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands run, by command path and outcome (reply or error)",
            commands.clone(),
        );
        let nudges = Family::<KindLabels, Counter>::default();
        registry.register(
            "nudges",
            "Nudges sent (first sends and reminders), by kind",
            nudges.clone(),
        );
        let delivery_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "delivery_failures",
            "Failed deliveries to chat, by reason (retry, unreachable, permanent)",
            delivery_failures.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts_received",
            "Alert notifications received, by source and outcome (opened, updated, unchanged, ignored, refused, unauthorized, failed)",
            alerts.clone(),
        );
        // 1 s to about 9 h: from jitter to a night the bot was down.
        let timer_lateness = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register_with_unit(
            "timer_lateness",
            "How late timers fired after their due time",
            Unit::Seconds,
            timer_lateness.clone(),
        );
        // 10 s to about 4 days.
        let time_to_ack = Histogram::new(exponential_buckets(10.0, 2.0, 16));
        registry.register_with_unit(
            "time_to_acknowledge",
            "From an incident's opening to its first acknowledgement",
            Unit::Seconds,
            time_to_ack.clone(),
        );
        let time_to_resolve = Histogram::new(exponential_buckets(10.0, 2.0, 16));
        registry.register_with_unit(
            "time_to_resolve",
            "From an incident's opening to its resolution",
            Unit::Seconds,
            time_to_resolve.clone(),
        );
        let open_incidents = Family::<OpenLabels, Gauge>::default();
        registry.register(
            "open_incidents",
            "Open incidents, by severity and current tier",
            open_incidents.clone(),
        );
        let outbox_depth = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "outbox_depth",
            "Messages waiting for delivery, by destination kind",
            outbox_depth.clone(),
        );
        let outbox_oldest = Family::<DestinationLabels, Gauge<f64, _>>::default();
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest message waiting for delivery, by destination kind",
            Unit::Seconds,
            outbox_oldest.clone(),
        );
        let active = Gauge::default();
        active.set(1);
        registry.register(
            "active",
            "1 where this process decides, fires and delivers (a single process, or the replica holding the lease); 0 on a standby replica",
            active.clone(),
        );
        Metrics {
            active,
            registry: Mutex::new(registry),
            commands,
            nudges,
            delivery_failures,
            alerts,
            timer_lateness,
            time_to_ack,
            time_to_resolve,
            open_incidents,
            outbox_depth,
            outbox_oldest,
        }
    }

    /// Creates the series that are known from the start at zero, so that a scrape shows every
    /// family and `rate()` has a starting point: each command path with each outcome, each
    /// nudge kind, each delivery failure reason, and each alert source with each outcome.
    pub fn prime<'a>(
        &self,
        commands: impl IntoIterator<Item = &'a str>,
        sources: impl IntoIterator<Item = &'a str>,
    ) {
        for c in commands {
            for outcome in ["reply", "error"] {
                let _ = self.commands.get_or_create(&CommandLabels {
                    command: c.to_string(),
                    outcome: outcome.to_string(),
                });
            }
        }
        for kind in [
            "tier_pickup",
            "sdm_alert",
            "plan_b_due",
            "track_silent",
            "vendor_callback",
            "handover",
            "drill_due",
            "confirm_resolved",
        ] {
            let _ = self.nudges.get_or_create(&KindLabels {
                kind: kind.to_string(),
            });
        }
        for reason in ["retry", "unreachable", "permanent"] {
            let _ = self.delivery_failures.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        for source in sources {
            for outcome in ALERT_OUTCOMES {
                let _ = self.alerts.get_or_create(&AlertLabels {
                    source: source.to_string(),
                    outcome: outcome.to_string(),
                });
            }
        }
    }

    pub fn command(&self, command: &str, outcome: &str) {
        self.commands
            .get_or_create(&CommandLabels {
                command: command.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn nudge(&self, kind: &NudgeKind) {
        self.nudges
            .get_or_create(&KindLabels {
                kind: nudge_kind(kind).to_string(),
            })
            .inc();
    }

    pub fn delivery_failure(&self, reason: &str) {
        self.delivery_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn alert(&self, source: &str, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                source: source.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// `warroom_active`: false on a standby replica.
    pub fn set_active(&self, active: bool) {
        self.active.set(i64::from(active));
    }

    pub fn timer_late(&self, late: chrono::TimeDelta) {
        self.timer_lateness.observe(seconds(late));
    }

    pub fn acknowledged(&self, after: chrono::TimeDelta) {
        self.time_to_ack.observe(seconds(after));
    }

    pub fn resolved(&self, after: chrono::TimeDelta) {
        self.time_to_resolve.observe(seconds(after));
    }

    /// The text exposition, with the gauges set from `open` (the open incidents) and
    /// `outbox` (the waiting messages) as of `now`.
    pub fn render(&self, open: &[Incident], outbox: &[Outgoing], now: DateTime<Utc>) -> String {
        self.open_incidents.clear();
        for s in Severity::ALL {
            for t in Tier::ALL {
                let n = open
                    .iter()
                    .filter(|i| i.is_open() && i.severity == s && i.tier == t)
                    .count();
                self.open_incidents
                    .get_or_create(&OpenLabels {
                        severity: s.level().to_string(),
                        tier: t.to_string(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.outbox_depth.clear();
        self.outbox_oldest.clear();
        for kind in ["incident", "ops", "direct"] {
            let waiting: Vec<&Outgoing> = outbox
                .iter()
                .filter(|o| destination_kind(&o.to) == kind)
                .collect();
            let labels = DestinationLabels {
                destination: kind.to_string(),
            };
            self.outbox_depth
                .get_or_create(&labels)
                .set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
            let oldest = waiting
                .iter()
                .map(|o| o.at)
                .min()
                .map_or(0.0, |at| seconds(now.signed_duration_since(at)));
            self.outbox_oldest.get_or_create(&labels).set(oldest);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}
