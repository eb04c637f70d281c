//! No input crashes warroom: the hardening reproducers, each through the real binary.

use crate::helpers::*;

/// The binary neither panicked nor failed, and said nothing on stderr about a panic.
fn survived(run: &Run) {
    assert!(run.success, "warroom failed: {}", run.stderr);
    assert!(
        !run.stderr.contains("panicked"),
        "warroom panicked: {}",
        run.stderr
    );
}

const OPEN: &str = "/incident open title:\"Mail down\" severity:1 service:mail\n";

#[test]
fn tier_leads_assigned_with_role_assign_are_stored_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{OPEN}/as sam\n/role assign role:l3 user:dana\n/role assign role:l1 user:alice\n/role assign role:l2 user:bob\n/role assign role:commander user:bob\n/role assign role:sdm user:sam\n"
    );
    let run = console(dir.path(), START, &input);
    survived(&run);
    assert!(run.errors().is_empty(), "{:#?}", run.errors());
    for said in [
        "dana is now L3 lead of INC-1",
        "alice is now L1 lead of INC-1",
        "bob is now L2 lead of INC-1",
        "bob is now commander of INC-1",
        "sam is now SDM of INC-1",
    ] {
        assert!(
            run.lines.iter().any(|l| l.text.contains(said)),
            "no '{said}' in {:#?}",
            run.lines
        );
    }
    // A second run reads the stored leads back: the L3 pickup goes to dana, the assigned lead.
    let again = console(
        dir.path(),
        START,
        "/as sam\n/incident status\n/escalate tier:3 reason:\"straight to L3\"\n",
    );
    survived(&again);
    assert!(again.errors().is_empty(), "{:#?}", again.errors());
    assert!(
        again.text_starting("INC-1 ·").contains("commander bob"),
        "{:#?}",
        again.lines
    );
    let pickup = again
        .lines
        .iter()
        .find(|l| l.kind == "nudge" && l.text.contains("escalated L1 → L3"))
        .unwrap_or_else(|| panic!("no L3 pickup in {:#?}", again.lines));
    assert!(pickup.mentions("dana"), "{pickup:#?}");
}

#[test]
fn an_incident_stored_with_the_old_role_keys_still_reads() {
    use warroom::domain::{Incident, IncidentRole, UserName};
    let dir = tempfile::tempdir().unwrap();
    let (app, _clock) = app(dir.path());
    let sam = app.actor(&UserName::new("sam"));
    let alice = app.actor(&UserName::new("alice"));
    let r = app.run_line(&alice, None, OPEN.trim());
    let id = r.incident.unwrap();
    for line in [
        "/role assign role:sdm user:sam",
        "/role assign role:commander user:bob",
    ] {
        let r = app.run_line(&sam, Some(id), line);
        assert_eq!(r.kind, warroom::app::ReplyKind::Reply, "{}", r.text);
    }
    let stored = app.store().incident(id).unwrap().unwrap();
    let mut json = serde_json::to_value(&stored).unwrap();
    assert_eq!(
        json["assignments"],
        serde_json::json!({"sdm": "sam", "commander": "bob"})
    );
    // What versions before the string keys wrote: the unit variants by name.
    json["assignments"] = serde_json::json!({"Sdm": "sam", "Commander": "bob"});
    let old: Incident = serde_json::from_value(json).unwrap();
    assert_eq!(old, stored);
    assert_eq!(old.assignments[&IncidentRole::Sdm], UserName::new("sam"));
}

