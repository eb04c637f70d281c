//! Regression tests, through the binary, for what used to end or mislead the console: invalid
//! UTF-8, escape sequences, huge or overflowing clock moves, and a virtual clock that would run
//! the timeline backwards.

use std::process::{Command, Stdio};

use crate::helpers::*;

/// Runs the console on raw bytes (not necessarily UTF-8).
fn console_bytes(data: &std::path::Path, input: &[u8]) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args([
            "console",
            "--data",
            data.to_str().unwrap(),
            "--clock",
            &format!("virtual:{START}"),
            "--format",
            "jsonl",
        ])
        .env_remove("WARROOM_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ignored: a console that exits early answers by its output, not by taking its input.
    let _ = child.stdin.take().unwrap().write_all(input);
    let out = child.wait_with_output().unwrap();
    Run {
        lines: String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| Line {
                at: at(v["at"].as_str().unwrap()),
                channel: v["channel"].as_str().unwrap().to_string(),
                kind: v["kind"].as_str().unwrap().to_string(),
                text: v["text"].as_str().unwrap().to_string(),
                mentions: Vec::new(),
            })
            .collect(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}

#[test]
fn an_invalid_utf8_line_is_one_error_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = b"/incident open title:\"Mail down\" severity:1 service:mail\n/update text:\"caf\xe9\"\n/update text:\"next\"\n";
    let r = console_bytes(dir.path(), input);
    assert!(r.success, "{}", r.stderr);
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{:#?}", r.lines);
    assert!(
        errors[0].text.contains("line 2 is not valid UTF-8"),
        "{}",
        errors[0].text
    );
    assert!(
        r.lines
            .iter()
            .any(|l| l.text.contains("Plan A update from alice: next")),
        "the next line ran: {:#?}",
        r.lines
    );
}

#[test]
fn escape_sequences_are_shown_escaped_in_text_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args([
            "console",
            "--data",
            dir.path().to_str().unwrap(),
            "--clock",
            &format!("virtual:{START}"),
        ])
        .env_remove("WARROOM_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                b"/incident open title:\"Mail \x1b[2Jdown\" severity:1 service:mail\n",
            )?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the terminal: {text:?}"
    );
    assert!(text.contains("\\u{1b}"), "{text}");
}

#[test]
fn clock_moves_are_bounded_checked_and_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let r = console(
        dir.path(),
        START,
        "/incident open title:\"Mail down\" severity:1 service:mail\n\
         /clock advance 1000000000000000s\n\
         /clock advance 99999999h\n\
         /clock advance 31d\n\
         /clock advance 30d\n\
         /clock\n",
    );
    assert!(r.success, "{}", r.stderr);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
    let errors = r.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for e in &errors {
        assert!(
            e.text.contains("30 days") || e.text.contains("not a duration"),
            "{}",
            e.text
        );
    }
    assert!(
        r.text_starting("It is").contains("2026-12-23T22:00:00Z"),
        "{:#?}",
        r.lines
    );
}

#[test]
fn a_virtual_clock_never_starts_before_the_folders_latest_event() {
    let dir = tempfile::tempdir().unwrap();
    let first = console(
        dir.path(),
        START,
        "/incident open title:\"Mail down\" severity:1 service:mail\n/clock advance 2h\n/update text:\"late\"\n",
    );
    assert!(first.success);
    let again = console(
        dir.path(),
        START,
        "/clock\n/update text:\"after restart\"\n",
    );
    assert!(again.success, "{}", again.stderr);
    let note = again.text_starting("The virtual clock was asked to start at");
    assert!(note.contains("2026-11-24T00:00:00Z"), "{note}");
    assert!(
        again
            .text_starting("It is")
            .contains("2026-11-24T00:00:00Z")
    );
    let timeline = console(dir.path(), START, "/timeline\n");
    let times: Vec<chrono::DateTime<chrono::Utc>> = timeline.lines.iter().map(|l| l.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}
