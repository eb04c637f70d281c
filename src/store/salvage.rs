//! `warroom doctor`'s reader: everything that can still be read from a data folder, taken
//! from a copy so that the folder itself is never touched, and the export into a new folder.
//! The copy is completed from the journal first, as an open would: a change answered but not
//! yet written into sled when the process stopped is read, and exported, like any other.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use super::integrity;
use super::sled::{OpenFailure, open_sled, to_json, verify_copy};
use super::{Commit, DeadLetter, Outgoing, Store, StoreError, StoreOptions};
use crate::domain::{Event, Incident, IncidentId};

/// What `warroom doctor` could read from a folder, opened as a copy.
#[derive(Debug)]
pub struct Salvage {
    pub record: Result<Option<integrity::Record>, String>,
    /// Why sled could not open the copy at all, if it could not.
    pub unopenable: Option<String>,
    /// What the integrity check at open would say: None if the folder would open.
    pub verdict: Option<String>,
    pub incidents: Vec<Incident>,
    /// Timeline events, with the incident each belongs to.
    pub events: Vec<(IncidentId, Event)>,
    pub outbox: Vec<Outgoing>,
    pub dead: Vec<DeadLetter>,
    pub adapter: Vec<(String, Vec<u8>)>,
    pub drills: Vec<(DateTime<Utc>, String)>,
    pub timers: usize,
    /// Journal records completed into the copy (changes answered but not yet in sled), or why
    /// the journal could not be read to the end (the records before the damage are kept).
    pub journal: Result<u64, String>,
    /// Records that could not be read, by tree.
    pub unreadable: std::collections::BTreeMap<&'static str, usize>,
}

/// Reads everything that can be read from `dir`, on a copy: the folder is not touched.
pub fn salvage(dir: &Path) -> Salvage {
    let mut s = Salvage {
        record: integrity::read(dir),
        unopenable: None,
        verdict: None,
        incidents: Vec::new(),
        events: Vec::new(),
        outbox: Vec::new(),
        dead: Vec::new(),
        adapter: Vec::new(),
        drills: Vec::new(),
        timers: 0,
        journal: Ok(0),
        unreadable: std::collections::BTreeMap::new(),
    };
    let db = dir.join("db");
    if !db.exists() {
        s.unopenable = Some("there is no db/ folder".into());
        return s;
    }
    s.verdict = verify_copy(&db, s.record.as_ref().ok().and_then(|r| r.as_ref())).err();
    let scratch = match integrity::Scratch::new("doctor") {
        Ok(sc) => sc,
        Err(e) => {
            s.unopenable = Some(format!("cannot make a scratch folder: {e}"));
            return s;
        }
    };
    // The journal first: on a folder in use, a checkpoint between the two copies then only
    // moves sled's copy ahead, and never deletes a segment that sled's copy still needs.
    let journal = dir.join(super::journal::DIR);
    if journal.exists()
        && let Err(e) = integrity::copy_dir(&journal, &scratch.0.join(super::journal::DIR))
    {
        s.journal = Err(format!("cannot read it: {e}"));
    }
    let copy = scratch.0.join("db");
    if let Err(e) = integrity::copy_dir(&db, &copy) {
        s.unopenable = Some(format!("cannot read it: {e}"));
        return s;
    }
    let opened = match open_sled(&copy, StoreOptions::default().cache_bytes) {
        Ok(db) => db,
        Err(OpenFailure::Damaged(d) | OpenFailure::Other(d)) => {
            s.unopenable = Some(d);
            return s;
        }
        Err(OpenFailure::Locked) => {
            s.unopenable = Some("locked".into());
            return s;
        }
    };
    if s.journal.is_ok() {
        s.journal = complete_from_journal(&opened, &scratch.0);
    }
    if let (None, Err(why)) = (&s.verdict, &s.journal) {
        // An open reads the journal too, and refuses one it cannot read to the end.
        s.verdict = Some(format!("its journal cannot be read: {why}"));
    }
    let read = |s: &mut Salvage, name: &'static str| -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut rows = Vec::new();
        let Ok(tree) = opened.open_tree(name) else {
            *s.unreadable.entry(name).or_default() += 1;
            return rows;
        };
        // A damaged tree may panic inside sled: keep what was read before.
        let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut ok = Vec::new();
            let mut bad = 0usize;
            for kv in tree.iter() {
                match kv {
                    Ok((k, v)) => ok.push((k.to_vec(), v.to_vec())),
                    Err(_) => {
                        bad += 1;
                        break;
                    }
                }
            }
            (ok, bad)
        }));
        match walked {
            Ok((ok, bad)) => {
                rows = ok;
                if bad > 0 {
                    *s.unreadable.entry(name).or_default() += bad;
                }
            }
            Err(_) => *s.unreadable.entry(name).or_default() += 1,
        }
        rows
    };
    fn decode<T: for<'de> Deserialize<'de>>(
        s: &mut Salvage,
        name: &'static str,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (_, v) in rows {
            match serde_json::from_slice(&v) {
                Ok(x) => out.push(x),
                Err(_) => *s.unreadable.entry(name).or_default() += 1,
            }
        }
        out
    }
    let rows = read(&mut s, "incidents");
    s.incidents = decode(&mut s, "incidents", rows);
    let rows = read(&mut s, "timeline");
    let mut events = Vec::new();
    for (k, v) in rows {
        match (k.get(..8), serde_json::from_slice::<Event>(&v)) {
            (Some(id), Ok(e)) => {
                let id = u64::from_be_bytes(id.try_into().unwrap_or([0; 8]));
                events.push((IncidentId(id), e));
            }
            _ => *s.unreadable.entry("timeline").or_default() += 1,
        }
    }
    s.events = events;
    let rows = read(&mut s, "outbox");
    s.outbox = decode(&mut s, "outbox", rows);
    let rows = read(&mut s, "dead_letters");
    s.dead = decode(&mut s, "dead_letters", rows);
    s.timers = read(&mut s, "timers").len();
    s.adapter = read(&mut s, "adapter")
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(k).ok().map(|k| (k, v)))
        .collect();
    s.drills = read(&mut s, "drill_schedule")
        .into_iter()
        .filter_map(|(k, v)| {
            let ms = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
            let due = Utc.timestamp_millis_opt(ms as i64).single()?;
            Some((due, String::from_utf8_lossy(&v).into_owned()))
        })
        .collect();
    s
}

