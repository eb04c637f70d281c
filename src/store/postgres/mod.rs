//! The PostgreSQL store: its schema (embedded, versioned migrations applied under an advisory
//! lock), and a store's whole state in and out of it (`snapshot`, `restore`), so that a backup
//! moves between sled and PostgreSQL in either direction.
//!
//! Here: the schema and its migrations, backup and restore, the commit path (`commit_all`,
//! `commit_fenced`), due-timer listing and claims, and the replicas' lease with its fencing
//! term. `records.rs` holds the rest of the store's interface (`store::Backend`): the outbox,
//! dead letters, drills and handoffs, on-call overrides, adapter ids and the reads `App` makes.
//!
//! **Schema.** Every record is kept as the JSON text its Rust type serialises to (`text`, not
//! `jsonb`: PostgreSQL's `jsonb` refuses `\u0000`, which a hostile title may hold, and reorders
//! keys), beside the columns that order and find it. `warroom_schema` holds the one version
//! number; a database with a newer one than this binary knows is refused, and nothing is
//! written to it.
//!
//! The client is tokio-postgres with a deadpool-postgres pool, on a runtime of the store's own,
//! so that the store's callers stay synchronous like sled's, whether or not they run inside an
//! async runtime.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

mod records;

use super::snapshot::{Snapshot, TimerLine};
use super::{Outgoing, StoreError};
use crate::domain::{Event, Incident, IncidentId, TimerKind, TimerSeq};

/// The migrations, in order: version `n` is `MIGRATIONS[n - 1]`. Append only; never edit one
/// that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: every tree the sled store keeps, as tables.
    "
    CREATE TABLE warroom_state (
        one            boolean PRIMARY KEY DEFAULT true CHECK (one),
        next_incident  bigint NOT NULL,
        next_outbox_id bigint NOT NULL,
        last_event_ms  bigint
    );
    INSERT INTO warroom_state (next_incident, next_outbox_id) VALUES (1, 0);
    CREATE TABLE incidents (
        id    bigint PRIMARY KEY,
        open  boolean NOT NULL,
        body  text NOT NULL
    );
    CREATE TABLE events (
        incident bigint NOT NULL REFERENCES incidents (id),
        seq      bigint NOT NULL,
        body     text NOT NULL,
        PRIMARY KEY (incident, seq)
    );
    CREATE TABLE timers (
        incident bigint NOT NULL REFERENCES incidents (id),
        seq      bigint NOT NULL,
        due      timestamptz NOT NULL,
        kind     text NOT NULL,
        PRIMARY KEY (incident, seq)
    );
    CREATE INDEX timers_due ON timers (due, incident, seq);
    CREATE TABLE outbox (
        id    bigint PRIMARY KEY,
        body  text NOT NULL
    );
    CREATE TABLE dead_letters (
        id    bigint PRIMARY KEY,
        body  text NOT NULL
    );
    CREATE TABLE adapter (
        key   text PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE deadlines (
        kind  text NOT NULL CHECK (kind IN ('drill', 'handoff')),
        due   timestamptz NOT NULL,
        name  text NOT NULL,
        PRIMARY KEY (kind, due, name)
    );
    CREATE TABLE alert_groups (
        source   text NOT NULL,
        grp      text NOT NULL,
        incident bigint NOT NULL REFERENCES incidents (id),
        PRIMARY KEY (source, grp)
    );
    CREATE TABLE oncall_overrides (
        id    bigint PRIMARY KEY,
        body  text NOT NULL
    );
    ",
    // 2: outbox ids from the database, so that replicas never hand out the same one.
    "CREATE SEQUENCE outbox_ids MINVALUE 0 START 0;",
    // 3: the active replica's lease and its fencing term.
    "CREATE TABLE warroom_lease (
        one     boolean PRIMARY KEY DEFAULT true CHECK (one),
        holder  text NOT NULL,
        term    bigint NOT NULL,
        expires timestamptz NOT NULL
    );",
];

/// The statements of a commit, prepared once per connection, in `commit_fenced`'s order.
const COMMIT_SQL: [&str; 11] = [
    // claim
    "DELETE FROM timers WHERE (incident, seq) IN
                   (SELECT incident, seq FROM timers WHERE incident = $1 AND seq = $2
                    FOR UPDATE SKIP LOCKED)",
    // insert_incident
    "INSERT INTO incidents (id, open, body) VALUES ($1, $2, $3)",
    // next_incident
    "UPDATE warroom_state SET next_incident = greatest(next_incident, $1::bigint + 1)",
    // update_incident
    "UPDATE incidents SET open = $2, body = $3 WHERE id = $1",
    // group_put
    "INSERT INTO alert_groups (source, grp, incident) VALUES ($1, $2, $3)
                 ON CONFLICT (source, grp) DO UPDATE SET incident = excluded.incident",
    // group_del
    "DELETE FROM alert_groups WHERE source = $1 AND grp = $2 AND incident = $3",
    // insert_event
    "INSERT INTO events (incident, seq, body) VALUES ($1, $2, $3)",
    // remove_timers
    "DELETE FROM timers WHERE incident = $1 AND seq = ANY($2)",
    // add_timer
    "INSERT INTO timers (incident, seq, due, kind) VALUES ($1, $2, $3, $4)",
    // insert_outbox
    "INSERT INTO outbox (id, body) VALUES ($1, $2)",
    // last_event
    "UPDATE warroom_state SET last_event_ms = greatest(coalesce(last_event_ms, $1::bigint), $1::bigint)",
];

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key that serialises migrations between processes ("warroom" in ASCII).
const MIGRATION_LOCK: i64 = 0x0077_6172_726f_6f6d;

