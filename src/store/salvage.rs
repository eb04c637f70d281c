//! `warroom doctor`'s reader: everything that can still be read from a data folder, taken
//! from a copy so that the folder itself is never touched, and the export into a new folder.

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
