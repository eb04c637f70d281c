//! The sled store's write-ahead journal: what makes a durable commit one `write` and one
//! `fdatasync`, and atomic without a sled transaction.
//!
//! Every change to the sled folder (a commit, a claim, a delivery mark, a dead letter) is a
//! [`WriteSet`]: the puts and removes it makes, key by key, with their final bytes. In the
//! durable mode the store appends the set to the journal as one checksummed record, syncs the
//! journal when the change must be durable, and only then applies the set to sled with plain
//! inserts. sled never holds a change whose record is not on disk first, so after any crash
//! sled holds every synced change completely or in part, and replaying the journal completes
//! it: replay puts each key to the bytes its last record gave, which is the same whether sled
//! had applied a record fully, partly or not at all.
//!
//! Records go into segment files, `journal/<first sequence number>.wal`. A checkpoint (see
//! `sled.rs`) starts a new segment, flushes and syncs sled, and then deletes the segments before
//! it; `meta` "journal_applied" names the last record sled is known to hold, so that a segment
//! whose deletion a crash undid is skipped instead of replayed over newer writes.
//!
//! A record: `b"wrj1"`, the payload's length (u32), a CRC-32 of the sequence number and the
//! payload (u32), the sequence number (u64), the payload; little-endian. The payload is the
//! operations in order: tree (u8), 1 for a put or 0 for a remove (u8), the key's length (u32)
//! and the key, and for a put the value's length (u32) and the value. A record cut short at the
//! end of the last segment is a write a crash interrupted, never acknowledged, and is dropped;
//! a bad record anywhere else is damage, and the folder is refused.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"wrj1";
const HEADER: usize = 20;
/// The journal's folder, in the data folder.
pub const DIR: &str = "journal";
/// A segment this large asks for a checkpoint.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// The trees a write set can touch, numbered for the journal: the numbers are on disk and must
/// not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum T {
    Incidents = 0,
    Timeline = 1,
    Timers = 2,
    ByIncident = 3,
    Outbox = 4,
    Dead = 5,
    Meta = 6,
    Adapter = 7,
    Schedule = 8,
    AlertGroups = 9,
    Handoffs = 10,
    Overrides = 11,
}

impl T {
    pub const ALL: [T; 12] = [
        T::Incidents,
        T::Timeline,
        T::Timers,
        T::ByIncident,
        T::Outbox,
        T::Dead,
        T::Meta,
        T::Adapter,
        T::Schedule,
        T::AlertGroups,
        T::Handoffs,
        T::Overrides,
    ];

    /// The sled tree this number stands for.
    pub const fn name(self) -> &'static str {
        match self {
            T::Incidents => "incidents",
            T::Timeline => "timeline",
            T::Timers => "timers",
            T::ByIncident => "timers_by_incident",
            T::Outbox => "outbox",
            T::Dead => "dead_letters",
            T::Meta => "meta",
            T::Adapter => "adapter",
            T::Schedule => "drill_schedule",
            T::AlertGroups => "alert_groups",
            T::Handoffs => "oncall_handoffs",
            T::Overrides => "oncall_overrides",
        }
    }

    fn from_u8(b: u8) -> Option<T> {
        T::ALL.get(usize::from(b)).copied()
    }
}

