//! Who may run what: a generated matrix of every command × every kind of person × every place,
//! checked against the README's rule (written out again here, on purpose) on a real store; the
//! positions facilities and vendor staff are refused; and the reported bypasses, through the
//! binary.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::TimeDelta;

use warroom::app::{App, ReplyKind, Response};
use warroom::clock::VirtualClock;
use warroom::config::Config;
use warroom::domain::engine::{self, Actor, Ctx};
use warroom::domain::*;
use warroom::spec::{CommandSet, Request};
use warroom::store::{Commit, Store};

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// The rule, as the README states it.
// ---------------------------------------------------------------------------------------------

/// Who may run each command: the README's command table, column "who may".
const WHO: &[(&str, &[&str])] = &[
    ("ack", &["nudged", "sdm"]),
    ("escalate", &["tier", "sdm"]),
    ("handover", &["lead", "sdm"]),
    ("help", &["anyone"]),
    ("incident open", &["tier", "sdm"]),
    ("incident status", &["participant"]),
    ("incident severity", &["tier", "sdm"]),
    ("incident resolve", &["current-tier", "sdm"]),
    ("oncall show", &["anyone"]),
    ("oncall override", &["sdm", "replaced"]),
    ("oncall overrides", &["anyone"]),
    ("oncall remove", &["sdm", "replaced"]),
    ("participant add", &["sdm", "lead"]),
    ("plan open", &["sdm"]),
    ("plan assign", &["sdm", "lead"]),
    ("plan close", &["sdm", "lead"]),
    ("plan check", &["participant"]),
    ("plan decline", &["sdm"]),
    ("report", &["participant"]),
    ("role assign", &["sdm"]),
    ("snooze", &["nudged", "sdm"]),
    ("timeline", &["participant"]),
    ("update", &["participant"]),
    ("vendor add", &["participant"]),
    ("vendor update", &["participant"]),
    ("vendor close", &["participant"]),
];

fn who_may(path: &str) -> &'static [&'static str] {
    WHO.iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("the test's table has no row for /{path}"))
        .1
}

/// A kind of person, as they stand in the probe incident (built by `SETUP`).
struct Person {
    name: &'static str,
    what: &'static str,
    /// Roster roles; None: not on the roster.
    roster: Option<&'static [&'static str]>,
    /// The kind `/participant add` gave them in the probe incident.
    added: Option<&'static str>,
    /// Role keys the probe incident's `/role assign` gives them (SDM, tier lead).
    assigned: &'static [&'static str],
    /// The incident's commander.
    commander: bool,
    /// Plan A's lead.
    plan_lead: bool,
}

const fn person(name: &'static str, what: &'static str) -> Person {
    Person {
        name,
        what,
        roster: None,
        added: None,
        assigned: &[],
        commander: false,
        plan_lead: false,
    }
}

const PEOPLE: &[Person] = &[
    person("zed", "anyone with no role"),
    Person {
        roster: Some(&["l1"]),
        ..person("alice", "l1 (the current tier)")
    },
    Person {
        roster: Some(&["l2"]),
        ..person("bob", "l2")
    },
    Person {
        roster: Some(&["l3"]),
        ..person("dana", "l3")
    },
    Person {
        roster: Some(&["sdm"]),
        ..person("sam", "sdm on the roster")
    },
    Person {
        roster: Some(&["rebuild"]),
        assigned: &["sdm"],
        ..person("stella", "the incident's assigned SDM")
    },
    Person {
        roster: Some(&["rebuild"]),
        commander: true,
        ..person("cora", "the commander")
    },
    Person {
        roster: Some(&["rebuild"]),
        plan_lead: true,
        ..person("carol", "Plan A's lead")
    },
    Person {
        roster: Some(&["night"]),
        ..person("nell", "the nudged person (team night)")
    },
    Person {
        roster: Some(&["fm"]),
        ..person("ravi", "fm on the roster")
    },
    Person {
        roster: Some(&["vendor"]),
        ..person("kim", "vendor on the roster")
    },
    Person {
        added: Some("staff"),
        ..person("pia", "added as staff")
    },
    Person {
        added: Some("fm"),
        ..person("fred", "added as fm")
    },
    Person {
        added: Some("vendor"),
        ..person("vic", "added as vendor")
    },
    Person {
        roster: Some(&["l1", "fm"]),
        ..person("ezra", "both l1 and fm")
    },
];