/// Rows per statement when loading a backup.
const CHUNK: usize = 1000;

/// A PostgreSQL URL, as `[store] url`, `--store` or `WARROOM__STORE__URL` give it. Its password
/// is never shown: `Debug` and `shown` leave it out.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Checks that `url` is a PostgreSQL connection URL.
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "expected a PostgreSQL URL like postgres://warroom@db.example/warroom (or postgres://warroom@/warroom?host=/run/postgresql for a Unix socket)"
                    .into(),
            );
        }
        url.parse::<tokio_postgres::Config>().map_err(|e| {
            format!("this PostgreSQL URL cannot be read ({e}); write it like postgres://USER:PASSWORD@HOST:PORT/DATABASE")
        })?;
        Ok(PgUrl(url.to_string()))
    }

    /// Where it points, without its password: for messages and logs.
    pub fn shown(&self) -> String {
        let Ok(c) = self.0.parse::<tokio_postgres::Config>() else {
            return "postgres://…".into();
        };
        let host = c
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_default();
        let port = c.get_ports().first().map_or(5432, |p| *p);
        format!(
            "postgres://{}@{host}:{port}/{}",
            c.get_user().unwrap_or(""),
            c.get_dbname().unwrap_or("")
        )
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({})", self.shown())
    }
}

/// A store in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// Always Some until drop, which shuts it down without blocking (a caller may be async).
    rt: Option<tokio::runtime::Runtime>,
    target: String,
    /// The lease term this handle writes under (`fence`); 0: unfenced (one process, a tool).
    term: AtomicI64,
    /// Commits made through this handle.
    commits: AtomicU64,
    /// Until when (ms since the epoch, by the lease keeper's clock) this replica may act on its
    /// fenced term without asking again; 0: not at all (see `may_act`).
    acting_until: AtomicI64,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects, and brings the schema up to this binary's version (under an advisory lock, so
    /// that replicas starting together migrate once). Refuses a newer schema.
    pub fn connect(url: &PgUrl) -> Result<PgStore, StoreError> {
        let target = url.shown();
        let unavailable = |detail: String| StoreError::Postgres {
            target: target.clone(),
            detail,
        };
        let mut config: tokio_postgres::Config = url
            .0
            .parse()
            .map_err(|e| unavailable(format!("the URL cannot be read: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("warroom");
        // A paused or partitioned process must not hold locks forever (the lease row, a claimed
        // timer): the server ends a session idle inside a transaction after 5 s, and no
        // statement waits more than 5 s for a lock. The URL's own options come first.
        let own = config.get_options().unwrap_or("").to_string();
        config.options(
            format!("-c idle_in_transaction_session_timeout=5000 -c lock_timeout=5000 {own}")
                .trim(),
        );
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("warroom-pg")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start its client: {e}")))?;
        let pool = {
            let _in = rt.enter();
            Pool::builder(manager)
                .max_size(4)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| unavailable(format!("cannot build its pool: {e}")))?
        };
        let store = PgStore {
            pool,
            rt: Some(rt),
            target,
            term: AtomicI64::new(0),
            commits: AtomicU64::new(0),
            acting_until: AtomicI64::new(0),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where it is, without a password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on the store's runtime and waits for it, from any thread (a scoped thread of its
    /// own, so that a caller inside another runtime does not block that runtime's driver).
    fn run<T: Send>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        std::thread::scope(|s| {
            s.spawn(|| match &self.rt {
                Some(rt) => rt.block_on(f),
                None => Err(self.error("the store is closing")),
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Sled("the PostgreSQL client panicked".into())))
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            detail: e.to_string(),
        }
    }

    fn corrupt(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            detail: format!("{what} does not read as this version's record ({e})"),
        }
    }

    /// A record as the JSON text its column holds.
    fn json<T: serde::Serialize + ?Sized>(&self, v: &T) -> Result<String, StoreError> {
        serde_json::to_string(v).map_err(|e| self.error(format!("a record cannot be written: {e}")))
    }

    /// Column `col` of `row`: a record's JSON text, decoded.
    fn body<T: serde::de::DeserializeOwned>(
        &self,
        row: &tokio_postgres::Row,
        col: usize,
        what: &str,
    ) -> Result<T, StoreError> {
        let text: String = row.try_get(col).map_err(|e| self.error(e))?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(what, e))
    }

    /// Every row's column 0, decoded.
    fn bodies<T: serde::de::DeserializeOwned>(
        &self,
        rows: &[tokio_postgres::Row],
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        rows.iter().map(|r| self.body(r, 0, what)).collect()
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let row = client
                .query_one("SELECT max(version) FROM warroom_schema", &[])
                .await
                .map_err(|e| self.error(e))?;
            row.try_get::<_, Option<i64>>(0)
                .map(|v| v.unwrap_or(0))
                .map_err(|e| self.error(e))
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|e| self.error(e))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS warroom_schema (version bigint PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(|e| self.error(e))?;
            let at: i64 = tx
                .query_one("SELECT coalesce(max(version), 0) FROM warroom_schema", &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| self.error(e))?;
            if at > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    target: self.target.clone(),
                    found: at,
                    known: SCHEMA_VERSION,
                });
            }
            for (n, sql) in MIGRATIONS.iter().enumerate() {
                let version = i64::try_from(n).unwrap_or(i64::MAX).saturating_add(1);
                if version <= at {
                    continue;
                }
                tx.batch_execute(sql).await.map_err(|e| {
                    self.error(format!("migration {version} failed: {e}"))
                })?;
                tx.execute("INSERT INTO warroom_schema (version) VALUES ($1)", &[&version])
                    .await
                    .map_err(|e| self.error(e))?;
                tracing::info!(version, target = %self.target, "PostgreSQL schema migrated");
            }
            tx.commit().await.map_err(|e| self.error(e))
        })
    }

    /// What the database already holds, if anything: a restore goes only into an empty store.
    pub fn holds(&self) -> Result<Option<String>, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            holds(&client).await.map_err(|e| self.error(e))
        })
    }

    /// The whole state at one instant (one repeatable-read, read-only transaction), in the same
    /// order as the sled store's, so that both give the same backup file.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.run(async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| self.error(e))?;
            let q = |sql: &'static str| {
                let tx = &tx;
                async move { tx.query(sql, &[]).await.map_err(|e| self.error(e)) }
            };
            let state =
                q("SELECT next_incident, next_outbox_id, last_event_ms FROM warroom_state").await?;
            let state = state
                .first()
                .ok_or_else(|| self.error("warroom_state has no row"))?;
            let next_incident: i64 = state.try_get(0).map_err(|e| self.error(e))?;
            let next_outbox_id: i64 = state.try_get(1).map_err(|e| self.error(e))?;
            let last_ms: Option<i64> = state.try_get(2).map_err(|e| self.error(e))?;
            let mut s = Snapshot {
                next_incident: u64::try_from(next_incident).unwrap_or(0),
                next_outbox_id: u64::try_from(next_outbox_id).unwrap_or(0),
                last_event_at: last_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
                ..Snapshot::default()
            };
            // The first id no message has used: above every id waiting or dead, and above
            // every id the sequence handed out (delivered messages' included).
            let used = q("SELECT greatest(
                    (SELECT max(id) + 1 FROM outbox), (SELECT max(id) + 1 FROM dead_letters),
                    (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM outbox_ids))")
                .await?;
            if let Some(Ok(Some(n))) = used.first().map(|r| r.try_get::<_, Option<i64>>(0)) {
                s.next_outbox_id = s.next_outbox_id.max(u64::try_from(n).unwrap_or(0));
            }
            s.incidents = self.bodies(&q("SELECT body FROM incidents ORDER BY id").await?, "an incident")?;
            for r in q("SELECT incident, body FROM events ORDER BY incident, seq").await? {
                let id: i64 = r.try_get(0).map_err(|e| self.error(e))?;
                s.events.push((incident_id(id), self.body(&r, 1, "an event")?));
            }
            let mut timers = Vec::new();
            for r in q("SELECT due, incident, seq, kind FROM timers").await? {
                let due: DateTime<Utc> = r.try_get(0).map_err(|e| self.error(e))?;
                let id: i64 = r.try_get(1).map_err(|e| self.error(e))?;
                let seq: i64 = r.try_get(2).map_err(|e| self.error(e))?;
                let kind: String = r.try_get(3).map_err(|e| self.error(e))?;
                timers.push(TimerLine {
                    due,
                    incident: incident_id(id),
                    seq: TimerSeq(u32::try_from(seq).unwrap_or(u32::MAX)),
                    kind: serde_json::from_str::<TimerKind>(&kind)
                        .map_err(|e| self.corrupt("a timer", e))?,
                });
            }
            // The sled index's order: deadline (to the millisecond), incident, number.
            timers.sort_by_key(|t| (t.due.timestamp_millis(), t.incident.0, t.seq.0));
            s.timers = timers;
            s.outbox = self.bodies(&q("SELECT body FROM outbox ORDER BY id").await?, "a waiting message")?;
            s.dead = self.bodies(&q("SELECT body FROM dead_letters ORDER BY id").await?, "a dead letter")?;
            for r in q("SELECT key, value FROM adapter").await? {
                let key: String = r.try_get(0).map_err(|e| self.error(e))?;
                let value: Vec<u8> = r.try_get(1).map_err(|e| self.error(e))?;
                s.adapter.push((key, value));
            }
            // Byte order, as sled keeps keys, whatever the database's collation.
            s.adapter.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for r in q("SELECT kind, due, name FROM deadlines").await? {
                let kind: String = r.try_get(0).map_err(|e| self.error(e))?;
                let due: DateTime<Utc> = r.try_get(1).map_err(|e| self.error(e))?;
                let name: String = r.try_get(2).map_err(|e| self.error(e))?;
                match kind.as_str() {
                    "drill" => s.drills.push((due, name)),
                    _ => s.handoffs.push((due, name)),
                }
            }
            let deadline_order = |a: &(DateTime<Utc>, String), b: &(DateTime<Utc>, String)| {
                (a.0.timestamp_millis(), a.1.as_bytes())
                    .cmp(&(b.0.timestamp_millis(), b.1.as_bytes()))
            };
            s.drills.sort_by(deadline_order);
            s.handoffs.sort_by(deadline_order);
            for r in q("SELECT source, grp, incident FROM alert_groups").await? {
                let source: String = r.try_get(0).map_err(|e| self.error(e))?;
                let group: String = r.try_get(1).map_err(|e| self.error(e))?;
                let id: i64 = r.try_get(2).map_err(|e| self.error(e))?;
                s.alert_groups.push((source, group, incident_id(id)));
            }
            // sled's key: source, a zero byte, group.
            s.alert_groups.sort_by(|a, b| {
                (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes()))
            });
            s.overrides = self.bodies(&q("SELECT body FROM oncall_overrides ORDER BY id").await?, "an on-call override")?;
            tx.commit().await.map_err(|e| self.error(e))?;
            Ok(s)
        })
    }

    /// Loads a backup into this empty database, in one transaction: all of it or nothing.
    /// Refuses a database that holds anything.
    pub fn restore(&self, s: &Snapshot) -> Result<(), StoreError> {
        let incidents: Vec<(i64, bool, String)> = s
            .incidents
            .iter()
            .map(|i| Ok((sql_id(i.id.0), i.is_open(), self.json(i)?)))
            .collect::<Result<_, StoreError>>()?;
        let events: Vec<(i64, i64, String)> = s
            .events
            .iter()
            .map(|(id, e)| Ok((sql_id(id.0), i64::from(e.seq), self.json(e)?)))
            .collect::<Result<_, StoreError>>()?;
        let timers: Vec<(i64, i64, DateTime<Utc>, String)> = s
            .timers
            .iter()
            .map(|t| {
                Ok((
                    sql_id(t.incident.0),
                    i64::from(t.seq.0),
                    t.due,
                    self.json(&t.kind)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let outbox: Vec<(i64, String)> = s
            .outbox
            .iter()
            .map(|o| Ok((sql_id(o.id), self.json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        let dead: Vec<(i64, String)> = s
            .dead
            .iter()
            .map(|d| Ok((sql_id(d.message.id), self.json(d)?)))
            .collect::<Result<_, StoreError>>()?;
        let overrides: Vec<(i64, String)> = s
            .overrides
            .iter()
            .map(|o| Ok((sql_id(o.id), self.json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        self.run(async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::Serializable)
                .start()
                .await
                .map_err(|e| self.error(e))?;
            // Held to the end: a second restore into the same database waits, then finds it full.
            tx.execute("LOCK TABLE warroom_state IN EXCLUSIVE MODE", &[])
                .await
                .map_err(|e| self.error(e))?;
            if let Some(held) = holds(&tx).await.map_err(|e| self.error(e))? {
                return Err(StoreError::NotEmpty {
                    target: self.target.clone(),
                    holds: held,
                });
            }
            let e = |e: tokio_postgres::Error| self.error(describe(&e));
            for c in incidents.chunks(CHUNK) {
                let (a, b, d) = unzip3(c);
                tx.execute(
                    "INSERT INTO incidents (id, open, body) SELECT * FROM unnest($1::bigint[], $2::boolean[], $3::text[])",
                    &[&a, &b, &d],
                )
                .await
                .map_err(e)?;
            }
            for c in events.chunks(CHUNK) {
                let (a, b, d) = unzip3(c);
                tx.execute(
                    "INSERT INTO events (incident, seq, body) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])",
                    &[&a, &b, &d],
                )
                .await
                .map_err(e)?;
            }
            for c in timers.chunks(CHUNK) {
                let a: Vec<i64> = c.iter().map(|t| t.0).collect();
                let b: Vec<i64> = c.iter().map(|t| t.1).collect();
                let due: Vec<DateTime<Utc>> = c.iter().map(|t| t.2).collect();
                let k: Vec<&str> = c.iter().map(|t| t.3.as_str()).collect();
                tx.execute(
                    "INSERT INTO timers (incident, seq, due, kind) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[])",
                    &[&a, &b, &due, &k],
                )
                .await
                .map_err(e)?;
            }
            for (table, rows) in [("outbox", &outbox), ("dead_letters", &dead), ("oncall_overrides", &overrides)] {
                let sql = format!("INSERT INTO {table} (id, body) SELECT * FROM unnest($1::bigint[], $2::text[])");
                for c in rows.chunks(CHUNK) {
                    let a: Vec<i64> = c.iter().map(|r| r.0).collect();
                    let b: Vec<&str> = c.iter().map(|r| r.1.as_str()).collect();
                    tx.execute(sql.as_str(), &[&a, &b]).await.map_err(e)?;
                }
            }
            for (k, v) in &s.adapter {
                tx.execute("INSERT INTO adapter (key, value) VALUES ($1, $2)", &[k, v])
                    .await
                    .map_err(e)?;
            }
            for (kind, rows) in [("drill", &s.drills), ("handoff", &s.handoffs)] {
                for (due, name) in rows {
                    tx.execute(
                        "INSERT INTO deadlines (kind, due, name) VALUES ($1, $2, $3)",
                        &[&kind, due, name],
                    )
                    .await
                    .map_err(e)?;
                }
            }
            for (source, group, id) in &s.alert_groups {
                tx.execute(
                    "INSERT INTO alert_groups (source, grp, incident) VALUES ($1, $2, $3)",
                    &[source, group, &sql_id(id.0)],
                )
                .await
                .map_err(e)?;
            }
            tx.execute(
                "SELECT setval('outbox_ids', $1, false)",
                &[&sql_id(s.next_outbox_id)],
            )
            .await
            .map_err(e)?;
            let last_ms = s.last_event_at.map(|t| t.timestamp_millis());
            tx.execute(
                "UPDATE warroom_state SET next_incident = $1, next_outbox_id = $2, last_event_ms = $3",
                &[&sql_id(s.next_incident), &sql_id(s.next_outbox_id), &last_ms],
            )
            .await
            .map_err(e)?;
            tx.commit().await.map_err(e)
        })
    }
}

/// What a database holds, as `holds` says it.
async fn holds(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM timers),
                    (SELECT count(*) FROM outbox), (SELECT count(*) FROM dead_letters),
                    (SELECT count(*) FROM adapter), (SELECT count(*) FROM deadlines WHERE kind = 'drill'),
                    (SELECT count(*) FROM alert_groups), (SELECT count(*) FROM deadlines WHERE kind = 'handoff'),
                    (SELECT count(*) FROM oncall_overrides), (SELECT count(*) FROM events)",
            &[],
        )
        .await?;
    let names = [
        "incident(s)",
        "pending timer(s)",
        "waiting message(s)",
        "dead letter(s)",
        "front-end id(s)",
        "drill(s)",
        "alert group(s)",
        "shift handoff(s)",
        "on-call override(s)",
        "timeline event(s)",
    ];
    let mut held = Vec::new();
    for (i, what) in names.iter().enumerate() {
        let n: i64 = row.try_get(i)?;
        if n > 0 {
            held.push(format!("{n} {what}"));
        }
    }
    Ok((!held.is_empty()).then(|| held.join(", ")))
}

fn unzip3<A: Clone, B: Clone>(rows: &[(i64, A, B)]) -> (Vec<i64>, Vec<A>, Vec<B>) {
    let a = rows.iter().map(|r| r.0).collect();
    let b = rows.iter().map(|r| r.1.clone()).collect();
    let c = rows.iter().map(|r| r.2.clone()).collect();
    (a, b, c)
}

/// Ids are unsigned in Rust and `bigint` in PostgreSQL; no id reaches 2⁶³.
fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn incident_id(id: i64) -> IncidentId {
    IncidentId(u64::try_from(id).unwrap_or(0))
}

/// The commit path: the same contract as the sled store's (`store` module), in PostgreSQL
/// transactions. Not yet driven by `App`; the contract suite (`tests/it/contract.rs`) runs it.
impl PgStore {
    /// The id the next opened incident gets.
    pub fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let row = client
                .query_one("SELECT next_incident FROM warroom_state", &[])
                .await
                .map_err(|e| self.error(e))?;
            Ok(incident_id(row.try_get(0).map_err(|e| self.error(e))?))
        })
    }

    /// A fresh outbox id, from the database's sequence: unique across replicas, increasing.
    pub fn outbox_id(&self) -> Result<u64, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let row = client
                .query_one("SELECT nextval('outbox_ids')", &[])
                .await
                .map_err(|e| self.error(e))?;
            let n: i64 = row.try_get(0).map_err(|e| self.error(e))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let row = client
                .query_opt("SELECT body FROM incidents WHERE id = $1", &[&sql_id(id.0)])
                .await
                .map_err(|e| self.error(e))?;
            match row {
                None => Ok(None),
                Some(r) => self.body(&r, 0, "an incident").map(Some),
            }
        })
    }

    /// The timeline of one incident, in order.
    pub fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let rows = client
                .query(
                    "SELECT body FROM events WHERE incident = $1 ORDER BY seq",
                    &[&sql_id(id.0)],
                )
                .await
                .map_err(|e| self.error(e))?;
            self.bodies(&rows, "an event")
        })
    }

    /// The messages waiting for delivery, in outbox order.
    pub fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let rows = client
                .query("SELECT body FROM outbox ORDER BY id", &[])
                .await
                .map_err(|e| self.error(e))?;
            self.bodies(&rows, "a waiting message")
        })
    }

    /// The earliest pending timers due at or before `now`, at most `limit`, in deadline order.
    /// Listing claims nothing: the commit that fires one claims it.
    pub fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<super::DueTimer>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let rows = client
                .query(
                    "SELECT due, incident, seq FROM timers WHERE due <= $1 ORDER BY due, incident, seq LIMIT $2",
                    &[&now, &limit],
                )
                .await
                .map_err(|e| self.error(e))?;
            rows.iter()
                .map(|r| {
                    let due: DateTime<Utc> = r.try_get(0).map_err(|e| self.error(e))?;
                    let incident = incident_id(r.try_get(1).map_err(|e| self.error(e))?);
                    let seq: i64 = r.try_get(2).map_err(|e| self.error(e))?;
                    let seq = TimerSeq(u32::try_from(seq).unwrap_or(u32::MAX));
                    Ok(super::DueTimer {
                        due,
                        incident,
                        seq,
                        key: super::sled::timer_key(due, incident, seq),
                    })
                })
                .collect()
        })
    }

    /// How many timers are pending.
    pub fn pending_timers(&self) -> Result<usize, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let n: i64 = client
                .query_one("SELECT count(*) FROM timers", &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| self.error(e))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    /// Applies several decisions, in order, as one transaction: all of them or none. A fired
    /// timer is claimed here (`FOR UPDATE SKIP LOCKED`) in the transaction that queues its
    /// messages; if another transaction holds or has taken it, nothing of the batch is kept
    /// and the error says the timer was claimed elsewhere. Committed means durable: PostgreSQL
    /// syncs its log at commit (with its default `synchronous_commit`).
    pub fn commit_all(&self, commits: &[super::Commit]) -> Result<(), StoreError> {
        self.commit_fenced(commits, self.fenced_term())
    }

    /// `commit_all`, by the holder of lease `term`: the term is checked inside the transaction
    /// (the lease row held `FOR SHARE`, so a takeover waits for this commit), and a replica
    /// that has been deposed commits nothing (`StoreError::Deposed`).
    pub fn commit_fenced(
        &self,
        commits: &[super::Commit],
        term: Option<i64>,
    ) -> Result<(), StoreError> {
        if commits.is_empty() {
            return Ok(());
        }
        struct Row {
            id: i64,
            open: bool,
            body: String,
            group_put: Option<(String, String)>,
            group_del: Option<(String, String)>,
            events: Vec<(i64, String)>,
            consumed: Option<i64>,
            removed: Vec<i64>,
            added: Vec<(i64, DateTime<Utc>, String)>,
            outbox: Vec<(i64, String)>,
            new: bool,
        }
        let mut rows = Vec::with_capacity(commits.len());
        let mut latest: Option<i64> = None;
        for c in commits {
            let old = c.before.map_or(&[][..], |b| b.timers.as_slice());
            let group = c
                .after
                .alert
                .as_ref()
                .map(|l| (l.source.clone(), l.group.clone()));
            let (group_put, group_del) = match group {
                Some(g) if c.after.is_open() => (Some(g), None),
                other => (None, other),
            };
            for e in c.events {
                let ms = e.at.timestamp_millis();
                latest = Some(latest.map_or(ms, |l| l.max(ms)));
            }
            rows.push(Row {
                id: sql_id(c.after.id.0),
                open: c.after.is_open(),
                body: self.json(c.after)?,
                group_put,
                group_del,
                events: c
                    .events
                    .iter()
                    .map(|e| Ok((i64::from(e.seq), self.json(e)?)))
                    .collect::<Result<_, StoreError>>()?,
                consumed: c.consumed.map(|t| i64::from(t.seq.0)),
                removed: old
                    .iter()
                    .filter(|t| !c.after.timers.iter().any(|n| n.seq == t.seq))
                    .map(|t| i64::from(t.seq.0))
                    .collect(),
                added: c
                    .after
                    .timers
                    .iter()
                    .filter(|t| !old.iter().any(|o| o.seq == t.seq))
                    .map(|t| Ok((i64::from(t.seq.0), t.due, self.json(&t.kind)?)))
                    .collect::<Result<_, StoreError>>()?,
                outbox: c
                    .outbox
                    .iter()
                    .map(|o| Ok((sql_id(o.id), self.json(o)?)))
                    .collect::<Result<_, StoreError>>()?,
                new: c.before.is_none(),
            });
        }
        self.run(async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            if let Some(term) = term {
                self.check_term(&tx, term).await?;
            }
            let e = |e: tokio_postgres::Error| self.error(describe(&e));
            // Prepared once per connection, then sent as one pipeline: every statement goes
            // out in order on the first poll, so the batch costs about one round trip, not one
            // per row. The connection runs them in that order.
            // All prepared at once (cached per connection after the first commit).
            let prepared =
                futures_util::future::join_all(COMMIT_SQL.iter().map(|sql| tx.prepare_cached(sql)))
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(e)?;
            let Ok(
                [
                    claim,
                    insert_incident,
                    next_incident,
                    update_incident,
                    group_put,
                    group_del,
                    insert_event,
                    remove_timers,
                    add_timer,
                    insert_outbox,
                    last_event,
                ],
            ) = <[tokio_postgres::Statement; 11]>::try_from(prepared)
            else {
                return Err(self.error("a commit statement was not prepared"));
            };
            type Sql<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);
            type Pending<'f> = std::pin::Pin<
                Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'f>,
            >;
            let mut sent: Vec<Pending<'_>> = Vec::new();
            // (position in `sent`, incident, timer) of each claim, checked once all ran.
            let mut claims = Vec::new();
            macro_rules! send {
                ($st:expr, [$($p:expr),*]) => {{
                    let params: Vec<Sql<'_>> = vec![$($p),*];
                    let st = $st.clone();
                    let tx = &tx;
                    sent.push(Box::pin(async move { tx.execute_raw(&st, params).await }));
                }};
            }
            for r in &rows {
                if let Some(seq) = &r.consumed {
                    claims.push((sent.len(), r.id, *seq));
                    send!(claim, [&r.id, seq]);
                }
                if r.new {
                    send!(insert_incident, [&r.id, &r.open, &r.body]);
                    send!(next_incident, [&r.id]);
                } else {
                    send!(update_incident, [&r.id, &r.open, &r.body]);
                }
                if let Some((source, group)) = &r.group_put {
                    send!(group_put, [source, group, &r.id]);
                }
                if let Some((source, group)) = &r.group_del {
                    send!(group_del, [source, group, &r.id]);
                }
                for (seq, body) in &r.events {
                    send!(insert_event, [&r.id, seq, body]);
                }
                if !r.removed.is_empty() {
                    send!(remove_timers, [&r.id, &r.removed]);
                }
                for (seq, due, kind) in &r.added {
                    send!(add_timer, [&r.id, seq, due, kind]);
                }
                for (id, body) in &r.outbox {
                    send!(insert_outbox, [id, body]);
                }
            }
            if let Some(ms) = &latest {
                send!(last_event, [ms]);
            }
            let done = futures_util::future::join_all(sent).await;
            // A lost claim first: the statements after it may fail only because another
            // transaction did the same work (its events, its messages).
            for (at, id, seq) in claims {
                if !matches!(done.get(at), Some(Ok(n)) if *n > 0) {
                    // Dropping `tx` rolls the whole batch back.
                    return Err(StoreError::Claimed {
                        incident: IncidentId(u64::try_from(id).unwrap_or(0)),
                        seq: u32::try_from(seq).unwrap_or(u32::MAX),
                    });
                }
            }
            for d in done {
                d.map_err(e)?;
            }
            tx.commit().await.map_err(e)?;
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// A replica's hold on the active role: its fencing term, and until when it holds it unless
/// renewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub term: i64,
    pub expires: DateTime<Utc>,
}

