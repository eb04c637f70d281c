//! Bad input: every kind gets a one-line error naming the problem, plus the usage, and
//! changes nothing.

use crate::helpers::*;

const BAD: &[(&str, &str)] = &[
    ("/frobnicate now", "unknown command '/frobnicate'"),
    ("incident open", "not a command"),
    ("/incident", "needs a subcommand"),
    ("/incident reopen", "no subcommand 'reopen'"),
    (
        "/incident open title:x severity:7 service:mail",
        "'7' is not a severity",
    ),
    (
        "/incident open title:x severity:one service:mail",
        "'one' is not a severity",
    ),
    (
        "/incident open title:x service:mail",
        "missing required option 'severity'",
    ),
    (
        "/incident open severity:1 service:mail",
        "missing required option 'title'",
    ),
    (
        "/incident open title:x severity:1 service:mail colour:red",
        "unknown option 'colour'",
    ),
    (
        "/incident open title:\"x severity:1 service:mail",
        "quote is never closed",
    ),
    (
        "/incident open title:x severity:1 service:mail drill:maybe",
        "not true or false",
    ),
    (
        "/incident open title:x severity:1 severity:2 service:mail",
        "given twice",
    ),
    (
        "/incident severity level:0 reason:test",
        "'0' is not a severity",
    ),
    (
        "/snooze duration:5x reason:\"later\"",
        "'5x' is not a duration",
    ),
    (
        "/snooze duration:0m reason:\"later\"",
        "'0m' is not a duration",
    ),
    (
        "/snooze reason:\"later\"",
        "missing required option 'duration'",
    ),
    ("/escalate tier:4 reason:x", "'4' is not a tier"),
    ("/escalate tier:2", "missing required option 'reason'"),
    ("/plan open plan:E title:x", "'E' is not a plan"),
    (
        "/plan close plan:B outcome:won",
        "not one of succeeded, abandoned, stood-down",
    ),
    ("/update", "missing required option 'text'"),
    ("/update hello there", "unexpected 'hello'"),
    ("/update text:", "is empty"),
    ("/ack nudge:zero", "not a nudge number"),
    (
        "/vendor add name:VMware case:123 callback:soonish",
        "not a callback time",
    ),
    (
        "/role assign role:king user:bob",
        "not one of sdm, commander",
    ),
    ("/plan assign plan:A lead:Bob!", "not a user name"),
];

#[test]
fn bad_inputs_get_clear_errors_and_change_nothing() {
    assert!(BAD.len() >= 20);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from(
        "/incident open title:\"Mail down\" severity:1 service:mail\n/timeline\n/incident status\n",
    );
    for (line, _) in BAD {
        input.push_str(line);
        input.push('\n');
    }
    input.push_str("/timeline\n/incident status\n");
    let run = console(dir.path(), START, &input);
    assert!(run.success, "{}", run.stderr);
    let errors = run.errors();
    assert_eq!(errors.len(), BAD.len(), "{errors:#?}");
    for (e, (line, expect)) in errors.iter().zip(BAD) {
        let mut parts = e.text.lines();
        let first = parts.next().unwrap();
        assert!(first.contains(expect), "{line}: '{first}' lacks '{expect}'");
        let usage = parts.next().unwrap_or_default();
        assert!(
            usage.starts_with("usage: /"),
            "{line}: no usage line in {:?}",
            e.text
        );
        assert!(parts.next().is_none(), "{line}: more than error + usage");
    }
    let reads = |prefix: &str| -> Vec<String> {
        run.lines
            .iter()
            .filter(|l| l.text.starts_with(prefix))
            .map(|l| l.text.clone())
            .collect()
    };
    let timelines = reads("Timeline");
    assert_eq!(timelines[0], timelines[1]);
    let cards = reads("INC-1 ·");
    assert_eq!(cards[0], cards[1]);
    // Bad input posts nothing to the incident channel.
    assert_eq!(run.lines.iter().filter(|l| l.kind == "post").count(), 1);
}
