//! The post-incident report of the seed story: durations checked against the story's times,
//! and a well-formed SVG chart.

use crate::helpers::*;

#[test]
fn report_of_the_seed_story_has_the_right_durations_and_a_parsable_chart() {
    let dir = tempfile::tempdir().unwrap();
    let run = console(dir.path(), START, &story());
    assert!(run.success, "{}", run.stderr);
    // A digest carries several nudges' reminders, a line each: count the nudge lines.
    let nudges_sent = run
        .lines
        .iter()
        .filter(|l| l.kind == "nudge")
        .flat_map(|l| l.text.lines())
        .filter(|l| l.starts_with("Nudge #"))
        .count();

    let svg_path = dir.path().join("chart.svg");
    let data = dir.path().to_str().unwrap();
    let report = run_binary_raw(&[
        "report",
        "INC-1",
        "--data",
        data,
        "--svg",
        svg_path.to_str().unwrap(),
    ]);
    // The story: opened 22:00, auto L2 22:30, manual L3 (and SDM alert) 22:45, Plan B opened
    // 00:30, resolved 01:35.
    for row in [
        "| open → L2 | 30m |",
        "| open → L3 | 45m |",
        "| open → SDM alert | 45m |",
        "| open → Plan B start | 2h30m |",
        "| open → resolution | 3h35m |",
    ] {
        assert!(report.contains(row), "missing {row} in\n{report}");
    }
    assert!(report.contains("- Resolved by plan: Plan B"));
    assert!(report.contains("| B | Rebuild on a fresh VM from last night's backup | carol | rebuild | 2 | succeeded |"), "{report}");
    // The timeline crosses midnight, with each entry's time and actor.
    assert!(
        report.contains("| 2026-11-23 22:45 UTC | bob | escalated L2 → L3"),
        "{report}"
    );
    assert!(
        report.contains("| 2026-11-24 00:30 UTC | sam | Plan B opened"),
        "{report}"
    );

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let count = |class: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .count()
    };
    assert_eq!(count("tier"), 3, "L1, L2, L3 bars");
    assert_eq!(count("plan"), 2, "Plan A and Plan B bars");
    assert_eq!(count("nudge"), nudges_sent, "one mark per nudge sent");
    assert_eq!(count("update"), 6, "four Plan A and two Plan B updates");

    // Without an incident: the index, drills set apart.
    let index = run_binary_raw(&["report", "--data", data]);
    let (real, drills) = index.split_once("## DR drills").unwrap();
    assert!(
        real.contains("| INC-1 |") && !drills.contains("INC-1"),
        "{index}"
    );
}

fn run_binary_raw(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
