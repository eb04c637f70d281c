//! Policy rules in the pure engine: severity recompute, snooze caps, vendor callbacks,
//! handover, resolution, reminder digests and hand-offs of unanswered nudges.

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
        World::with(sev, |_| {})
    }
    /// A world whose policy for `sev` is first changed by `tweak`.
    fn with(sev: Severity, tweak: impl FnOnce(&mut SeverityPolicy)) -> World {
        let mut policy = Config::builtin().unwrap().policy;
        tweak(&mut policy.severities[sev.index()]);
        let now = at("2026-11-23T22:00:00Z");
        let ctx = Ctx {
            now,
            policy: &policy,
            overrides: &[],
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
            overrides: &[],
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
                overrides: &[],
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

fn nudge(w: &World, id: u32) -> &Nudge {
    w.inc.nudge(NudgeId(id)).unwrap()
}

fn vendor_add(case: &str, mins: i64) -> Command {
    Command::VendorAdd {
        vendor: "VMware".into(),
        case: case.into(),
        callback: Some(Deadline::In(TimeDelta::minutes(mins))),
    }
}

#[test]
fn an_unanswered_nudge_is_handed_up_the_tiers_then_stops_and_stays_answerable() {
    // Held at L1 (no budget) and no Plan B deadline: only Plan A's silence nudges alice.
    let mut w = World::with(Severity::Sev1, |sp| {
        sp.l1_budget = None;
        sp.plan_b_after = None;
    });
    let msgs = w.until(24 * 60);
    let nudges: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.kind == MessageKind::Nudge)
        .collect();
    // Three nudges (alice as L1, then @l2, then @l3), each sent once and reminded 4 times.
    assert_eq!(nudges.len(), 15, "{nudges:#?}");
    assert_eq!(w.inc.nudges.len(), 3);
    let alice = Target::User(UserName::new("alice"));
    let sdm = Target::Role(RoleKey::sdm());
    assert_eq!(nudges[0].mentions, vec![alice.clone()]);
    assert_eq!(nudges[1].mentions, vec![alice, sdm.clone()]);
    // 23:45, the fifth interval: handed to @l2 as nudge #2.
    let handed = nudges[5];
    assert_eq!(handed.at, at("2026-11-23T23:45:00Z"));
    assert!(
        handed.text.starts_with(
            "Nudge #2 · handed to @l2 after 4 unanswered reminders of nudge #1: Plan A"
        ),
        "{}",
        handed.text
    );
    assert_eq!(handed.mentions, vec![Target::Role(RoleKey::new("l2"))]);
    assert_eq!(
        nudge(&w, 1).state,
        NudgeState::HandedOff {
            at: at("2026-11-23T23:45:00Z"),
            to: NudgeId(2)
        }
    );
    assert_eq!(nudge(&w, 2).from, Some(NudgeId(1)));
    assert_eq!(nudge(&w, 2).kind, NudgeKind::TrackSilent { plan: Plan::A });
    // Then on to @l3, naming where it started.
    let third = nudges[10];
    assert!(
        third.text.starts_with(
            "Nudge #3 · handed to @l3 after 4 unanswered reminders of nudge #2 (first raised as nudge #1 at"
        ) && third.text.contains("): Plan A"),
        "{}",
        third.text
    );
    assert!(nudges[11].text.starts_with("Nudge #3 · reminder 1 "));
    // L3 with the SDM on it: nobody further. It stops for good, once, and stays open.
    let stops: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.text.contains("stops repeating"))
        .collect();
    assert_eq!(stops.len(), 1, "{stops:#?}");
    assert_eq!(stops[0].kind, MessageKind::Post);
    assert_eq!(
        stops[0].buttons,
        vec![Button::AckNudge { nudge: NudgeId(3) }]
    );
    assert_eq!(stops[0].at, at("2026-11-24T02:15:00Z"));
    let n3 = nudge(&w, 3);
    assert!(n3.is_open() && !n3.is_repeating());
    assert!(
        w.inc
            .timers
            .iter()
            .all(|t| !matches!(t.kind, TimerKind::NudgeRepeat { .. }))
    );
    // The handed-off nudge points at its successor.
    let e = w
        .run(
            "alice",
            Command::Ack {
                nudge: Some(NudgeId(1)),
            },
        )
        .unwrap_err();
    assert!(
        e.message
            .contains("was handed on as nudge #2; answer that one (/ack nudge:2)"),
        "{e}"
    );
    // Its usual answer still closes it.
    w.run(
        "alice",
        Command::Update {
            text: "found it".into(),
            plan: None,
        },
    )
    .unwrap();
    assert!(!nudge(&w, 3).is_open());
    // A severity change does not restart a stopped nudge's reminders, nor a handed-off one's.
    let mut w = World::with(Severity::Sev1, |sp| {
        sp.l1_budget = None;
        sp.plan_b_after = None;
    });
    w.until(24 * 60);
    w.run(
        "alice",
        Command::Severity {
            level: Severity::Sev2,
            reason: "contained".into(),
        },
    )
    .unwrap();
    assert!(
        w.inc
            .timers
            .iter()
            .all(|t| !matches!(t.kind, TimerKind::NudgeRepeat { .. }))
    );
}