/// Replays into the copy `opened` (in the scratch folder `data`) the journal records after its
/// own "journal_applied" mark, as `Store::open` does. Returns how many were applied.
fn complete_from_journal(opened: &sled::Db, data: &Path) -> Result<u64, String> {
    // A damaged tree may panic inside sled; the copy is thrown away after.
    let run = || -> Result<u64, String> {
        let trees = super::commit::open_trees(opened).map_err(|e| e.to_string())?;
        let meta = opened
            .open_tree(super::journal::T::Meta.name())
            .map_err(|e| e.to_string())?;
        let applied = super::sled::meta_u64(&meta, "journal_applied")
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        super::journal::replay(data, applied, |ws| {
            super::commit::apply_plain(&trees, ws).map_err(|e| e.to_string())
        })
        .map(|r| r.records)
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err("the database copy could not take its changes".into()))
}

impl Store {
    /// Writes what `salvage` read into this (new, empty) store: incidents with their events and
    /// timers, waiting messages (renumbered, in order), dead letters, front-end ids and the drill
    /// schedule. Records of delivery attempts are left behind.
    pub fn import(&self, s: &Salvage) -> Result<(), StoreError> {
        if !self.incidents.is_empty() || !self.outbox.is_empty() {
            return Err(StoreError::Unusable {
                dir: self.dir.clone(),
                reason: "it is not empty; export into a new folder".into(),
            });
        }
        let mut incidents = s.incidents.clone();
        incidents.sort_by_key(|i| i.id);
        for inc in &incidents {
            let events: Vec<Event> = s
                .events
                .iter()
                .filter(|(id, _)| *id == inc.id)
                .map(|(_, e)| e.clone())
                .collect();
            self.commit(Commit {
                before: None,
                after: inc,
                shared: None,
                events: &events,
                outbox: &[],
                consumed: None,
            })?;
        }
        let mut waiting = Vec::with_capacity(s.outbox.len());
        for m in &s.outbox {
            waiting.push(Outgoing {
                id: self.outbox_id()?,
                ..m.clone()
            });
        }
        self.queue(&waiting)?;
        for d in &s.dead {
            // Renumbered too, so that a retried dead letter cannot collide with a new message.
            let mut d = d.clone();
            d.message.id = self.outbox_id()?;
            let value = to_json(&d)?;
            self.wp.write_with(super::commit::Mode::Durable, |ws| {
                ws.put(super::journal::T::Dead, d.message.id.to_be_bytes(), &value);
                Ok(())
            })?;
        }
        for (k, v) in &s.adapter {
            if !k.starts_with("discord/attempt/") {
                self.adapter_put(k, v)?;
            }
        }
        for (due, service) in &s.drills {
            self.set_drill(service, Some(*due), &[])?;
        }
        self.make_all_durable()
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal::{Journal, T, WriteSet};
    use super::super::{Commit, Store};
    use crate::config::Config;
    use crate::domain::engine::{self, Actor, Ctx};
    use crate::domain::{Exercise, IncidentId, Severity, UserName};

    /// A folder as a crash leaves it: sled as a clean close left it, then an answered change
    /// (a new incident and its events) that only the journal holds.
    #[test]
    fn doctor_reads_and_exports_what_only_the_journal_holds() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.adapter_put("kept", b"1").unwrap();
        }
        let policy = Config::builtin().unwrap().policy;
        let user = UserName::new("alice");
        let actor = Actor {
            roles: policy.roster.roles_of(&user),
            user,
        };
        let ctx = Ctx {
            now: chrono::Utc::now(),
            policy: &policy,
            overrides: &[],
        };
        let d = engine::open(
            &ctx,
            &actor,
            IncidentId(7),
            "Mail down",
            Severity::Sev1,
            "mail",
            Exercise::Real,
        )
        .unwrap();
        // The same bytes a commit journals: written through a scratch store, read back.
        let scratch = tempfile::tempdir().unwrap();
        let ws = {
            let s = Store::open(scratch.path()).unwrap();
            s.commit(Commit {
                before: None,
                after: &d.incident,
                shared: None,
                events: &d.events,
                outbox: &[],
                consumed: None,
            })
            .unwrap();
            // Closed and reopened, so that sled holds it.
            drop(s);
            let s = Store::open(scratch.path()).unwrap();
            let mut ws = WriteSet::default();
            for (k, v) in s.incidents.iter().map(Result::unwrap) {
                ws.put(T::Incidents, k, v);
            }
            for (k, v) in s.timeline.iter().map(Result::unwrap) {
                ws.put(T::Timeline, k, v);
            }
            ws
        };
        let mut j = Journal::start(dir.path(), 1_000_000).unwrap();
        j.append(&ws).unwrap();
        j.sync().unwrap();
        drop(j);

