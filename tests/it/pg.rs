//! The PostgreSQL store on a real server the test starts itself (`helpers::PgCluster`: initdb
//! and pg_ctl in a temp folder, a Unix socket only): migrations under the lock, a newer schema
//! refused, sled → backup → PostgreSQL → backup giving the same bytes, and bad URLs, damaged
//! files and a stopped server refused with nothing changed and no password shown.

use std::path::Path;

use crate::backup::{report, rich_store};
use crate::helpers::{PgCluster, run_plain, story};
use warroom::store::StoreError;
use warroom::store::postgres::{PgStore, PgUrl, SCHEMA_VERSION};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn ok(r: crate::helpers::Run) -> crate::helpers::Run {
    assert!(r.success, "failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Runs the whole seed story in a console on `dir` (durability flush, virtual clock).
fn whole_story(dir: &Path) {
    let r = run_plain(
        &[
            "console",
            "--data",
            s(dir),
            "--clock",
            &format!("virtual:{}", crate::helpers::START),
            "--format",
            "jsonl",
        ],
        &story(),
    );
    assert!(r.success, "{}", r.stderr);
}

#[test]
fn sled_to_postgres_and_back_gives_the_same_bytes_and_the_same_reports() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (case, fill) in [
        ("rich", rich_store as fn(&Path)),
        ("story", whole_story as fn(&Path)),
    ] {
        let (one, back) = (
            tmp.path().join(case),
            tmp.path().join(format!("{case}-back")),
        );
        fill(&one);
        let url = pg.url(case);
        let (f1, f2) = (
            tmp.path().join(format!("{case}-1.jsonl")),
            tmp.path().join(format!("{case}-2.jsonl")),
        );
        ok(run_plain(
            &["backup", "--data", s(&one), "--out", s(&f1)],
            "",
        ));
        let r = ok(run_plain(&["restore", "--store", &url, "--in", s(&f1)], ""));
        assert!(
            r.stdout.contains("into postgres://warroom@"),
            "{}",
            r.stdout
        );
        ok(run_plain(&["backup", "--store", &url, "--out", s(&f2)], ""));
        let (b1, b2) = (std::fs::read(&f1).unwrap(), std::fs::read(&f2).unwrap());
        assert!(
            b1.len() > 1000,
            "{case}: the backup holds little: {}",
            b1.len()
        );
        assert_eq!(
            String::from_utf8_lossy(&b1),
            String::from_utf8_lossy(&b2),
            "{case}: PostgreSQL's backup differs from sled's"
        );
        // And back into a new sled folder: the same war room.
        ok(run_plain(
            &["restore", "--data", s(&back), "--in", s(&f2)],
            "",
        ));
        assert_eq!(report(&one, None), report(&back, None), "{case}: the index");
        assert_eq!(
            report(&one, Some("INC-1")),
            report(&back, Some("INC-1")),
            "{case}: INC-1's report"
        );
        // A second restore into the now full database is refused and changes nothing.
        let r = run_plain(&["restore", "--store", &url, "--in", s(&f1)], "");
        assert!(!r.success);
        assert!(
            r.stderr.contains("is not empty") && r.stderr.contains("incident(s)"),
            "{}",
            r.stderr
        );
        let f3 = tmp.path().join(format!("{case}-3.jsonl"));
        ok(run_plain(&["backup", "--store", &url, "--out", s(&f3)], ""));
        assert_eq!(
            std::fs::read(&f3).unwrap(),
            b1,
            "{case}: the refused restore changed it"
        );
    }
}

#[test]
fn migrations_run_once_under_the_lock_and_a_newer_schema_is_refused() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let url = pg.url("migrate");
    let parsed = PgUrl::parse(&url).unwrap();
    // Four processes' worth of starts at once: each finds the schema in place, made once.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let u = parsed.clone();
            std::thread::spawn(move || PgStore::connect(&u).map(|s| s.schema_version()))
        })
        .collect();
    for t in starts {
        let v = t.join().unwrap().unwrap().unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
    let (client, rt) = pg.client(&url);
    let rows = rt
        .block_on(client.query("SELECT version FROM warroom_schema ORDER BY version", &[]))
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // A newer binary migrated it: this one refuses, and writes nothing.
    rt.block_on(client.execute(
        "INSERT INTO warroom_schema (version) VALUES ($1)",
        &[&(SCHEMA_VERSION + 1)],
    ))
    .unwrap();
    match PgStore::connect(&parsed) {
        Err(e @ StoreError::NewerSchema { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
                    && text.contains("nothing was changed"),
                "{text}"
            );
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("b.jsonl");
    let r = run_plain(&["backup", "--store", &url, "--out", s(&f)], "");
    assert!(
        !r.success && r.stderr.contains("newer than"),
        "{}",
        r.stderr
    );
    assert!(!f.exists(), "a refused backup left a file");
    let n: i64 = rt
        .block_on(client.query_one("SELECT count(*) FROM warroom_schema", &[]))
        .unwrap()
        .get(0);
    assert_eq!(n, SCHEMA_VERSION + 1);
}

#[test]
fn a_damaged_backup_or_a_stopped_server_leaves_postgres_unchanged() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    rich_store(&one);
    let good = tmp.path().join("good.jsonl");
    ok(run_plain(
        &["backup", "--data", s(&one), "--out", s(&good)],
        "",
    ));
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.jsonl");
    std::fs::write(&cut, bytes.get(..bytes.len() / 2).unwrap()).unwrap();
    let url = pg.url("damage");
    let r = run_plain(&["restore", "--store", &url, "--in", s(&cut)], "");
    assert!(!r.success && r.stderr.contains("cut short"), "{}", r.stderr);
    let store = PgStore::connect(&PgUrl::parse(&url).unwrap()).unwrap();
    assert_eq!(store.holds().unwrap(), None, "a damaged file left rows");
    // The server goes away: a clear error, and nothing half-done once it is back.
    pg.stop();
    let r = run_plain(&["restore", "--store", &url, "--in", s(&good)], "");
    assert!(!r.success);
    assert!(
        r.stderr.contains("PostgreSQL at postgres://warroom@")
            && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    assert!(store.holds().is_err(), "a stopped server answered");
    pg.restart();
    assert_eq!(store.holds().unwrap(), None, "the failed restore left rows");
    ok(run_plain(
        &["restore", "--store", &url, "--in", s(&good)],
        "",
    ));
    assert!(
        store
            .holds()
            .unwrap()
            .is_some_and(|h| h.contains("incident(s)"))
    );
}

#[test]
fn postgres_urls_are_checked_and_their_passwords_never_shown() {
    // No server is needed: a socket folder where none listens.
    let tmp = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://warroom:s3cret-pw@/warroom?host={}&connect_timeout=2",
        s(tmp.path())
    );
    let backup = tmp.path().join("b.jsonl");
    let r = run_plain(&["backup", "--store", &url, "--out", s(&backup)], "");
    assert!(!r.success);
    assert!(
        r.stderr.contains("PostgreSQL at postgres://warroom@")
            && r.stderr.contains("cannot be used"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("s3cret-pw") && !r.stdout.contains("s3cret-pw"));
    let r = run_plain(
        &["backup", "--store", "mysql://x@y/z", "--out", s(&backup)],
        "",
    );
    assert!(
        !r.success && r.stderr.contains("expected a PostgreSQL URL"),
        "{}",
        r.stderr
    );
    // The console on that URL fails the same way, before making any folder.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(["console", "--data", s(&tmp.path().join("d"))])
        .env("WARROOM__STORE__URL", &url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("PostgreSQL at postgres://warroom@") && err.contains("cannot be used"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert!(
        !tmp.path().join("d").exists(),
        "the console made a folder anyway"
    );
}

#[test]
fn bench_with_a_store_url_puts_sled_and_postgres_side_by_side() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let url = pg.url("bench");
    let r = ok(run_plain(
        &[
            "bench", "--rounds", "5", "--timers", "30", "--store", &url, "--format", "json",
        ],
        "",
    ));
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let figures = report["figures"].as_array().expect("figures");
    let value = |key: &str| {
        figures
            .iter()
            .find(|f| f["key"] == key)
            .and_then(|f| f["value"].as_f64())
            .unwrap_or_else(|| panic!("no figure {key} in {}", r.stdout))
    };
    for kind in ["sled", "postgres"] {
        assert!(value(&format!("store_commit_p50_{kind}")) > 0.0);
        assert!(value(&format!("store_fire_per_timer_{kind}")) > 0.0);
        assert!(value(&format!("store_reopen_{kind}")) > 0.0);
        // Both loaded the same snapshot of pending timers first, and fired an overdue one.
        assert!(value(&format!("store_first_fire_{kind}")) > 0.0);
    }
    // Both fired the same number of the same pending timers.
    let note = |key: &str| {
        figures
            .iter()
            .find(|f| f["key"] == key)
            .and_then(|f| f["note"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let fired = note("store_fire_per_timer_sled");
    assert!(
        fired.contains(" fired of ") && !fired.starts_with("0 "),
        "{fired}"
    );
    assert_eq!(fired, note("store_fire_per_timer_postgres"));
    let loaded = note("store_first_fire_sled");
    assert!(loaded.contains("timers pending"), "{loaded}");
    assert_eq!(
        loaded.split(';').next(),
        note("store_first_fire_postgres").split(';').next(),
        "the same pending timers on both"
    );
    // The database is left as the bench made it: a second run refuses, saying why.
    let r = run_plain(&["bench", "--rounds", "1", "--store", &url], "");
    assert!(
        !r.success && r.stderr.contains("needs an empty PostgreSQL database"),
        "{}",
        r.stderr
    );
}
