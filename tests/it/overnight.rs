//! Overnight coordination through the console binary: handover, vendor callbacks, runbook
//! checklists, drills and their schedule.

use crate::helpers::*;

fn open_sev1() -> &'static str {
    "/incident open title:\"Mail down\" severity:1 service:mail\n"
}

#[test]
fn overnight_handover_of_plan_b_nudges_both_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{}/as sam\n/plan open plan:B lead:carol\n/as carol\n/update plan:B text:\"restore started\"\n\
         /handover to:dana plan:B summary:\"restore at 40%, verify mail flow at 06:00\"\n\
         /clock advance 30m\n/as dana\n/ack\n/update plan:B text:\"dana here, restore at 70%\"\n\
         /clock advance 30m\n/timeline\n",
        open_sev1()
    );
    let run = console(dir.path(), START, &input);
    assert!(run.success, "{}", run.stderr);
    let l = &run.lines;
    // The template gave Plan B its title, team and checklist.
    assert!(l.iter().any(|x| {
        x.kind == "post"
            && x.text
                .contains("Plan B opened by sam: Rebuild the mail server")
    }));
    assert!(
        l.iter()
            .any(|x| x.kind == "card" && x.text.contains("1. [ ] Identify the latest good backup"))
    );
    let card = l
        .iter()
        .find(|x| x.text.contains("Handover of Plan B from carol to @dana"))
        .expect("handover card");
    assert_eq!(card.mentions, vec!["dana"]);
    assert!(
        card.text.contains("Summary: restore at 40%"),
        "{}",
        card.text
    );
    // Before the acknowledgement, Plan B's silence nudge reaches both carol and dana.
    let silent: Vec<&Line> = l
        .iter()
        .filter(|x| x.kind == "nudge" && x.text.contains("Plan B (Rebuild"))
        .collect();
    assert_eq!(
        silent[0].mentions,
        vec!["carol", "dana"],
        "{:#?}",
        silent[0]
    );
    // After it, only the new lead.
    let after = silent.last().unwrap();
    assert_eq!(after.mentions, vec!["dana"], "{after:#?}");
    assert!(after.at > silent[0].at);
    let timeline = run.text_starting("Timeline");
    assert!(
        timeline.contains("handover of Plan B offered to dana"),
        "{timeline}"
    );
    assert!(
        timeline.contains("dana took over Plan B from carol"),
        "{timeline}"
    );
}

#[test]
fn vendor_callback_nudges_lead_and_sdm_only_when_nothing_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{}/as kim\n/vendor add name:VMware case:SR-4711 callback:30m\n/clock advance 31m\n/incident status\n",
        open_sev1()
    );
    let run = console(dir.path(), START, &input);
    let n: Vec<&Line> = run
        .lines
        .iter()
        .filter(|x| x.kind == "nudge" && x.text.contains("VMware promised a callback"))
        .collect();
    assert_eq!(n.len(), 1, "{:#?}", run.lines);
    assert_eq!(n[0].at, at("2026-11-23T22:30:00Z"));
    // The L1 budget ran out at the same minute, so the current tier is L2: its role is pinged.
    assert!(
        n[0].mentions("sdm") && n[0].mentions("l2"),
        "{:?}",
        n[0].mentions
    );
    assert!(
        n[0].text.contains("by 22:30; nothing recorded"),
        "{}",
        n[0].text
    );
    let card = run.text_starting("INC-1 ·");
    assert!(
        card.contains("Vendor VMware case SR-4711 · callback 22:30 MISSED"),
        "{card}"
    );

    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{}/as kim\n/vendor add name:VMware case:SR-4711 callback:30m\n/clock advance 20m\n\
         /vendor update case:SR-4711 text:\"engineer on the bridge\"\n/clock advance 1h\n",
        open_sev1()
    );
    let run = console(dir.path(), START, &input);
    assert!(
        run.lines
            .iter()
            .all(|x| !x.text.contains("promised a callback")),
        "{:#?}",
        run.lines
    );
}

