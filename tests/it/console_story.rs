//! The seed story through the real binary, restart continuity, authorisation and the lock.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

fn nudges<'a>(lines: &'a [Line], needle: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| l.kind == "nudge" && l.text.contains(needle))
        .collect()
}

#[test]
fn seed_story_plays_through_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let run = console(dir.path(), START, &story());
    assert!(run.success, "{}", run.stderr);
    let l = &run.lines;

    // Opening pings L1 in the incident's own channel.
    let open = l
        .iter()
        .find(|x| x.kind == "post" && x.text.contains("opened by alice"))
        .unwrap();
    assert_eq!(open.at, at(START));
    assert!(open.mentions("l1"));
    assert!(
        open.channel.starts_with("inc-1-core-mail-server"),
        "{}",
        open.channel
    );

    // +30m: auto-escalation to L2, pinging the L2 role.
    let l2 = nudges(l, "L1 → L2");
    assert_eq!(l2.len(), 1, "{l2:#?}");
    assert_eq!(l2[0].at, at("2026-11-23T22:30:00Z"));
    assert_eq!(l2[0].mentions, vec!["l2"]);

    // The manual escalation to L3 alerts the SDM.
    let sdm = nudges(l, "SDM alert");
    assert_eq!(sdm.len(), 1);
    assert_eq!(sdm[0].at, at("2026-11-23T22:45:00Z"));
    assert!(sdm[0].mentions("sdm"));

    // +2h: the Plan B nudge, repeating every 15m until Plan B opens at 00:30.
    let plan_b: Vec<_> = nudges(l, "Plan B deadline reached")
        .iter()
        .map(|x| x.at)
        .collect();
    assert_eq!(
        plan_b,
        vec![
            at("2026-11-24T00:00:00Z"),
            at("2026-11-24T00:15:00Z"),
            at("2026-11-24T00:30:00Z")
        ]
    );
    assert!(
        nudges(l, "Plan B deadline reached")
            .iter()
            .all(|x| x.mentions("sdm"))
    );
    let opened = l
        .iter()
        .find(|x| x.kind == "post" && x.text.contains("Plan B opened by sam"))
        .unwrap();
    assert!(opened.mentions("carol") && opened.mentions("rebuild"));

    // Plan B silent for 30m after its 00:30 update: its lead is nudged at 01:00.
    let silent = nudges(l, "Plan B (Rebuild");
    assert_eq!(silent[0].at, at("2026-11-24T01:00:00Z"));
    assert_eq!(silent[0].mentions, vec!["carol"]);

    // Resolving cancels every timer: 12 more hours bring no nudge.
    let resolved = l
        .iter()
        .find(|x| x.kind == "post" && x.text.contains("resolved by Plan B"))
        .unwrap();
    assert!(
        l.iter()
            .filter(|x| x.kind == "nudge")
            .all(|x| x.at <= resolved.at),
        "a nudge came after resolution"
    );
    let status = l.iter().rfind(|x| x.kind == "reply").unwrap();
    assert!(status.text.contains("No pending timers"), "{}", status.text);

    // Timers fire in deadline order, each stamped with its own due time.
    assert!(l.windows(2).all(|w| w[0].at <= w[1].at));
}

