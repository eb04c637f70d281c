//! Replicas on PostgreSQL, as processes: two `warroom discord` on one database (a throwaway
//! cluster, `helpers::PgCluster`) and the fake Discord. The active one is killed with SIGKILL
//! while nudges are due, again and again, and the other must take over within 10 s, with no
//! nudge lost and none twice; a paused active (SIGSTOP past its lease, then SIGCONT) must send
//! and fire nothing once deposed, and become a standby. Also in-process: the console's seed
//! story on PostgreSQL, and PostgreSQL going away under commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::discord::ALICE;
use crate::fake_discord::{CATEGORY, FakeDiscord, GENERAL, GUILD};
use crate::helpers::{PgCluster, START, run_binary, run_plain, story};

/// The alert source's token, in every replica's environment.
const ALERT_TOKEN: &str = "replica-alert-token";

/// A sev1 policy whose nudges come every two seconds for as long as the test runs.
const FAST_SEV1: &str = "[policy.sev1]
l1_budget = \"2s\"
l2_budget = \"2s\"
sdm_alert_tier = 3
plan_b_after = \"off\"
nudge_repeat = \"2s\"
update_cadence = \"off\"
snooze_max = \"1h\"
snooze_total = \"3h\"
nudge_handoff_after = 0
";

fn config(dir: &Path, fake: &FakeDiscord, url: &str) -> PathBuf {
    let path = dir.join("warroom.toml");
    std::fs::write(
        &path,
        format!(
            "[discord]\nguild_id = \"{GUILD}\"\nincident_category_id = \"{CATEGORY}\"\napi_base = \"{}\"\n\n[discord.users]\nalice = \"201\"\n\n[store]\nurl = \"{url}\"\nlease = \"2s\"\n\n[alerts.sources.prom]\nkind = \"alertmanager\"\ntoken_env = \"WARROOM_ALERTS_PROM\"\n\n{FAST_SEV1}",
            fake.base()
        ),
    )
    .unwrap();
    path
}

/// One `warroom discord` process; its log goes to a file, read when a check fails.
struct Replica {
    child: Child,
    log: PathBuf,
    /// Its own bot token, so that the fake Discord tells its requests apart.
    token: String,
    /// Its HTTP listener (`/health`, `/ready`, `/metrics`, the alert intake).
    http: String,
}

