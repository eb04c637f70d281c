//! `warroom bench` as a user runs it: a small run in each format. Figures are not judged here
//! (performance is measured by the bench, never by a timed test); their shape is.

use serde_json::Value;

use crate::helpers::*;

#[test]
fn bench_json_lists_every_figure_with_its_floor_and_target() {
    let run = run_plain(
        &[
            "bench", "--rounds", "3", "--memory", "20", "--format", "json",
        ],
        "",
    );
    assert!(run.success, "bench failed: {}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("bench --format json is JSON");
    let figures = report["figures"].as_array().expect("a figures list");
    let keys: Vec<&str> = figures.iter().filter_map(|f| f["key"].as_str()).collect();
    for want in [
        "command_p50",
        "command_p99",
        "engine_p50",
        "commands_per_s_1",
        "commands_per_s_4",
        "commands_per_s_16",
        "commands_per_s_64",
        "rss_peak_mib",
    ] {
        assert!(keys.contains(&want), "no {want} in {keys:?}");
    }
    for f in figures {
        let value = f["value"].as_f64().expect("a numeric value");
        assert!(value.is_finite() && value >= 0.0, "{f}");
        if f.get("target").is_some() {
            assert!(f["met"].is_boolean(), "a target without a verdict: {f}");
        }
    }
    let p50 = figures
        .iter()
        .find(|f| f["key"] == "command_p50")
        .expect("command_p50");
    assert!(
        p50["floor"]["value"].as_f64().is_some_and(|v| v > 0.0),
        "the fdatasync floor was not measured: {p50}"
    );
    assert!(report["cores"].as_u64().is_some_and(|c| c >= 1));
}

#[test]
fn bench_markdown_is_the_readme_table() {
    let run = run_plain(&["bench", "--rounds", "2", "--format", "md"], "");
    assert!(run.success, "bench failed: {}", run.stderr);
    let mut lines = run.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("| measure | this run | floor, same run | target | met |")
    );
    assert_eq!(lines.next(), Some("|---|---|---|---|---|"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 7, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("| ") && r.ends_with(" |"))
    );
    // The README's table carries the same measures as this run.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for r in &rows {
        let measure = r.trim_start_matches("| ").split(" | ").next().unwrap_or("");
        let stem = measure.split(" (").next().unwrap_or(measure);
        assert!(
            readme.contains(stem),
            "the README's bench table lacks the row {stem:?}"
        );
    }
}
