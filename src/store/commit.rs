//! The sled store's one write path: every change goes through [`WritePath::write_with`], one
//! writer at a time, as a journal record and then plain sled inserts (durable mode), or as one
//! sled transaction (`store.durability = "flush"`); and the checkpoints that keep the journal
//! short.
//!
//! The durable mode (`Durability::Fsync`), per change:
//! 1. the change's [`WriteSet`] is built under the writer lock, reading the store as the
//!    changes before it left it;
//! 2. it is appended to the journal (`journal.rs`) and, for a change that must be durable
//!    before its reply, the journal is `fdatasync`ed: one write and one sync, whatever the
//!    change touches;
//! 3. only then is it applied to sled, without a sled transaction (sled's transactions write
//!    and sync their own log buffer each time, which cost more than the rest of a command).
//!
//! Group commit comes from the caller: `App` decides every command queued while a round was
//! being written, and commits them as one change.
//!
//! A checkpoint (every second, and when a segment passes `journal::ROTATE_BYTES`) records the
//! last record applied in `meta` "journal_applied", flushes sled and syncs its log, rewrites the
//! commit record (`integrity`) with the counts sled now holds durably, and deletes the journal
//! segments that are wholly behind it.
//!
//! A failed sync or a failed apply leaves the process unsure of what is on disk: the writer
//! refuses every later change (`StoreError::Unconfirmed`) until a restart, whose replay sorts it
//! out.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::transaction::ConflictableTransactionError;

use super::StoreError;
use super::integrity;
use super::journal::{self, Journal, T, WriteSet};

/// How often the checkpointer runs while the journal has something new.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer's own state, under its lock.
pub struct Writer {
    /// The journal, in the durable mode.
    pub journal: Option<Journal>,
    /// Why writes are refused, once a sync or an apply failed.
    broken: Option<String>,
    /// The last record a checkpoint recorded as applied.
    checkpointed: u64,
}

