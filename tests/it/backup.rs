//! `warroom backup` and `warroom restore` through the binary: a backup taken from a running
//! console under command load is the store after one of its commands, backup → restore →
//! backup gives the same bytes, and bad targets and damaged files are refused with nothing
//! changed.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::helpers::{START, at, run_plain};
use warroom::delivery::Destination;
use warroom::domain::{IncidentId, MessageKind};
use warroom::store::{Outgoing, Store};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn backup(dir: &Path, out: &Path) -> crate::helpers::Run {
    run_plain(&["backup", "--data", s(dir), "--out", s(out)], "")
}

fn restore(dir: &Path, input: &Path) -> crate::helpers::Run {
    run_plain(&["restore", "--data", s(dir), "--in", s(input)], "")
}

pub fn report(dir: &Path, incident: Option<&str>) -> String {
    let mut args = vec!["report", "--data", s(dir)];
    args.extend(incident);
    let r = run_plain(&args, "");
    assert!(r.success, "report failed: {}", r.stderr);
    r.stdout
}

/// Runs a console on `dir` (virtual clock at START, durability flush) over `lines`.
fn replay(dir: &Path, lines: &[String]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(["console", "--data", s(dir), "--format", "jsonl"])
        .arg("--clock")
        .arg(format!("virtual:{START}"))
        .env_remove("WARROOM_DATA")
        .env("WARROOM__STORE__DURABILITY", "flush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warroom");
    let mut stdin = child.stdin.take().expect("stdin");
    for l in lines {
        writeln!(stdin, "{l}").expect("write a line");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("console runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup_lines() -> Vec<String> {
    [
        "/incident open title:\"Mail is down\" severity:2 service:mail",
        "/incident open title:\"Web is slow\" severity:3 service:web",
    ]
    .map(String::from)
    .to_vec()
}

/// Load line `k` (1-based): an update on INC-1 or INC-2, alternating.
fn load_lines(k: usize) -> [String; 2] {
    [
        format!("/use INC-{}", 1 + k % 2),
        format!("/update text:\"load {k}\""),
    ]
}

#[test]
fn a_backup_under_command_load_restores_to_the_store_after_one_of_its_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, file, restored, replayed) = (
        tmp.path().join("orig"),
        tmp.path().join("backup.jsonl"),
        tmp.path().join("restored"),
        tmp.path().join("replayed"),
    );
    let mut all = setup_lines();
    for k in 1..=20_000 {
        all.extend(load_lines(k));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(["console", "--data", s(&orig), "--format", "jsonl"])
        .arg("--clock")
        .arg(format!("virtual:{START}"))
        .env_remove("WARROOM_DATA")
        .env("WARROOM__STORE__DURABILITY", "flush")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start warroom");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let all = all.clone();
        std::thread::spawn(move || {
            let mut written = 0usize;
            for l in &all {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if writeln!(stdin, "{l}").is_err() {
                    break;
                }
                written += 1;
            }
            drop(stdin);
            written
        })
    };
    // Wait until the load is well under way: 200 updates answered.
    let mut replies = std::io::BufReader::new(stdout).lines();
    let mut answered = 0;
    while answered < 200 {
        let line = replies.next().expect("the console answers").expect("utf-8");
        if line.contains("\"kind\":\"reply\"") {
            answered += 1;
        }
    }
    let reader = std::thread::spawn(move || replies.count());
    assert!(
        orig.join("warroom.sock").exists(),
        "the running console listens for backups"
    );
    let taken = backup(&orig, &file);
    let still_running = child.try_wait().expect("try_wait").is_none();
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    reader.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(taken.success, "backup failed: {}", taken.stderr);
    assert!(still_running, "the backup was taken while the console ran");
    assert!(
        !orig.join("warroom.sock").exists(),
        "a clean stop removes the socket"
    );
    let r = restore(&restored, &file);
    assert!(r.success, "restore failed: {}", r.stderr);
    // Which update was the last the backup holds?
    let text = format!(
        "{}{}",
        report(&restored, Some("INC-1")),
        report(&restored, Some("INC-2"))
    );
    let last = regex::Regex::new(r"load (\d+)")
        .unwrap()
        .captures_iter(&text)
        .filter_map(|c| c.get(1)?.as_str().parse::<usize>().ok())
        .max()
        .expect("the backup holds some of the load");
    let upto = setup_lines().len() + 2 * last;
    assert!(
        upto < written,
        "the backup ({last} updates) was taken before the load ended ({written} lines written)"
    );
    // The same commands up to that one, on a fresh store, give the same reports.
    replay(&replayed, all.get(..upto).unwrap());
    for inc in [Some("INC-1"), Some("INC-2"), None] {
        assert_eq!(
            report(&restored, inc),
            report(&replayed, inc),
            "{inc:?} differs between the restored backup and the replay of its commands"
        );
    }
}

