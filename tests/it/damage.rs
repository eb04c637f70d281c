//! Damaged data folders: truncated, flipped and deleted files. Whatever warroom refuses, it
//! refuses with the one damaged-folder message and leaves byte-for-byte as it was; whatever it
//! opens, it opens whole (the report is the undamaged one), never as an emptier war room.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::helpers::*;

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

#[derive(Debug)]
enum Damage {
    Delete,
    Truncate(u64),
    Flip { at: u64, len: usize },
}

fn apply(path: &Path, d: &Damage) {
    match d {
        Damage::Delete => std::fs::remove_file(path).unwrap(),
        Damage::Truncate(n) => std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(*n)
            .unwrap(),
        Damage::Flip { at, len } => {
            let mut bytes = std::fs::read(path).unwrap();
            let start = (*at as usize).min(bytes.len().saturating_sub(1));
            let end = (start + len).min(bytes.len());
            for b in &mut bytes[start..end] {
                *b ^= 0x5A;
            }
            std::fs::write(path, bytes).unwrap();
        }
    }
}

fn report(data: &Path) -> Run {
    run_plain(
        &[
            "report",
            "--data",
            data.to_str().unwrap(),
            "--format",
            "json",
        ],
        "",
    )
}

/// The report of every incident, as JSON, for comparing folders.
fn all_reports(data: &Path) -> Option<String> {
    let index = report(data);
    if !index.success {
        return None;
    }
    let mut out = String::new();
    for n in 1..=2 {
        let r = run_plain(
            &[
                "report",
                &format!("INC-{n}"),
                "--data",
                data.to_str().unwrap(),
                "--format",
                "json",
            ],
            "",
        );
        if !r.success {
            return None;
        }
        out.push_str(&r.stdout);
    }
    Some(out)
}

/// A folder with two incidents and some history, closed by a crash (kill) or cleanly.
fn make_folder(dir: &Path) {
    let input = format!(
        "{}\n/incident open title:\"DNS flapping\" severity:2 service:dns\n/update text:\"looking\"\n",
        story()
    );
    let r = console(dir, START, &input);
    assert!(r.success, "{}", r.stderr);
}

