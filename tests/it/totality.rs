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
