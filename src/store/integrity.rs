//! A data folder's integrity, checked before sled may write to it.
//!
//! sled's recovery takes the first bad record it meets for a torn tail and cuts the log there:
//! opened in place, a damaged folder is rewritten (or opens as an empty war room) before anyone
//! can tell. So warroom never lets sled open a folder in place unless it knows the folder is as
//! warroom left it:
//! - **The commit record** (`warroom.state`, beside `db/`) holds how many incidents and timeline
//!   events sled held on disk at the last checkpoint (`commit.rs`: at most a second behind the
//!   last commit; the journal holds the rest), and, after a clean close, the size and
//!   modification time of every file under `db/`. It is rewritten in place (one small write)
//!   at each checkpoint and synced at open and at a clean close.
//! - **At open**, if `db/`'s files are exactly as recorded at the last clean close, it is opened
//!   directly. Otherwise (after a crash, or if anything touched them) `db/` is first copied to
//!   a scratch folder and opened *there*; every record of every tree of the copy must read
//!   back (sled checks each page's CRC as it reads it; two threads share the scan), and it must
//!   hold at least as many incidents and events as the record says. Only then is the real
//!   folder opened. A folder that
//!   fails is refused with the damaged-folder message and is left byte-for-byte as it was.
//! - Before sled opens a folder in place, its journal is read to the end (`journal::check`):
//!   a damaged record other than a torn tail refuses the folder before any record is applied.
//! - A folder whose `db/` is missing although it was in use (its lock file or record exists) is
//!   damage, never a fresh start.
//!
//! Verify-on-copy was chosen over a read-only pass because sled has no read-only mode and its
//! file format is its own: the only faithful reader of a sled folder is sled. Its cost is one
//! copy of the database after an unclean stop; a clean restart costs a few `stat` calls.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The commit record's file name, in the data folder.
pub const RECORD_FILE: &str = "warroom.state";
/// The record's fixed size on disk: it is rewritten in place with one write.
const SLOT: usize = 4096;

/// One file under `db/`, as a clean close left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub name: String,
    pub len: u64,
    pub modified_ns: u128,
}

/// What the folder is known to have held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub incidents: u64,
    pub events: u64,
    /// Set only by a clean close: `db/`'s files as it left them.
    #[serde(default)]
    pub clean: Option<Vec<FileStat>>,
}

/// FNV-1a, 64 bits: a checksum that stays the same across Rust versions.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(rec: &Record) -> Vec<u8> {
    let mut rec = rec.clone();
    let mut json = serde_json::to_vec(&rec).unwrap_or_default();
    if json.len() + 32 > SLOT {
        // Too many files to list: without the list, the next open verifies on a copy.
        rec.clean = None;
        json = serde_json::to_vec(&rec).unwrap_or_default();
    }
    let mut out = json.clone();
    out.extend_from_slice(format!("\n#{:016x}\n", fnv64(&json)).as_bytes());
    out.resize(SLOT.max(out.len()), b' ');
    out
}

/// Reads the record: None if there is none; Err if it is there but unreadable.
pub fn read(dir: &Path) -> Result<Option<Record>, String> {
    let path = dir.join(RECORD_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{} cannot be read: {e}", path.display())),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let (Some(json), Some(sum)) = (lines.next(), lines.next()) else {
        return Err(format!("{} is not a warroom commit record", path.display()));
    };
    let sum = sum.trim().trim_start_matches('#');
    if u64::from_str_radix(sum, 16).ok() != Some(fnv64(json.as_bytes())) {
        return Err(format!("{} fails its checksum", path.display()));
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| format!("{} cannot be read: {e}", path.display()))
}

/// Opens (or creates) the record file for rewriting in place.
pub fn open_file(dir: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(RECORD_FILE))
}

/// Rewrites the record in place; with `sync`, waits until it is on disk.
pub fn write(file: &File, rec: &Record, sync: bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(&encode(rec), 0)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Every file under `dir`, by path relative to it, sorted.
pub fn stats(dir: &Path) -> std::io::Result<Vec<FileStat>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<FileStat>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                walk(root, &path, out)?;
            } else {
                let modified_ns = meta
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                out.push(FileStat {
                    name: path
                        .strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                    len: meta.len(),
                    modified_ns,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.metadata()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A scratch folder, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> std::io::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("warroom-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to stderr; for notes the CLI prints while checking.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let f = open_file(dir.path()).unwrap();
        let rec = Record {
            incidents: 3,
            events: 41,
            clean: Some(vec![FileStat {
                name: "db".into(),
                len: 10,
                modified_ns: 7,
            }]),
        };
        write(&f, &rec, true).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(rec));
        let mut bytes = std::fs::read(dir.path().join(RECORD_FILE)).unwrap();
        bytes[5] ^= 0x01;
        std::fs::write(dir.path().join(RECORD_FILE), bytes).unwrap();
        assert!(read(dir.path()).is_err());
    }
}