#[test]
fn an_unaccepted_handover_goes_to_the_sdm_never_a_tier() {
    let mut w = World::new(Severity::Sev1);
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
    let first = w.inc.tracks[&Plan::B].handover.clone().unwrap().nudge;
    let every = w.inc.nudge(first).map(|n| n.raised_at).unwrap();
    let msgs = w.until(150);
    let dana = Target::User(UserName::new("dana"));
    let old = w.inc.nudge(first).unwrap().clone();
    let NudgeState::HandedOff { to, .. } = old.state else {
        panic!("not handed off: {old:#?}");
    };
    let new = w.inc.nudge(to).unwrap().clone();
    assert_eq!(
        new.kind,
        NudgeKind::Handover {
            plan: Some(Plan::B)
        }
    );
    assert_eq!(
        new.targets,
        vec![Target::Role(RoleKey::sdm()), dana.clone()]
    );
    let card = msgs
        .iter()
        .find(|m| m.nudge == Some(to) && m.text.contains("handed to"))
        .unwrap();
    assert!(
        card.text
            .starts_with(&format!("Nudge {to} · handed to @sdm after 4 unanswered reminders of nudge {first}: Handover of Plan B")),
        "{}",
        card.text
    );
    assert!(every < card.at);
    // The pending handover now waits on the new card; only dana can take it, still by /ack.
    assert_eq!(w.inc.tracks[&Plan::B].handover.as_ref().unwrap().nudge, to);
    let e = w.run("sam", Command::Ack { nudge: Some(to) }).unwrap_err();
    assert!(e.message.contains("only dana can accept it"), "{e}");
    w.run("dana", Command::Ack { nudge: None }).unwrap();
    assert_eq!(w.inc.tracks[&Plan::B].lead, Some(UserName::new("dana")));
    assert!(!w.inc.nudge(to).unwrap().is_open());
}

#[test]
fn the_sdms_own_commands_answer_their_sdm_alert_and_nothing_else() {
    let mut w = World::new(Severity::Sev1);
    w.until(121);
    let alert = w
        .inc
        .nudges
        .iter()
        .find(|n| n.kind == NudgeKind::SdmAlert)
        .unwrap()
        .id;
    let due = w
        .inc
        .nudges
        .iter()
        .find(|n| n.kind == NudgeKind::PlanBDue)
        .unwrap()
        .id;
    // Someone else's command leaves it open; the SDM's snooze asks to be reminded later.
    w.run(
        "dana",
        Command::Update {
            text: "L3 on it".into(),
            plan: None,
        },
    )
    .unwrap();
    assert!(w.inc.nudge(alert).unwrap().is_open());
    w.run(
        "sam",
        Command::Snooze {
            duration: TimeDelta::minutes(15),
            reason: "on a call".into(),
            nudge: Some(alert),
        },
    )
    .unwrap();
    assert!(w.inc.nudge(alert).unwrap().is_open());
    // Any other state-changing command of the SDM's answers it.
    let d = w
        .run(
            "sam",
            Command::Escalate {
                tier: None,
                reason: "x".into(),
            },
        )
        .unwrap_err();
    assert!(d.message.contains("highest tier"), "refused: {d}");
    assert!(
        w.inc.nudge(alert).unwrap().is_open(),
        "a refusal answers nothing"
    );
    let d = w
        .run(
            "sam",
            Command::Update {
                text: "SDM: customer informed".into(),
                plan: None,
            },
        )
        .unwrap();
    assert!(
        d.reply
            .contains(&format!("It also answers your SDM alert (nudge {alert})")),
        "{}",
        d.reply
    );
    assert!(
        matches!(&w.inc.nudge(alert).unwrap().state, NudgeState::Answered { how, .. } if how == "answered by sam's /update")
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.kind == EventKind::Acknowledged { nudge: alert }
                && e.text == format!("nudge {alert} (SDM alert) answered by sam's /update"))
    );
    assert!(
        w.inc.nudge(due).unwrap().is_open(),
        "the Plan B deadline keeps its own rule"
    );

    // An incident's assigned SDM is its SDM.
    let mut w = World::new(Severity::Sev1);
    w.run(
        "sam",
        Command::RoleAssign {
            role: IncidentRole::Sdm,
            user: UserName::new("bob"),
        },
    )
    .unwrap();
    w.until(91);
    let alert = w
        .inc
        .nudges
        .iter()
        .find(|n| n.kind == NudgeKind::SdmAlert)
        .unwrap()
        .clone();
    assert_eq!(alert.targets, vec![Target::User(UserName::new("bob"))]);
    w.run(
        "bob",
        Command::Update {
            text: "bob as SDM: bridge open".into(),
            plan: None,
        },
    )
    .unwrap();
    assert!(!w.inc.nudge(alert.id).unwrap().is_open());
}