/// A store holding every kind of record a backup carries: the seed story's first lines (an
/// open SEV1 with its timers), a waiting message, a dead letter, front-end ids (text and
/// binary), a drill, a shift handoff and an on-call override.
pub fn rich_store(one: &Path) {
    // An open SEV1 with its timers, plus a waiting message, a dead letter, front-end ids
    // (text and binary) and a drill.
    let story: String = crate::helpers::story()
        .lines()
        .take(16)
        .collect::<Vec<_>>()
        .join("\n");
    replay(one, &story.lines().map(String::from).collect::<Vec<_>>());
    {
        let store = Store::open(one).unwrap();
        let msg = |id| Outgoing {
            id,
            incident: IncidentId(1),
            channel: "inc-1".into(),
            at: at(START),
            kind: MessageKind::Post,
            text: format!("message {id}"),
            mentions: Vec::new(),
            buttons: Vec::new(),
            nudge: None,
            to: Destination::Incident,
            about: None,
            fallback_done: false,
        };
        let (a, b) = (store.outbox_id().unwrap(), store.outbox_id().unwrap());
        store.queue(&[msg(a), msg(b)]).unwrap();
        store.dead_letter(&msg(b), "refused: 50001", &[]).unwrap();
        store.adapter_put("discord/channel/1", b"123456").unwrap();
        store.adapter_put("binary", &[0, 255, 7]).unwrap();
        store
            .set_drill("mail", Some(at("2026-12-01T09:00:00Z")), &[])
            .unwrap();
        // On-call state: a pending shift handoff and an override.
        store
            .set_handoff("l1", Some(at("2026-11-24T08:00:00Z")), &[])
            .unwrap();
        store
            .put_override(&warroom::domain::oncall::Override {
                id: 1,
                role: warroom::domain::RoleKey::new("l1"),
                user: warroom::domain::UserName::new("bob"),
                replaces: Some(warroom::domain::UserName::new("alice")),
                from: at("2026-11-24T22:00:00Z"),
                to: at("2026-11-25T06:00:00Z"),
                reason: "swap".into(),
                by: warroom::domain::UserName::new("sam"),
                removed: None,
            })
            .unwrap();
    }
}

