//! The sled store and the delivery path: atomic commits, exactly-once claims, the outbox
//! surviving failures, damaged folders.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use warroom::delivery::{Courier, Drained};
use warroom::domain::UserName;
use warroom::port::{BoxFuture, ChatPort, DeliveryError};
use warroom::store::{Outgoing, Store, StoreError};

use crate::helpers::*;

/// A chat port that fails its first `failures` deliveries, then records what it gets.
struct Flaky {
    failures: Mutex<Vec<DeliveryError>>,
    got: Mutex<Vec<u64>>,
    texts: Mutex<Vec<String>>,
}

impl ChatPort for Flaky {
    fn deliver<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            if let Some(e) = self.failures.lock().unwrap().pop() {
                return Err(e);
            }
            self.got.lock().unwrap().push(msg.id);
            self.texts
                .lock()
                .unwrap()
                .push(format!("{} {}", msg.lane(), msg.text));
            Ok(())
        })
    }
}

fn open_incident(app: &warroom::app::App) {
    let alice = app.actor(&UserName::new("alice"));
    let r = app.run_line(
        &alice,
        None,
        "/incident open title:\"Mail down\" severity:1 service:mail",
    );
    assert_eq!(r.kind, warroom::app::ReplyKind::Reply, "{}", r.text);
}

#[tokio::test]
async fn outbox_keeps_messages_through_500_and_429_and_delivers_each_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = app(dir.path());
    open_incident(&app);
    app.advance_to(&clock, at("2026-11-24T00:31:00Z")).unwrap();
    let queued: Vec<u64> = app.store().outbox().unwrap().iter().map(|m| m.id).collect();
    assert!(queued.len() >= 5, "{queued:?}");
    let port = Arc::new(Flaky {
        failures: Mutex::new(vec![
            DeliveryError::Retry {
                after: Some(Duration::from_secs(2)),
                reason: "429".into(),
            },
            DeliveryError::Retry {
                after: None,
                reason: "500".into(),
            },
            DeliveryError::Retry {
                after: None,
                reason: "500".into(),
            },
        ]),
        got: Mutex::new(Vec::new()),
        texts: Mutex::new(Vec::new()),
    });
    let mut courier = Courier::new(app.clone(), port.clone());
    assert_eq!(
        courier.drain().await,
        Drained::RetryAfter(Duration::from_secs(1))
    );
    assert_eq!(
        courier.drain().await,
        Drained::RetryAfter(Duration::from_secs(2)),
        "backoff doubles"
    );
    assert_eq!(
        courier.drain().await,
        Drained::RetryAfter(Duration::from_secs(2)),
        "retry_after is honoured"
    );
    assert_eq!(
        app.store().outbox().unwrap().len(),
        queued.len(),
        "nothing dropped"
    );
    assert_eq!(courier.drain().await, Drained::Empty);
    assert_eq!(*port.got.lock().unwrap(), queued);
    assert!(app.store().outbox().unwrap().is_empty());
}

#[tokio::test]
async fn a_permanent_refusal_is_kept_as_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _clock) = app(dir.path());
    open_incident(&app);
    let port = Arc::new(Flaky {
        failures: Mutex::new(vec![DeliveryError::Permanent {
            reason: "50013 Missing Permissions".into(),
        }]),
        got: Mutex::new(Vec::new()),
        texts: Mutex::new(Vec::new()),
    });
    assert_eq!(
        Courier::new(app.clone(), port.clone()).drain().await,
        Drained::Empty
    );
    assert_eq!(app.store().dead_letters().unwrap(), 1);
    // The notices about it went out (the console's ops channel here), with the reason.
    let dead = app.store().dead_letter_list().unwrap();
    let got = port.got.lock().unwrap().clone();
    assert!(!got.contains(&dead[0].message.id));
    let texts = port.texts.lock().unwrap().clone();
    let notice: Vec<&String> = texts
        .iter()
        .filter(|t| t.starts_with("ops ") && t.contains("could not be delivered"))
        .collect();
    assert_eq!(notice.len(), 1, "one notice in the ops channel: {texts:#?}");
    let n = notice[0];
    assert!(
        n.contains("INC-1")
            && n.contains("50013 Missing Permissions")
            && n.contains(&format!("warroom outbox retry {}", dead[0].message.id)),
        "the notice names the incident, the reason and how to retry: {n}"
    );
    drop(port);
    drop(app);

    // warroom outbox lists it; retry puts it back.
    let data = dir.path().to_str().unwrap();
    let listed = run_raw(&["outbox", "--data", data]);
    assert!(listed.contains("Dead letters (given up on): 1"), "{listed}");
    assert!(listed.contains("50013 Missing Permissions"), "{listed}");
    assert!(listed.contains(&dead[0].message.id.to_string()), "{listed}");
    let wrong = run_raw(&["outbox", "retry", "999999999", "--data", data]);
    assert!(wrong.contains("no dead letter 999999999"), "{wrong}");
    let retried = run_raw(&["outbox", "retry", "--all", "--data", data]);
    assert!(retried.contains("1 message(s) back"), "{retried}");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.dead_letters(), 0);
    assert!(
        store
            .outbox()
            .unwrap()
            .iter()
            .any(|m| m.id == dead[0].message.id)
    );
}