/// Everything up to and including the L3 updates at 22:45.
fn first_half() -> String {
    story()
        .lines()
        .take_while(|l| !l.starts_with("/clock advance 1h15m"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn restart_fires_what_fell_due_exactly_once_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let first = console(dir.path(), START, &first_half());
    assert!(first.success, "{}", first.stderr);
    let acked: Vec<String> = first
        .lines
        .iter()
        .filter(|l| l.kind == "post" && l.text.contains("acknowledged"))
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(acked.len(), 3, "bob, sam and dana acknowledged");

    // Down from 22:45 until 00:40: Plan A's silence check (23:15) and the Plan B deadline
    // (00:00) fell due meanwhile.
    let second = console(
        dir.path(),
        "2026-11-24T00:40:00Z",
        "/timeline\n/incident status\n",
    );
    assert!(second.success, "{}", second.stderr);
    let fired: Vec<&Line> = second.lines.iter().filter(|l| l.kind == "nudge").collect();
    assert_eq!(fired.len(), 2, "{fired:#?}");
    assert!(
        fired[0].text.contains("Plan A") && fired[0].text.contains("1h25m late"),
        "{}",
        fired[0].text
    );
    assert!(
        fired[1].text.contains("Plan B deadline") && fired[1].text.contains("40m late"),
        "{}",
        fired[1].text
    );
    assert!(fired.iter().all(|l| l.at == at("2026-11-24T00:40:00Z")));

    let timeline = second.text_starting("Timeline of INC-1");
    for who in [
        "bob acknowledged",
        "sam acknowledged",
        "dana acknowledged",
        "kernel sees the NIC",
    ] {
        assert!(
            timeline.contains(who),
            "timeline lacks '{who}':\n{timeline}"
        );
    }
    let status = second.text_starting("INC-1 ·");
    assert!(status.contains("tier L3"), "{status}");
    assert!(status.contains("alerted"), "{status}");

    // A third start at the same time fires nothing again: the claims were durable.
    let third = console(dir.path(), "2026-11-24T00:40:00Z", "");
    assert!(third.success, "{}", third.stderr);
    assert!(
        third.lines.iter().all(|l| l.kind != "nudge"),
        "{:#?}",
        third.lines
    );
}

#[test]
fn non_sdm_cannot_open_plan_b_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let input = "/incident open title:\"Mail down\" severity:1 service:mail\n\
                 /incident status\n/timeline\n\
                 /plan open plan:B title:\"Rebuild\" lead:carol team:rebuild\n\
                 /as ravi\n/plan open plan:B title:\"Rebuild\"\n/incident resolve summary:\"done\"\n\
                 /update text:\"FM: power to rack 12 is back\"\n\
                 /as alice\n/incident status\n/timeline\n";
    let run = console(dir.path(), START, input);
    assert!(run.success, "{}", run.stderr);
    let errors = run.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].text.contains("/plan open is refused") && errors[0].text.contains("sdm"),
        "{}",
        errors[0].text
    );
    assert!(
        errors[0].text.contains("alice holds l1"),
        "{}",
        errors[0].text
    );
    assert!(
        errors[1].text.contains("facilities and vendor staff"),
        "{}",
        errors[1].text
    );
    assert!(
        errors[2].text.contains("/incident resolve is refused"),
        "{}",
        errors[2].text
    );
    let statuses: Vec<&Line> = run
        .lines
        .iter()
        .filter(|l| l.text.starts_with("INC-1 ·"))
        .collect();
    // Same card before and after, but for ravi's accepted update.
    assert!(!statuses[0].text.contains("Plan B [") && !statuses[1].text.contains("Plan B ["));
    assert!(statuses[1].text.contains("power to rack 12"));
    let timelines: Vec<&Line> = run
        .lines
        .iter()
        .filter(|l| l.text.starts_with("Timeline"))
        .collect();
    assert_eq!(
        timelines[0].text.lines().count() + 1,
        timelines[1].text.lines().count()
    );
}

#[test]
fn a_second_process_on_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args([
            "console",
            "--data",
            dir.path().to_str().unwrap(),
            "--format",
            "jsonl",
            "--clock",
            &format!("virtual:{START}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    // The first process answers /clock once it holds the folder.
    writeln!(stdin, "/clock").unwrap();
    let mut out = holder.stdout.take().unwrap();
    let mut buf = [0u8; 1];
    std::io::Read::read(&mut out, &mut buf).unwrap();

    let second = console(dir.path(), START, "/clock\n");
    assert!(!second.success);
    assert!(
        second.stderr.contains("in use by another warroom process"),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains(&format!("process id {}", holder.id())),
        "{}",
        second.stderr
    );
    drop(stdin);
    assert!(holder.wait().unwrap().success());
}

#[test]
fn broken_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("warroom.toml");
    std::fs::write(&bad, "[policy.sev1]\nl1_budget = \"half an hour\"\n").unwrap();
    let run = run_binary(&["check-config", "--config", bad.to_str().unwrap()], "");
    assert!(!run.success);
    assert!(
        run.stderr.contains("policy.sev1.l1_budget"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("expected a duration"), "{}", run.stderr);

    std::fs::write(&bad, "[roster]\nalice = \"l1\"\n").unwrap();
    let run = run_binary(&["check-config", "--config", bad.to_str().unwrap()], "");
    assert!(
        run.stderr.contains("roster.alice") && run.stderr.contains("list of role keys"),
        "{}",
        run.stderr
    );

    std::fs::write(&bad, "[policy.sev1\n").unwrap();
    let run = run_binary(&["check-config", "--config", bad.to_str().unwrap()], "");
    assert!(run.stderr.contains("not valid TOML"), "{}", run.stderr);

    let ok = run_binary(&["check-config"], "");
    assert!(ok.success, "{}", ok.stderr);
}

#[test]
fn discord_needs_a_token_from_the_environment_and_never_prints_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(["discord"])
        .env_remove("DISCORD_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DISCORD_TOKEN is not set"), "{err}");

    // With a token but no guild configured: a clear error, and the token appears nowhere.
    let dir = tempfile::tempdir().unwrap();
    let token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.secret-token-value";
    let out = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(["discord", "--data", dir.path().to_str().unwrap()])
        .env("DISCORD_TOKEN", token)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("discord.guild_id is not set"), "{all}");
    assert!(
        !all.contains("secret-token-value"),
        "the token leaked: {all}"
    );
}