#[test]
fn a_digest_has_an_ack_button_per_nudge_within_discords_limit() {
    let mut w = World::new(Severity::Sev1);
    w.run("kim", vendor_add("SR-1", 35)).unwrap();
    let msgs = w.until(45);
    let digest: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.kind == MessageKind::Nudge && m.at == at("2026-11-23T22:45:00Z"))
        .collect();
    assert_eq!(digest.len(), 1, "{digest:#?}");
    assert_eq!(digest[0].nudge, Some(NudgeId(1)));
    assert_eq!(
        digest[0].buttons,
        vec![
            Button::AckNudge { nudge: NudgeId(1) },
            Button::AckNudge { nudge: NudgeId(2) },
            Button::AckNudge { nudge: NudgeId(3) },
            Button::Escalate,
            Button::OpenPlanB,
        ]
    );
    for id in 1..=3 {
        assert_eq!(nudge(&w, id).sends, 2);
        assert_eq!(
            w.due(|k| *k == TimerKind::NudgeRepeat { nudge: NudgeId(id) }),
            vec![at("2026-11-23T23:00:00Z")],
            "nudge #{id}: one repeat, an interval from the digest"
        );
    }
    // Thirty missed callbacks at once: one message, still at most 25 buttons.
    let mut w = World::new(Severity::Sev1);
    for i in 0..30 {
        w.run("kim", vendor_add(&format!("SR-{i}"), 35)).unwrap();
    }
    let msgs = w.until(45);
    let digest: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.kind == MessageKind::Nudge && m.at == at("2026-11-23T22:45:00Z"))
        .collect();
    assert_eq!(digest.len(), 1);
    assert_eq!(digest[0].text.lines().count(), 32);
    assert_eq!(digest[0].buttons.len(), 25);
    assert_eq!(
        digest[0].buttons[23..],
        [Button::Escalate, Button::OpenPlanB]
    );
}

#[test]
fn stored_incidents_from_before_hand_offs_still_load() {
    let mut w = World::new(Severity::Sev1);
    w.until(60);
    assert!(!w.inc.nudges.is_empty());
    // Nudges that were never handed on or stopped are stored exactly as before.
    let json = serde_json::to_string(&w.inc).unwrap();
    assert!(
        !json.contains("stopped_at") && !json.contains("\"from\""),
        "{json}"
    );
    let back: Incident = serde_json::from_str(&json).unwrap();
    assert_eq!(back, w.inc);
    // And the new states round-trip.
    w.until(24 * 60);
    assert!(
        w.inc
            .nudges
            .iter()
            .any(|n| matches!(n.state, NudgeState::HandedOff { .. }))
    );
    assert!(w.inc.nudges.iter().any(|n| n.stopped_at.is_some()));
    let json = serde_json::to_string(&w.inc).unwrap();
    let back: Incident = serde_json::from_str(&json).unwrap();
    assert_eq!(back, w.inc);
}