/// Runs the binary and returns stdout and stderr together.
fn run_raw(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(args)
        .env_remove("WARROOM_DATA")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_claimed_timer_never_fires_twice_and_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (app, _clock) = app(dir.path());
        open_incident(&app);
        assert_eq!(app.store().pending_timers().unwrap(), 3);
        assert_eq!(
            app.store()
                .timers_of(warroom::domain::IncidentId(1))
                .unwrap()
                .len(),
            3
        );
        let first = app.next_due().unwrap().unwrap();
        assert_eq!(first, at("2026-11-23T22:30:00Z"));
        // Both the L1 budget and Plan A's silence check fall due at 22:30.
        assert_eq!(app.fire_due(first).unwrap(), 2);
        assert!(!app.fire_one(first).unwrap(), "claimed timers are gone");
        assert!(app.next_due().unwrap().unwrap() > first);
    }
    let (app, _clock) = app(dir.path());
    let inc = app
        .store()
        .incident(warroom::domain::IncidentId(1))
        .unwrap()
        .unwrap();
    assert_eq!(inc.tier, warroom::domain::Tier::L2);
    let events = app.store().events(inc.id).unwrap();
    assert_eq!(events.len() as u32, inc.timeline_len);
    assert_eq!(app.store().pending_timers().unwrap(), inc.timers.len());
}

#[test]
fn a_damaged_folder_gives_a_clear_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (app, _clock) = app(dir.path());
        open_incident(&app);
    }
    let db = dir.path().join("db");
    for entry in std::fs::read_dir(&db).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, vec![0xA5u8; 4096]).unwrap();
        }
    }
    let before: Vec<Vec<u8>> = std::fs::read_dir(&db)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .collect();
    match Store::open(dir.path()) {
        Err(StoreError::Corrupt { .. }) | Err(StoreError::Unusable { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("a damaged folder opened"),
    }
    let msg = Store::open(dir.path()).err().unwrap().to_string();
    assert!(msg.contains(dir.path().to_str().unwrap()), "{msg}");
    let after: Vec<Vec<u8>> = std::fs::read_dir(&db)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .collect();
    assert_eq!(before, after, "opening must not rewrite a damaged folder");
}

#[test]
fn a_data_path_that_is_a_file_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let e = Store::open(&file).err().unwrap();
    assert!(matches!(e, StoreError::Unusable { .. }), "{e}");
    assert!(
        e.to_string().contains("a folder this user may write to"),
        "{e}"
    );
}

#[tokio::test]
async fn the_scheduler_fires_when_the_virtual_clock_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = app(dir.path());
    open_incident(&app);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(warroom::scheduler::run_scheduler(app.clone(), rx));
    let before = app.store().outbox().unwrap().len();
    clock.advance(chrono::TimeDelta::minutes(31));
    app.timers_changed.notify_one();
    let mut tries = 0;
    while app.store().outbox().unwrap().len() == before && tries < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        tries += 1;
    }
    let out = app.store().outbox().unwrap();
    assert!(
        out.iter().any(|m| m.text.contains("L1 → L2")),
        "scheduler did not fire"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn a_durable_commit_syncs_the_disk_before_the_reply_and_concurrent_commits_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _clock) = app(dir.path());
    let before = app.store().syncs();
    open_incident(&app);
    assert!(
        app.store().syncs() > before,
        "the reply came back before any fdatasync"
    );
    let id = Some(warroom::domain::IncidentId(1));
    // Eight callers committing at once: each is answered only after a sync covering its
    // commit, and the syncs are shared.
    let commits_before = app.store().committed();
    let syncs_before = app.store().syncs();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let app = app.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let alice = app.actor(&UserName::new("alice"));
                for n in 0..25 {
                    barrier.wait();
                    let r = app.run_line(&alice, id, &format!("/update text:\"t{t} n{n}\""));
                    assert_eq!(r.kind, warroom::app::ReplyKind::Reply, "{}", r.text);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let commits = app.store().committed() - commits_before;
    let syncs = app.store().syncs() - syncs_before;
    assert_eq!(commits, 200);
    assert!(
        syncs >= 1 && syncs < commits,
        "{syncs} syncs for {commits} commits"
    );
    // Decided in rounds, each update saw the one before it: none is lost or doubled, and the
    // stored timers agree with the incident.
    let events = app.store().events(warroom::domain::IncidentId(1)).unwrap();
    for t in 0..8 {
        for n in 0..25 {
            let text = format!("t{t} n{n}");
            let count = events
                .iter()
                .filter(|e| {
                    e.text.match_indices(&text).any(|(i, _)| {
                        !e.text[i + text.len()..].starts_with(|c: char| c.is_ascii_digit())
                    })
                })
                .count();
            assert_eq!(count, 1, "update {text} appears {count} times");
        }
    }
    let mut seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), events.len(), "event numbers repeat");
    let inc = app
        .store()
        .incident(warroom::domain::IncidentId(1))
        .unwrap()
        .unwrap();
    let mut held: Vec<_> = inc.timers.iter().map(|t| t.due).collect();
    held.sort();
    let mut indexed = app
        .store()
        .timers_of(warroom::domain::IncidentId(1))
        .unwrap();
    indexed.sort();
    assert_eq!(
        held, indexed,
        "the stored timers disagree with the incident"
    );
    say(&format!(
        "group commit: {commits} concurrent commits, {syncs} fdatasync calls"
    ));
}