#[test]
fn overflowing_and_far_future_durations_are_refused_with_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let refused: &[(&str, &str)] = &[
        (
            "/vendor add name:V case:C callback:1000000000000000s",
            "option 'callback': '1000000000000000s' is too far ahead; it must fall within 7d from now",
        ),
        (
            // Once a callback "by Nov 04 13:40" in the year 13433.
            "/vendor add name:V case:C callback:360000000000s",
            "option 'callback': '360000000000s' is too far ahead; it must fall within 7d",
        ),
        (
            "/vendor add name:V case:C callback:8d",
            "option 'callback': '8d' is too far ahead; it must fall within 7d",
        ),
        (
            "/vendor add name:V case:C callback:99999999999999999999999s",
            "option 'callback': '99999999999999999999999s' is too far ahead",
        ),
        (
            "/vendor add name:V case:C callback:2027-11-04T13:40:00Z",
            "option 'callback': ",
        ),
        (
            "/plan open plan:C title:c cadence:1000000000000000s",
            "option 'cadence': '1000000000000000s' is out of range; a duration here is from 1s to 30d",
        ),
        (
            "/plan open plan:C title:c cadence:31d",
            "option 'cadence': '31d' is out of range; a duration here is from 1s to 30d",
        ),
        (
            "/plan open plan:C title:c cadence:99999999999999999999999s",
            "option 'cadence': '99999999999999999999999s' is out of range",
        ),
        (
            "/plan open plan:C title:c cadence:1500ms",
            "option 'cadence': '1500ms' has a fraction of a second",
        ),
        (
            "/snooze duration:1000000000000000s reason:later",
            "option 'duration': '1000000000000000s' is out of range; a duration here is from 1s to 30d",
        ),
    ];
    let mut input = format!("{OPEN}/timeline\n");
    // The vendor lines first, as kim (vendor staff); the rest as the SDM.
    input.push_str("/as kim\n");
    for (line, _) in &refused[..5] {
        input.push_str(line);
        input.push('\n');
    }
    input.push_str("/as sam\n");
    for (line, _) in &refused[5..] {
        input.push_str(line);
        input.push('\n');
    }
    input.push_str("/timeline\n");
    // The limits themselves are accepted.
    input.push_str(
        "/as kim\n/vendor add name:V case:C callback:7d\n/as sam\n/plan open plan:C title:c cadence:30d\n",
    );
    let run = console(dir.path(), START, &input);
    survived(&run);
    let errors = run.errors();
    assert_eq!(errors.len(), refused.len(), "{errors:#?}");
    for (e, (line, expect)) in errors.iter().zip(refused) {
        assert!(
            e.text.contains(expect),
            "{line}: {:?} lacks {expect:?}",
            e.text
        );
        assert!(
            e.text.contains("\nusage: /"),
            "{line}: no usage in {:?}",
            e.text
        );
    }
    // The absolute far-future callback is refused by the engine, naming the 7-day limit.
    assert!(
        errors[4]
            .text
            .contains("is too far ahead; a callback must fall within 7d from now"),
        "{:?}",
        errors[4].text
    );
    let timelines: Vec<&str> = run
        .lines
        .iter()
        .filter(|l| l.text.starts_with("Timeline of"))
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(timelines.len(), 2);
    assert_eq!(
        timelines[0], timelines[1],
        "a refused line changed the timeline"
    );
    assert!(
        run.lines.iter().any(|l| l
            .text
            .starts_with("Tracking V case C; callback promised by Nov 30 22:00")),
        "{:#?}",
        run.lines
    );
    assert!(
        run.lines
            .iter()
            .any(|l| l.text.starts_with("Plan C is open")),
        "{:#?}",
        run.lines
    );
}