#[test]
fn damaged_folders_are_refused_untouched_or_opened_whole() {
    let base = tempfile::tempdir().unwrap();
    let good = base.path().join("good");
    make_folder(&good);
    let expected = all_reports(&good).expect("the undamaged folder reports");
    assert!(expected.contains("INC-2"), "{expected}");

    let files: Vec<PathBuf> = snapshot(&good)
        .into_keys()
        .filter(|p| p.starts_with("db") || p.ends_with("warroom.state"))
        .collect();
    assert!(
        files
            .iter()
            .any(|p| p.ends_with("db/db") || p == Path::new("db/db")),
        "{files:?}"
    );
    let mut cases = 0;
    let mut refused = 0;
    for file in &files {
        let len = std::fs::metadata(good.join(file)).unwrap().len();
        let mut damages = vec![
            Damage::Delete,
            Damage::Truncate(0),
            Damage::Truncate(len / 2),
        ];
        if len > 1 {
            damages.push(Damage::Truncate(len - 1));
        }
        for at in [0, 64, 512, 2000, len / 3, len / 2, len.saturating_sub(100)] {
            if at < len {
                damages.push(Damage::Flip { at, len: 64 });
            }
        }
        for d in damages {
            cases += 1;
            let dir = base.path().join(format!("case{cases}"));
            copy(&good, &dir);
            apply(&dir.join(file), &d);
            let before = snapshot(&dir);
            match all_reports(&dir) {
                Some(got) => assert_eq!(
                    got,
                    expected,
                    "{} {d:?}: opened, but holds something else",
                    file.display()
                ),
                None => {
                    refused += 1;
                    let r = report(&dir);
                    assert!(!r.success);
                    assert!(
                        r.stderr.contains("is damaged") && r.stderr.contains("Move it aside"),
                        "{} {d:?}: not the damaged-folder message: {}",
                        file.display(),
                        r.stderr
                    );
                    assert!(
                        !r.stderr.contains("panicked"),
                        "{} {d:?}: a panic trace: {}",
                        file.display(),
                        r.stderr
                    );
                    // The console refuses it too, with the same message, and writes nothing.
                    let c = console(&dir, START, "/incident status\n");
                    assert!(
                        !c.success && c.stderr.contains("is damaged"),
                        "{}",
                        c.stderr
                    );
                    assert!(
                        snapshot(&dir) == before,
                        "{} {d:?}: the refused folder was changed",
                        file.display()
                    );
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    // Enough of the damage was real to be refused, and some was harmless.
    assert!(refused * 2 >= cases, "refused {refused} of {cases}");
    say(&format!(
        "damage suite: {cases} cases, {refused} refused untouched, the rest opened whole"
    ));
}

#[test]
fn a_folder_whose_database_was_deleted_is_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let before = snapshot(dir.path());
    let r = report(dir.path());
    assert!(!r.success, "{}", r.stdout);
    assert!(
        r.stderr.contains("db/ is missing") && r.stderr.contains("Move it aside"),
        "{}",
        r.stderr
    );
    assert!(snapshot(dir.path()) == before, "the folder was changed");
    assert!(!dir.path().join("db").exists());
}

#[test]
fn a_clean_close_is_reopened_without_a_copy_and_a_crash_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let state = std::fs::read_to_string(dir.path().join("warroom.state")).unwrap();
    let record: serde_json::Value = serde_json::from_str(state.lines().next().unwrap()).unwrap();
    assert_eq!(record["incidents"], 2);
    assert!(record["events"].as_u64().unwrap() > 20, "{record}");
    assert!(
        record["clean"].is_array(),
        "a clean close lists db/'s files: {record}"
    );
    // The binary in use reopens it and finds everything.
    assert!(all_reports(dir.path()).is_some());
}

#[test]
fn doctor_reports_without_touching_and_exports_what_survives() {
    let base = tempfile::tempdir().unwrap();
    let good = base.path().join("good");
    make_folder(&good);
    let expected = all_reports(&good).unwrap();

    // A whole folder: the verdict says so, and an export reports the same.
    let before = snapshot(&good);
    let out = base.path().join("export");
    let r = run_plain(
        &[
            "doctor",
            "--data",
            good.to_str().unwrap(),
            "--export",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(r.success, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("verdict: the folder is whole"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("readable: 2 incident(s)"), "{}", r.stdout);
    assert!(snapshot(&good) == before, "doctor changed the folder");
    assert_eq!(all_reports(&out).as_deref(), Some(expected.as_str()));

    // A damaged one: refused by warroom, diagnosed by doctor, untouched by both.
    let bad = base.path().join("bad");
    copy(&good, &bad);
    apply(&bad.join("db/db"), &Damage::Flip { at: 64, len: 64 });
    let before = snapshot(&bad);
    assert!(all_reports(&bad).is_none(), "the damage is refused");
    let r = run_plain(&["doctor", "--data", bad.to_str().unwrap()], "");
    assert!(r.stdout.contains("verdict: damaged"), "{}", r.stdout);
    assert!(
        r.stdout.contains("--export"),
        "it says how to keep what survives: {}",
        r.stdout
    );
    assert!(
        snapshot(&bad) == before,
        "doctor changed the damaged folder"
    );
    let saved = base.path().join("saved");
    let r = run_plain(
        &[
            "doctor",
            "--data",
            bad.to_str().unwrap(),
            "--export",
            saved.to_str().unwrap(),
        ],
        "",
    );
    assert!(r.success, "{}{}", r.stdout, r.stderr);
    // What survived opens as a working folder.
    let index = report(&saved);
    assert!(index.success, "{}", index.stderr);
    // Exporting over a data folder is refused.
    let r = run_plain(
        &[
            "doctor",
            "--data",
            good.to_str().unwrap(),
            "--export",
            good.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        !r.success && r.stderr.contains("export into a new one"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_deleted_lock_file_under_a_running_console_is_still_a_lock_not_a_permission_problem() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let mut holder = std::process::Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args([
            "console",
            "--data",
            dir.path().to_str().unwrap(),
            "--clock",
            &format!("virtual:{START}"),
            "--format",
            "jsonl",
        ])
        .env_remove("WARROOM_DATA")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdin = holder.stdin.as_mut().unwrap();
    writeln!(stdin, "/clock").unwrap();
    stdin.flush().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains("It is") || first.contains("virtual clock"),
        "{first}"
    );
    std::fs::remove_file(dir.path().join("warroom.lock")).unwrap();
    let second = console(dir.path(), START, "/clock\n");
    assert!(!second.success);
    assert!(
        second.stderr.contains("in use by another warroom process")
            && second.stderr.contains("warroom.lock was deleted"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("may write to"), "{}", second.stderr);
    let _ = holder.kill();
    let _ = holder.wait();
}