#[test]
fn in_flush_mode_no_fdatasync_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let options = warroom::store::StoreOptions {
        durability: warroom::store::Durability::Flush,
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), &options).unwrap();
    let app = warroom::app::App::new(
        store,
        Arc::new(warroom::config::Config::builtin().unwrap()),
        Arc::new(warroom::clock::VirtualClock::new(at(START))),
    );
    open_incident(&app);
    assert_eq!(app.store().syncs(), 0);
}

#[test]
fn a_burst_of_due_timers_is_fired_in_batches_with_one_sync_each() {
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = app(dir.path());
    let alice = app.actor(&UserName::new("alice"));
    for n in 0..300 {
        let r = app.run_line(
            &alice,
            None,
            &format!("/incident open title:\"burst {n}\" severity:1 service:mail force:true"),
        );
        assert_eq!(r.kind, warroom::app::ReplyKind::Reply, "{}", r.text);
    }
    let due = at(START) + chrono::TimeDelta::minutes(30);
    clock.set(due);
    let syncs = app.store().syncs();
    let commits = app.store().committed();
    let fired = app.fire_due(due).unwrap();
    let fired_commits = app.store().committed() - commits;
    let fired_syncs = app.store().syncs() - syncs;
    // Each SEV1 incident has its L1 budget and Plan A's silence due at +30m.
    assert!(fired >= 600, "{fired}");
    assert_eq!(fired_commits as usize, fired);
    let batches = fired.div_ceil(warroom::app::App::FIRE_BATCH) as u64;
    assert!(
        fired_syncs <= batches + 1,
        "{fired_syncs} syncs for {fired} fired timers in {batches} batches"
    );
    // Each incident's L1 budget fired exactly once.
    let escalations = app
        .store()
        .outbox()
        .unwrap()
        .into_iter()
        .filter(|m| m.text.contains("L1 → L2"))
        .map(|m| m.incident)
        .collect::<Vec<_>>();
    let mut distinct = escalations.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 300, "every incident escalates once");
    assert!(
        escalations.len() <= 2 * 300,
        "{} escalation messages for 300 incidents",
        escalations.len()
    );
    assert!(
        app.fire_due(due).unwrap() == 0,
        "a second pass fired something again"
    );
    say(&format!(
        "burst: {fired} timers fired with {fired_syncs} fdatasync calls"
    ));
}

/// The name of sled's snapshot file in `db/` (sled writes one each time it opens a folder).
fn snapshot_name(dir: &std::path::Path) -> Option<String> {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("snap."))
}

#[test]
fn a_clean_close_after_many_commits_leaves_sled_a_fresh_snapshot_and_a_clean_record() {
    for (refresh_after, refreshed) in [(5u64, true), (1_000_000, false)] {
        let dir = tempfile::tempdir().unwrap();
        let options = warroom::store::StoreOptions {
            refresh_after,
            ..Default::default()
        };
        // A first session, so that the measured one opens a folder with a log to snapshot.
        open_incident(&warroom::app::App::new(
            Store::open(dir.path()).unwrap(),
            Arc::new(warroom::config::Config::builtin().unwrap()),
            Arc::new(warroom::clock::VirtualClock::new(at(START))),
        ));
        let at_open = {
            let app = warroom::app::App::new(
                Store::open_with(dir.path(), &options).unwrap(),
                Arc::new(warroom::config::Config::builtin().unwrap()),
                Arc::new(warroom::clock::VirtualClock::new(at(START))),
            );
            let alice = app.actor(&UserName::new("alice"));
            for n in 0..8 {
                let line = format!(
                    "/incident open title:\"refresh {n}\" severity:1 service:mail force:true"
                );
                let r = app.run_line(&alice, None, &line);
                assert_eq!(r.kind, warroom::app::ReplyKind::Reply, "{}", r.text);
            }
            snapshot_name(dir.path())
        };
        let after = snapshot_name(dir.path());
        assert!(at_open.is_some(), "sled wrote no snapshot at open");
        assert_eq!(
            after != at_open,
            refreshed,
            "refresh_after {refresh_after}: snapshot at open {at_open:?}, after close {after:?}"
        );
        // Either way the record says clean, with db/'s files as they are now: the next open
        // trusts the folder without the verified copy.
        let rec = warroom::store::integrity::read(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(
            rec.clean,
            Some(warroom::store::integrity::stats(&dir.path().join("db")).unwrap())
        );
        assert_eq!((rec.incidents, rec.events > 0), (9, true));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.incidents().unwrap().len(), 9);
    }
}