impl Replica {
    fn spawn(dir: &Path, config: &Path, n: usize) -> Replica {
        let log = dir.join(format!("replica-{n}.log"));
        let token = format!("fake-token-{n}");
        let http = format!("127.0.0.1:{}", crate::helpers::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_warroom"))
            .args([
                "discord",
                "--config",
                config.to_str().unwrap(),
                "--data",
                dir.join(format!("unused-{n}")).to_str().unwrap(),
            ])
            .env("DISCORD_TOKEN", &token)
            .env("WARROOM__HTTP__LISTEN", &http)
            .env("WARROOM_ALERTS_PROM", ALERT_TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("WARROOM_DATA")
            .env_remove("WARROOM__STORE__URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica {
            child,
            log,
            token,
            http: format!("http://{http}"),
        }
    }

    /// A GET on its listener: the status and the body, or None while it does not answer.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("{}{path}", self.http)).await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// Its role as `/ready` tells it, once it answers: ("active", term) or ("standby", 0).
    async fn role(&self) -> Option<(String, i64)> {
        let (_, body) = self.get("/ready").await?;
        let v: Value = serde_json::from_str(&body).ok()?;
        Some((
            v["role"].as_str()?.to_string(),
            v["term"].as_i64().unwrap_or(0),
        ))
    }

    /// `warroom_active` from its `/metrics`.
    async fn active_gauge(&self) -> Option<String> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find(|l| l.starts_with("warroom_active "))
            .map(|l| l.trim_start_matches("warroom_active ").to_string())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {}", self.pid());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The database as the test reads it, beside the replicas.
struct Db {
    client: tokio_postgres::Client,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Db {
    fn drop(&mut self) {
        // A runtime may not be dropped inside another.
        if let Some(rt) = self.rt.take() {
            let _ = std::thread::spawn(move || drop(rt)).join();
        }
    }
}

impl Db {
    /// Runs a query on the test's own runtime, from a thread of its own (the test itself runs
    /// inside tokio).
    fn block<T: Send>(&self, f: impl std::future::Future<Output = T> + Send) -> T {
        let rt = self.rt.as_ref().unwrap();
        std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join().unwrap())
    }

    fn count(&self, sql: &str) -> i64 {
        self.block(self.client.query_one(sql, &[]))
            .map(|r| r.get::<_, i64>(0))
            .unwrap()
    }

    /// The lease's holder's pid and term, if any holds it.
    fn lease(&self) -> Option<(u32, i64)> {
        let row = self
            .block(self.client.query_opt(
                "SELECT holder, term FROM warroom_lease WHERE expires > now()",
                &[],
            ))
            .unwrap()?;
        let holder: String = row.get(0);
        let pid = holder.rsplit("pid ").next()?.trim().parse().ok()?;
        Some((pid, row.get(1)))
    }
}

/// The bot's posts in incident channels: (channel, nonce, content).
fn posts(fake: &FakeDiscord, channels: &BTreeSet<String>) -> Vec<(String, String, String)> {
    fake.state
        .lock()
        .unwrap()
        .messages
        .values()
        .filter(|m| m["author"]["bot"] == true)
        .filter_map(|m| {
            let ch = m["channel_id"].as_str()?.to_string();
            channels.contains(&ch).then(|| {
                (
                    ch,
                    m["nonce"].as_str().unwrap_or("").to_string(),
                    m["content"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

/// Waits for `what`, up to `limit`, checking every 50 ms.
async fn until(limit: Duration, mut what: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if what() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `until` for a check that itself awaits.
async fn until_async<F: std::future::Future<Output = Option<()>>>(
    limit: Duration,
    mut what: impl FnMut() -> F,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if what().await.is_some() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn logs(replicas: &[Replica], dead: &[String]) -> String {
    let mut out = dead.join("\n---\n");
    for r in replicas {
        out.push_str(&format!("\n--- pid {} ---\n{}", r.pid(), r.log()));
    }
    out
}

struct Setup {
    fake: FakeDiscord,
    _cluster: PgCluster,
    db: Db,
    dir: tempfile::TempDir,
    config: PathBuf,
    replicas: Vec<Replica>,
    channels: BTreeSet<String>,
    spawned: usize,
}

/// Two replicas, the first active, three incidents open whose nudges come every 2 s.
async fn setup(incidents: usize) -> Option<Setup> {
    // The cluster's helpers block on a runtime of their own: not on this test's.
    let (cluster, url, client, rt) = std::thread::spawn(|| {
        let cluster = PgCluster::start()?;
        let url = cluster.url("replicas");
        let (client, rt) = cluster.client(&url);
        Some((cluster, url, client, rt))
    })
    .join()
    .unwrap()?;
    let fake = FakeDiscord::start().await;
    // Every repeated nonce makes a new message: a re-send shows as a duplicate.
    fake.state.lock().unwrap().nonce_window = Some(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &fake, &url);
    let first = Replica::spawn(dir.path(), &config, 0);
    let mut s = Setup {
        fake,
        _cluster: cluster,
        db: Db {
            client,
            rt: Some(rt),
        },
        dir,
        config,
        replicas: vec![first],
        channels: BTreeSet::new(),
        spawned: 1,
    };
    let first_pid = s.replicas[0].pid();
    let active = until(Duration::from_secs(30), || {
        s.db.count("SELECT count(*) FROM pg_tables WHERE tablename = 'warroom_lease'") > 0
            && s.db.lease().map(|l| l.0) == Some(first_pid)
    })
    .await;
    assert!(
        active.is_some(),
        "the first replica never became active:\n{}",
        s.replicas[0].log()
    );
    s.fake
        .until("the active identifies on the gateway", |st| {
            st.identified > 0
        })
        .await;
    s.spawn();
    for n in 0..incidents {
        let id = s.fake.command(
            ALICE,
            GENERAL,
            "incident",
            serde_json::json!([{"name": "open", "type": 1, "options": [
                {"name": "title", "type": 3, "value": format!("Mail cluster {n} down")},
                {"name": "severity", "type": 4, "value": 1},
                {"name": "service", "type": 3, "value": format!("mail-{n}")}]}]),
        );
        let resp = s.fake.response(id).await;
        assert!(
            resp["data"]["content"]
                .as_str()
                .unwrap_or("")
                .contains("Opened INC-"),
            "{resp}"
        );
    }
    let want = incidents;
    let channels = until(Duration::from_secs(10), || {
        s.fake
            .state
            .lock()
            .unwrap()
            .channels
            .iter()
            .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("inc-")))
            .count()
            >= want
    })
    .await;
    assert!(channels.is_some(), "the incident channels were not made");
    s.channels = s
        .fake
        .state
        .lock()
        .unwrap()
        .channels
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("inc-")))
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    Some(s)
}

impl Setup {
    fn spawn(&mut self) {
        let r = Replica::spawn(self.dir.path(), &self.config, self.spawned);
        self.spawned += 1;
        self.replicas.push(r);
    }

    fn active(&self) -> Option<usize> {
        let (pid, _) = self.db.lease()?;
        self.replicas.iter().position(|r| r.pid() == pid)
    }

    /// Every nudge the database says was sent, as (incident, nudge, repeat).
    fn nudges_decided(&self) -> Vec<(i64, u64, u64)> {
        let rows = self
            .db
            .block(self.db.client.query(
                "SELECT incident, body FROM events ORDER BY incident, seq",
                &[],
            ))
            .unwrap();
        rows.iter()
            .filter_map(|r| {
                let e: Value = serde_json::from_str(r.get::<_, &str>(1)).ok()?;
                let n = e["kind"].get("Nudged")?;
                Some((
                    r.get::<_, i64>(0),
                    n["nudge"].as_u64().unwrap_or(0),
                    n["repeat"].as_u64().unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// What a run left: every decided nudge exactly once, every post exactly once, nothing waiting.
async fn settle_and_check(s: &Setup, dead: &[String]) -> (usize, usize) {
    // The nudges decided so far; once the outbox has been empty since, all their messages
    // have been delivered (it drains in order).
    let decided = s.nudges_decided();
    let drained = until(Duration::from_secs(20), || {
        s.db.count("SELECT count(*) FROM outbox") == 0
    })
    .await;
    assert!(
        drained.is_some(),
        "the outbox never drained:\n{}",
        logs(&s.replicas, dead)
    );
    assert_eq!(s.db.count("SELECT count(*) FROM dead_letters"), 0);
    assert_eq!(
        s.db.count("SELECT count(*) FROM timers WHERE due < now() - interval '5 seconds'"),
        0,
        "timers were left overdue:\n{}",
        logs(&s.replicas, dead)
    );
    let unique: BTreeSet<_> = decided.iter().collect();
    assert_eq!(
        unique.len(),
        decided.len(),
        "a nudge was decided twice: {decided:?}"
    );
    let posts = posts(&s.fake, &s.channels);
    let mut by_nonce: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (ch, nonce, _) in &posts {
        *by_nonce.entry((ch.clone(), nonce.clone())).or_default() += 1;
    }
    let twice: Vec<_> = by_nonce
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((ch, nonce), n)| {
            let text: Vec<_> = posts
                .iter()
                .filter(|p| &p.0 == ch && &p.1 == nonce)
                .map(|p| p.2.clone())
                .collect();
            (ch.clone(), nonce.clone(), *n, text)
        })
        .collect();
    assert!(
        twice.is_empty(),
        "posted twice: {twice:?}\n{}",
        logs(&s.replicas, dead)
    );
    (decided.len(), posts.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_20_times_loses_no_nudge_and_sends_none_twice() {
    let Some(mut s) = setup(3).await else { return };
    let mut dead = Vec::new();
    let mut takeovers = Vec::new();
    for round in 0..20 {
        // Nudges flow before each kill.
        let before = posts(&s.fake, &s.channels).len();
        let flowing = until(Duration::from_secs(10), || {
            posts(&s.fake, &s.channels).len() > before
        })
        .await;
        assert!(
            flowing.is_some(),
            "round {round}: no nudge before the kill:\n{}",
            logs(&s.replicas, &dead)
        );
        let Some(i) = s.active() else {
            panic!(
                "round {round}: no replica holds the lease:\n{}",
                logs(&s.replicas, &dead)
            );
        };
        let mut victim = s.replicas.remove(i);
        victim.signal("-KILL");
        let _ = victim.child.wait();
        let killed = Instant::now();
        dead.push(format!(
            "--- killed pid {} (round {round}) ---\n{}",
            victim.pid(),
            victim.log()
        ));
        drop(victim);
        // The survivor takes the lease; whatever is posted after that is its work (a post the
        // victim had in flight may still land before).
        let survivor = s.replicas[0].pid();
        let took = until(Duration::from_secs(10), || {
            s.db.lease().map(|l| l.0) == Some(survivor)
        })
        .await;
        assert!(
            took.is_some(),
            "round {round}: the survivor never took the lease:\n{}",
            logs(&s.replicas, &dead)
        );
        let at_takeover = posts(&s.fake, &s.channels).len();
        let left = Duration::from_secs(10).saturating_sub(killed.elapsed());
        let next = until(left, || posts(&s.fake, &s.channels).len() > at_takeover).await;
        let Some(_) = next else {
            panic!(
                "round {round}: no nudge within 10 s of the kill:\n{}",
                logs(&s.replicas, &dead)
            );
        };
        takeovers.push(killed.elapsed());
        s.spawn();
    }
    let (decided, posted) = settle_and_check(&s, &dead).await;
    takeovers.sort();
    let median = takeovers
        .get(takeovers.len() / 2)
        .copied()
        .unwrap_or_default();
    let worst = takeovers.last().copied().unwrap_or_default();
    crate::helpers::say(&format!(
        "failover: 20 kills, kill to next nudge median {median:?}, worst {worst:?}; {decided} nudges decided, {posted} posts, none twice"
    ));
    assert!(decided > 40, "too few nudges to show anything: {decided}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_active_is_deposed_sends_nothing_after_and_becomes_a_standby() {
    let Some(s) = setup(2).await else { return };
    let old = s.active().expect("an active replica");
    let old_pid = s.replicas[old].pid();
    let (_, old_term) = s.db.lease().unwrap();
    s.replicas[old].signal("-STOP");
    let stopped = Instant::now();
    // The standby takes over once the 2 s lease lapses.
    let took = until(Duration::from_secs(15), || {
        s.db.lease()
            .is_some_and(|(pid, term)| pid != old_pid && term > old_term)
    })
    .await;
    assert!(took.is_some(), "no takeover:\n{}", logs(&s.replicas, &[]));
    // Let the new active run a while past the old lease, then resume the old one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.replicas[old].signal("-CONT");
    let resumed = Instant::now();
    let log = |s: &Setup| s.replicas[old].log();
    let demoted = until(Duration::from_secs(15), || log(&s).contains("deposed")).await;
    assert!(
        demoted.is_some(),
        "the old active never noticed:\n{}",
        log(&s)
    );
    // A few more seconds: still a standby, and its gateway closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (pid, _) = s.db.lease().unwrap();
    assert_ne!(pid, old_pid, "the old active took the lease back");
    let old_log = log(&s);
    assert!(old_log.contains("standby"), "{old_log}");
    // Since it resumed, it has asked Discord for nothing but reads (a reconnecting gateway
    // asks where to connect): no post, edit, channel or reaction.
    let token = s.replicas[old].token.clone();
    let written: Vec<String> = s
        .fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.token == token && r.at >= resumed && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        written.is_empty(),
        "the deposed replica still wrote to Discord: {written:?}\n{old_log}"
    );
    // Over HTTP, every replica says what it is: the deposed one a standby (not ready,
    // `warroom_active` 0, alerts refused with 503 so that the sender retries elsewhere or
    // later), the new one active at the lease's term.
    let (_, term) = s.db.lease().unwrap();
    let new = s.active().expect("the new active");
    let roles = until_async(Duration::from_secs(10), || async {
        let a = s.replicas[new].role().await;
        let b = s.replicas[old].role().await;
        (a == Some(("active".into(), term)) && b == Some(("standby".into(), 0))).then_some(())
    })
    .await;
    assert!(
        roles.is_some(),
        "roles over HTTP: new {:?}, old {:?} (term {term})\n{}",
        s.replicas[new].role().await,
        s.replicas[old].role().await,
        logs(&s.replicas, &[])
    );
    assert_eq!(s.replicas[old].get("/health").await.map(|r| r.0), Some(200));
    assert_eq!(s.replicas[new].get("/health").await.map(|r| r.0), Some(200));
    assert_eq!(s.replicas[old].get("/ready").await.map(|r| r.0), Some(503));
    assert_eq!(s.replicas[new].get("/ready").await.map(|r| r.0), Some(200));
    assert_eq!(s.replicas[old].active_gauge().await.as_deref(), Some("0"));
    assert_eq!(s.replicas[new].active_gauge().await.as_deref(), Some("1"));
    let alert = reqwest::Client::new()
        .post(format!("{}/alerts/prom", s.replicas[old].http))
        .bearer_auth(ALERT_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"version":"4","status":"firing","alerts":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(alert.status().as_u16(), 503);
    assert_eq!(
        alert
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let said = alert.text().await.unwrap();
    assert!(
        said.contains("standby") && said.contains("nothing was saved"),
        "{said}"
    );
    let paused = resumed.duration_since(stopped);
    let (decided, posted) = settle_and_check(&s, &[]).await;
    crate::helpers::say(&format!(
        "fencing: paused {paused:?} past a 2 s lease, deposed on resume, wrote nothing after; {decided} nudges decided, {posted} posts, none twice"
    ));
}

fn console_args<'a>(store: &'a [&'a str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "console",
        "--clock",
        &format!("virtual:{START}"),
        "--format",
        "jsonl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(store.iter().map(|s| s.to_string()));
    a
}

fn run(args: &[String], input: &str) -> crate::helpers::Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_binary(&args, input);
    assert!(r.success, "{args:?} failed:\n{}", r.stderr);
    r
}

#[test]
fn the_whole_seed_story_plays_on_postgres_as_on_sled() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let url = cluster.url("story");
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sled");
    let folder = folder.to_str().unwrap();
    let on_sled = run(&console_args(&["--data", folder]), &story());
    let on_pg = run(&console_args(&["--store", &url]), &story());
    assert!(on_sled.lines.len() > 40, "{}", on_sled.stdout);
    assert_eq!(
        on_pg.stdout, on_sled.stdout,
        "the story's messages differ on PostgreSQL"
    );
    // The same reports, incident by incident, and the same index.
    for args in [
        vec!["report"],
        vec!["report", "INC-1"],
        vec!["report", "INC-1", "--format", "json"],
    ] {
        let mut sled_args = args.clone();
        sled_args.extend(["--data", folder]);
        let mut pg_args = args.clone();
        pg_args.extend(["--store", url.as_str()]);
        let a = run_plain(&sled_args, "");
        let b = run_plain(&pg_args, "");
        assert!(a.success && b.success, "{}\n{}", a.stderr, b.stderr);
        assert_eq!(a.stdout, b.stdout, "{args:?} differs");
    }
    // A second console on the database picks the story up where it stopped.
    let again = run(
        &console_args(&["--store", &url]),
        "/use INC-1\n/incident status\n",
    );
    assert!(
        again.stdout.contains("INC-1"),
        "the status after a restart: {}",
        again.stdout
    );
}

#[test]
fn while_postgres_is_down_commands_change_nothing_and_it_resumes_by_itself() {
    use warroom::app::ReplyKind;
    use warroom::domain::{EventKind, IncidentId, UserName};
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let url = warroom::store::postgres::PgUrl::parse(&cluster.url("down")).unwrap();
    let store = warroom::store::postgres::PgStore::connect(&url).unwrap();
    let clock = Arc::new(warroom::clock::VirtualClock::new(crate::helpers::at(START)));
    let app = warroom::app::App::new(
        store,
        Arc::new(warroom::config::Config::builtin().unwrap()),
        clock,
    );
    let alice = app.actor(&UserName::new("alice"));
    let open = app.run_line(
        &alice,
        None,
        "/incident open title:\"Mail down\" severity:1 service:mail",
    );
    assert_eq!(open.kind, ReplyKind::Reply, "{}", open.text);
    let inc = IncidentId(1);
    let updates = |app: &warroom::app::App| {
        app.store()
            .events(inc)
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Update { .. }))
            .count()
    };
    cluster.stop();
    let refused = app.run_line(&alice, Some(inc), "/update text:\"failing over the VIP\"");
    assert_eq!(refused.kind, ReplyKind::Error, "{}", refused.text);
    assert!(
        refused.text.contains("PostgreSQL") && refused.text.contains("nothing was changed"),
        "{}",
        refused.text
    );
    cluster.restart();
    // The pool reconnects by itself; a command or two may still meet a dropped connection.
    let mut answer = None;
    for _ in 0..5 {
        let r = app.run_line(&alice, Some(inc), "/update text:\"VIP moved; mail flows\"");
        if r.kind == ReplyKind::Reply {
            answer = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answer.is_some(), "it never resumed");
    assert_eq!(
        updates(&app),
        1,
        "the refused update was kept, or the later one lost"
    );
}
