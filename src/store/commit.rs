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

/// How many bytes of synced records may wait for sled before `make_durable` applies them
/// itself rather than leaving them to the next read or checkpoint: a bound on the memory they
/// hold and on the work a read may find waiting.
pub const APPLY_AT: usize = 4 << 20;

/// Incidents and timeline events, as meta counts them.
type Counts = (u64, u64);

/// How a change waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Synced and applied before `write_with` returns.
    Durable,
    /// Journalled, then synced and applied by the next `settle` (group commit: `App` commits a
    /// round under its decision lock and settles after releasing it, so the next round is
    /// decided while this one waits for the disk).
    Deferred,
    /// Applied at once without a sync of its own; durable with the next sync. Only for changes
    /// that are safe to lose or to find half-applied after a power cut (a delivery mark).
    Unsynced,
}

/// The writer's own state, under its lock.
pub struct Writer {
    /// The journal, in the durable mode.
    pub journal: Option<Journal>,
}

/// Records journalled but not yet applied.
#[derive(Default)]
struct Queue {
    records: std::collections::VecDeque<(u64, WriteSet)>,
    /// The keys and values they hold, in bytes (see `APPLY_AT`).
    bytes: usize,
}

/// The write path of one open sled store, shared with its checkpoint thread.
pub struct WritePath {
    pub writer: Mutex<Writer>,
    /// Records journalled but not yet applied, in order.
    queue: Mutex<Queue>,
    appended: AtomicU64,
    /// The current journal segment, for `fdatasync` (held while syncing), and the last
    /// record known on disk.
    sync: Mutex<Option<File>>,
    synced: AtomicU64,
    /// Held while applying, so that records reach sled in order.
    applying: Mutex<()>,
    /// The last record applied to sled: every record up to it is.
    applied: AtomicU64,
    /// The last record a checkpoint recorded as applied (meta "journal_applied").
    checkpointed: AtomicU64,
    /// Why changes are refused, once a sync or an apply failed.
    broken: Mutex<Option<String>>,
    /// Without a journal: a change was applied that no sled flush has covered yet.
    dirty: std::sync::atomic::AtomicBool,
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
    /// Asks the checkpoint thread to run now.
    nudge: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// The tree of `trees` (opened in `T::ALL` order, as `open_trees` does) that `t` names.
fn tree_in(trees: &[sled::Tree; 12], t: T) -> &sled::Tree {
    let [inc, tl, tm, idx, out, dead, meta, ad, sched, grp, hand, ovr] = trees;
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

/// Opens every tree a write set can touch, in `T::ALL` order.
pub fn open_trees(db: &sled::Db) -> Result<[sled::Tree; 12], sled::Error> {
    let [a, b, c, d, e, f, g, h, i, j, k, l] = T::ALL.map(|t| db.open_tree(t.name()));
    Ok([a?, b?, c?, d?, e?, f?, g?, h?, i?, j?, k?, l?])
}

/// Applies a set to `trees` with plain inserts and removes, in order: atomic only together with
/// the journal (the store's own path, and `warroom doctor` completing a copy).
pub fn apply_plain(trees: &[sled::Tree; 12], ws: &WriteSet) -> Result<(), StoreError> {
    for (t, k, v) in &ws.ops {
        let tree = tree_in(trees, *t);
        match v {
            // The highest id ever delivered only grows: replaying an older delivery mark
            // (after a newer one that reached sled without its record) must not lower it.
            Some(v) if *t == T::Meta && k.as_slice() == b"outbox_high" => {
                let old = super::sled::meta_u64(tree, "outbox_high")?;
                let new = <[u8; 8]>::try_from(v.as_slice())
                    .ok()
                    .map(u64::from_be_bytes);
                if old.is_none() || new > old {
                    tree.insert(k.as_slice(), v.as_slice())?;
                }
            }
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
            writer: Mutex::new(Writer { journal: None }),
            queue: Mutex::new(Queue::default()),
            appended: AtomicU64::new(0),
            sync: Mutex::new(None),
            synced: AtomicU64::new(0),
            applying: Mutex::new(()),
            applied: AtomicU64::new(0),
            checkpointed: AtomicU64::new(0),
            broken: Mutex::new(None),
            dirty: std::sync::atomic::AtomicBool::new(false),
            db,
            trees,
            log,
            record,
            counts: Mutex::new((0, 0)),
            dir,
            syncs: AtomicU64::new(0),
            nudge: Mutex::new(None),
        }
    }

    pub fn tree(&self, t: T) -> &sled::Tree {
        tree_in(&self.trees, t)
    }

    fn unconfirmed(&self, detail: String) -> StoreError {
        StoreError::Unconfirmed {
            dir: self.dir.clone(),
            detail,
        }
    }

    fn unusable(&self, reason: String) -> StoreError {
        StoreError::Unusable {
            dir: self.dir.clone(),
            reason,
        }
    }

    /// Starts journalling (the durable mode) after record `last`.
    pub fn start_journal(&self, last: u64) -> Result<(), StoreError> {
        let j = Journal::start(&self.dir, last).map_err(|e| {
            self.unusable(format!("cannot start the journal in {}: {e}", journal::DIR))
        })?;
        let file = j.file().map_err(|e| self.unusable(e))?;
        let mut w = lock(&self.writer);
        *lock(&self.sync) = Some(file);
        self.synced.store(last, Ordering::SeqCst);
        self.appended.store(last, Ordering::SeqCst);
        w.journal = Some(j);
        self.applied.store(last, Ordering::SeqCst);
        self.checkpointed.store(0, Ordering::SeqCst);
        Ok(())
    }

    pub fn set_nudge(&self, tx: std::sync::mpsc::Sender<()>) {
        *lock(&self.nudge) = Some(tx);
    }

    /// Whether a sync or an apply has failed: the reason, for the caller's error.
    pub fn broken(&self) -> Option<String> {
        lock(&self.broken).clone()
    }

    fn break_with(&self, why: String) -> StoreError {
        *lock(&self.queue) = Queue::default();
        *lock(&self.broken) = Some(why.clone());
        self.unconfirmed(why)
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.broken() {
            Some(why) => Err(self.unconfirmed(why)),
            None => Ok(()),
        }
    }

    /// Makes every change made so far durable: the journal is `fdatasync`ed (one sync covers
    /// every record appended before it), or, without a journal, sled is flushed. Records stay
    /// queued for sled (see `settle`) unless the queue has grown past `APPLY_AT` bytes.
    pub fn make_durable(&self) -> Result<(), StoreError> {
        self.sync()?;
        if lock(&self.queue).bytes > APPLY_AT {
            self.apply_queued()?;
        }
        self.check()
    }

    /// Syncs and applies every record journalled so far: afterwards sled holds every change
    /// made before the call, on disk as the journal has it. Readers call it before they read
    /// sled; the checkpoint calls it before it records what sled holds.
    pub fn settle(&self) -> Result<(), StoreError> {
        self.sync()?;
        self.apply_queued()?;
        self.check()
    }

    /// The sync half of `settle`. The sync has a lock of its own, so one caller's sync can
    /// overlap another's apply, and one sync covers every record queued before it.
    fn sync(&self) -> Result<(), StoreError> {
        self.check()?;
        if self.dirty.load(Ordering::SeqCst) {
            // `flush` mode: the flush runs under the sync lock, so a caller that finds the
            // flag already taken waits for the flush that covers its change.
            let _file = lock(&self.sync);
            if self.dirty.swap(false, Ordering::SeqCst) {
                self.db.flush()?;
            }
        }
        let target = self.appended.load(Ordering::SeqCst);
        if self.synced.load(Ordering::SeqCst) < target {
            let file = lock(&self.sync);
            if self.synced.load(Ordering::SeqCst) < target {
                // Every record counted in `appended` is already written to the segment.
                let upto = self.appended.load(Ordering::SeqCst);
                let synced = match file.as_ref() {
                    Some(f) => f
                        .sync_data()
                        .map_err(|e| format!("cannot sync the journal to disk: {e}")),
                    None => Err("the journal has no open segment".to_string()),
                };
                if let Err(e) = synced {
                    return Err(self.break_with(e));
                }
                self.synced.fetch_max(upto, Ordering::SeqCst);
                self.syncs.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// The apply half of `settle`: every synced record still queued, taken in one go and
    /// coalesced (`journal::coalesce`: each key gets only its last write), so a key written by
    /// many changes since the last apply costs sled one insert. Records that are not synced
    /// yet stay queued.
    fn apply_queued(&self) -> Result<(), StoreError> {
        let _applying = lock(&self.applying);
        let mut last = None;
        let taken: Vec<WriteSet> = {
            let mut q = lock(&self.queue);
            let synced = self.synced.load(Ordering::SeqCst);
            let mut taken = Vec::new();
            while q.records.front().is_some_and(|(seq, _)| *seq <= synced) {
                if let Some((seq, ws)) = q.records.pop_front() {
                    last = Some(seq);
                    q.bytes = q.bytes.saturating_sub(ws.bytes());
                    taken.push(ws);
                }
            }
            taken
        };
        if taken.is_empty() {
            return Ok(());
        }
        let merged = if taken.len() == 1 {
            taken.into_iter().next().unwrap_or_default()
        } else {
            journal::coalesce(taken)
        };
        if let Err(e) = self.apply(&merged) {
            return Err(self.break_with(format!(
                "a change is in the journal but sled refused it ({e})"
            )));
        }
        if let Some(seq) = last {
            self.applied.fetch_max(seq, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Builds a change with `build` and saves it as `mode` says. No other change runs
    /// meanwhile. For `Durable` and `Unsynced`, `build` reads the store as every change before
    /// it left it; for `Deferred`, earlier changes may still wait to be applied, so a `build`
    /// that reads sled calls `settle` first.
    pub fn write_with<R>(
        &self,
        mode: Mode,
        build: impl FnOnce(&mut WriteSet) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut w = lock(&self.writer);
        if mode == Mode::Deferred {
            self.check()?;
        } else {
            self.settle()?;
        }
        let mut ws = WriteSet::default();
        let out = build(&mut ws)?;
        if ws.is_empty() {
            return Ok(out);
        }
        let Some(j) = w.journal.as_mut() else {
            self.apply_atomically(&ws)?;
            match mode {
                Mode::Durable => {
                    self.db.flush()?;
                }
                // Flushed by the `settle` its caller makes before answering.
                Mode::Deferred => self.dirty.store(true, Ordering::SeqCst),
                Mode::Unsynced => {}
            }
            return Ok(out);
        };
        // Nothing was written if the append failed: the change is refused whole. If the failed
        // write could not be cut off again, nothing more is written until a restart.
        let seq = match j.append(&ws) {
            Ok(seq) => seq,
            Err(e) if j.failed => return Err(self.break_with(e)),
            Err(e) => return Err(self.unusable(e)),
        };
        let ask = j.len() > journal::ROTATE_BYTES && !j.asked;
        if ask {
            j.asked = true;
        }
        if mode == Mode::Unsynced {
            // Nothing waits (settled above, and no change can be queued meanwhile), so applying
            // now keeps the journal's order.
            let _applying = lock(&self.applying);
            if let Err(e) = self.apply(&ws) {
                return Err(self.break_with(format!(
                    "a change is in the journal but sled refused it ({e})"
                )));
            }
            self.applied.fetch_max(seq, Ordering::SeqCst);
        } else {
            let mut q = lock(&self.queue);
            q.bytes = q.bytes.saturating_add(ws.bytes());
            q.records.push_back((seq, ws));
            self.appended.store(seq, Ordering::SeqCst);
        }
        drop(w);
        if ask && let Some(tx) = lock(&self.nudge).as_ref() {
            let _ = tx.send(());
        }
        if mode == Mode::Durable {
            self.settle()?;
        }
        Ok(out)
    }

    /// Applies a set with plain inserts: atomic only together with the journal.
    pub fn apply(&self, ws: &WriteSet) -> Result<(), StoreError> {
        apply_plain(&self.trees, ws)
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

    /// The incident and event counts as sled holds them now.
    fn counts_in_sled(&self) -> Result<(u64, u64), StoreError> {
        let get = |k: &str| -> Result<u64, StoreError> {
            Ok(self
                .tree(T::Meta)
                .get(k)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(0, u64::from_be_bytes))
        };
        Ok((get("count_incidents")?, get("count_events")?))
    }

    /// A checkpoint: sled made durable up to the last record applied, the commit record brought
    /// up to date, and, once the segment is full, the journal rotated and the segments behind
    /// it deleted; a no-op when nothing was applied since. Without a journal (`flush` mode):
    /// sled flushed, then the commit record rewritten.
    ///
    /// It holds the writer's lock only to switch segments (one sync of the old one): commands
    /// go on being journalled while it applies and flushes. It takes the applying lock only to
    /// read what sled holds.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.settle()?;
        let rotated: Option<(Vec<PathBuf>, u64)> = {
            let mut w = lock(&self.writer);
            // A broken store knows not what reached the disk: no record may say it does.
            self.check()?;
            let Some(j) = w.journal.as_mut() else {
                // Read with nothing else writing: what the flush below covers.
                let counts = self.counts_in_sled()?;
                drop(w);
                self.db.flush()?;
                return self.write_counts(counts);
            };
            if j.len() > journal::ROTATE_BYTES || j.has_closed() {
                // Every record so far is in the segments `rotate` closes, and synced by it.
                let last = j.last();
                let closed = j.rotate().map_err(|e| self.unusable(e))?;
                match j.file() {
                    Ok(f) => {
                        *lock(&self.sync) = Some(f);
                        self.synced.fetch_max(last, Ordering::SeqCst);
                    }
                    Err(e) => return Err(self.break_with(e)),
                }
                Some((closed, last))
            } else {
                None
            }
        };
        // Applies what the closed segments hold, now synced.
        let fresh = match self.settle().and_then(|()| self.applied_so_far()) {
            Ok(fresh) => fresh,
            Err(e) => {
                self.keep(rotated);
                return Err(e);
            }
        };
        let upto = fresh.map_or(self.checkpointed.load(Ordering::SeqCst), |(upto, _)| upto);
        // Segments are deleted only once sled holds every record in them on disk.
        let (gone, kept) = match rotated {
            Some((closed, last)) if last <= upto => (closed, None),
            other => (Vec::new(), other),
        };
        self.keep(kept);
        let done = match fresh {
            Some((_, counts)) => self.sync_sled().and_then(|()| self.write_counts(counts)),
            None => Ok(()),
        }
        .and_then(|()| Journal::delete(&self.dir, &gone).map_err(|e| self.unusable(e)));
        match done {
            Ok(()) => {
                self.checkpointed.fetch_max(upto, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.keep(Some((gone, upto)));
                Err(e)
            }
        }
    }

    /// The last record applied, and the counts sled holds with it, once meta
    /// "journal_applied" says so; `None` when no record was applied since the last checkpoint.
    fn applied_so_far(&self) -> Result<Option<(u64, Counts)>, StoreError> {
        let _applying = lock(&self.applying);
        self.check()?;
        // Every record up to here is in sled. A delivery mark is applied before its sync, so the
        // mark may name a record the journal could still lose in a power cut: harmless, since
        // sled holds it once flushed, and the numbering after a restart goes on from the mark
        // (`journal::replay` starts its count there).
        let upto = self.applied.load(Ordering::SeqCst);
        if upto <= self.checkpointed.load(Ordering::SeqCst) {
            return Ok(None);
        }
        // Read with nothing being applied: the flush after covers at least this much, so the
        // commit record never claims more than sled holds.
        let counts = self.counts_in_sled()?;
        // Inserted after every change up to `upto` was applied, so sled never holds the mark
        // without them.
        self.tree(T::Meta)
            .insert("journal_applied", &upto.to_be_bytes())?;
        Ok(Some((upto, counts)))
    }

    /// Hands closed segments back to the journal, for a later checkpoint to delete.
    fn keep(&self, closed: Option<(Vec<PathBuf>, u64)>) {
        if let Some((closed, _)) = closed
            && !closed.is_empty()
            && let Some(j) = lock(&self.writer).journal.as_mut()
        {
            j.keep(closed);
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

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::super::journal::{Journal, T, WriteSet};

    #[test]
    fn a_synced_change_sled_never_got_is_completed_at_open_and_a_torn_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.adapter_put("kept", b"1").unwrap();
        }
        // What a crash after the journal's sync and before sled's apply leaves: a synced record
        // sled never saw, then a record cut short mid-write.
        let mut j = Journal::start(dir.path(), 1_000_000).unwrap();
        let mut ws = WriteSet::default();
        ws.put(T::Adapter, "replayed", "2");
        ws.remove(T::Adapter, "kept");
        j.append(&ws).unwrap();
        j.sync().unwrap();
        drop(j);
        // The newest segment: the one just written.
        let seg = std::fs::read_dir(dir.path().join(super::journal::DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let whole = bytes.clone();
        bytes.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&seg, &bytes).unwrap();

        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.adapter_get("replayed").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(s.adapter_get("kept").unwrap(), None);
        // Numbering goes on after the replayed record, and new changes are kept.
        s.adapter_put("after", b"3").unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.adapter_get("after").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(
            s.adapter_get("replayed").unwrap().as_deref(),
            Some(&b"2"[..])
        );
    }

    #[test]
    fn a_newer_warrooms_folder_is_refused_before_its_journal_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.adapter_put("kept", b"1").unwrap();
        }
        {
            // What a newer warroom leaves: another schema, and a change only its journal holds.
            let db = sled::open(dir.path().join("db")).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema", &b"warroom-99"[..])
                .unwrap();
            db.flush().unwrap();
        }
        let mut j = Journal::start(dir.path(), 1_000_000).unwrap();
        let mut ws = WriteSet::default();
        ws.put(T::Adapter, "newer", "2");
        j.append(&ws).unwrap();
        j.sync().unwrap();
        drop(j);
        let refused = Store::open(dir.path()).err().map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(|e| e.contains("warroom-99")),
            "{refused:?}"
        );
        let db = sled::open(dir.path().join("db")).unwrap();
        let adapter = db.open_tree("adapter").unwrap();
        assert!(adapter.get("kept").unwrap().is_some());
        assert_eq!(adapter.get("newer").unwrap(), None, "nothing was replayed");
    }

    #[test]
    fn an_older_folders_unused_timer_index_is_emptied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.adapter_put("kept", b"1").unwrap();
        }
        {
            let db = sled::open(dir.path().join("db")).unwrap();
            let old = db.open_tree("timers_by_incident").unwrap();
            for n in 0u64..100 {
                old.insert(n.to_be_bytes(), &b"stale"[..]).unwrap();
            }
            db.flush().unwrap();
        }
        drop(Store::open(dir.path()).unwrap());
        let db = sled::open(dir.path().join("db")).unwrap();
        assert!(db.open_tree("timers_by_incident").unwrap().is_empty());
        assert!(
            db.open_tree("adapter")
                .unwrap()
                .get("kept")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn replaying_an_older_delivery_mark_never_lowers_the_highest_delivered_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.delivered(12).unwrap();
        let mut older = WriteSet::default();
        older.put(T::Meta, "outbox_high", 10u64.to_be_bytes());
        s.wp.apply(&older).unwrap();
        let high = s.meta.get("outbox_high").unwrap().unwrap();
        assert_eq!(high.as_ref(), 12u64.to_be_bytes().as_slice());
    }

    #[test]
    fn a_checkpoint_marks_a_delivery_mark_it_applied_so_it_is_never_replayed_over_later_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.adapter_put("k", b"v").unwrap();
        // The last record is a delivery mark: applied at once, not synced on its own.
        s.delivered(7).unwrap();
        s.wp.checkpoint().unwrap();
        let last = s.wp.writer.lock().unwrap().journal.as_ref().unwrap().last();
        let mark = s.meta.get("journal_applied").unwrap().unwrap();
        assert_eq!(mark.as_ref(), last.to_be_bytes().as_slice());
    }

    #[test]
    fn a_refused_open_leaves_the_commit_record_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.meta.insert("schema", b"warroom-99".as_slice()).unwrap();
        }
        let record = dir.path().join(super::integrity::RECORD_FILE);
        let before = std::fs::read(&record).unwrap();
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("unknown schema"), "{e}");
        assert_eq!(
            std::fs::read(&record).unwrap(),
            before,
            "a refused open rewrote the commit record"
        );
    }

    #[test]
    fn a_durable_change_is_synced_before_it_returns_and_a_delivery_mark_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let before = s.syncs();
        s.adapter_put("k", b"v").unwrap();
        assert_eq!(s.syncs(), before + 1, "a durable change returned unsynced");
        let before = s.syncs();
        s.delivered(12345).unwrap();
        assert_eq!(
            s.syncs(),
            before,
            "a delivery mark paid for a sync of its own"
        );
    }
}
