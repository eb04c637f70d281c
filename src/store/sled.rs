//! The store kept in one embedded sled database in one data folder.
//!
//! Trees: `incidents` (id → incident), `timeline` (id ‖ seq → event), `timers` (due ‖ id ‖ seq →
//! timer, so the first key is the next deadline), `timers_by_incident` (no longer written: an
//! index nothing read, which cost two writes per command; an older folder's is emptied at open),
//! `outbox` (outbox id → message waiting for delivery), `dead_letters`, `adapter` (front ends'
//! own mappings, such as Discord channel ids), `drill_schedule`, `oncall_handoffs`,
//! `oncall_overrides`, `alert_groups` (alert source ‖
//! 0 ‖ group key → the open incident that holds the group, mirrored from `Incident::alert` in
//! the same change), and `meta`.
//! Every change of a command or fired timer is one write set, journalled and then applied
//! (`commit.rs`): all of it survives a crash or none. A fired timer leaves `timers` in the same
//! change that puts its messages in `outbox`, so it is claimed exactly once and its messages
//! survive a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::commit::{Mode, WritePath};
use super::integrity;
use super::journal::{self, T};
use super::snapshot::{Snapshot, TimerLine};
use super::{
    Commit, DeadLetter, DueTimer, Durability, Outgoing, StoreError, StoreOptions, TimerRecord,
};
use crate::domain::{Event, Incident, IncidentId, PendingTimer, TimerSeq};

const SCHEMA: &[u8] = b"warroom-1";

pub struct Store {
    pub(super) db: sled::Db,
    pub(super) incidents: sled::Tree,
    pub(super) timeline: sled::Tree,
    pub(super) timers: sled::Tree,
    pub(super) outbox: sled::Tree,
    pub(super) dead: sled::Tree,
    pub(super) meta: sled::Tree,
    pub(super) adapter: sled::Tree,
    pub(super) schedule: sled::Tree,
    pub(super) alert_groups: sled::Tree,
    /// On-call: `oncall_handoffs` (due ‖ role key → role key) and `oncall_overrides` (id →
    /// override); see `store::oncall`.
    pub(super) handoffs: sled::Tree,
    pub(super) overrides: sled::Tree,
    pub(super) dir: PathBuf,
    /// Every change goes through it: the journal, the commit record, the counts (`commit`).
    pub(super) wp: Arc<WritePath>,
    /// The checkpoint thread, and how it is told to stop.
    checkpointer: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Commits made since open.
    pub(super) committed: std::sync::atomic::AtomicU64,
    /// Set once `open_with` has passed every check: a refused open's drop writes nothing.
    opened: bool,
    /// The latest incidents committed, decoded: a command reads its incident from here instead
    /// of decoding it again. Written only after a successful commit; bounded.
    pub(super) recent:
        std::sync::Mutex<std::collections::HashMap<IncidentId, std::sync::Arc<Incident>>>,
    /// The time of the latest event committed (`meta` "last_at"), in milliseconds.
    pub(super) last_at: std::sync::Mutex<Option<i64>>,
    /// Writers share it; a snapshot (`warroom backup`) takes it alone, so that what it reads
    /// is the store at one instant. Writes wait while a snapshot reads.
    pub(super) pause: std::sync::RwLock<()>,
    /// Added to sled's generated ids (`meta` "outbox_floor"): a restored store hands out no
    /// outbox id its backup already used.
    pub(super) outbox_floor: std::sync::atomic::AtomicU64,
    /// Declared after every sled handle (fields drop in order) and before the folder lock.
    refresh: Refresh,
    pub(super) _lock: File,
}

/// sled writes the snapshot of its page table only when it opens a folder, and at open reads
/// back every log record written since it last opened it (about 4 µs per commit here: 1.4 s
/// after a fill of a million timers). So a clean close after `StoreOptions::refresh_after`
/// commits (default 20,000: under 0.1 s for the next start) reopens sled once, after the store's own handles are gone, and closes it
/// again: the next start then reads a short log. Until that is done the commit record says
/// "unclean" (a crash meanwhile costs the verified open, never data).
struct Refresh {
    db: PathBuf,
    cache_bytes: u64,
    record: Option<File>,
    after: u64,
    /// Set by a clean close worth refreshing: the counts the record must hold.
    counts: std::sync::Mutex<Option<(u64, u64)>>,
}

impl Drop for Refresh {
    fn drop(&mut self) {
        let Some((incidents, events)) =
            self.counts.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
            return;
        };
        let Some(record) = &self.record else {
            return;
        };
        let t = std::time::Instant::now();
        match open_sled(&self.db, self.cache_bytes) {
            Ok(db) => {
                if let Err(e) = db.flush() {
                    tracing::warn!(error = %e, "cannot flush sled after refreshing its snapshot");
                    return;
                }
            }
            Err(OpenFailure::Damaged(e) | OpenFailure::Other(e)) => {
                tracing::warn!(error = %e, "cannot reopen sled to refresh its snapshot; the next start verifies the folder");
                return;
            }
            Err(OpenFailure::Locked) => {
                tracing::warn!(
                    "sled is still held, so its snapshot was not refreshed; the next start verifies the folder"
                );
                return;
            }
        }
        let rec = match integrity::stats(&self.db) {
            Ok(files) => integrity::Record {
                incidents,
                events,
                clean: Some(files),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot record a clean close");
                return;
            }
        };
        match integrity::write(record, &rec, true) {
            Ok(()) => tracing::info!(
                took_ms = t.elapsed().as_millis() as u64,
                "sled's snapshot refreshed at close"
            ),
            Err(e) => tracing::error!(error = %e, "cannot record a clean close"),
        }
    }
}

/// How many decoded incidents `Store::recent` keeps.
const RECENT: usize = 512;

/// Why sled would not open a folder.
pub(super) enum OpenFailure {
    Damaged(String),
    Locked,
    Other(String),
}