/// The lease: one row, taken over only once it has expired, each takeover with a new term.
/// Expiry is judged by the caller's clock (`Clock`), so replicas with skewed clocks may
/// disagree on when a lease lapsed; safety does not depend on it, since every fenced commit
/// and delivery checks the term inside its own transaction.
impl PgStore {
    /// Takes the lease for `holder` if it is free, expired, or already `holder`'s (then it is
    /// renewed with the same term). Returns None while another holds it.
    pub fn try_acquire(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let expires = chrono::TimeDelta::from_std(ttl)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| self.error("the lease would end beyond representable time"))?;
        self.run(async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            let e = |e: tokio_postgres::Error| self.error(describe(&e));
            // Serialises acquirers, also before the first row exists.
            tx.execute("LOCK TABLE warroom_lease IN SHARE ROW EXCLUSIVE MODE", &[])
                .await
                .map_err(e)?;
            let row = tx
                .query_opt("SELECT holder, term, expires FROM warroom_lease", &[])
                .await
                .map_err(e)?;
            let term = match row {
                None => 1,
                Some(r) => {
                    let (h, t, until): (String, i64, DateTime<Utc>) = (
                        r.try_get(0).map_err(e)?,
                        r.try_get(1).map_err(e)?,
                        r.try_get(2).map_err(e)?,
                    );
                    if h == holder && until > now {
                        t
                    } else if until > now {
                        return Ok(None);
                    } else {
                        t.saturating_add(1)
                    }
                }
            };
            tx.execute(
                "INSERT INTO warroom_lease (holder, term, expires) VALUES ($1, $2, $3)
                 ON CONFLICT (one) DO UPDATE SET holder = excluded.holder, term = excluded.term, expires = excluded.expires",
                &[&holder, &term, &expires],
            )
            .await
            .map_err(e)?;
            tx.commit().await.map_err(e)?;
            Ok(Some(Lease {
                holder: holder.to_string(),
                term,
                expires,
            }))
        })
    }

    /// The lease as the database holds it now.
    pub fn lease(&self) -> Result<Option<Lease>, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let row = client
                .query_opt("SELECT holder, term, expires FROM warroom_lease", &[])
                .await
                .map_err(|e| self.error(e))?;
            row.map(|r| {
                Ok(Lease {
                    holder: r.try_get(0).map_err(|e| self.error(e))?,
                    term: r.try_get(1).map_err(|e| self.error(e))?,
                    expires: r.try_get(2).map_err(|e| self.error(e))?,
                })
            })
            .transpose()
        })
    }

    /// Marks outbox message `id` delivered, by the holder of `term`: refused (and the message
    /// kept) once that replica has been deposed.
    pub fn delivered_fenced(&self, id: u64, term: i64) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let tx = client.transaction().await.map_err(|e| self.error(e))?;
            self.check_term(&tx, term).await?;
            tx.execute("DELETE FROM outbox WHERE id = $1", &[&sql_id(id)])
                .await
                .map_err(|e| self.error(e))?;
            tx.commit().await.map_err(|e| self.error(e))
        })
    }

    /// From now on every write through this handle (commits, deliveries, the outbox, deadlines,
    /// overrides, adapter ids) is made under lease `term`, checked inside its transaction:
    /// once another replica has taken over, they all fail with `StoreError::Deposed`. None
    /// writes unfenced again (a standby, a tool).
    pub fn fence(&self, term: Option<i64>) {
        self.term.store(term.unwrap_or(0), Ordering::SeqCst);
    }

    /// The term writes are fenced with, if any.
    pub fn fenced_term(&self) -> Option<i64> {
        Some(self.term.load(Ordering::SeqCst)).filter(|t| *t != 0)
    }

    /// Until when this replica may act (send) without renewing: the lease keeper sets it a
    /// margin before the lease's end by its own clock, and clears it when the lease is lost.
    pub fn act_until(&self, until: Option<DateTime<Utc>>) {
        self.acting_until
            .store(until.map_or(0, |t| t.timestamp_millis()), Ordering::SeqCst);
    }

    /// Whether this handle may act now: unfenced handles always may; a fenced one only while
    /// its lease is fresh by the keeper's clock (so a process resumed after a pause past its
    /// lease stops before asking anything) and its term is still the database's. Asked right
    /// before each request to the chat platform.
    pub fn may_act(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(term) = self.fenced_term() else {
            return Ok(true);
        };
        if !self.may_act_locally(now) {
            return Ok(false);
        }
        self.holds_term(term)
    }

    /// Whether the lease keeper's last renewal still covers `now` (no database round trip).
    pub fn may_act_locally(&self, now: DateTime<Utc>) -> bool {
        now.timestamp_millis() < self.acting_until.load(Ordering::SeqCst)
    }

    /// Gives the lease up (its holder stopping cleanly), so that a standby takes over at its
    /// next try instead of after the lease's time.
    pub fn release(&self, holder: &str, term: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            client
                .execute(
                    "UPDATE warroom_lease SET expires = $3 WHERE holder = $1 AND term = $2",
                    &[&holder, &term, &now],
                )
                .await
                .map_err(|e| self.error(describe(&e)))?;
            Ok(())
        })
    }

    /// Whether `term` is still the lease's: a replica asks before each send.
    pub fn holds_term(&self, term: i64) -> Result<bool, StoreError> {
        Ok(self.lease()?.is_some_and(|l| l.term == term))
    }

    /// Fails with `Deposed` unless `term` is the lease's; holds the row `FOR SHARE` to the end
    /// of `tx`, so that no takeover commits in between.
    async fn check_term(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        term: i64,
    ) -> Result<(), StoreError> {
        let row = tx
            .query_opt("SELECT term FROM warroom_lease FOR SHARE", &[])
            .await
            .map_err(|e| self.error(e))?;
        let now: Option<i64> = row
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.error(e))?;
        if now == Some(term) {
            Ok(())
        } else {
            Err(StoreError::Deposed {
                term,
                current: now.unwrap_or(0),
            })
        }
    }
}

/// A PostgreSQL error in words: the server's message and code where it sent one (the client's
/// own `Display` says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