/// The write path of one open sled store, shared with its checkpoint thread.
pub struct WritePath {
    pub writer: Mutex<Writer>,
    pub db: sled::Db,
    trees: [sled::Tree; 12],
    /// sled's log file, for `fdatasync`.
    log: Option<File>,
    /// The commit record (`integrity`).
    pub record: File,
    /// Incidents and timeline events committed, as in `meta`.
    pub counts: Mutex<(u64, u64)>,
    pub dir: PathBuf,
    /// Syncs issued for changes (a counting hook for tests and the bench); checkpoints apart.
    pub syncs: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Asks the checkpoint thread to run now.
    nudge: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WritePath {
    pub fn new(
        db: sled::Db,
        trees: [sled::Tree; 12],
        log: Option<File>,
        record: File,
        dir: PathBuf,
    ) -> WritePath {
        WritePath {
            writer: Mutex::new(Writer {
                journal: None,
                broken: None,
                checkpointed: 0,
            }),
            db,
            trees,
            log,
            record,
            counts: Mutex::new((0, 0)),
            dir,
            syncs: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            nudge: Mutex::new(None),
        }
    }

    pub fn tree(&self, t: T) -> &sled::Tree {
        let [inc, tl, tm, idx, out, dead, meta, ad, sched, grp, hand, ovr] = &self.trees;
        match t {
            T::Incidents => inc,
            T::Timeline => tl,
            T::Timers => tm,
            T::ByIncident => idx,
            T::Outbox => out,
            T::Dead => dead,
            T::Meta => meta,
            T::Adapter => ad,
            T::Schedule => sched,
            T::AlertGroups => grp,
            T::Handoffs => hand,
            T::Overrides => ovr,
        }
    }

    fn unconfirmed(&self, detail: String) -> StoreError {
        StoreError::Unconfirmed {
            dir: self.dir.clone(),
            detail,
        }
    }

    /// Starts journalling (the durable mode) after record `last`.
    pub fn start_journal(&self, last: u64) -> Result<(), StoreError> {
        let j = Journal::start(&self.dir, last).map_err(|e| StoreError::Unusable {
            dir: self.dir.clone(),
            reason: format!("cannot start the journal in {}: {e}", journal::DIR),
        })?;
        let mut w = lock(&self.writer);
        w.journal = Some(j);
        w.checkpointed = 0;
        Ok(())
    }

    pub fn set_nudge(&self, tx: std::sync::mpsc::Sender<()>) {
        *lock(&self.nudge) = Some(tx);
    }

    /// Builds a change with `build` (which may read the store: no other change runs meanwhile)
    /// and saves it: journalled and applied, and with `durable`, synced before it returns.
    pub fn write_with<R>(
        &self,
        durable: bool,
        build: impl FnOnce(&mut WriteSet) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut w = lock(&self.writer);
        if let Some(why) = &w.broken {
            return Err(self.unconfirmed(why.clone()));
        }
        let mut ws = WriteSet::default();
        let out = build(&mut ws)?;
        if ws.is_empty() {
            return Ok(out);
        }
        let Some(j) = w.journal.as_mut() else {
            self.apply_atomically(&ws)?;
            if durable {
                self.db.flush()?;
            }
            return Ok(out);
        };
        // Nothing was written if the append failed: the change is refused whole.
        j.append(&ws).map_err(|e| StoreError::Unusable {
            dir: self.dir.clone(),
            reason: e,
        })?;
        let synced = if durable { j.sync() } else { Ok(()) };
        let ask = j.len() > journal::ROTATE_BYTES && !j.asked;
        if ask {
            j.asked = true;
        }
        if let Err(e) = synced {
            w.broken = Some(e.clone());
            return Err(self.unconfirmed(e));
        }
        if durable {
            self.syncs.fetch_add(1, Ordering::SeqCst);
        }
        if let Err(e) = self.apply(&ws) {
            let e = format!("the change is in the journal but sled refused it ({e})");
            w.broken = Some(e.clone());
            return Err(self.unconfirmed(e));
        }
        drop(w);
        if ask && let Some(tx) = lock(&self.nudge).as_ref() {
            let _ = tx.send(());
        }
        Ok(out)
    }

    /// Applies a set with plain inserts: atomic only together with the journal.
    pub fn apply(&self, ws: &WriteSet) -> Result<(), StoreError> {
        for (t, k, v) in &ws.ops {
            let tree = self.tree(*t);
            match v {
                Some(v) => {
                    tree.insert(k.as_slice(), v.as_slice())?;
                }
                None => {
                    tree.remove(k.as_slice())?;
                }
            }
        }
        Ok(())
    }

    /// Applies a set as one sled transaction over the trees it touches.
    fn apply_atomically(&self, ws: &WriteSet) -> Result<(), StoreError> {
        use sled::Transactional as _;
        let mut touched: Vec<T> = Vec::new();
        for (t, _, _) in &ws.ops {
            if !touched.contains(t) {
                touched.push(*t);
            }
        }
        let trees: Vec<&sled::Tree> = touched.iter().map(|t| self.tree(*t)).collect();
        trees
            .as_slice()
            .transaction(|views| {
                for (t, k, v) in &ws.ops {
                    let view = touched
                        .iter()
                        .position(|x| x == t)
                        .and_then(|i| views.get(i))
                        .ok_or(ConflictableTransactionError::Abort(()))?;
                    match v {
                        Some(v) => {
                            view.insert(k.as_slice(), v.as_slice())?;
                        }
                        None => {
                            view.remove(k.as_slice())?;
                        }
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(StoreError::from)
    }

    fn write_counts(&self, (incidents, events): (u64, u64)) -> Result<(), StoreError> {
        let rec = integrity::Record {
            incidents,
            events,
            clean: None,
        };
        integrity::write(&self.record, &rec, false).map_err(|e| StoreError::Unusable {
            dir: self.dir.clone(),
            reason: format!("cannot write {}: {e}", integrity::RECORD_FILE),
        })
    }

    /// Flushes sled and syncs its log file: everything applied so far is on disk.
    pub fn sync_sled(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(log) = &self.log {
            log.sync_data()
                .map_err(|e| StoreError::Sled(format!("cannot sync the database to disk: {e}")))?;
        }
        Ok(())
    }

    /// A checkpoint: sled made durable up to the latest record, the commit record brought up
    /// to date, and the segments behind it deleted; a no-op when nothing was journalled since.
    /// Without a journal (`flush` mode): sled flushed, then the commit record rewritten.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let (upto, closed) = {
            let mut w = lock(&self.writer);
            if w.broken.is_some() {
                return Ok(());
            }
            let checkpointed = w.checkpointed;
            let Some(j) = w.journal.as_mut() else {
                drop(w);
                let counts = *lock(&self.counts);
                self.db.flush()?;
                return self.write_counts(counts);
            };
            let upto = j.last();
            if upto == checkpointed && !j.has_closed() {
                return Ok(());
            }
            // Inserted after every change up to `upto` was applied, so sled never holds the
            // mark without them.
            self.tree(T::Meta)
                .insert("journal_applied", &upto.to_be_bytes())?;
            let closed = if j.len() > journal::ROTATE_BYTES || j.has_closed() {
                j.rotate().map_err(|e| StoreError::Unusable {
                    dir: self.dir.clone(),
                    reason: e,
                })?
            } else {
                Vec::new()
            };
            (upto, closed)
        };
        // Counted after the lock: every change they include is already applied, so the flush
        // below covers it, and the record never claims more than sled holds.
        let counts = *lock(&self.counts);
        let done = self
            .sync_sled()
            .and_then(|()| self.write_counts(counts))
            .and_then(|()| {
                Journal::delete(&self.dir, &closed).map_err(|e| StoreError::Unusable {
                    dir: self.dir.clone(),
                    reason: e,
                })
            });
        let mut w = lock(&self.writer);
        match done {
            Ok(()) => {
                w.checkpointed = upto;
                self.checkpoints.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                if let Some(j) = w.journal.as_mut() {
                    j.keep(closed);
                }
                Err(e)
            }
        }
    }
}

/// The checkpoint thread: runs `checkpoint` every `CHECKPOINT_EVERY`, or when nudged, until
/// `stop` is set and it is nudged once more.
pub fn spawn_checkpointer(
    wp: std::sync::Arc<WritePath>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    wp.set_nudge(tx);
    std::thread::Builder::new()
        .name("warroom-checkpoint".into())
        .spawn(move || {
            loop {
                let got = rx.recv_timeout(CHECKPOINT_EVERY);
                if stop.load(Ordering::SeqCst)
                    || matches!(got, Err(std::sync::mpsc::RecvTimeoutError::Disconnected))
                {
                    break;
                }
                if let Err(e) = wp.checkpoint() {
                    tracing::error!(error = %e, "journal checkpoint failed; retrying");
                }
            }
        })
}

/// Stops the checkpoint thread.
pub fn stop_checkpointer(
    wp: &WritePath,
    stop: &std::sync::atomic::AtomicBool,
    thread: Option<std::thread::JoinHandle<()>>,
) {
    stop.store(true, Ordering::SeqCst);
    if let Some(tx) = lock(&wp.nudge).take() {
        let _ = tx.send(());
    }
    if let Some(t) = thread {
        let _ = t.join();
    }
}