        let found = super::salvage(dir.path());
        assert_eq!(found.journal, Ok(1));
        assert_eq!(found.verdict, None, "{:?}", found.verdict);
        assert_eq!(
            found.incidents.iter().map(|i| i.id).collect::<Vec<_>>(),
            [IncidentId(7)]
        );
        assert_eq!(found.events.len(), d.events.len());
        assert!(!d.events.is_empty());
        assert!(found.adapter.iter().any(|(k, _)| k == "kept"));
        // The folder is untouched: its journal still holds the record.
        assert_eq!(super::salvage(dir.path()).journal, Ok(1));

        // The export holds it, as the folder itself does once opened.
        let out = tempfile::tempdir().unwrap();
        Store::open(out.path()).unwrap().import(&found).unwrap();
        let exported = Store::open(out.path()).unwrap();
        assert_eq!(
            exported.incident(IncidentId(7)).unwrap().map(|i| i.title),
            Some("Mail down".to_string())
        );
        let opened = Store::open(dir.path()).unwrap();
        assert!(opened.incident(IncidentId(7)).unwrap().is_some());
    }

    #[test]
    fn a_damaged_journal_is_reported_and_the_folder_judged_damaged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.adapter_put("kept", b"1").unwrap();
        }
        let mut j = Journal::start(dir.path(), 1_000_000).unwrap();
        let mut ws = WriteSet::default();
        ws.put(T::Adapter, "first", "1");
        j.append(&ws).unwrap();
        let mut ws = WriteSet::default();
        ws.put(T::Adapter, "second", "2");
        j.append(&ws).unwrap();
        j.sync().unwrap();
        drop(j);
        let seg = std::fs::read_dir(dir.path().join(super::super::journal::DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        // Damage inside the first record, with a whole record after it: not a torn tail.
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.len() / 4;
        bytes[at] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();

        let found = super::salvage(dir.path());
        assert!(found.journal.is_err(), "{:?}", found.journal);
        assert!(
            found
                .verdict
                .as_deref()
                .is_some_and(|v| v.contains("journal")),
            "{:?}",
            found.verdict
        );
        assert!(found.adapter.iter().any(|(k, _)| k == "kept"));
        assert!(!found.adapter.iter().any(|(k, _)| k == "second"));
        // An open refuses it too, before sled has opened the folder in place.
        let db = dir.path().join("db");
        let before = super::integrity::stats(&db).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(super::super::StoreError::Corrupt { .. })
        ));
        assert_eq!(
            super::integrity::stats(&db).unwrap(),
            before,
            "sled untouched"
        );
        assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the journal untouched");
    }
}