#[test]
fn checklist_items_are_ticked_onto_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{}/as sam\n/plan open plan:B lead:carol\n/as carol\n/plan check plan:B item:2\n/plan check plan:B item:2\n/plan check plan:B item:9\n/timeline\n",
        open_sev1()
    );
    let run = console(dir.path(), START, &input);
    let ok = run
        .lines
        .iter()
        .find(|x| x.text.starts_with("Ticked item 2 of Plan B"))
        .expect("ticked");
    assert!(ok.text.contains("1 of 5 done"), "{}", ok.text);
    let errors = run.errors();
    assert!(
        errors[0].text.contains("already ticked by carol"),
        "{}",
        errors[0].text
    );
    assert!(
        errors[1].text.contains("items 1 to 5"),
        "{}",
        errors[1].text
    );
    let timeline = run.text_starting("Timeline");
    assert!(
        timeline.contains("Plan B checklist 2/5 done: Provision a fresh VM"),
        "{timeline}"
    );
}

fn drill_config(dir: &std::path::Path) -> String {
    let path = dir.join("drills.toml");
    std::fs::write(
        &path,
        "[services.mail]\ndrill_every = \"1d\"\nrunbook = [\"https://wiki.example.com/mail-dr\"]\n",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn console_with(dir: &std::path::Path, config: &str, clock: &str, input: &str) -> Run {
    run_binary(
        &[
            "console",
            "--data",
            dir.join("data").to_str().unwrap(),
            "--config",
            config,
            "--clock",
            &format!("virtual:{clock}"),
            "--format",
            "jsonl",
        ],
        input,
    )
}

#[test]
fn a_scheduled_drill_nudges_the_sdm_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = drill_config(dir.path());
    // First start schedules the drill a day out; nothing is due yet.
    let first = console_with(dir.path(), &cfg, START, "/clock advance 23h\n");
    assert!(
        first.lines.iter().all(|l| l.kind != "nudge"),
        "{:#?}",
        first.lines
    );
    // Down across the due time: it fires once on the next start, saying how late.
    let second = console_with(dir.path(), &cfg, "2026-11-25T10:00:00Z", "");
    let due: Vec<&Line> = second
        .lines
        .iter()
        .filter(|l| l.text.contains("DR drill due for service mail"))
        .collect();
    assert_eq!(due.len(), 1, "{:#?}", second.lines);
    assert_eq!(due[0].channel, "warroom");
    assert!(due[0].mentions("sdm"));
    assert!(due[0].text.contains("late"), "{}", due[0].text);
    let third = console_with(dir.path(), &cfg, "2026-11-25T10:00:00Z", "");
    assert!(third.lines.is_empty(), "claimed once: {:#?}", third.lines);

    // The SDM starts it: the drill is marked everywhere, and the drill clock restarts.
    let input = "/as sam\n/incident open title:\"DR drill: mail\" severity:2 service:mail drill:true\n/clock advance 20h\n";
    let fourth = console_with(dir.path(), &cfg, "2026-11-25T10:05:00Z", input);
    let posts: Vec<&Line> = fourth
        .lines
        .iter()
        .filter(|l| l.kind == "post" || l.kind == "nudge")
        .collect();
    assert!(
        posts
            .iter()
            .all(|l| l.text.starts_with("[DRILL]") || l.channel == "warroom"),
        "{posts:#?}"
    );
    assert!(
        posts.iter().any(|l| l.channel.starts_with("inc-1-drill-")),
        "{posts:#?}"
    );
    assert!(
        fourth
            .lines
            .iter()
            .all(|l| !l.text.contains("DR drill due")),
        "restarted by the drill"
    );
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args([
            "report",
            "INC-1",
            "--data",
            dir.path().join("data").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8(report.stdout).unwrap();
    assert!(report.starts_with("# DRILL: INC-1"), "{report}");
}

#[test]
fn a_participant_added_to_the_incident_posts_updates_but_runs_nothing_privileged() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{}/as zed\n/as sam\n/participant add user:zed kind:fm\n/as zed\n\
         /update text:\"FM: the storage shelf is powered again\"\n/plan open plan:B\n/incident resolve summary:done\n/timeline\n",
        open_sev1()
    );
    let run = console(dir.path(), START, &input);
    let errors = run.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].text.contains("'zed' is not on the roster"),
        "{}",
        errors[0].text
    );
    assert!(
        errors[1].text.contains("/plan open is refused") && errors[1].text.contains("facilities"),
        "{}",
        errors[1].text
    );
    assert!(
        errors[2].text.contains("/incident resolve is refused"),
        "{}",
        errors[2].text
    );
    assert!(
        run.lines
            .iter()
            .any(|x| x.kind == "post" && x.text.contains("Plan A update from zed"))
    );
    let timeline = run.text_starting("Timeline");
    assert!(
        timeline.contains("zed joined as on-site facilities (fm)"),
        "{timeline}"
    );
}