impl Person {
    /// Facilities or vendor staff, as the README defines them: the roster decides for people it
    /// gives a role (only fm and/or vendor); `/participant add`'s kind decides for the rest,
    /// in the incident they were added to.
    fn facilities_or_vendor_in(&self, in_incident: bool) -> bool {
        match self.roster {
            Some(roles) if !roles.is_empty() => roles.iter().all(|r| *r == "fm" || *r == "vendor"),
            _ => in_incident && matches!(self.added, Some("fm" | "vendor")),
        }
    }

    /// In the probe incident.
    fn facilities_or_vendor(&self) -> bool {
        self.facilities_or_vendor_in(true)
    }

    /// Whether they hold `role`: outside an incident only the roster's roles count; in the
    /// probe incident also the kind they were added with and what `/role assign` gave them.
    fn holds(&self, role: &str, in_incident: bool) -> bool {
        self.roster.unwrap_or(&[]).contains(&role)
            || in_incident && (self.added == Some(role) || self.assigned.contains(&role))
    }

    fn holds_any_role(&self, in_incident: bool) -> bool {
        !self.roster.unwrap_or(&[]).is_empty()
            || in_incident && (self.added.is_some() || !self.assigned.is_empty())
    }
}

/// The README's "who may" legend, one principal at a time.
fn admits(who: &str, p: &Person, probe: &Probe, in_incident: bool) -> bool {
    // Facilities and vendor staff: only what participants or anyone may run.
    if p.facilities_or_vendor_in(in_incident) && !matches!(who, "participant" | "anyone") {
        return false;
    }
    match who {
        "anyone" => true,
        "participant" => p.holds_any_role(in_incident),
        "tier" => ["l1", "l2", "l3"].iter().any(|t| p.holds(t, in_incident)),
        // The probe incident stays at L1.
        "current-tier" => in_incident && p.holds("l1", true),
        // The named plan's lead; without a plan, the commander.
        "lead" => {
            in_incident
                && match probe.plan {
                    Some('A') => p.plan_lead,
                    None => p.commander,
                    Some(_) => false,
                }
        }
        "nudged" => probe.nudged.is_some_and(|role| p.holds(role, in_incident)),
        // The probe's schedule for `night` has nell alone in its rotation.
        "replaced" => p.name == "nell",
        role => p.holds(role, in_incident),
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Place {
    /// Not in an incident's channel.
    Outside,
    /// In the probe incident's channel, the incident open.
    Open,
    /// In the channel of a resolved copy of it.
    Resolved,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Runs,
    /// Not for this person (the authorisation refusal).
    Refused,
    NotInAChannel,
    /// The incident is resolved: no change command runs, whoever types it.
    IsResolved,
}

fn expected(p: &Person, probe: &Probe, place: Place) -> Verdict {
    let may = |in_incident| {
        who_may(probe.path)
            .iter()
            .any(|w| admits(w, p, probe, in_incident))
    };
    let by_rule = |in_incident| {
        if may(in_incident) {
            Verdict::Runs
        } else {
            Verdict::Refused
        }
    };
    match (probe.path, place) {
        ("help" | "oncall show" | "oncall overrides", _) => Verdict::Runs,
        // On-call commands act on no incident, wherever they are typed: only the roster (and
        // the rotation) counts.
        ("oncall override" | "oncall remove", _) => by_rule(false),
        // It opens a new incident wherever it is typed, and acts on none: only the roster counts.
        ("incident open", _) => by_rule(false),
        (_, Place::Outside) => Verdict::NotInAChannel,
        (_, Place::Resolved) if !probe.reads => Verdict::IsResolved,
        _ => by_rule(true),
    }
}

fn verdict(r: &Response) -> Result<Verdict, String> {
    match r.kind {
        ReplyKind::Reply => Ok(Verdict::Runs),
        ReplyKind::Error if r.text.contains(" is refused: it is for ") => Ok(Verdict::Refused),
        ReplyKind::Error if r.text.contains("runs in an incident's channel") => {
            Ok(Verdict::NotInAChannel)
        }
        ReplyKind::Error if r.text.contains(" is resolved; /") => Ok(Verdict::IsResolved),
        ReplyKind::Error => Err(r.text.clone()),
    }
}

// ---------------------------------------------------------------------------------------------
// The probe incident and the probes.
// ---------------------------------------------------------------------------------------------

/// Builds the probe incident (INC-1, SEV3, at L1): every kind of person in `PEOPLE` in place.
/// Then a minute passes: Plan C's silence nudges @night (nudge 1), Plan D's @fm (nudge 2).
const SETUP: &[(&str, &str)] = &[
    (
        "alice",
        "/incident open title:\"Probe\" severity:3 service:mail",
    ),
    ("sam", "/role assign role:sdm user:stella"),
    ("sam", "/role assign role:commander user:cora"),
    ("sam", "/plan assign plan:A lead:carol"),
    ("sam", "/plan open plan:C team:night cadence:1m"),
    (
        "sam",
        "/plan open plan:D title:\"Facilities checks\" team:fm cadence:1m",
    ),
    ("sam", "/participant add user:pia kind:staff"),
    ("sam", "/participant add user:fred kind:fm"),
    ("sam", "/participant add user:vic kind:vendor"),
    ("kim", "/vendor add name:VMware case:SR-1"),
];

/// One command line to try, valid in the probe incident for anyone it is for.
struct Probe {
    path: &'static str,
    line: &'static str,
    /// The plan it names, for `lead`.
    plan: Option<char>,
    /// The role its nudge targets, for `nudged`.
    nudged: Option<&'static str>,
    /// It only reads, so it also answers in a resolved incident.
    reads: bool,
}

const fn probe(path: &'static str, line: &'static str) -> Probe {
    Probe {
        path,
        line,
        plan: None,
        nudged: None,
        reads: false,
    }
}

const PROBES: &[Probe] = &[
    Probe {
        reads: true,
        ..probe("help", "/help")
    },
    probe(
        "incident open",
        "/incident open title:\"Another\" severity:3 service:probe force:true",
    ),
    Probe {
        reads: true,
        ..probe("incident status", "/incident status")
    },
    probe(
        "incident severity",
        "/incident severity level:2 reason:\"probe\"",
    ),
    probe("incident resolve", "/incident resolve summary:\"probe\""),
    probe("escalate", "/escalate reason:\"probe\""),
    probe("participant add", "/participant add user:pat kind:staff"),
    probe("plan open", "/plan open plan:B title:\"Probe plan\""),
    Probe {
        plan: Some('A'),
        ..probe("plan assign", "/plan assign plan:A member:nell")
    },
    Probe {
        plan: Some('A'),
        ..probe("plan close", "/plan close plan:A outcome:abandoned")
    },
    Probe {
        plan: Some('C'),
        ..probe("plan check", "/plan check plan:C item:1")
    },
    probe("plan decline", "/plan decline reason:\"probe\""),
    Probe {
        reads: true,
        ..probe("report", "/report")
    },
    probe("role assign", "/role assign role:commander user:bob"),
    Probe {
        nudged: Some("night"),
        ..probe("snooze", "/snooze duration:30m reason:\"probe\" nudge:1")
    },
    Probe {
        nudged: Some("fm"),
        ..probe("snooze", "/snooze duration:30m reason:\"probe\" nudge:2")
    },
    Probe {
        nudged: Some("night"),
        ..probe("ack", "/ack nudge:1")
    },
    Probe {
        nudged: Some("fm"),
        ..probe("ack", "/ack nudge:2")
    },
    Probe {
        reads: true,
        ..probe("timeline", "/timeline")
    },
    probe("update", "/update text:\"probe\""),
    probe("vendor add", "/vendor add name:Dell case:SR-2"),
    probe("vendor update", "/vendor update case:SR-1 text:\"probe\""),
    probe("vendor close", "/vendor close case:SR-1"),
    Probe {
        plan: Some('A'),
        ..probe("handover", "/handover to:bob summary:\"probe\" plan:A")
    },
    probe("handover", "/handover to:bob summary:\"probe\""),
    // On-call changes touch no incident: `reads` spares them the "changed nothing" check.
    Probe {
        reads: true,
        ..probe("oncall show", "/oncall show")
    },
    Probe {
        reads: true,
        ..probe("oncall overrides", "/oncall overrides")
    },
    Probe {
        reads: true,
        ..probe(
            "oncall override",
            "/oncall override role:night user:bob from:1h to:2h reason:\"probe\"",
        )
    },
    // Override 1 is the first one made above (by sam); removing it again is answered, not
    // refused, for those it is for.
    Probe {
        reads: true,
        ..probe("oncall remove", "/oncall remove override:1")
    },
];

type Snapshot = (Incident, Vec<Event>);

struct Probing {
    app: Arc<App>,
    open: Snapshot,
    resolved: Snapshot,
}

fn probe_app(dir: &std::path::Path) -> (Arc<App>, Arc<VirtualClock>) {
    let mut config = Config::builtin().expect("builtin config");
    for p in PEOPLE {
        if let Some(roles) = p.roster {
            config.policy.roster.users.insert(
                UserName::new(p.name),
                roles.iter().map(|r| RoleKey::new(r)).collect(),
            );
        }
    }
    // `night` is on a schedule with nell alone in its rotation: she is whom an override of
    // it replaces.
    config
        .policy
        .schedules
        .push(warroom::domain::oncall::Schedule {
            name: "night".into(),
            role: RoleKey::new("night"),
            zone: chrono_tz::UTC,
            rotation: vec![UserName::new("nell")],
            shift: TimeDelta::hours(12),
            handoff: chrono::NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            start: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        });
    let clock = Arc::new(VirtualClock::new(at(START)));
    let store = Store::open(dir).expect("open store");
    (
        Arc::new(App::new(store, Arc::new(config), clock.clone())),
        clock,
    )
}

fn run(app: &App, who: &str, place: Option<IncidentId>, line: &str) -> Response {
    app.run_line(&app.actor(&UserName::new(who)), place, line)
}

fn snapshot(app: &App, id: IncidentId) -> Snapshot {
    (
        app.store().incident(id).unwrap().expect("incident"),
        app.store().events(id).unwrap(),
    )
}

/// Writes a copy of `snap` as a new incident, so that each command that changes something
/// starts again from the same state.
fn plant(app: &App, snap: &Snapshot) -> IncidentId {
    let id = app.store().next_incident_id().unwrap();
    let mut inc = snap.0.clone();
    inc.id = id;
    inc.channel = engine::channel_name(id, &inc.title, inc.exercise);
    app.store()
        .commit_all(&[Commit {
            before: None,
            after: &inc,
            shared: None,
            events: &snap.1,
            outbox: &[],
            consumed: None,
        }])
        .unwrap();
    id
}

fn same_state(a: &Snapshot, b: &Snapshot) -> bool {
    let mut b0 = b.0.clone();
    b0.id = a.0.id;
    b0.channel = a.0.channel.clone();
    a.0 == b0 && a.1 == b.1
}

impl Probing {
    fn new(dir: &std::path::Path) -> Probing {
        let (app, clock) = probe_app(dir);
        let inc = IncidentId(1);
        for (who, line) in SETUP {
            let place = (!line.starts_with("/incident open")).then_some(inc);
            let r = run(&app, who, place, line);
            assert_eq!(r.kind, ReplyKind::Reply, "setup {who}: {line}: {}", r.text);
        }
        app.advance_to(&clock, at(START) + TimeDelta::minutes(1))
            .unwrap();
        let open = snapshot(&app, inc);
        let night = Target::Role(RoleKey::new("night"));
        let fm = Target::Role(RoleKey::new("fm"));
        assert_eq!(open.0.nudge(NudgeId(1)).unwrap().targets, vec![night]);
        assert_eq!(open.0.nudge(NudgeId(2)).unwrap().targets, vec![fm]);
        assert_eq!(open.0.tier, Tier::L1);
        let copy = plant(&app, &open);
        let r = run(
            &app,
            "alice",
            Some(copy),
            "/incident resolve summary:\"done\"",
        );
        assert_eq!(r.kind, ReplyKind::Reply, "{}", r.text);
        let resolved = snapshot(&app, copy);
        Probing {
            app,
            open,
            resolved,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_rule_written_here_is_the_readme_table_and_every_command_is_probed() {
    let specs = CommandSet::builtin();
    let defined: BTreeSet<&str> = specs.runnable().iter().map(|c| c.path.as_str()).collect();
    let here: BTreeSet<&str> = WHO.iter().map(|(p, _)| *p).collect();
    assert_eq!(defined, here, "commands/ and this test's table differ");
    for c in specs.runnable() {
        assert_eq!(
            c.who,
            who_may(&c.path),
            "/{}: commands/ says {:?}; the rule this test checks says otherwise",
            c.path,
            c.who
        );
    }
    let probed: BTreeSet<&str> = PROBES.iter().map(|p| p.path).collect();
    assert_eq!(defined, probed, "every command needs a probe");
}

#[test]
fn every_command_by_every_kind_of_person_in_every_place_follows_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Probing::new(dir.path());
    let app = &fx.app;
    let mut failures = Vec::new();
    let mut cells = 0;
    for place in [Place::Outside, Place::Open, Place::Resolved] {
        let template = match place {
            Place::Outside => None,
            Place::Open => Some(&fx.open),
            Place::Resolved => Some(&fx.resolved),
        };
        // A fresh copy of the template, replaced whenever a command changed it.
        let mut here = template.map(|t| plant(app, t));
        for probe in PROBES {
            for p in PEOPLE {
                cells += 1;
                let before = here.map(|id| snapshot(app, id));
                let next_before = app.store().next_incident_id().unwrap();
                let r = run(app, p.name, here, probe.line);
                let want = expected(p, probe, place);
                let got = verdict(&r);
                let cell = format!("{place:?} · {} ({}) · {}", p.name, p.what, probe.line);
                if got != Ok(want) {
                    failures.push(format!(
                        "{cell}: expected {want:?}, got {got:?}: {}",
                        r.text
                    ));
                }
                let after = here.map(|id| snapshot(app, id));
                let next_after = app.store().next_incident_id().unwrap();
                let unchanged = before == after && next_before == next_after;
                if want == Verdict::Runs && !probe.reads && unchanged {
                    failures.push(format!("{cell}: answered but changed nothing: {}", r.text));
                }
                if want != Verdict::Runs && !unchanged {
                    failures.push(format!(
                        "{cell}: refused, yet something changed: {}",
                        r.text
                    ));
                }
                if want == Verdict::Refused
                    && p.facilities_or_vendor_in(!acts_on_none(probe.path))
                    && !r.text.contains("facilities and vendor staff post /update")
                {
                    failures.push(format!(
                        "{cell}: the refusal does not say why and what instead: {}",
                        r.text
                    ));
                }
                if let (Some(t), Some(after)) = (template, &after)
                    && !same_state(t, after)
                {
                    here = Some(plant(app, t));
                }
            }
        }
    }
    assert_eq!(cells, PROBES.len() * PEOPLE.len() * 3);
    assert!(
        failures.is_empty(),
        "{} of {cells} cells break the rule:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where a grant to `p` must stop, and with what: `None` means it is made.
fn grant_refusal(p: &Person, line: &str) -> Option<&'static str> {
    if p.roster.is_none() {
        return Some("is not on the roster");
    }
    if p.facilities_or_vendor() {
        return Some("facilities and vendor staff cannot");
    }
    let hands_over = line.starts_with("/handover");
    if hands_over && line.contains("plan:A") && p.plan_lead
        || hands_over && !line.contains("plan:") && p.commander
    {
        return Some("already leads it");
    }
    None
}

/// The engine's context and an actor, for the probe policy.
fn decide(app: &App, who: &str, inc: &Incident, line: &str) -> Result<engine::Decision, Refusal> {
    let inv = CommandSet::builtin().parse(line).unwrap();
    let Request::Change(cmd) = inv.to_request().unwrap() else {
        panic!("{line} changes nothing");
    };
    let ctx = Ctx {
        now: app.clock().now(),
        policy: &app.config().policy,
        overrides: &[],
    };
    engine::handle(&ctx, &app.actor(&UserName::new(who)), inc, &cmd)
}

/// Every grant of a position (and every `/participant add` kind) to every kind of person, by
/// the SDM, in the engine: the store cannot yet hold a tier lead's assignment.
#[test]
fn facilities_and_vendor_staff_are_never_given_a_position_and_staff_are() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Probing::new(dir.path());
    let app = &fx.app;
    let inc = &fx.open.0;
    let grants = [
        "/plan open plan:B title:\"Probe\" lead:{who}",
        "/plan assign plan:A lead:{who}",
        "/role assign role:sdm user:{who}",
        "/role assign role:commander user:{who}",
        "/role assign role:l1 user:{who}",
        "/role assign role:l2 user:{who}",
        "/role assign role:l3 user:{who}",
        "/handover to:{who} summary:\"probe\" plan:A",
        "/handover to:{who} summary:\"probe\"",
        "/participant add user:{who} kind:staff",
        "/participant add user:{who} kind:fm",
        "/participant add user:{who} kind:vendor",
    ];
    let mut failures = Vec::new();
    let mut cells = 0;
    for grant in grants {
        for p in PEOPLE {
            cells += 1;
            let line = grant.replace("{who}", p.name);
            let want = if let Some(kind) = line.split("kind:").nth(1) {
                // /participant add: the roster decides for people it gives a role.
                match (p.roster, p.added) {
                    (_, Some(_)) => Some("already in the"),
                    (Some(_), _) if p.facilities_or_vendor() && kind == "staff" => {
                        Some("cannot make facilities or vendor staff into staff")
                    }
                    (Some(_), _) if !p.facilities_or_vendor() && kind != "staff" => {
                        Some("the roster, not /participant add")
                    }
                    _ => None,
                }
            } else {
                grant_refusal(p, &line)
            };
            let cell = format!("{} ({}) · {line}", p.name, p.what);
            match (want, decide(app, "sam", inc, &line)) {
                (None, Ok(d)) if d.incident != *inc => {}
                (None, got) => failures.push(format!("{cell}: expected it to be made: {got:?}")),
                (Some(why), Err(e)) if e.message.contains(why) => {
                    if why.contains("facilities") && e.kind != RefusalKind::NotAllowed {
                        failures.push(format!("{cell}: refused as {:?}: {e}", e.kind));
                    }
                }
                (Some(why), got) => failures.push(format!(
                    "{cell}: expected a refusal saying {why:?}: {got:?}"
                )),
            }
        }
    }
    assert_eq!(cells, 12 * PEOPLE.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An incident's tier lead holds that tier's role there (the store cannot yet hold one, so
/// this is the engine alone).
#[test]
fn an_incidents_tier_lead_holds_the_tiers_role_there() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Probing::new(dir.path());
    let app = &fx.app;
    let inc = decide(app, "sam", &fx.open.0, "/role assign role:l1 user:carol")
        .unwrap()
        .incident;
    decide(app, "carol", &inc, "/incident resolve summary:done").unwrap();
    decide(app, "carol", &inc, "/escalate reason:probe").unwrap();
    let e = decide(app, "carol", &inc, "/plan open plan:B title:probe").unwrap_err();
    assert!(e.message.contains("carol holds l1, rebuild"), "{e}");
    // Not elsewhere: /incident open counts the roster's roles only.
    let ctx = Ctx {
        now: app.clock().now(),
        policy: &app.config().policy,
        overrides: &[],
    };
    let carol = app.actor(&UserName::new("carol"));
    let e = engine::open(
        &ctx,
        &carol,
        IncidentId(9),
        "x",
        Severity::Sev3,
        "mail",
        Exercise::Real,
    )
    .unwrap_err();
    assert_eq!(e.kind, RefusalKind::NotAllowed, "{e}");
}

/// An incident stored by an older warroom may name facilities or vendor staff in a position:
/// it gives them nothing.
#[test]
fn positions_stored_for_facilities_or_vendor_staff_give_them_nothing() {
    let policy = Config::builtin().unwrap().policy;
    let actor = |name: &str| {
        let user = UserName::new(name);
        Actor {
            roles: policy.roster.roles_of(&user),
            user,
        }
    };
    let ctx = Ctx {
        now: at(START),
        policy: &policy,
        overrides: &[],
    };
    let d = engine::open(
        &ctx,
        &actor("alice"),
        IncidentId(1),
        "Mail down",
        Severity::Sev1,
        "mail",
        Exercise::Real,
    )
    .unwrap();
    let mut inc = d.incident;
    let ravi = UserName::new("ravi");
    let kim = UserName::new("kim");
    inc.assignments.insert(IncidentRole::Sdm, ravi.clone());
    inc.assignments
        .insert(IncidentRole::Commander, ravi.clone());
    inc.assignments
        .insert(IncidentRole::Lead(Tier::L1), kim.clone());
    inc.tracks.get_mut(&Plan::A).unwrap().lead = Some(kim.clone());
    let refused = [
        ("kim", "/plan close plan:A outcome:abandoned"),
        ("kim", "/plan assign plan:A member:bob"),
        ("kim", "/handover to:bob summary:x plan:A"),
        ("kim", "/escalate reason:x"),
        ("kim", "/incident resolve summary:x"),
        ("ravi", "/participant add user:zed kind:vendor"),
        ("ravi", "/handover to:bob summary:x"),
        ("ravi", "/plan open plan:B title:x"),
        ("ravi", "/role assign role:sdm user:ravi"),
        ("ravi", "/incident resolve summary:x"),
        ("ravi", "/plan decline reason:x"),
    ];
    let specs = CommandSet::builtin();
    for (who, line) in refused {
        let inv = specs.parse(line).unwrap();
        let Request::Change(cmd) = inv.to_request().unwrap() else {
            panic!("{line} changes something");
        };
        let e = engine::handle(&ctx, &actor(who), &inc, &cmd).unwrap_err();
        assert_eq!(e.kind, RefusalKind::NotAllowed, "{who}: {line}: {e}");
        assert!(
            e.message
                .contains("even where an incident names them lead, commander or SDM"),
            "{who}: {line}: {e}"
        );
    }
    // They keep what facilities and vendor staff may do; and the stored SDM role answers no
    // SDM alert for ravi.
    for who in ["kim", "ravi"] {
        let d = engine::handle(
            &ctx,
            &actor(who),
            &inc,
            &Command::Update {
                text: "on site".into(),
                plan: None,
            },
        )
        .unwrap();
        assert!(!d.reply.contains("SDM alert"), "{}", d.reply);
    }
    assert!(!engine::effective_roles(&actor("ravi"), Some(&inc)).contains(&RoleKey::sdm()));
}

/// `/participant add` cannot make facilities or vendor staff of someone who holds a position.
#[test]
fn a_position_holder_cannot_be_added_as_facilities_or_vendor_staff() {
    let mut policy = Config::builtin().unwrap().policy;
    // On the roster, with no role: they may lead, and /participant add's kind would decide.
    policy
        .roster
        .users
        .insert(UserName::new("noor"), BTreeSet::new());
    let actor = |name: &str| {
        let user = UserName::new(name);
        Actor {
            roles: policy.roster.roles_of(&user),
            user,
        }
    };
    let ctx = Ctx {
        now: at(START),
        policy: &policy,
        overrides: &[],
    };
    let inc = engine::open(
        &ctx,
        &actor("alice"),
        IncidentId(1),
        "Mail down",
        Severity::Sev1,
        "mail",
        Exercise::Real,
    )
    .unwrap()
    .incident;
    let lead = Command::PlanAssign {
        plan: Plan::A,
        lead: Some(UserName::new("noor")),
        member: None,
    };
    let inc = engine::handle(&ctx, &actor("sam"), &inc, &lead)
        .unwrap()
        .incident;
    let add = |kind: &str| Command::ParticipantAdd {
        user: UserName::new("noor"),
        kind: RoleKey::new(kind),
    };
    let e = engine::handle(&ctx, &actor("sam"), &inc, &add("fm")).unwrap_err();
    assert!(
        e.message.contains("noor is Plan A's lead of INC-1")
            && e.message.contains("Hand it to a staff member first"),
        "{e}"
    );
    engine::handle(&ctx, &actor("sam"), &inc, &add("staff")).unwrap();
}

#[test]
fn permissions_cannot_give_facilities_or_vendor_staff_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warroom.toml");
    std::fs::write(
        &path,
        "[permissions]\n\"plan close\" = [\"sdm\", \"vendor\"]\n",
    )
    .unwrap();
    let e = Config::load(Some(&path), &[]).unwrap_err().to_string();
    assert!(
        e.contains("permissions.\"plan close\"")
            && e.contains("'vendor' cannot be given a command"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// The reported bypasses, through the binary.
// ---------------------------------------------------------------------------------------------

const OPEN: &str = "/incident open title:\"Mail down\" severity:1 service:mail\n";

fn errors_of(run: &Run) -> Vec<&str> {
    run.errors().iter().map(|l| l.text.as_str()).collect()
}

#[test]
fn vendor_staff_cannot_be_made_a_plan_lead_nor_close_assign_or_hand_over_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{OPEN}/as sam\n/plan open plan:B title:\"Rebuild\" lead:kim\n\
         /plan open plan:B title:\"Rebuild\" lead:carol team:rebuild\n\
         /plan assign plan:B lead:kim\n/plan assign plan:B member:kim\n\
         /as kim\n/plan close plan:B outcome:abandoned\n/plan assign plan:B lead:kim\n\
         /handover to:bob summary:\"over to you\" plan:B\n\
         /update plan:B text:\"VMware: the datastore lock is released\"\n/incident status\n"
    );
    let run = console(dir.path(), START, &input);
    assert!(run.success, "{}", run.stderr);
    let e = errors_of(&run);
    assert_eq!(e.len(), 5, "{e:#?}");
    for refusal in &e[..2] {
        assert!(
            refusal.contains("option 'lead': kim is vendor staff, and facilities and vendor staff cannot lead a plan"),
            "{refusal}"
        );
        assert!(
            refusal.contains("member:kim"),
            "says what instead: {refusal}"
        );
    }
    for (refusal, path) in e[2..].iter().zip(["plan close", "plan assign", "handover"]) {
        assert!(
            refusal.starts_with(&format!("/{path} is refused: it is for "))
                && refusal.contains("Plan B's lead (carol)")
                && refusal.contains("kim is vendor staff"),
            "{refusal}"
        );
    }
    let status = run.text_starting("INC-1 ·");
    assert!(
        status.contains("Plan B [active]") && status.contains("lead carol"),
        "{status}"
    );
    assert!(
        status.contains("the datastore lock is released"),
        "{status}"
    );
}

#[test]
fn facilities_staff_cannot_be_made_commander_nor_add_people_or_hand_over() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{OPEN}/as sam\n/role assign role:commander user:ravi\n\
         /as ravi\n/participant add user:zed kind:vendor\n/handover to:bob summary:\"night shift\"\n\
         /timeline\n"
    );
    let run = console(dir.path(), START, &input);
    assert!(run.success, "{}", run.stderr);
    let e = errors_of(&run);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].contains("option 'user': ravi is on-site facilities (fm), and facilities and vendor staff cannot be the commander")
            && e[0].contains("Choose a staff member"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("/participant add is refused: it is for sdm or the commander (alice)"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("/handover is refused") && e[2].contains("ravi is on-site facilities"),
        "{}",
        e[2]
    );
    let timeline = run.text_starting("Timeline");
    assert!(
        !timeline.contains("ravi is") && !timeline.contains("zed joined"),
        "{timeline}"
    );
}

#[test]
fn facilities_staff_cannot_be_made_the_sdm_nor_run_the_sdms_commands() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{OPEN}/as sam\n/role assign role:sdm user:ravi\n\
         /as ravi\n/plan open plan:B title:\"Rebuild\"\n/role assign role:sdm user:ravi\n\
         /incident resolve summary:\"done\"\n/incident status\n"
    );
    let run = console(dir.path(), START, &input);
    assert!(run.success, "{}", run.stderr);
    let e = errors_of(&run);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].contains(
            "ravi is on-site facilities (fm), and facilities and vendor staff cannot be the SDM"
        ),
        "{}",
        e[0]
    );
    for (refusal, path) in e[1..]
        .iter()
        .zip(["plan open", "role assign", "incident resolve"])
    {
        assert!(
            refusal.starts_with(&format!("/{path} is refused"))
                && refusal.contains("facilities and vendor staff post /update"),
            "{refusal}"
        );
    }
    let status = run.text_starting("INC-1 ·");
    assert!(!status.contains("ravi"), "{status}");
}

#[test]
fn a_commander_cannot_hand_the_incident_to_facilities_staff() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{OPEN}/handover to:ravi summary:\"you have it tonight\"\n/as ravi\n/ack\n\
         /as alice\n/handover to:bob summary:\"you have it tonight\"\n/timeline\n"
    );
    let run = console(dir.path(), START, &input);
    assert!(run.success, "{}", run.stderr);
    let e = errors_of(&run);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("option 'to': ravi is on-site facilities (fm), and facilities and vendor staff cannot take over INC-1")
            && e[0].contains("Hand it to a staff member"),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("/ack is refused") || e[1].contains("no open nudge for ravi"),
        "{}",
        e[1]
    );
    let timeline = run.text_starting("Timeline");
    assert!(!timeline.contains("offered to ravi"), "{timeline}");
    assert!(timeline.contains("offered to bob"), "{timeline}");
}

/// Commands that act on no incident wherever they are typed: only the roster counts for them.
fn acts_on_none(path: &str) -> bool {
    path == "incident open" || path.starts_with("oncall ")
}
