//! The durable store: one sled database in one data folder.
//!
//! Trees: `incidents` (id → incident), `timeline` (id ‖ seq → event), `timers` (due ‖ id ‖ seq →
//! timer, so the first key is the next deadline), `timers_by_incident` (id ‖ seq → timers key),
//! `outbox` (outbox id → message waiting for delivery), `dead_letters`, `adapter` (front ends'
//! own mappings, such as Discord channel ids), and `meta`.
//! Every change of a command or fired timer is one multi-tree transaction, flushed before the
//! caller replies. A fired timer leaves `timers` in the same transaction that puts its messages
//! in `outbox`, so it is claimed exactly once and its messages survive a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::delivery::Destination;
use crate::domain::{
    Button, Event, Incident, IncidentId, MessageKind, NudgeId, PendingTimer, Target, TimerKind,
    TimerSeq,
};

const SCHEMA: &[u8] = b"warroom-1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data folder {dir} is in use by another warroom process ({holder}); stop that process first, or give this one another folder with --data"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error(
        "the data folder {dir} cannot be used: {reason}; check that the path is a folder this user may write to"
    )]
    Unusable { dir: PathBuf, reason: String },
    #[error(
        "the data folder {dir} is damaged ({detail}); nothing was changed. Move it aside (mv {dir} {dir}.damaged) to start afresh, or restore it from a backup"
    )]
    Corrupt { dir: PathBuf, detail: String },
    #[error("storage error: {0}")]
    Sled(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

impl From<TransactionError<()>> for StoreError {
    fn from(e: TransactionError<()>) -> Self {
        match e {
            // Our transactions never abort on purpose.
            TransactionError::Abort(()) => StoreError::Sled("transaction aborted".into()),
            TransactionError::Storage(e) => e.into(),
        }
    }
}

/// A message waiting in the outbox. Its id is the idempotency key for delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub id: u64,
    pub incident: IncidentId,
    pub channel: String,
    pub at: DateTime<Utc>,
    pub kind: MessageKind,
    pub text: String,
    pub mentions: Vec<Target>,
    pub buttons: Vec<Button>,
    pub nudge: Option<NudgeId>,
    /// Where it goes: the incident's channel unless said otherwise.
    #[serde(default)]
    pub to: Destination,
    /// For a copy or a notice: the outbox id of the message it is about.
    #[serde(default)]
    pub about: Option<u64>,
    /// Fallback copies of it were queued already (its channel was unreachable).
    #[serde(default)]
    pub fallback_done: bool,
}

impl Outgoing {
    /// An engine message, addressed to a channel, with its outbox id.
    pub fn new(
        id: u64,
        incident: IncidentId,
        channel: &str,
        m: crate::domain::Message,
    ) -> Outgoing {
        Outgoing {
            id,
            incident,
            channel: channel.to_string(),
            at: m.at,
            kind: m.kind,
            text: m.text,
            mentions: m.mentions,
            buttons: m.buttons,
            nudge: m.nudge,
            to: Destination::Incident,
            about: None,
            fallback_done: false,
        }
    }

    /// Its delivery lane (see `delivery`).
    pub fn lane(&self) -> String {
        crate::delivery::lane(self.incident, &self.to)
    }
}

/// A message the platform refused for good, kept out of the delivery queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub message: Outgoing,
    pub reason: String,
}

/// A pending timer as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct DueTimer {
    pub due: DateTime<Utc>,
    pub incident: IncidentId,
    pub seq: TimerSeq,
    key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct TimerRecord {
    incident: IncidentId,
    seq: TimerSeq,
    kind: TimerKind,
}

/// One command's or timer's durable effect.
pub struct Commit<'a> {
    pub before: Option<&'a Incident>,
    pub after: &'a Incident,
    pub events: &'a [Event],
    pub outbox: &'a [Outgoing],
    /// The fired timer this commit consumes.
    pub consumed: Option<&'a DueTimer>,
}

pub struct Store {
    db: sled::Db,
    incidents: sled::Tree,
    timeline: sled::Tree,
    timers: sled::Tree,
    by_incident: sled::Tree,
    outbox: sled::Tree,
    dead: sled::Tree,
    meta: sled::Tree,
    adapter: sled::Tree,
    schedule: sled::Tree,
    dir: PathBuf,
    _lock: File,
}