/// Opens sled on `path`, turning its panics and errors into reasons.
pub(super) fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, OpenFailure> {
    // sled can panic on some malformed files instead of returning an error; a damaged
    // folder must give a clear message, not a crash.
    let open = || {
        std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()
        })
    };
    let mut opened = open();
    // We hold warroom.lock, so no other warroom process has the folder; if sled's own lock is
    // still taken, a store this process just dropped is still shutting its flusher thread
    // down. Give it a moment.
    for _ in 0..100 {
        match &opened {
            Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                opened = open();
            }
            _ => break,
        }
    }
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Corruption { .. })) => {
            Err(OpenFailure::Damaged("sled found corrupt data".into()))
        }
        Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(OpenFailure::Damaged(e.to_string()))
        }
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            Err(OpenFailure::Locked)
        }
        Ok(Err(sled::Error::Unsupported(e))) => Err(OpenFailure::Damaged(e)),
        Ok(Err(e)) => Err(OpenFailure::Other(e.to_string())),
        Err(_) => Err(OpenFailure::Damaged(
            "the database files could not be read".into(),
        )),
    }
}

/// Opens a copy of `db` in a scratch folder and checks that every record reads back and that it
/// holds at least what the commit record says. The real folder is only read.
pub(super) fn verify_copy(db: &Path, recorded: Option<&integrity::Record>) -> Result<(), String> {
    let started = std::time::Instant::now();
    let scratch = integrity::Scratch::new("verify")
        .map_err(|e| format!("cannot make a scratch folder to check it in: {e}"))?;
    let copy = scratch.0.join("db");
    integrity::copy_dir(db, &copy).map_err(|e| format!("cannot read it to check it: {e}"))?;
    let copied = started.elapsed();
    let opened = open_sled(&copy, StoreOptions::default().cache_bytes).map_err(|f| match f {
        OpenFailure::Damaged(d) | OpenFailure::Other(d) => d,
        OpenFailure::Locked => "its database is locked".into(),
    })?;
    let open_done = started.elapsed();
    // Every record of every tree is read (sled checks each page's CRC as it reads it, and a
    // log cut short by its recovery shows as fewer records than the commit record says), on
    // two threads taking trees in turn: the scan is most of a restart after a crash, and it
    // grows with the folder.
    let names = journal::T::ALL.map(journal::T::name);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let counted = std::sync::Mutex::new(std::collections::HashMap::<&str, u64>::new());
    let worker = || -> Result<(), String> {
        while let Some(name) = names.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
            let tree = opened.open_tree(name).map_err(|e| e.to_string())?;
            let mut n = 0u64;
            for kv in tree.iter() {
                kv.map_err(|e| e.to_string())?;
                n = n.saturating_add(1);
            }
            counted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, n);
        }
        Ok(())
    };
    let check = || -> Result<(u64, u64), String> {
        std::thread::scope(|s| {
            let other = s.spawn(worker);
            let mine = worker();
            let theirs = other
                .join()
                .unwrap_or_else(|_| Err("the database files could not be read".into()));
            mine.and(theirs)
        })?;
        let counted = counted.lock().unwrap_or_else(|p| p.into_inner());
        let n = |name: &str| counted.get(name).copied().unwrap_or(0);
        Ok((n(T::Incidents.name()), n(T::Timeline.name())))
    };
    // The copy is thrown away after a panic, so no broken state outlives it.
    let (n_inc, n_ev) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(r) => r?,
        Err(_) => return Err("the database files could not be read".into()),
    };
    tracing::info!(
        copy_ms = copied.as_millis() as u64,
        open_ms = open_done.saturating_sub(copied).as_millis() as u64,
        read_ms = started.elapsed().saturating_sub(open_done).as_millis() as u64,
        incidents = n_inc,
        events = n_ev,
        "checked a copy of the database"
    );
    if let Some(r) = recorded
        && (n_inc < r.incidents || n_ev < r.events)
    {
        return Err(format!(
            "only {n_inc} incident(s) and {n_ev} event(s) can be read, fewer than the {} and {} its last commit recorded",
            r.incidents, r.events
        ));
    }
    drop(opened);
    Ok(())
}

/// A number kept in `meta` (big-endian), if it is there and eight bytes long.
pub(super) fn meta_u64(meta: &sled::Tree, key: &str) -> Result<Option<u64>, StoreError> {
    Ok(meta
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

pub(super) fn millis_key(t: DateTime<Utc>) -> [u8; 8] {
    // Flip the sign bit so that negative times sort before positive ones.
    ((t.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// A key of a tree of deadlines by name (drills, shift handoffs): due ‖ name, so the first key
/// is the next deadline.
pub(super) fn deadline_key(due: DateTime<Utc>, name: &str) -> Vec<u8> {
    let mut k = millis_key(due).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode_deadline(k: &[u8], v: &[u8]) -> Option<(DateTime<Utc>, String)> {
    let ms = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
    let due = Utc.timestamp_millis_opt(ms as i64).single()?;
    Some((due, String::from_utf8_lossy(v).into_owned()))
}

/// The earliest deadline of a tree of deadlines: (due, name).
pub(super) fn deadline_first(
    tree: &sled::Tree,
) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
    Ok(tree.first()?.and_then(|(k, v)| decode_deadline(&k, &v)))
}

/// Every deadline of a tree of deadlines, in due order.
pub(super) fn deadlines(tree: &sled::Tree) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
    let mut out = Vec::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        out.extend(decode_deadline(&k, &v));
    }
    Ok(out)
}

pub(super) fn timer_key(due: DateTime<Utc>, id: IncidentId, seq: TimerSeq) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&millis_key(due));
    k.extend_from_slice(&id.0.to_be_bytes());
    k.extend_from_slice(&seq.0.to_be_bytes());
    k
}

/// `source ‖ 0 ‖ group`: source names hold no 0 byte (configuration checks them).
fn alert_group_key(source: &str, group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + group.len());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(group.as_bytes());
    k
}

fn index_key(id: IncidentId, seq: TimerSeq) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&id.0.to_be_bytes());
    k.extend_from_slice(&seq.0.to_be_bytes());
    k
}

fn event_key(id: IncidentId, seq: u32) -> Vec<u8> {
    index_key(id, TimerSeq(seq))
}

// The length is checked first, so the fixed slices are in range.
#[allow(clippy::indexing_slicing)]
fn decode_timer_key(k: &[u8]) -> Option<(DateTime<Utc>, IncidentId, TimerSeq)> {
    if k.len() != 20 {
        return None;
    }
    let ms = u64::from_be_bytes(k[0..8].try_into().ok()?) ^ (1 << 63);
    let id = u64::from_be_bytes(k[8..16].try_into().ok()?);
    let seq = u32::from_be_bytes(k[16..20].try_into().ok()?);
    let due = Utc.timestamp_millis_opt(ms as i64).single()?;
    Some((due, IncidentId(id), TimerSeq(seq)))
}

