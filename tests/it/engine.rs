//! Policy rules in the pure engine: severity recompute, snooze caps, vendor callbacks,
//! handover, resolution.

use chrono::TimeDelta;

use warroom::config::Config;
use warroom::domain::engine::{self, Actor, Ctx, Decision};
use warroom::domain::*;

use crate::helpers::at;

struct World {
    policy: Policy,
    inc: Incident,
    now: chrono::DateTime<chrono::Utc>,
}

fn actor(policy: &Policy, name: &str) -> Actor {
    let user = UserName::new(name);
    Actor {
        roles: policy.roster.roles_of(&user),
        user,
    }
}

impl World {
    fn new(sev: Severity) -> World {
        let policy = Config::builtin().unwrap().policy;
        let now = at("2026-11-23T22:00:00Z");
        let ctx = Ctx {
            now,
            policy: &policy,
        };
        let d = engine::open(
            &ctx,
            &actor(&policy, "alice"),
            IncidentId(1),
            "Mail down",
            sev,
            "mail",
            Exercise::Real,
        )
        .unwrap();
        World {
            inc: d.incident,
            policy,
            now,
        }
    }
    fn run(&mut self, who: &str, cmd: Command) -> Result<Decision, Refusal> {
        let ctx = Ctx {
            now: self.now,
            policy: &self.policy,
        };
        let d = engine::handle(&ctx, &actor(&self.policy, who), &self.inc, &cmd)?;
        self.inc = d.incident.clone();
        Ok(d)
    }
    /// Advances to `mins` after opening, firing due timers in order.
    fn until(&mut self, mins: i64) -> Vec<Message> {
        let target = at("2026-11-23T22:00:00Z") + TimeDelta::minutes(mins);
        let mut out = Vec::new();
        while let Some(t) = self.inc.next_timers().first().map(|t| (t.due, t.seq)) {
            if t.0 > target {
                break;
            }
            self.now = t.0;
            let ctx = Ctx {
                now: self.now,
                policy: &self.policy,
            };
            let d = engine::fire(&ctx, &self.inc, t.1);
            out.extend(d.messages);
            self.inc = d.incident;
        }
        self.now = target;
        out
    }
    fn due(&self, pred: impl Fn(&TimerKind) -> bool) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.inc
            .timers
            .iter()
            .filter(|t| pred(&t.kind))
            .map(|t| t.due)
            .collect()
    }
}

#[test]
fn severity_change_recomputes_timers_and_past_deadlines_fire_now() {
    let mut w = World::new(Severity::Sev2);
    assert_eq!(
        w.due(|k| matches!(k, TimerKind::TierBudget { .. })),
        vec![at("2026-11-23T23:00:00Z")]
    );
    w.until(45);
    w.run(
        "bob",
        Command::Severity {
            level: Severity::Sev1,
            reason: "all mail down".into(),
        },
    )
    .unwrap();
    // SEV1's L1 budget (30m) has already passed at +45m: due now.
    assert_eq!(
        w.due(|k| matches!(k, TimerKind::TierBudget { .. })),
        vec![w.now]
    );
    assert_eq!(
        w.due(|k| *k == TimerKind::PlanBDeadline),
        vec![at("2026-11-24T00:00:00Z")]
    );
    let msgs = w.until(45);
    assert!(msgs.iter().any(|m| m.text.contains("L1 → L2")));
    assert_eq!(w.inc.tier, Tier::L2);
    // And back down to SEV3: Plan B is off for SEV3.
    w.run(
        "bob",
        Command::Severity {
            level: Severity::Sev3,
            reason: "workaround".into(),
        },
    )
    .unwrap();
    assert!(w.due(|k| *k == TimerKind::PlanBDeadline).is_empty());
}

#[test]
fn snooze_needs_to_fit_the_caps_and_the_third_tells_the_sdm() {
    let mut w = World::new(Severity::Sev1);
    w.until(30); // L2 pickup nudge
    let snooze = |d: i64| Command::Snooze {
        duration: TimeDelta::minutes(d),
        reason: "on a call".into(),
        nudge: None,
    };
    let e = w.run("bob", snooze(61)).unwrap_err();
    assert!(
        e.message.contains("longer than the SEV1 limit of 1h"),
        "{e}"
    );
    w.run("bob", snooze(60)).unwrap();
    w.run("bob", snooze(60)).unwrap();
    let d = w.run("bob", snooze(60)).unwrap();
    assert!(
        d.messages
            .iter()
            .any(|m| m.mentions.contains(&Target::Role(RoleKey::sdm()))
                && m.text.contains("3 times"))
    );
    let e = w.run("bob", snooze(1)).unwrap_err();
    assert!(e.message.contains("used 3h of its 3h"), "{e}");
    // A snooze moves the repeat: nothing repeats before it ends.
    let snoozed = w.inc.snoozes.last().unwrap().nudge;
    let repeats = w.due(|k| *k == TimerKind::NudgeRepeat { nudge: snoozed });
    assert_eq!(repeats, vec![w.now + TimeDelta::minutes(60)]);
}