fn millis_key(t: DateTime<Utc>) -> [u8; 8] {
    // Flip the sign bit so that negative times sort before positive ones.
    ((t.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

fn timer_key(due: DateTime<Utc>, id: IncidentId, seq: TimerSeq) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&millis_key(due));
    k.extend_from_slice(&id.0.to_be_bytes());
    k.extend_from_slice(&seq.0.to_be_bytes());
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

// TODO(hardening): the totality lint; the length is checked first, so the slices are in range.
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

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    // Our records are meant to serialise (maps keyed by enums use string keys), but a record
    // that cannot is a refused write, never a crash.
    serde_json::to_vec(v)
        .map_err(|e| StoreError::Sled(format!("a record cannot be written as JSON: {e}")))
}

impl Store {
    /// Opens (or creates) the data folder, refusing it if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let unusable = |reason: String| StoreError::Unusable {
            dir: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| unusable(e.to_string()))?;
        let lock_path = dir.join("warroom.lock");
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
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = write!(lock, "{}", std::process::id());
        let _ = lock.flush();

        let db_path = dir.join("db");
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail,
        };
        // sled can panic on some malformed files instead of returning an error; a damaged
        // folder must give a clear message, not a crash.
        let open = || std::panic::catch_unwind(|| sled::Config::new().path(&db_path).open());
        let mut opened = open();
        // We hold warroom.lock, so no other warroom process has the folder; if sled's own lock
        // is still taken, a store this process just dropped is still shutting its flusher
        // thread down. Give it a moment.
        for _ in 0..100 {
            match &opened {
                Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    opened = open();
                }
                _ => break,
            }
        }
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Corruption { .. })) => {
                return Err(corrupt("sled found corrupt data".into()));
            }
            Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(corrupt(e.to_string()));
            }
            Ok(Err(sled::Error::Unsupported(e))) => return Err(corrupt(e)),
            Ok(Err(e)) => return Err(unusable(e.to_string())),
            Err(_) => return Err(corrupt("the database files could not be read".into())),
        };
        let tree = |name: &str| db.open_tree(name);
        let store = Store {
            incidents: tree("incidents")?,
            timeline: tree("timeline")?,
            timers: tree("timers")?,
            by_incident: tree("timers_by_incident")?,
            outbox: tree("outbox")?,
            dead: tree("dead_letters")?,
            meta: tree("meta")?,
            adapter: tree("adapter")?,
            schedule: tree("drill_schedule")?,
            db,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
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
        Ok(store)
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
        Ok(self
            .meta
            .get("last_at")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes)
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
    }

    /// The id the next opened incident gets.
    pub fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        Ok(IncidentId(match self.meta.get("next_incident")? {
            Some(v) => {
                u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0, 0, 0, 0, 0, 0, 0, 1]))
            }
            None => 1,
        }))
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        match self.incidents.get(id.0.to_be_bytes())? {
            Some(v) => Ok(Some(self.decode(&format!("{id}"), &v)?)),
            None => Ok(None),
        }
    }

    /// Decodes every record of a tree, in key order.
    fn decode_all<T: for<'de> Deserialize<'de>>(
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
        self.decode_all("an incident", self.incidents.iter())
    }

    /// The newest open incident, reading backwards from the newest: start-up stays quick
    /// however many incidents the folder holds.
    pub fn latest_open(&self) -> Result<Option<Incident>, StoreError> {
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
        self.decode_all(
            "a timeline event",
            self.timeline.scan_prefix(id.0.to_be_bytes()),
        )
    }

    /// A fresh outbox id; ids grow monotonically, so the outbox delivers in order.
    pub fn outbox_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Applies one decision atomically and flushes it to disk.
    pub fn commit(&self, c: Commit) -> Result<(), StoreError> {
        let id = c.after.id;
        let old: &[PendingTimer] = c.before.map_or(&[], |b| b.timers.as_slice());
        let removed: Vec<&PendingTimer> = old
            .iter()
            .filter(|t| !c.after.timers.iter().any(|n| n.seq == t.seq))
            .collect();
        let added: Vec<&PendingTimer> = c
            .after
            .timers
            .iter()
            .filter(|t| !old.iter().any(|o| o.seq == t.seq))
            .collect();
        let incident_bytes = to_json(c.after)?;
        let events: Vec<(Vec<u8>, Vec<u8>)> = c
            .events
            .iter()
            .map(|e| Ok((event_key(id, e.seq), to_json(e)?)))
            .collect::<Result<_, StoreError>>()?;
        let added: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = added
            .iter()
            .map(|t| {
                let rec = TimerRecord {
                    incident: id,
                    seq: t.seq,
                    kind: t.kind.clone(),
                };
                Ok((
                    timer_key(t.due, id, t.seq),
                    index_key(id, t.seq),
                    to_json(&rec)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let removed: Vec<(Vec<u8>, Vec<u8>)> = removed
            .iter()
            .map(|t| (timer_key(t.due, id, t.seq), index_key(id, t.seq)))
            .collect();
        let outbox: Vec<([u8; 8], Vec<u8>)> = c
            .outbox
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        let new_incident = c.before.is_none();
        let latest = c.events.iter().map(|e| e.at.timestamp_millis()).max();
        let result: Result<(), TransactionError<()>> = (
            &self.incidents,
            &self.timeline,
            &self.timers,
            &self.by_incident,
            &self.outbox,
            &self.meta,
        )
            .transaction(|(inc, tl, timers, idx, out, meta)| {
                inc.insert(&id.0.to_be_bytes(), incident_bytes.as_slice())?;
                for (k, v) in &events {
                    tl.insert(k.as_slice(), v.as_slice())?;
                }
                if let Some(t) = c.consumed {
                    timers.remove(t.key.as_slice())?;
                    idx.remove(index_key(t.incident, t.seq))?;
                }
                for (tk, ik) in &removed {
                    timers.remove(tk.as_slice())?;
                    idx.remove(ik.as_slice())?;
                }
                for (tk, ik, v) in &added {
                    timers.insert(tk.as_slice(), v.as_slice())?;
                    idx.insert(ik.as_slice(), tk.as_slice())?;
                }
                for (k, v) in &outbox {
                    out.insert(k, v.as_slice())?;
                }
                if new_incident {
                    meta.insert("next_incident", &id.0.saturating_add(1).to_be_bytes())?;
                }
                if let Some(at) = latest {
                    let known = meta
                        .get("last_at")?
                        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                        .map(i64::from_be_bytes);
                    if known.is_none_or(|k| k < at) {
                        meta.insert("last_at", &at.to_be_bytes())?;
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        result?;
        self.db.flush()?;
        Ok(())
    }

    /// The earliest pending timer.
    pub fn next_timer(&self) -> Result<Option<DueTimer>, StoreError> {
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

    /// Removes a timer whose incident no longer knows it (it was already consumed).
    pub fn drop_timer(&self, t: &DueTimer) -> Result<(), StoreError> {
        self.timers.remove(&t.key)?;
        self.by_incident.remove(index_key(t.incident, t.seq))?;
        self.db.flush()?;
        Ok(())
    }

    /// How many timers are pending. Walks the whole tree: for tests and reports, not hot paths.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The pending timers of one incident, through the by-incident index.
    pub fn timers_of(&self, id: IncidentId) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.by_incident
            .scan_prefix(id.0.to_be_bytes())
            .map(|kv| {
                let (_, tk) = kv?;
                decode_timer_key(&tk)
                    .map(|(due, _, _)| due)
                    .ok_or_else(|| StoreError::Corrupt {
                        dir: self.dir.clone(),
                        detail: "a timer index entry is malformed".into(),
                    })
            })
            .collect()
    }

    /// Messages waiting for delivery, oldest first.
    pub fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
        self.decode_all("an outbox message", self.outbox.iter())
    }

    pub fn outbox_first(&self) -> Result<Option<Outgoing>, StoreError> {
        match self.outbox.first()? {
            Some((_, v)) => Ok(Some(self.decode("an outbox message", &v)?)),
            None => Ok(None),
        }
    }

    /// The message was delivered: it leaves the outbox.
    pub fn delivered(&self, id: u64) -> Result<(), StoreError> {
        self.outbox.remove(id.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Queues `msgs` (copies, notices) in one transaction; with `replacing`, that outbox record
    /// is rewritten too (to mark its fallback copies queued).
    pub fn queue(&self, msgs: &[Outgoing], replacing: Option<&Outgoing>) -> Result<(), StoreError> {
        let mut rows: Vec<([u8; 8], Vec<u8>)> = msgs
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        if let Some(r) = replacing {
            rows.push((r.id.to_be_bytes(), to_json(r)?));
        }
        let mut batch = sled::Batch::default();
        for (k, v) in &rows {
            batch.insert(k, v.as_slice());
        }
        self.outbox.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// The platform refused the message for good: keep it, out of the delivery queue, and queue
    /// the `notices` about it, in one transaction.
    pub fn dead_letter(
        &self,
        msg: &Outgoing,
        reason: &str,
        notices: &[Outgoing],
    ) -> Result<(), StoreError> {
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
        (&self.outbox, &self.dead)
            .transaction(|(out, dead)| {
                out.remove(&key)?;
                dead.insert(&key, record.as_slice())?;
                for (k, v) in &notices {
                    out.insert(k, v.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(StoreError::from)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every dead letter, oldest first.
    pub fn dead_letter_list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.decode_all("a dead letter", self.dead.iter())
    }

    /// Puts dead letters back in the outbox (`id` None: all of them). Returns how many.
    pub fn retry_dead(&self, id: Option<u64>) -> Result<usize, StoreError> {
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
        (&self.outbox, &self.dead)
            .transaction(|(out, dead)| {
                for (k, v) in &rows {
                    dead.remove(k)?;
                    out.insert(k, v.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(StoreError::from)?;
        self.db.flush()?;
        Ok(rows.len())
    }

    /// The earliest scheduled drill: (due, service).
    pub fn drill_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        Ok(self.schedule.first()?.and_then(|(k, v)| {
            let ms = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
            let due = Utc.timestamp_millis_opt(ms as i64).single()?;
            Some((due, String::from_utf8_lossy(&v).into_owned()))
        }))
    }

    /// Every scheduled drill: (due, service).
    pub fn drills(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.schedule.iter() {
            let (k, v) = kv?;
            if let Some(ms) = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                && let Some(due) = Utc.timestamp_millis_opt((ms ^ (1 << 63)) as i64).single()
            {
                out.push((due, String::from_utf8_lossy(&v).into_owned()));
            }
        }
        Ok(out)
    }

    fn drill_key(due: DateTime<Utc>, service: &str) -> Vec<u8> {
        let mut k = millis_key(due).to_vec();
        k.extend_from_slice(service.as_bytes());
        k
    }

    /// Sets (or with `due` None, removes) a service's next drill, and queues `outbox` with it in
    /// one transaction.
    pub fn set_drill(
        &self,
        service: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        let old: Vec<Vec<u8>> = self
            .drills()?
            .into_iter()
            .filter(|(_, s)| s == service)
            .map(|(d, s)| Self::drill_key(d, &s))
            .collect();
        let new = due.map(|d| Self::drill_key(d, service));
        let out: Vec<([u8; 8], Vec<u8>)> = outbox
            .iter()
            .map(|o| Ok((o.id.to_be_bytes(), to_json(o)?)))
            .collect::<Result<_, StoreError>>()?;
        (&self.schedule, &self.outbox)
            .transaction(|(sched, ob)| {
                for k in &old {
                    sched.remove(k.as_slice())?;
                }
                if let Some(k) = &new {
                    sched.insert(k.as_slice(), service.as_bytes())?;
                }
                for (k, v) in &out {
                    ob.insert(k, v.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(StoreError::from)?;
        self.db.flush()?;
        Ok(())
    }

    /// A front end's own durable mapping (for example incident → Discord channel id).
    pub fn adapter_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.adapter.get(key)?.map(|v| v.to_vec()))
    }

    pub fn adapter_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.adapter.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn adapter_remove(&self, key: &str) -> Result<(), StoreError> {
        self.adapter.remove(key)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn dead_letters(&self) -> usize {
        self.dead.len()
    }
}