/// One commit turned into the bytes its transaction writes.
struct Prepared {
    id: IncidentId,
    new_incident: bool,
    incident: Vec<u8>,
    events: Vec<(Vec<u8>, Vec<u8>)>,
    /// Timer keys: the fired one, the ones the decision dropped, the ones it added (with
    /// their records).
    consumed: Option<Vec<u8>>,
    removed: Vec<Vec<u8>>,
    added: Vec<(Vec<u8>, Vec<u8>)>,
    outbox: Vec<([u8; 8], Vec<u8>)>,
    latest: Option<i64>,
    /// The alert group index follows the incident: held while it is open, let go once not.
    group_put: Option<Vec<u8>>,
    group_del: Option<Vec<u8>>,
}

fn prepare(c: &Commit) -> Result<Prepared, StoreError> {
    let id = c.after.id;
    let old: &[PendingTimer] = c.before.map_or(&[], |b| b.timers.as_slice());
    let removed = old
        .iter()
        .filter(|t| !c.after.timers.iter().any(|n| n.seq == t.seq))
        .map(|t| timer_key(t.due, id, t.seq))
        .collect();
    let added = c
        .after
        .timers
        .iter()
        .filter(|t| !old.iter().any(|o| o.seq == t.seq))
        .map(|t| {
            let rec = TimerRecord {
                incident: id,
                seq: t.seq,
                kind: t.kind.clone(),
            };
            Ok((timer_key(t.due, id, t.seq), to_json(&rec)?))
        })
        .collect::<Result<_, StoreError>>()?;
    let group_key = c
        .after
        .alert
        .as_ref()
        .map(|l| alert_group_key(&l.source, &l.group));
    let (group_put, group_del) = match group_key {
        Some(k) if c.after.is_open() => (Some(k), None),
        other => (None, other),
    };
    Ok(Prepared {
        id,
        group_put,
        group_del,
        new_incident: c.before.is_none(),
        incident: to_json(c.after)?,
        events: c
            .events
            .iter()
            .map(|e| Ok((event_key(id, e.seq), to_json(e)?)))
            .collect::<Result<_, StoreError>>()?,
        consumed: c.consumed.map(|t| t.key.clone()),
        removed,
        added,
        outbox: c
            .outbox
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?,
        latest: c.events.iter().map(|e| e.at.timestamp_millis()).max(),
    })
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    // Our records are meant to serialise (maps keyed by enums use string keys), but a record
    // that cannot is a refused write, never a crash.
    serde_json::to_vec(v)
        .map_err(|e| StoreError::Sled(format!("a record cannot be written as JSON: {e}")))
}