#[test]
fn vendor_callback_nudges_lead_and_sdm_unless_updated() {
    let mut w = World::new(Severity::Sev1);
    w.run(
        "kim",
        Command::VendorAdd {
            vendor: "VMware".into(),
            case: "SR-1".into(),
            callback: Some(Deadline::In(TimeDelta::minutes(20))),
        },
    )
    .unwrap();
    let msgs = w.until(20);
    let n = msgs
        .iter()
        .find(|m| m.text.contains("promised a callback"))
        .expect("callback nudge");
    assert!(n.mentions.contains(&Target::Role(RoleKey::new("l1"))));
    assert!(n.mentions.contains(&Target::Role(RoleKey::sdm())));

    let mut w = World::new(Severity::Sev1);
    w.run(
        "kim",
        Command::VendorAdd {
            vendor: "VMware".into(),
            case: "SR-2".into(),
            callback: Some(Deadline::In(TimeDelta::minutes(20))),
        },
    )
    .unwrap();
    w.until(10);
    w.run(
        "kim",
        Command::VendorUpdate {
            case: "SR-2".into(),
            text: "engineer assigned".into(),
        },
    )
    .unwrap();
    assert!(
        w.until(25)
            .iter()
            .all(|m| !m.text.contains("promised a callback"))
    );
}

#[test]
fn handover_nudges_both_until_acknowledged_then_only_the_new_lead() {
    let mut w = World::new(Severity::Sev1);
    w.until(130);
    w.run(
        "sam",
        Command::PlanOpen {
            plan: Plan::B,
            title: Some("Rebuild".into()),
            lead: Some(UserName::new("carol")),
            team: None,
            cadence: None,
        },
    )
    .unwrap();
    w.run(
        "carol",
        Command::Handover {
            to: UserName::new("dana"),
            summary: "restore at 40%".into(),
            plan: Some(Plan::B),
        },
    )
    .unwrap();
    let silent = |ms: &[Message]| {
        ms.iter()
            .filter(|m| m.text.contains("Plan B (Rebuild)"))
            .map(|m| m.mentions.clone())
            .collect::<Vec<_>>()
    };
    let before = silent(&w.until(160));
    assert_eq!(
        before[0],
        vec![
            Target::User(UserName::new("carol")),
            Target::User(UserName::new("dana"))
        ]
    );
    // Only dana may accept it.
    let hand = w.inc.tracks[&Plan::B].handover.clone().unwrap().nudge;
    assert!(w.run("carol", Command::Ack { nudge: Some(hand) }).is_err());
    w.run("dana", Command::Ack { nudge: Some(hand) }).unwrap();
    assert_eq!(w.inc.tracks[&Plan::B].lead, Some(UserName::new("dana")));
    w.run(
        "dana",
        Command::Update {
            text: "restore at 70%".into(),
            plan: Some(Plan::B),
        },
    )
    .unwrap();
    let after = silent(&w.until(200));
    assert_eq!(after[0], vec![Target::User(UserName::new("dana"))]);
}

#[test]
fn resolve_cancels_every_timer_and_closes_nudges() {
    let mut w = World::new(Severity::Sev1);
    w.until(60);
    assert_eq!(w.inc.tier, Tier::L2);
    assert!(!w.inc.timers.is_empty());
    let e = w
        .run(
            "alice",
            Command::Resolve {
                summary: "x".into(),
                plan: None,
            },
        )
        .unwrap_err();
    assert_eq!(e.kind, RefusalKind::NotAllowed, "L1 may not resolve at L2");
    w.run(
        "bob",
        Command::Resolve {
            summary: "fixed".into(),
            plan: Some(Plan::A),
        },
    )
    .unwrap();
    assert!(w.inc.timers.is_empty());
    assert!(w.inc.nudges.iter().all(|n| !n.is_open()));
    assert!(w.until(24 * 60).is_empty());
}

#[test]
fn plan_b_nudge_is_not_acked_away_and_decline_stops_it() {
    let mut w = World::new(Severity::Sev1);
    w.until(120);
    let due = w
        .inc
        .nudges
        .iter()
        .find(|n| n.kind == NudgeKind::PlanBDue)
        .unwrap()
        .id;
    let e = w.run("sam", Command::Ack { nudge: Some(due) }).unwrap_err();
    assert!(e.message.contains("answered only by opening Plan B"), "{e}");
    w.run(
        "sam",
        Command::PlanDecline {
            reason: "root cause found".into(),
        },
    )
    .unwrap();
    assert!(
        w.until(240)
            .iter()
            .all(|m| !m.text.contains("Plan B deadline reached"))
    );
}