/// One change's puts and removes, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteSet {
    pub ops: Vec<(T, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteSet {
    pub fn put(&mut self, tree: T, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push((tree, key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    pub fn remove(&mut self, tree: T, key: impl AsRef<[u8]>) {
        self.ops.push((tree, key.as_ref().to_vec(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The bytes of its keys and values (what it holds in memory, near enough).
    pub fn bytes(&self) -> usize {
        self.ops.iter().fold(0usize, |n, (_, k, v)| {
            n.saturating_add(k.len())
                .saturating_add(v.as_ref().map_or(0, Vec::len))
        })
    }

    /// What this set leaves at `key`, if it touches it: `Some(None)` for a remove.
    pub fn last(&self, tree: T, key: &[u8]) -> Option<Option<&[u8]>> {
        self.ops
            .iter()
            .rev()
            .find(|(t, k, _)| *t == tree && k.as_slice() == key)
            .map(|(_, _, v)| v.as_deref())
    }

    fn encode_into(&self, seq: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 16]);
        for (tree, key, value) in &self.ops {
            out.push(*tree as u8);
            out.push(u8::from(value.is_some()));
            push_bytes(out, key)?;
            if let Some(v) = value {
                push_bytes(out, v)?;
            }
        }
        let payload = out
            .get(start.saturating_add(HEADER)..)
            .ok_or("a journal record lost its header")?;
        let len = u32::try_from(payload.len()).map_err(|_| "a change too large to journal")?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq.to_le_bytes());
        crc.update(payload);
        let crc = crc.finalize();
        let header = out
            .get_mut(start.saturating_add(4)..start.saturating_add(HEADER))
            .ok_or("a journal record lost its header")?;
        let (l, rest) = header.split_at_mut(4);
        l.copy_from_slice(&len.to_le_bytes());
        let (c, s) = rest.split_at_mut(4);
        c.copy_from_slice(&crc.to_le_bytes());
        s.copy_from_slice(&seq.to_le_bytes());
        Ok(())
    }
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), String> {
    let len = u32::try_from(b.len()).map_err(|_| "a key or value too large to journal")?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Reads `n` bytes at `*at`, moving past them.
fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(n)?;
    let s = b.get(*at..end)?;
    *at = end;
    Some(s)
}

fn take_u32(b: &[u8], at: &mut usize) -> Option<u32> {
    take(b, at, 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
}

fn take_u64(b: &[u8], at: &mut usize) -> Option<u64> {
    take(b, at, 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
}

/// Sets applied one after another, as one set that leaves sled the same: each key keeps only
/// its last write (a put, or a remove), except meta `outbox_high`, which keeps the highest id
/// written, as `WritePath::apply` does against sled. The order between different keys is not
/// kept, and need not be: nothing reads sled in the middle of an apply.
///
/// A timer created and removed within the sets (a silence check re-armed by every update)
/// costs sled nothing: a timer's key holds its sequence number, never reused, so a put of it
/// creates it. This holds only for sets never applied before, as `WritePath::apply_queued`'s
/// are (a set replayed after a crash may have reached sled already; replay applies one by one).
pub fn coalesce(sets: Vec<WriteSet>) -> WriteSet {
    let mut last: std::collections::HashMap<(T, Vec<u8>), Option<Vec<u8>>> =
        std::collections::HashMap::new();
    // Timer keys these sets created (their first write here is a put).
    let mut created: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for ws in sets {
        for (t, k, v) in ws.ops {
            if t == T::Timers && v.is_some() && !last.contains_key(&(t, k.clone())) {
                created.insert(k.clone());
            }
            if t == T::Meta && k.as_slice() == b"outbox_high" && v.is_some() {
                let id = |v: &Option<Vec<u8>>| {
                    v.as_deref()
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                };
                if let Some(old) = last.get(&(t, k.clone()))
                    && id(old) >= id(&v)
                {
                    continue;
                }
            }
            last.insert((t, k), v);
        }
    }
    let mut ops: Vec<(T, Vec<u8>, Option<Vec<u8>>)> = last
        .into_iter()
        .filter(|((t, k), v)| !(*t == T::Timers && v.is_none() && created.contains(k)))
        .map(|((t, k), v)| (t, k, v))
        .collect();
    // Key order: sled's inserts are cheaper walking a tree in order.
    ops.sort_unstable_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
    WriteSet { ops }
}

/// Decodes the record at `*at`: None if it is cut short or fails its checksum.
fn decode(b: &[u8], at: &mut usize) -> Option<(u64, WriteSet)> {
    let mut p = *at;
    if take(b, &mut p, 4)? != MAGIC {
        return None;
    }
    let len = usize::try_from(take_u32(b, &mut p)?).ok()?;
    let crc = take_u32(b, &mut p)?;
    let seq = take_u64(b, &mut p)?;
    let payload = take(b, &mut p, len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    if h.finalize() != crc {
        return None;
    }
    let mut ws = WriteSet::default();
    let mut q = 0usize;
    while q < payload.len() {
        let head = take(payload, &mut q, 2)?;
        let tree = T::from_u8(*head.first()?)?;
        let put = *head.get(1)? == 1;
        let klen = usize::try_from(take_u32(payload, &mut q)?).ok()?;
        let key = take(payload, &mut q, klen)?.to_vec();
        let value = if put {
            let vlen = usize::try_from(take_u32(payload, &mut q)?).ok()?;
            Some(take(payload, &mut q, vlen)?.to_vec())
        } else {
            None
        };
        ws.ops.push((tree, key, value));
    }
    *at = p;
    Some((seq, ws))
}

/// The open journal: the segment being appended to.
pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    /// Bytes in the current segment.
    len: u64,
    /// The next record's sequence number.
    next: u64,
    /// Records appended to the current segment.
    records: u64,
    /// Segments before the current one, not yet deleted by a checkpoint.
    closed: Vec<PathBuf>,
    /// Whether this segment has already asked for a checkpoint.
    pub asked: bool,
    /// A failed write could not be cut off again: no record may be appended after it.
    pub failed: bool,
    buf: Vec<u8>,
}

/// The segments in `dir`, oldest first, by the sequence number in their names.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let path = e?.path();
                let first = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".wal"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(first) = first {
                    out.push((first, path));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// What a replay found.
pub struct Replayed {
    /// Records applied (those after `applied`).
    pub records: u64,
    /// The highest sequence number seen, applied or skipped.
    pub last: u64,
    /// A torn record dropped at the end of the last segment.
    pub torn: bool,
}

/// Whether any whole, valid record starts after byte `from`: a bad record followed by a good
/// one is damage, not a torn tail.
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    let mut start = from.saturating_add(1);
    while let Some(rest) = bytes.get(start..) {
        let Some(off) = rest.windows(MAGIC.len()).position(|w| w == MAGIC) else {
            return false;
        };
        let mut at = start.saturating_add(off);
        if decode(bytes, &mut at).is_some() {
            return true;
        }
        start = start.saturating_add(off).saturating_add(1);
    }
    false
}

/// Replays every record after `applied`, in order, through `apply`. A record cut short at the
/// end of the journal (no record after it, in its segment or a later one) is a write a crash
/// interrupted: it is cut off the file, so that it never sits before newer records. Any other
/// bad record is damage: Err, and nothing after it is applied.
pub fn replay(
    data: &Path,
    applied: u64,
    apply: impl FnMut(&WriteSet) -> Result<(), String>,
) -> Result<Replayed, String> {
    scan(data, applied, Some(apply))
}

/// Reads the whole journal as `replay` would, changing nothing: Err for damage that `replay`
/// would refuse (a torn tail is not damage). Run before sled opens a folder in place, so that a
/// damaged journal is refused before anything of it is applied.
pub fn check(data: &Path) -> Result<(), String> {
    scan(data, u64::MAX, None::<fn(&WriteSet) -> Result<(), String>>).map(|_| ())
}

/// `replay` (with `apply`) or `check` (without: nothing applied, no torn tail cut).
fn scan(
    data: &Path,
    applied: u64,
    mut apply: Option<impl FnMut(&WriteSet) -> Result<(), String>>,
) -> Result<Replayed, String> {
    let dir = data.join(DIR);
    let segs = segments(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Replayed {
        records: 0,
        last: applied,
        torn: false,
    };
    let lens: Vec<u64> = segs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    for (i, (_, path)) in segs.iter().enumerate() {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut at = 0usize;
        while at < bytes.len() {
            let Some((seq, ws)) = decode(&bytes, &mut at) else {
                let later_empty = lens
                    .get(i.saturating_add(1)..)
                    .is_none_or(|l| l.iter().all(|n| *n == 0));
                if later_empty && !valid_record_after(&bytes, at) {
                    out.torn = true;
                    if apply.is_some() {
                        cut(path, at)?;
                    }
                    break;
                }
                return Err(format!(
                    "the journal segment {} has a damaged record at byte {at}",
                    path.display()
                ));
            };
            out.last = out.last.max(seq);
            if let Some(apply) = apply.as_mut()
                && seq > applied
            {
                apply(&ws)?;
                out.records = out.records.saturating_add(1);
            }
        }
    }
    Ok(out)
}

/// Deletes every segment (a journal already replayed, in a mode that keeps none).
pub fn remove_all(data: &Path) -> Result<(), String> {
    let dir = data.join(DIR);
    let segs = segments(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let paths: Vec<PathBuf> = segs.into_iter().map(|(_, p)| p).collect();
    Journal::delete(data, &paths)
}

/// Cuts a segment back to its last whole record, durably.
fn cut(path: &Path, len: usize) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.set_len(len as u64)
        .and_then(|()| f.sync_data())
        .map_err(|e| format!("cannot cut the torn end off {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Starts a fresh segment after `last`; the segments already there stay until the next
    /// checkpoint removes them.
    pub fn start(data: &Path, last: u64) -> std::io::Result<Journal> {
        let dir = data.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let next = last.saturating_add(1);
        let (file, path) = Journal::create(&dir, next)?;
        // An empty segment a previous start left under the same name is this one now.
        let closed = segments(&dir)?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| *p != path)
            .collect();
        Ok(Journal {
            dir,
            file,
            path,
            len: 0,
            next,
            records: 0,
            closed,
            asked: false,
            failed: false,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    fn create(dir: &Path, first: u64) -> std::io::Result<(File, PathBuf)> {
        let path = dir.join(format!("{first:020}.wal"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        // The new name must survive a power cut before any record in it counts as saved.
        sync_dir(dir)?;
        Ok((file, path))
    }

    /// Appends one record (not yet synced) and returns its sequence number. A failed write is
    /// cut off again, so that nothing follows a partial record.
    pub fn append(&mut self, ws: &WriteSet) -> Result<u64, String> {
        if self.failed {
            return Err(format!(
                "{} ends in a partial record a failed write left",
                self.path.display()
            ));
        }
        let seq = self.next;
        self.buf.clear();
        ws.encode_into(seq, &mut self.buf)?;
        if let Err(e) = self.file.write_all(&self.buf) {
            let cleaned = self.file.set_len(self.len).and_then(|()| {
                std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(self.len))
            });
            if let Err(c) = cleaned {
                // A partial record stays in the file: nothing more may follow it.
                self.failed = true;
                return Err(format!(
                    "cannot write {} ({e}), nor cut the partial record off it ({c})",
                    self.path.display()
                ));
            }
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        self.len = self.len.saturating_add(self.buf.len() as u64);
        self.next = seq.saturating_add(1);
        self.records = self.records.saturating_add(1);
        if self.buf.capacity() > 1024 * 1024 {
            self.buf = Vec::with_capacity(64 * 1024);
        }
        Ok(seq)
    }

    /// `fdatasync` of the current segment: every record appended so far is on disk.
    pub fn sync(&self) -> Result<(), String> {
        self.file
            .sync_data()
            .map_err(|e| format!("cannot sync {} to disk: {e}", self.path.display()))
    }

    /// Another handle on the current segment, for syncing outside the writer's lock.
    pub fn file(&self) -> Result<File, String> {
        self.file
            .try_clone()
            .map_err(|e| format!("cannot open {} again: {e}", self.path.display()))
    }

    /// Bytes in the current segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The last sequence number handed out.
    pub fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Whether closed segments wait for a checkpoint to delete them.
    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// Takes back segments a failed checkpoint could not delete.
    pub fn keep(&mut self, mut closed: Vec<PathBuf>) {
        closed.append(&mut self.closed);
        self.closed = closed;
    }

    /// Closes the current segment (synced first) and starts the next; returns every closed
    /// segment, which a checkpoint deletes once sled holds their records on disk.
    pub fn rotate(&mut self) -> Result<Vec<PathBuf>, String> {
        if self.records > 0 {
            self.sync()?;
            let (file, path) = Journal::create(&self.dir, self.next)
                .map_err(|e| format!("cannot start a journal segment: {e}"))?;
            let old = std::mem::replace(&mut self.path, path);
            self.file = file;
            self.closed.push(old);
            self.len = 0;
            self.records = 0;
            self.asked = false;
        }
        Ok(std::mem::take(&mut self.closed))
    }

    /// Deletes closed segments sled holds durably; the folder is synced so the deletions last.
    pub fn delete(dir: &Path, closed: &[PathBuf]) -> Result<(), String> {
        for p in closed {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot delete {}: {e}", p.display())),
            }
        }
        if !closed.is_empty() {
            sync_dir(&dir.join(DIR)).map_err(|e| format!("cannot sync the journal folder: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: u8) -> WriteSet {
        let mut ws = WriteSet::default();
        ws.put(T::Incidents, [n], vec![n; 40]);
        ws.remove(T::Timers, [n, n]);
        ws.put(T::Meta, "k", []);
        ws
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::start(dir.path(), 0).unwrap();
        for n in 1..=3 {
            assert_eq!(j.append(&set(n)).unwrap(), u64::from(n));
        }
        j.sync().unwrap();
        // A fourth record cut short, as a crash mid-write leaves it.
        let mut torn = Vec::new();
        set(4).encode_into(4, &mut torn).unwrap();
        torn.truncate(torn.len() - 3);
        j.file.write_all(&torn).unwrap();
        let mut seen = Vec::new();
        let r = replay(dir.path(), 1, |ws| {
            seen.push(ws.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![set(2), set(3)]);
        assert_eq!((r.records, r.last, r.torn), (2, 3, true));
    }

    #[test]
    fn a_bad_record_followed_by_a_good_one_is_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::start(dir.path(), 0).unwrap();
        j.append(&set(1)).unwrap();
        let mut bytes = std::fs::read(&j.path).unwrap();
        // A flipped byte in the first record's payload, then a whole second record.
        let flip = bytes.len() - 5;
        bytes[flip] ^= 0xff;
        set(2).encode_into(2, &mut bytes).unwrap();
        std::fs::write(&j.path, &bytes).unwrap();
        let e = replay(dir.path(), 0, |_| Ok(())).err().unwrap();
        assert!(e.contains("damaged record"), "{e}");
    }

    #[test]
    fn a_damaged_record_before_the_last_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::start(dir.path(), 0).unwrap();
        j.append(&set(1)).unwrap();
        j.append(&set(2)).unwrap();
        let closed = j.rotate().unwrap();
        j.append(&set(3)).unwrap();
        j.sync().unwrap();
        let first = closed.first().unwrap();
        let mut bytes = std::fs::read(first).unwrap();
        let flip = bytes.len() - 2;
        bytes[flip] ^= 0xff;
        std::fs::write(first, &bytes).unwrap();
        let mut applied = 0;
        let e = replay(dir.path(), 0, |_| {
            applied += 1;
            Ok(())
        })
        .err()
        .unwrap();
        assert!(e.contains("damaged record"), "{e}");
        assert_eq!(applied, 1, "nothing after the damage is applied");
    }

    #[test]
    fn coalesced_sets_leave_each_key_as_the_last_write_did() {
        let mut a = WriteSet::default();
        a.put(T::Incidents, [1], b"first");
        a.put(T::Timers, [9], b"t");
        a.remove(T::Timers, [8]);
        a.put(T::Meta, "outbox_high", 12u64.to_be_bytes());
        let mut b = WriteSet::default();
        b.put(T::Incidents, [1], b"second");
        b.remove(T::Timers, [9]);
        b.put(T::Timers, [10], b"u");
        // An older delivery mark journalled later never lowers the highest id.
        b.put(T::Meta, "outbox_high", 10u64.to_be_bytes());
        let mut c = WriteSet::default();
        c.remove(T::Timers, [10]);
        c.put(T::Timers, [10], b"v");
        let merged = coalesce(vec![a.clone(), b.clone(), c.clone()]);
        assert_eq!(merged.last(T::Incidents, &[1]), Some(Some(&b"second"[..])));
        // Timer 9 was created and removed here: sled never needs to see it. Timer 8 was made
        // before these sets, so its removal stays.
        assert_eq!(merged.last(T::Timers, &[9]), None);
        assert_eq!(merged.last(T::Timers, &[8]), Some(None));
        assert_eq!(merged.last(T::Timers, &[10]), Some(Some(&b"v"[..])));
        assert_eq!(
            merged.last(T::Meta, b"outbox_high"),
            Some(Some(&12u64.to_be_bytes()[..]))
        );
        // One write per key: the incident written twice and timer 10 three times cost one each.
        assert_eq!(merged.ops.len(), 4);
        // Every other key the sets touched is in the merge, as the last set to touch it left it.
        for ws in [&a, &b, &c] {
            for (t, k, _) in &ws.ops {
                if *t == T::Timers && k.as_slice() == [9] {
                    continue;
                }
                assert!(merged.last(*t, k).is_some(), "{t:?} {k:?} lost");
            }
        }
    }

    #[test]
    fn a_write_set_knows_what_it_leaves_at_a_key() {
        let mut ws = WriteSet::default();
        ws.put(T::AlertGroups, b"g", b"1");
        ws.remove(T::AlertGroups, b"g");
        assert_eq!(ws.last(T::AlertGroups, b"g"), Some(None));
        ws.put(T::AlertGroups, b"g", b"2");
        assert_eq!(ws.last(T::AlertGroups, b"g"), Some(Some(&b"2"[..])));
        assert_eq!(ws.last(T::Meta, b"g"), None);
    }
}