#[test]
fn a_clock_at_the_end_of_time_refuses_commands_and_fires_timers_without_overflowing() {
    use chrono::{DateTime, TimeDelta, Utc};
    use warroom::config::Config;
    use warroom::domain::engine::{self, Actor, Ctx};
    use warroom::domain::*;

    let policy = Config::builtin().unwrap().policy;
    let actor = |name: &str| {
        let user = UserName::new(name);
        Actor {
            roles: policy.roster.roles_of(&user),
            user,
        }
    };
    let end = DateTime::<Utc>::MAX_UTC - TimeDelta::minutes(1);
    let late = Ctx {
        now: end,
        policy: &policy,
        overrides: &[],
    };
    let r = engine::open(
        &late,
        &actor("alice"),
        IncidentId(1),
        "Mail down",
        Severity::Sev1,
        "mail",
        Exercise::Real,
    )
    .unwrap_err();
    assert!(r.message.contains("beyond the latest time"), "{r}");
    // Deadlines seen from the end of time are not representable: None, not a panic.
    assert_eq!(Deadline::In(TimeDelta::days(7)).resolve(end), None);
    assert_eq!(
        Deadline::At(chrono::NaiveTime::MIN).resolve(DateTime::<Utc>::MAX_UTC),
        None
    );

    // An incident opened in our time, then acted on at the end of time.
    let now = at(START);
    let ctx = Ctx {
        now,
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
    let r = engine::handle(
        &late,
        &actor("alice"),
        &inc,
        &Command::Update {
            text: "still looking".into(),
            plan: None,
        },
    )
    .unwrap_err();
    assert!(r.message.contains("beyond the latest time"), "{r}");
    let r = engine::handle(
        &late,
        &actor("kim"),
        &inc,
        &Command::VendorAdd {
            vendor: "V".into(),
            case: "C".into(),
            callback: Some(Deadline::In(TimeDelta::days(7))),
        },
    )
    .unwrap_err();
    assert!(r.message.contains("beyond the latest time"), "{r}");
    // Every timer fires at the end of time without a panic; what it would re-arm is left out.
    let mut inc = inc;
    for _ in 0..100 {
        let Some(t) = inc.next_timers().first().map(|t| t.seq) else {
            break;
        };
        inc = engine::fire(&late, &inc, t).incident;
    }
    assert!(inc.timers.is_empty(), "{:#?}", inc.timers);
    assert!(inc.nudges.len() >= 3, "{:#?}", inc.nudges);
    // The report's chart copes with an incident that is still open at the end of time.
    let svg = chart::svg(&inc, &[], DateTime::<Utc>::MAX_UTC);
    assert!(svg.starts_with("<svg"), "{svg}");
}

#[test]
fn an_option_name_that_cannot_be_one_is_named_with_the_valid_options() {
    let dir = tempfile::tempdir().unwrap();
    let run = console(
        dir.path(),
        START,
        &format!("{OPEN}/update 🔥:x\n/incident severity 🔥:2 reason:x\n"),
    );
    survived(&run);
    let errors = run.errors();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0].text,
        "/update: unknown option '🔥'; its options are: text, plan\nusage: /update text:<text> [plan:<A-D>]"
    );
    assert!(
        errors[1].text.starts_with(
            "/incident severity: unknown option '🔥'; its options are: level, reason\n"
        ),
        "{:?}",
        errors[1].text
    );
}

#[test]
fn errors_cut_huge_input_and_escape_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    // Just under the longest line read, so that each message's own echo is what cuts it.
    let mega = "z".repeat(7_900);
    let lines = [
        format!("/update text:{}", "z".repeat(1 << 20)),
        format!("/{mega}"),
        format!("/update {mega}"),
        format!("/update {mega}:x"),
        format!("/incident open title:x severity:{mega} service:mail"),
        format!("/incident {mega}"),
        mega.clone(),
        format!("/update text:hi {mega}:\"unclosed"),
        "/frob\u{1b}[31mnicate".to_string(),
        "/ack nudge:\u{7}\u{1b}[2J".to_string(),
        "/help \u{1b}]0;owned\u{7}".to_string(),
    ];
    let mut input = OPEN.to_string();
    for l in &lines {
        input.push_str(l);
        input.push('\n');
    }
    let run = console(dir.path(), START, &input);
    survived(&run);
    let errors = run.errors();
    assert_eq!(errors.len(), lines.len(), "{errors:#?}");
    for (e, line) in errors.iter().zip(&lines) {
        let shown: String = line.chars().take(40).collect();
        assert!(
            e.text.chars().count() < 600,
            "{shown}…: {} characters echoed",
            e.text.chars().count()
        );
        assert!(
            !e.text.chars().any(|c| c.is_control() && c != '\n'),
            "{shown}…: a raw control character in {:?}",
            e.text
        );
    }
    assert!(
        errors[0]
            .text
            .contains("zzz…' is 1048589 characters long; a command line holds at most 8000"),
        "{}",
        errors[0].text
    );
    for e in &errors[..8] {
        assert!(e.text.contains("zzz…'"), "{}", e.text);
    }
    assert!(
        errors[8]
            .text
            .contains("unknown command '/frob\\u{1b}[31mnicate'"),
        "{:?}",
        errors[8].text
    );
    assert!(
        errors[9]
            .text
            .contains("'\\u{7}\\u{1b}[2J' is not a nudge number"),
        "{:?}",
        errors[9].text
    );
    assert!(
        errors[10].text.contains("\\u{1b}]0;owned\\u{7}"),
        "{:?}",
        errors[10].text
    );
}