#[test]
fn backup_then_restore_then_backup_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two, f1, f2) = (
        tmp.path().join("one"),
        tmp.path().join("two"),
        tmp.path().join("1.jsonl"),
        tmp.path().join("2.jsonl"),
    );
    rich_store(&one);
    let r = backup(&one, &f1);
    assert!(r.success, "{}", r.stderr);
    let r = restore(&two, &f1);
    assert!(r.success, "{}", r.stderr);
    let r = backup(&two, &f2);
    assert!(r.success, "{}", r.stderr);
    let (b1, b2) = (std::fs::read(&f1).unwrap(), std::fs::read(&f2).unwrap());
    let text = String::from_utf8(b1.clone()).unwrap();
    for kind in [
        "{\"format\":\"warroom-backup\",\"version\":1",
        "{\"incident\":",
        "{\"event\":",
        "{\"timer\":",
        "{\"outbox\":",
        "{\"dead_letter\":",
        "{\"adapter\":{\"key\":\"binary\",\"hex\":\"00ff07\"}}",
        "{\"adapter\":{\"key\":\"discord/channel/1\",\"text\":\"123456\"}}",
        "{\"drill\":",
        "{\"handoff\":{\"due\":\"2026-11-24T08:00:00Z\",\"role\":\"l1\"}}",
        "{\"override\":{\"id\":1,",
        "{\"end\":",
    ] {
        assert!(text.contains(kind), "no {kind} line in:\n{text}");
    }
    assert_eq!(b1, b2, "the second backup differs from the first");
    assert_eq!(report(&one, Some("INC-1")), report(&two, Some("INC-1")));
    // The restored store hands out no outbox id the backup already used.
    let store = Store::open(&two).unwrap();
    let used = store
        .outbox()
        .unwrap()
        .iter()
        .map(|o| o.id)
        .chain(
            store
                .dead_letter_list()
                .unwrap()
                .iter()
                .map(|d| d.message.id),
        )
        .max()
        .unwrap();
    assert!(store.outbox_id().unwrap() > used);
    assert_eq!(store.pending_timers(), text.matches("{\"timer\":").count());
    assert_eq!(
        store.handoffs().unwrap(),
        vec![(at("2026-11-24T08:00:00Z"), "l1".to_string())]
    );
    assert_eq!(store.overrides().unwrap().len(), 1);
}

#[test]
fn restore_refuses_a_store_that_holds_anything_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (full, file, before, after) = (
        tmp.path().join("full"),
        tmp.path().join("b.jsonl"),
        tmp.path().join("before.jsonl"),
        tmp.path().join("after.jsonl"),
    );
    replay(&full, &setup_lines());
    assert!(backup(&full, &file).success);
    assert!(backup(&full, &before).success);
    let r = restore(&full, &file);
    assert!(!r.success);
    assert!(
        r.stderr.contains("is not empty (it holds 2 incident(s)")
            && r.stderr.contains("give a new data folder"),
        "{}",
        r.stderr
    );
    assert!(backup(&full, &after).success);
    assert_eq!(
        std::fs::read(&before).unwrap(),
        std::fs::read(&after).unwrap()
    );
}

#[test]
fn damaged_or_foreign_backup_files_are_refused_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, file) = (tmp.path().join("orig"), tmp.path().join("b.jsonl"));
    replay(&orig, &setup_lines());
    assert!(backup(&orig, &file).success);
    let good = std::fs::read(&file).unwrap();
    // One letter of a title changed: still valid JSON, still a valid incident.
    let flipped = String::from_utf8(good.clone())
        .unwrap()
        .replacen("Mail is down", "Mail is dawn", 1)
        .into_bytes();
    assert_ne!(flipped, good);
    let newer =
        String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"version\":1", "\"version\":7", 1);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "cut",
            good.get(..good.len() - 10).unwrap().to_vec(),
            "cut short",
        ),
        (
            "no-end",
            {
                let t = String::from_utf8(good.clone()).unwrap();
                let keep: Vec<&str> = t.lines().filter(|l| !l.starts_with("{\"end\"")).collect();
                format!("{}\n", keep.join("\n")).into_bytes()
            },
            "its end line is missing",
        ),
        ("flipped", flipped, "checksum does not match"),
        (
            "newer",
            newer.into_bytes(),
            "format version 7, newer than the 1",
        ),
        (
            "foreign",
            b"{\"hello\":1}\n".to_vec(),
            "not a warroom backup",
        ),
    ];
    for (name, bytes, says) in cases {
        let f = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&f, &bytes).unwrap();
        let target = tmp.path().join(format!("target-{name}"));
        let r = restore(&target, &f);
        assert!(!r.success, "{name} was restored");
        assert!(r.stderr.contains(says), "{name}: {}", r.stderr);
        assert!(!target.exists(), "{name}: the target folder was created");
    }
    // A folder that is not there is not backed up (nor created).
    let missing = tmp.path().join("missing");
    let r = backup(&missing, &tmp.path().join("m.jsonl"));
    assert!(!r.success && r.stderr.contains("there is no warroom data folder"));
    assert!(!missing.exists());
}