impl Store {
    /// Opens (or creates) the data folder with the default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the data folder, refusing it if another process holds it, and
    /// refusing it untouched if it is damaged (see `integrity`).
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let unusable = |reason: String| StoreError::Unusable {
            dir: dir.to_path_buf(),
            reason,
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| unusable(e.to_string()))?;
        let lock_path = dir.join("warroom.lock");
        let was_used = lock_path.exists();
        // A refused folder is left as it was: a lock file this call created goes again.
        let refuse = |e: StoreError| {
            if !was_used {
                let _ = std::fs::remove_file(&lock_path);
            }
            e
        };
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| unusable(format!("cannot open {}: {e}", lock_path.display())))?;
        if let Err(e) = lock.try_lock() {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => format!("lock file {}: {e}", lock_path.display()),
                pid => format!("process id {pid}"),
            };
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        let recorded = integrity::read(dir).map_err(corrupt).map_err(refuse)?;
        let db_path = dir.join("db");
        if !db_path.exists() && (was_used || recorded.is_some()) {
            let held = recorded.as_ref().map_or(String::new(), |r| {
                format!(
                    ", and its commit record says it held {} incident(s)",
                    r.incidents
                )
            });
            return Err(refuse(corrupt(format!(
                "its database db/ is missing, though the folder was in use (warroom.lock is there{held})"
            ))));
        }
        // sled may rewrite a damaged folder while it opens it: unless db/ is exactly as a clean
        // close left it, open a copy first and check what it holds.
        let clean = db_path.exists()
            && recorded
                .as_ref()
                .and_then(|r| r.clean.as_ref())
                .is_some_and(|files| integrity::stats(&db_path).ok().as_ref() == Some(files));
        if db_path.exists() && !clean {
            verify_copy(&db_path, recorded.as_ref())
                .map_err(corrupt)
                .map_err(refuse)?;
        }
        // A damaged journal is refused before sled opens the folder in place (the replay below
        // would apply the records before the damage, then refuse).
        journal::check(dir).map_err(corrupt).map_err(refuse)?;
        // Checked: from here on, this process owns the folder.
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = write!(lock, "{}", std::process::id());
        let _ = lock.flush();
        let db = open_sled(&db_path, options.cache_bytes).map_err(|f| match f {
            OpenFailure::Damaged(d) => corrupt(d),
            OpenFailure::Locked => StoreError::Locked {
                dir: dir.to_path_buf(),
                holder: "another process: its warroom.lock was deleted, but sled's own lock on db/ is still held".into(),
            },
            OpenFailure::Other(e) => unusable(e),
        })?;
        let record = integrity::open_file(dir)
            .map_err(|e| unusable(format!("cannot open {}: {e}", integrity::RECORD_FILE)))?;
        // In `journal::T` order.
        let trees = super::commit::open_trees(&db)?;
        let [
            inc,
            tl,
            tm,
            by_incident,
            out,
            dead,
            meta,
            ad,
            sched,
            grp,
            hand,
            ovr,
        ] = trees.clone();
        let refresh_record = record.try_clone().ok();
        let wp = Arc::new(WritePath::new(
            db.clone(),
            trees,
            // sled keeps its log in db/db; an fdatasync on any descriptor of it covers it.
            File::open(db_path.join("db")).ok(),
            record,
            dir.to_path_buf(),
        ));
        let mut store = Store {
            incidents: inc,
            timeline: tl,
            timers: tm,
            outbox: out,
            dead,
            meta,
            adapter: ad,
            schedule: sched,
            alert_groups: grp,
            handoffs: hand,
            overrides: ovr,
            db,
            dir: dir.to_path_buf(),
            wp,
            checkpointer: None,
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            committed: std::sync::atomic::AtomicU64::new(0),
            opened: false,
            recent: std::sync::Mutex::new(std::collections::HashMap::new()),
            last_at: std::sync::Mutex::new(None),
            pause: std::sync::RwLock::new(()),
            outbox_floor: std::sync::atomic::AtomicU64::new(0),
            refresh: Refresh {
                db: db_path.clone(),
                cache_bytes: options.cache_bytes,
                record: refresh_record,
                after: options.refresh_after,
                counts: std::sync::Mutex::new(None),
            },
            _lock: lock,
        };
        // A newer warroom's folder is refused before its journal is applied.
        match store.meta.get("schema")? {
            None => {
                store.meta.insert("schema", SCHEMA)?;
                store.db.flush()?;
            }
            Some(v) if v.as_ref() == SCHEMA => {}
            Some(v) => {
                return Err(corrupt(format!(
                    "unknown schema '{}'",
                    String::from_utf8_lossy(&v)
                )));
            }
        }
        // Changes the journal holds that sled may not: completed before anything reads.
        let applied = store.meta_u64("journal_applied")?.unwrap_or(0);
        let replayed = journal::replay(dir, applied, |ws| {
            store.wp.apply(ws).map_err(|e| e.to_string())
        })
        .map_err(corrupt)?;
        if replayed.records > 0 {
            tracing::info!(
                records = replayed.records,
                torn = replayed.torn,
                "replayed the journal"
            );
        }
        // The per-incident timer index older versions kept is read by nothing and no longer
        // written: it goes, once (not atomically; what a crash leaves of it is still unread).
        if !by_incident.is_empty() {
            by_incident.clear()?;
            tracing::info!("removed the unused timers_by_incident index");
        }
        let counts = store.counts_in_meta()?;
        if let Some(r) = &recorded
            && (counts.0 < r.incidents || counts.1 < r.events)
        {
            return Err(corrupt(format!(
                "it holds {} incident(s) and {} event(s), fewer than the {} and {} its last commit recorded",
                counts.0, counts.1, r.incidents, r.events
            )));
        }
        *store.wp.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        if let Some(floor) = store
            .meta
            .get("outbox_floor")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
        {
            store
                .outbox_floor
                .store(floor, std::sync::atomic::Ordering::SeqCst);
        }
        // What the replay applied is on disk in sled before its records can go.
        store.wp.sync_sled()?;
        match options.durability {
            Durability::Fsync => {
                store.wp.start_journal(replayed.last)?;
                store.wp.checkpoint()?;
            }
            Durability::Flush => {
                // Changes go straight into sled transactions; a journal left by the durable
                // mode is replayed (above) and then goes.
                if replayed.last > applied {
                    store
                        .meta
                        .insert("journal_applied", &replayed.last.to_be_bytes())?;
                    store.wp.sync_sled()?;
                }
                journal::remove_all(dir).map_err(unusable)?;
            }
        }
        store.checkpointer = Some(
            super::commit::spawn_checkpointer(store.wp.clone(), store.stop.clone())
                .map_err(|e| unusable(format!("cannot start the checkpoint thread: {e}")))?,
        );
        // In use from now on: a crash leaves it marked unclean, so the next open verifies.
        store.write_record(None, true)?;
        store.opened = true;
        Ok(store)
    }

    /// The incident and event counts kept in `meta`; a folder from before they were kept gets
    /// them counted once.
    fn counts_in_meta(&self) -> Result<(u64, u64), StoreError> {
        let get = |k: &str| -> Result<Option<u64>, StoreError> {
            Ok(self
                .meta
                .get(k)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes))
        };
        match (get("count_incidents")?, get("count_events")?) {
            (Some(i), Some(e)) => Ok((i, e)),
            _ => {
                let i = self.incidents.len() as u64;
                let e = self.timeline.len() as u64;
                self.meta.insert("count_incidents", &i.to_be_bytes())?;
                self.meta.insert("count_events", &e.to_be_bytes())?;
                self.db.flush()?;
                Ok((i, e))
            }
        }
    }

    fn write_record(
        &self,
        clean: Option<Vec<integrity::FileStat>>,
        sync: bool,
    ) -> Result<(), StoreError> {
        let counts = *self.wp.counts.lock().unwrap_or_else(|p| p.into_inner());
        self.write_counts(counts, clean, sync)
    }

    fn write_counts(
        &self,
        (incidents, events): (u64, u64),
        clean: Option<Vec<integrity::FileStat>>,
        sync: bool,
    ) -> Result<(), StoreError> {
        let rec = integrity::Record {
            incidents,
            events,
            clean,
        };
        integrity::write(&self.wp.record, &rec, sync).map_err(|e| StoreError::Unusable {
            dir: self.dir.clone(),
            reason: format!("cannot write {}: {e}", integrity::RECORD_FILE),
        })
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        meta_u64(&self.meta, key)
    }

    /// A writer's share of `pause`: held for the whole write.
    pub(super) fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.pause.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How many commits have been made since open.
    pub fn committed(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many real data syncs (`fdatasync`) changes have caused since open (checkpoints
    /// apart).
    pub fn syncs(&self) -> u64 {
        self.wp.syncs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once every change made so far is durable, as the configured durability means
    /// it, and applied: the group commit's wait (see `commit`).
    pub fn make_all_durable(&self) -> Result<(), StoreError> {
        self.wp.make_durable()
    }

    /// A storage error, with the damaged-folder message where sled found corrupt data.
    pub fn explain(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::SledCorrupt(detail) => StoreError::Corrupt {
                dir: self.dir.clone(),
                detail,
            },
            e => e,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            dir: self.dir.clone(),
            detail: format!("{what} cannot be read: {e}"),
        })
    }

    /// The time of the latest event ever committed here, if any.
    pub fn last_event_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.wp.settle()?;
        Ok(self
            .meta
            .get("last_at")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes)
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
    }

    /// The id the next opened incident gets.
    pub fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        self.wp.settle()?;
        Ok(IncidentId(match self.meta.get("next_incident")? {
            Some(v) => {
                u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0, 0, 0, 0, 0, 0, 0, 1]))
            }
            None => 1,
        }))
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        Ok(self
            .incident_shared(id)?
            .map(std::sync::Arc::unwrap_or_clone))
    }

    /// The incident, shared with `recent` when it holds it (no copy).
    pub fn incident_shared(
        &self,
        id: IncidentId,
    ) -> Result<Option<std::sync::Arc<Incident>>, StoreError> {
        if let Some(i) = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(Some(i.clone()));
        }
        self.wp.settle()?;
        match self.incidents.get(id.0.to_be_bytes())? {
            Some(v) => Ok(Some(std::sync::Arc::new(
                self.decode(&format!("{id}"), &v)?,
            ))),
            None => Ok(None),
        }
    }

    /// Decodes every record of a tree, in key order.
    pub(super) fn decode_all<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        records: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    ) -> Result<Vec<T>, StoreError> {
        records
            .map(|kv| {
                let (_, v) = kv?;
                self.decode(what, &v)
            })
            .collect()
    }

    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.wp.settle()?;
        self.decode_all("an incident", self.incidents.iter())
    }

    /// The newest open incident, reading backwards from the newest: start-up stays quick
    /// however many incidents the folder holds.
    pub fn latest_open(&self) -> Result<Option<Incident>, StoreError> {
        self.wp.settle()?;
        for kv in self.incidents.iter().rev() {
            let (_, v) = kv?;
            let inc: Incident = self.decode("an incident", &v)?;
            if inc.is_open() {
                return Ok(Some(inc));
            }
        }
        Ok(None)
    }

    /// Incidents opened at or after `since`, newest first. Reads backwards from the newest and
    /// stops at the first older one: ids grow with opening time.
    pub fn incidents_opened_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Incident>, StoreError> {
        self.wp.settle()?;
        let mut out = Vec::new();
        for kv in self.incidents.iter().rev() {
            let (_, v) = kv?;
            let inc: Incident = self.decode("an incident", &v)?;
            if inc.opened_at < since {
                break;
            }
            out.push(inc);
        }
        Ok(out)
    }

    pub fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        self.wp.settle()?;
        self.decode_all(
            "a timeline event",
            self.timeline.scan_prefix(id.0.to_be_bytes()),
        )
    }

    /// A fresh outbox id; ids grow monotonically, so the outbox delivers in order.
    pub fn outbox_id(&self) -> Result<u64, StoreError> {
        let floor = self.outbox_floor.load(std::sync::atomic::Ordering::SeqCst);
        Ok(self.db.generate_id()?.saturating_add(floor))
    }

    /// Applies one decision atomically (not yet durable: see `make_all_durable`).
    pub fn commit(&self, c: Commit) -> Result<(), StoreError> {
        self.commit_all(std::slice::from_ref(&c))
    }

    /// Applies several decisions, in order, as one sled transaction: all of them or none.
    /// A later decision may follow an earlier one on the same incident (its `before` is the
    /// earlier `after`); the timers end as the last one leaves them.
    pub fn commit_all(&self, commits: &[Commit]) -> Result<(), StoreError> {
        let _writing = self.writing();
        if commits.is_empty() {
            return Ok(());
        }
        let prepared: Vec<Prepared> = commits
            .iter()
            .map(prepare)
            .collect::<Result<_, StoreError>>()?;
        // Commits are serialised by the caller; the lock keeps the counts and meta in step.
        let mut counts = self.wp.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut next_counts = *counts;
        let mut next_incident: Option<u64> = None;
        for p in &prepared {
            next_counts.0 = next_counts.0.saturating_add(u64::from(p.new_incident));
            next_counts.1 = next_counts.1.saturating_add(p.events.len() as u64);
            if p.new_incident {
                let after = p.id.0.saturating_add(1);
                next_incident = Some(next_incident.map_or(after, |n| n.max(after)));
            }
        }
        let mut last_at = self.last_at.lock().unwrap_or_else(|p| p.into_inner());
        if last_at.is_none() {
            self.wp.settle()?;
            *last_at = self
                .meta
                .get("last_at")?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(i64::from_be_bytes);
        }
        // Written only when it moves forward.
        let latest = prepared
            .iter()
            .filter_map(|p| p.latest)
            .max()
            .filter(|at| last_at.is_none_or(|known| known < *at));
        self.wp.write_with(Mode::Deferred, |ws| {
            for p in &prepared {
                ws.put(T::Incidents, p.id.0.to_be_bytes(), &p.incident);
                if let Some(k) = &p.group_put {
                    ws.put(T::AlertGroups, k, p.id.0.to_be_bytes());
                }
                if let Some(k) = &p.group_del {
                    // Earlier changes may still wait to be applied (`Mode::Deferred`).
                    self.wp.settle()?;
                    let held = match ws.last(T::AlertGroups, k) {
                        Some(v) => v.map(<[u8]>::to_vec),
                        None => self.alert_groups.get(k)?.map(|v| v.to_vec()),
                    };
                    if held.as_deref() == Some(&p.id.0.to_be_bytes()[..]) {
                        ws.remove(T::AlertGroups, k);
                    }
                }
                for (k, v) in &p.events {
                    ws.put(T::Timeline, k, v);
                }
                if let Some(tk) = &p.consumed {
                    ws.remove(T::Timers, tk);
                }
                for tk in &p.removed {
                    ws.remove(T::Timers, tk);
                }
                for (tk, v) in &p.added {
                    ws.put(T::Timers, tk, v);
                }
                for (k, v) in &p.outbox {
                    ws.put(T::Outbox, k, v);
                }
            }
            if let Some(n) = next_incident
                && self
                    .wp
                    .settle()
                    .and_then(|()| self.meta_u64("next_incident"))?
                    .is_none_or(|k| k < n)
            {
                ws.put(T::Meta, "next_incident", n.to_be_bytes());
            }
            ws.put(T::Meta, "count_incidents", next_counts.0.to_be_bytes());
            ws.put(T::Meta, "count_events", next_counts.1.to_be_bytes());
            if let Some(at) = latest {
                ws.put(T::Meta, "last_at", at.to_be_bytes());
            }
            Ok(())
        })?;
        if latest.is_some() {
            *last_at = latest;
        }
        drop(last_at);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() > RECENT {
            recent.clear();
        }
        for c in commits {
            let shared = match c.shared {
                Some(s) => s.clone(),
                None => std::sync::Arc::new(c.after.clone()),
            };
            recent.insert(c.after.id, shared);
        }
        drop(recent);
        // Not durable yet: `make_all_durable`, called once the caller's lock is released,
        // syncs and applies every change made meanwhile (group commit). Until then the
        // incidents are read from `recent`, and any other read settles first.
        self.committed
            .fetch_add(prepared.len() as u64, std::sync::atomic::Ordering::SeqCst);
        *counts = next_counts;
        drop(counts);
        Ok(())
    }

    /// The open incident that holds alert group `group` of `source`, if any.
    pub fn alert_incident(
        &self,
        source: &str,
        group: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        self.wp.settle()?;
        Ok(self
            .alert_groups
            .get(alert_group_key(source, group))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(|b| IncidentId(u64::from_be_bytes(b))))
    }

    /// The earliest pending timer.
    pub fn next_timer(&self) -> Result<Option<DueTimer>, StoreError> {
        self.wp.settle()?;
        let Some((k, _)) = self.timers.first()? else {
            return Ok(None);
        };
        match decode_timer_key(&k) {
            Some((due, incident, seq)) => Ok(Some(DueTimer {
                due,
                incident,
                seq,
                key: k.to_vec(),
            })),
            None => Err(StoreError::Corrupt {
                dir: self.dir.clone(),
                detail: "a timer key has the wrong length".into(),
            }),
        }
    }

    /// The earliest pending timers due at or before `now`, at most `limit`, in deadline order.
    pub fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        self.wp.settle()?;
        let mut out = Vec::new();
        for kv in self.timers.iter() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = kv?;
            let Some((due, incident, seq)) = decode_timer_key(&k) else {
                return Err(StoreError::Corrupt {
                    dir: self.dir.clone(),
                    detail: "a timer key has the wrong length".into(),
                });
            };
            if due > now {
                break;
            }
            out.push(DueTimer {
                due,
                incident,
                seq,
                key: k.to_vec(),
            });
        }
        Ok(out)
    }

    /// Removes a timer whose incident no longer knows it (it was already consumed).
    pub fn drop_timer(&self, t: &DueTimer) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.wp.write_with(Mode::Durable, |ws| {
            ws.remove(T::Timers, &t.key);
            Ok(())
        })
    }

    /// How many timers are pending. Walks the whole tree: for tests and reports, not hot paths.
    pub fn pending_timers(&self) -> usize {
        let _ = self.wp.settle();
        self.timers.len()
    }

    /// The pending timers of one incident, as the `timers` tree holds them. Walks the whole
    /// tree: for tests and checks, not hot paths.
    pub fn timers_of(&self, id: IncidentId) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.wp.settle()?;
        let mut out = Vec::new();
        for kv in self.timers.iter() {
            let (k, _) = kv?;
            let (due, incident, _) = decode_timer_key(&k).ok_or_else(|| StoreError::Corrupt {
                dir: self.dir.clone(),
                detail: "a timer key is malformed".into(),
            })?;
            if incident == id {
                out.push(due);
            }
        }
        Ok(out)
    }

    /// Messages waiting for delivery, oldest first.
    pub fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
        self.wp.settle()?;
        self.decode_all("an outbox message", self.outbox.iter())
    }

    pub fn outbox_first(&self) -> Result<Option<Outgoing>, StoreError> {
        self.wp.settle()?;
        match self.outbox.first()? {
            Some((_, v)) => Ok(Some(self.decode("an outbox message", &v)?)),
            None => Ok(None),
        }
    }

    /// The message was delivered: it leaves the outbox.
    /// Needs no sync of its own: delivery is at least once, keyed by the outbox id, so a mark
    /// lost in a crash means one more (deduplicated) attempt, never a lost message. The next
    /// commit's sync, or sled's background flush, makes it durable.
    pub fn delivered(&self, id: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.wp.write_with(Mode::Unsynced, |ws| {
            // The highest id ever delivered, so that a backup knows which ids were used (see
            // `snapshot`): first, so that it never lags the removal.
            let high = self.meta_u64("outbox_high")?;
            if high.is_none_or(|h| h < id) {
                ws.put(T::Meta, "outbox_high", id.to_be_bytes());
            }
            ws.remove(T::Outbox, id.to_be_bytes());
            Ok(())
        })
    }

    /// Queues `msgs` (copies, notices, a lost answer) in one batch. Fallback copies go through
    /// `queue_fallback`, which also marks their original.
    pub fn queue(&self, msgs: &[Outgoing]) -> Result<(), StoreError> {
        let _writing = self.writing();
        let rows: Vec<([u8; 8], Vec<u8>)> = msgs
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        self.wp.write_with(Mode::Durable, |ws| {
            for (k, v) in &rows {
                ws.put(T::Outbox, k, v);
            }
            Ok(())
        })
    }

    /// Queues the fallback copies of `original` and marks it as fallen back, in one
    /// transaction, if it still waits; returns false (and queues nothing) if it has left the
    /// outbox meanwhile.
    pub fn queue_fallback(
        &self,
        original: &Outgoing,
        copies: &[Outgoing],
    ) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let key = original.id.to_be_bytes();
        let mut marked = original.clone();
        marked.fallback_done = true;
        let marked = to_json(&marked)?;
        let rows: Vec<([u8; 8], Vec<u8>)> = copies
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        self.wp.write_with(Mode::Durable, |ws| {
            if self.outbox.get(key)?.is_none() {
                return Ok(false);
            }
            ws.put(T::Outbox, key, &marked);
            for (k, v) in &rows {
                ws.put(T::Outbox, k, v);
            }
            Ok(true)
        })
    }

    /// The platform refused the message for good: keep it, out of the delivery queue, and queue
    /// the `notices` about it, in one transaction.
    pub fn dead_letter(
        &self,
        msg: &Outgoing,
        reason: &str,
        notices: &[Outgoing],
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let record = DeadLetter {
            message: msg.clone(),
            reason: reason.to_string(),
        };
        let key = msg.id.to_be_bytes();
        let record = to_json(&record)?;
        let notices: Vec<([u8; 8], Vec<u8>)> = notices
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        self.wp.write_with(Mode::Durable, |ws| {
            ws.remove(T::Outbox, key);
            ws.put(T::Dead, key, &record);
            for (k, v) in &notices {
                ws.put(T::Outbox, k, v);
            }
            Ok(())
        })
    }

    /// Every dead letter, oldest first.
    pub fn dead_letter_list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.wp.settle()?;
        self.decode_all("a dead letter", self.dead.iter())
    }

    /// Puts dead letters back in the outbox (`id` None: all of them). Returns how many.
    pub fn retry_dead(&self, id: Option<u64>) -> Result<usize, StoreError> {
        self.wp.settle()?;
        let _writing = self.writing();
        let letters: Vec<DeadLetter> = match id {
            Some(id) => match self.dead.get(id.to_be_bytes())? {
                Some(v) => vec![self.decode("a dead letter", &v)?],
                None => Vec::new(),
            },
            None => self.dead_letter_list()?,
        };
        let rows: Vec<([u8; 8], Vec<u8>)> = letters
            .iter()
            .map(|d| Ok((d.message.id.to_be_bytes(), to_json(&d.message)?)))
            .collect::<Result<_, StoreError>>()?;
        self.wp.write_with(Mode::Durable, |ws| {
            for (k, v) in &rows {
                ws.remove(T::Dead, k);
                ws.put(T::Outbox, k, v);
            }
            Ok(())
        })?;
        Ok(rows.len())
    }

    /// The earliest scheduled drill: (due, service).
    pub fn drill_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        self.wp.settle()?;
        deadline_first(&self.schedule)
    }

    /// Every scheduled drill: (due, service).
    pub fn drills(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        self.wp.settle()?;
        deadlines(&self.schedule)
    }

    /// Sets (or with `due` None, removes) a service's next drill, and queues `outbox` with it in
    /// one transaction.
    pub fn set_drill(
        &self,
        service: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        self.set_deadline(T::Schedule, service, due, outbox)
    }

    /// Sets (or with `due` None, removes) `name`'s deadline in a tree of deadlines (drills,
    /// shift handoffs), and queues `outbox` with it in one transaction: a deadline is claimed
    /// exactly once, with what it said. Durable when it returns, like a commit.
    pub(super) fn set_deadline(
        &self,
        tree: T,
        name: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let out: Vec<([u8; 8], Vec<u8>)> = outbox
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        self.wp.write_with(Mode::Durable, |ws| {
            for (d, n) in deadlines(self.wp.tree(tree))? {
                if n == name {
                    ws.remove(tree, deadline_key(d, &n));
                }
            }
            if let Some(d) = due {
                ws.put(tree, deadline_key(d, name), name.as_bytes());
            }
            for (k, v) in &out {
                ws.put(T::Outbox, k, v);
            }
            Ok(())
        })?;
        self.wrote();
        Ok(())
    }

    /// Counts a write outside `commit_all` as a commit.
    pub(super) fn wrote(&self) {
        self.committed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A front end's own durable mapping (for example incident → Discord channel id).
    pub fn adapter_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.wp.settle()?;
        Ok(self.adapter.get(key)?.map(|v| v.to_vec()))
    }

    pub fn adapter_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.wp.write_with(Mode::Durable, |ws| {
            ws.put(T::Adapter, key, value);
            Ok(())
        })
    }

    pub fn adapter_remove(&self, key: &str) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.wp.write_with(Mode::Durable, |ws| {
            ws.remove(T::Adapter, key);
            Ok(())
        })
    }

    pub fn dead_letters(&self) -> usize {
        let _ = self.wp.settle();
        self.dead.len()
    }

    /// Everything the store holds, at one instant: writers wait while it reads (see `pause`).
    /// Records that cannot be decoded fail it, naming the damage: a backup never drops data
    /// silently.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let _alone = self.pause.write().unwrap_or_else(|p| p.into_inner());
        // No change can start while this is held; the ones made before are applied.
        self.wp.settle()?;
        let malformed = |what: &str| StoreError::Corrupt {
            dir: self.dir.clone(),
            detail: format!("{what} is malformed"),
        };
        let mut events = Vec::new();
        for kv in self.timeline.iter() {
            let (k, v) = kv?;
            let id = k
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| malformed("a timeline key"))?;
            events.push((IncidentId(id), self.decode("a timeline event", &v)?));
        }
        let mut timers = Vec::new();
        for kv in self.timers.iter() {
            let (k, v) = kv?;
            let (due, incident, seq) =
                decode_timer_key(&k).ok_or_else(|| malformed("a timer key"))?;
            let rec: TimerRecord = self.decode("a timer", &v)?;
            timers.push(TimerLine {
                due,
                incident,
                seq,
                kind: rec.kind,
            });
        }
        let mut adapter = Vec::new();
        for kv in self.adapter.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8(k.to_vec()).map_err(|_| malformed("a front-end key"))?;
            adapter.push((key, v.to_vec()));
        }
        let mut alert_groups = Vec::new();
        for kv in self.alert_groups.iter() {
            let (k, v) = kv?;
            let split = k
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| malformed("an alert group key"))?;
            let (source, group) = (k.get(..split), k.get(split.saturating_add(1)..));
            let (Some(source), Some(group)) = (source, group) else {
                return Err(malformed("an alert group key"));
            };
            let id = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| malformed("an alert group's incident"))?;
            alert_groups.push((
                String::from_utf8_lossy(source).into_owned(),
                String::from_utf8_lossy(group).into_owned(),
                IncidentId(id),
            ));
        }
        let outbox = self.outbox()?;
        let dead = self.dead_letter_list()?;
        // The first id no message has used: above every id waiting, dead or delivered (not
        // sled's id generator, which jumps ahead at each open), and at least the floor.
        let next_outbox_id = outbox
            .iter()
            .map(|o| o.id)
            .chain(dead.iter().map(|d| d.message.id))
            .chain(self.meta_u64("outbox_high")?)
            .max()
            .map_or(0, |m| m.saturating_add(1))
            .max(self.outbox_floor.load(std::sync::atomic::Ordering::SeqCst));
        Ok(Snapshot {
            next_incident: self.next_incident_id()?.0,
            next_outbox_id,
            last_event_at: self.last_event_at()?,
            incidents: self.decode_all("an incident", self.incidents.iter())?,
            events,
            timers,
            outbox,
            dead,
            adapter,
            drills: self.drills()?,
            alert_groups,
            handoffs: self.handoffs()?,
            overrides: self.overrides()?,
        })
    }

    /// What this store already holds, if anything: a restore goes only into an empty store.
    pub fn holds(&self) -> Option<String> {
        let _ = self.wp.settle();
        let trees = [
            ("incident(s)", &self.incidents),
            ("pending timer(s)", &self.timers),
            ("waiting message(s)", &self.outbox),
            ("dead letter(s)", &self.dead),
            ("front-end id(s)", &self.adapter),
            ("drill(s)", &self.schedule),
            ("alert group(s)", &self.alert_groups),
            ("shift handoff(s)", &self.handoffs),
            ("on-call override(s)", &self.overrides),
            ("timeline event(s)", &self.timeline),
        ];
        let held: Vec<String> = trees
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(what, t)| format!("{} {what}", t.len()))
            .collect();
        (!held.is_empty()).then(|| held.join(", "))
    }

    /// Loads a backup into this empty store, in one transaction: all of it or nothing. Refuses
    /// a store that holds anything.
    pub fn restore(&self, s: &Snapshot) -> Result<(), StoreError> {
        let _alone = self.pause.write().unwrap_or_else(|p| p.into_inner());
        // No change can start while this is held; the ones made before are applied, and
        // checkpointed, so that no journal record older than the restore is replayed over it.
        self.wp.settle()?;
        self.wp.checkpoint()?;
        if let Some(held) = self.holds() {
            return Err(StoreError::NotEmpty {
                target: self.dir.display().to_string(),
                holds: held,
            });
        }
        let rows = |pairs: Vec<(Vec<u8>, Vec<u8>)>| pairs;
        let incidents = rows(
            s.incidents
                .iter()
                .map(|i| Ok((i.id.0.to_be_bytes().to_vec(), to_json(i)?)))
                .collect::<Result<_, StoreError>>()?,
        );
        let events = rows(
            s.events
                .iter()
                .map(|(id, e)| Ok((event_key(*id, e.seq), to_json(e)?)))
                .collect::<Result<_, StoreError>>()?,
        );
        let timers: Vec<(Vec<u8>, Vec<u8>)> = s
            .timers
            .iter()
            .map(|t| {
                let rec = TimerRecord {
                    incident: t.incident,
                    seq: t.seq,
                    kind: t.kind.clone(),
                };
                Ok((timer_key(t.due, t.incident, t.seq), to_json(&rec)?))
            })
            .collect::<Result<_, StoreError>>()?;
        let outbox = rows(
            s.outbox
                .iter()
                .map(|o| Ok((o.id.to_be_bytes().to_vec(), to_json(o)?)))
                .collect::<Result<_, StoreError>>()?,
        );
        let dead = rows(
            s.dead
                .iter()
                .map(|d| Ok((d.message.id.to_be_bytes().to_vec(), to_json(d)?)))
                .collect::<Result<_, StoreError>>()?,
        );
        let groups: Vec<(Vec<u8>, [u8; 8])> = s
            .alert_groups
            .iter()
            .map(|(src, g, id)| (alert_group_key(src, g), id.0.to_be_bytes()))
            .collect();
        let overrides: Vec<([u8; 8], Vec<u8>)> = s
            .overrides
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        let counts = (s.incidents.len() as u64, s.events.len() as u64);
        let last_at = s.last_event_at.map(|t| t.timestamp_millis());
        let result: Result<(), TransactionError<()>> = (
            &self.incidents,
            &self.timeline,
            &self.timers,
            &self.outbox,
            &self.dead,
            &self.adapter,
            &self.schedule,
            &self.alert_groups,
            &self.handoffs,
            &self.overrides,
            &self.meta,
        )
            .transaction(|(inc, tl, tm, out, dl, ad, sched, grp, hand, ovr, meta)| {
                for (k, v) in &incidents {
                    inc.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &events {
                    tl.insert(k.as_slice(), v.as_slice())?;
                }
                for (tk, v) in &timers {
                    tm.insert(tk.as_slice(), v.as_slice())?;
                }
                for (k, v) in &outbox {
                    out.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &dead {
                    dl.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &s.adapter {
                    ad.insert(k.as_bytes(), v.as_slice())?;
                }
                for (due, service) in &s.drills {
                    sched.insert(deadline_key(*due, service), service.as_bytes())?;
                }
                for (k, v) in &groups {
                    grp.insert(k.as_slice(), v)?;
                }
                for (due, role) in &s.handoffs {
                    hand.insert(deadline_key(*due, role), role.as_bytes())?;
                }
                for (k, v) in &overrides {
                    ovr.insert(k, v.as_slice())?;
                }
                meta.insert("next_incident", &s.next_incident.to_be_bytes())?;
                meta.insert("outbox_floor", &s.next_outbox_id.to_be_bytes())?;
                meta.insert("count_incidents", &counts.0.to_be_bytes())?;
                meta.insert("count_events", &counts.1.to_be_bytes())?;
                if let Some(at) = last_at {
                    meta.insert("last_at", &at.to_be_bytes())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        result?;
        self.outbox_floor
            .store(s.next_outbox_id, std::sync::atomic::Ordering::SeqCst);
        *self.last_at.lock().unwrap_or_else(|p| p.into_inner()) = last_at;
        *self.wp.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.committed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Not journalled (a backup can be large): sled itself is made durable, and the
        // checkpoint marks every earlier record as applied.
        self.wp.sync_sled()?;
        drop(_alone);
        self.wp.checkpoint()
    }
}

impl Drop for Store {
    /// A clean close: everything flushed, then the files recorded, so that the next open can
    /// trust the folder without checking a copy.
    fn drop(&mut self) {
        super::commit::stop_checkpointer(&self.wp, &self.stop, self.checkpointer.take());
        if !self.opened {
            return;
        }
        if let Err(e) = self.wp.checkpoint() {
            tracing::error!(error = %e, "cannot checkpoint the journal at close");
            return;
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "cannot flush the store at close");
            return;
        }
        if self.committed.load(std::sync::atomic::Ordering::SeqCst) >= self.refresh.after {
            // The record stays "unclean" (as written at open) until `Refresh` has reopened sled.
            *self
                .refresh
                .counts
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                Some(*self.wp.counts.lock().unwrap_or_else(|p| p.into_inner()));
            return;
        }
        match integrity::stats(&self.dir.join("db")) {
            Ok(files) => {
                if let Err(e) = self.write_record(Some(files), true) {
                    tracing::error!(error = %e, "cannot record a clean close");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot record a clean close"),
        }
    }
}
