//! Backups: a store's whole state as one documented, versioned file (`warroom backup`), and
//! back into an empty store (`warroom restore`).
//!
//! **The format, version 1.** UTF-8 JSON lines. The first line is the header:
//!
//! ```text
//! {"format":"warroom-backup","version":1,"next_incident":4,"next_outbox_id":37,"last_event_at":"…"}
//! ```
//!
//! `next_incident` is the id the next opened incident gets; `next_outbox_id` the first outbox id
//! a restored store may hand out (so no new message reuses the idempotency key of one already
//! sent); `last_event_at` the latest event time ever committed (the virtual clock never starts
//! before it). Then one record per line, each an object with one key naming its kind, in this
//! order and, within a kind, in key order:
//!
//! | line | what |
//! |---|---|
//! | `{"incident":{…}}` | an incident, as the store keeps it (`Incident`'s JSON) |
//! | `{"event":{"incident":1,"event":{…}}}` | a timeline event |
//! | `{"timer":{"due":"…","incident":1,"seq":3,"kind":…}}` | a pending timer |
//! | `{"outbox":{…}}` | a message waiting for delivery (`Outgoing`), with its outbox id |
//! | `{"dead_letter":{"message":{…},"reason":"…"}}` | a message the platform refused for good |
//! | `{"adapter":{"key":"…","text":"…"}}` | a front end's own id (`"hex"` instead of `"text"` if not UTF-8) |
//! | `{"drill":{"due":"…","service":"…"}}` | a service's next scheduled drill |
//! | `{"alert_group":{"source":"…","group":"…","incident":1}}` | an alert group held by an open incident |
//! | `{"handoff":{"due":"…","role":"l1"}}` | a scheduled role's next shift handoff |
//! | `{"override":{…}}` | an on-call override (`Override`'s JSON), removed ones included |
//! | `{"end":{"records":N,"checksum":"…"}}` | the last line: how many records came before it, and the FNV-1a 64 checksum (16 hex digits) of every byte before this line |
//!
//! A file without its `end` line, with a wrong count or checksum, with an unknown kind of line,
//! or with a record that names an incident the file does not hold, is refused whole: nothing
//! is restored from it. A newer `version` is refused with a message naming it.
//!
//! The file holds no time of its own (the file's modification time says when it was taken):
//! two backups of the same state are byte for byte the same, whichever backend they came from.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DeadLetter, Outgoing};
use crate::domain::oncall::Override;
use crate::domain::{Event, Incident, IncidentId, TimerKind, TimerSeq};

/// The `format` every backup's header names.
pub const FORMAT: &str = "warroom-backup";
/// The newest format version this binary writes and reads.
pub const VERSION: u32 = 1;

/// A pending timer, as the store's deadline index holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimerLine {
    pub due: DateTime<Utc>,
    pub incident: IncidentId,
    pub seq: TimerSeq,
    pub kind: TimerKind,
}

/// A store's whole state at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub next_incident: u64,
    pub next_outbox_id: u64,
    pub last_event_at: Option<DateTime<Utc>>,
    /// In id order.
    pub incidents: Vec<Incident>,
    /// In (incident, seq) order.
    pub events: Vec<(IncidentId, Event)>,
    /// In deadline order.
    pub timers: Vec<TimerLine>,
    /// In outbox id order.
    pub outbox: Vec<Outgoing>,
    pub dead: Vec<DeadLetter>,
    /// In key order.
    pub adapter: Vec<(String, Vec<u8>)>,
    /// In due order.
    pub drills: Vec<(DateTime<Utc>, String)>,
    /// (source, group, incident), in (source, group) order.
    pub alert_groups: Vec<(String, String, IncidentId)>,
    /// In due order.
    pub handoffs: Vec<(DateTime<Utc>, String)>,
    /// In id order.
    pub overrides: Vec<Override>,
}

impl Snapshot {
    /// Whether it holds nothing a restore would write (ids aside).
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.events.is_empty()
            && self.timers.is_empty()
            && self.outbox.is_empty()
            && self.dead.is_empty()
            && self.adapter.is_empty()
            && self.drills.is_empty()
            && self.alert_groups.is_empty()
            && self.handoffs.is_empty()
            && self.overrides.is_empty()
    }

    /// One line of counts, for the command line.
    pub fn summary(&self) -> String {
        format!(
            "{} incident(s), {} timeline event(s), {} pending timer(s), {} waiting message(s), {} dead letter(s), {} front-end id(s), {} drill(s), {} alert group(s), {} handoff(s), {} override(s)",
            self.incidents.len(),
            self.events.len(),
            self.timers.len(),
            self.outbox.len(),
            self.dead.len(),
            self.adapter.len(),
            self.drills.len(),
            self.alert_groups.len(),
            self.handoffs.len(),
            self.overrides.len()
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    next_incident: u64,
    next_outbox_id: u64,
    #[serde(default)]
    last_event_at: Option<DateTime<Utc>>,
}

/// Only the two fields every version keeps, read before the rest.
#[derive(Deserialize)]
struct Version {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Incident(Box<Incident>),
    Event {
        incident: IncidentId,
        event: Event,
    },
    Timer(TimerLine),
    Outbox(Outgoing),
    DeadLetter(DeadLetter),
    Adapter {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hex: Option<String>,
    },
    Drill {
        due: DateTime<Utc>,
        service: String,
    },
    AlertGroup {
        source: String,
        group: String,
        incident: IncidentId,
    },
    Handoff {
        due: DateTime<Utc>,
        role: String,
    },
    Override(Box<Override>),
    End {
        records: u64,
        checksum: String,
    },
}

/// Why a backup file cannot be restored; nothing was restored from it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "this is not a warroom backup (its first line is not a warroom-backup header); give the file `warroom backup --out` wrote"
    )]
    NotABackup,
    #[error(
        "this backup is format version {0}, newer than the {VERSION} this warroom reads; restore it with the warroom version that wrote it, or a newer one"
    )]
    Newer(u32),
    #[error(
        "the backup is damaged at line {line} ({detail}); nothing was restored. Use another copy of it"
    )]
    Damaged { line: usize, detail: String },
    #[error(
        "the backup is cut short ({0}); nothing was restored. It was not completely written or copied: use another copy of it"
    )]
    Truncated(String),
    #[error("a record cannot be written: {0}")]
    Encode(String),
}

/// FNV-1a, 64 bits, fed in pieces.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The file's bytes.
pub fn encode(s: &Snapshot) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::new();
    let mut sum = Fnv::new();
    let mut records = 0u64;
    let mut put = |out: &mut Vec<u8>, json: Result<Vec<u8>, serde_json::Error>, count: bool| {
        let mut line = json.map_err(|e| SnapshotError::Encode(e.to_string()))?;
        line.push(b'\n');
        sum.feed(&line);
        out.extend_from_slice(&line);
        if count {
            records = records.saturating_add(1);
        }
        Ok::<(), SnapshotError>(())
    };
    put(
        &mut out,
        serde_json::to_vec(&Header {
            format: FORMAT.into(),
            version: VERSION,
            next_incident: s.next_incident,
            next_outbox_id: s.next_outbox_id,
            last_event_at: s.last_event_at,
        }),
        false,
    )?;
    let line = |l: &Line| serde_json::to_vec(l);
    for i in &s.incidents {
        put(&mut out, line(&Line::Incident(Box::new(i.clone()))), true)?;
    }
    for (incident, event) in &s.events {
        put(
            &mut out,
            line(&Line::Event {
                incident: *incident,
                event: event.clone(),
            }),
            true,
        )?;
    }
    for t in &s.timers {
        put(&mut out, line(&Line::Timer(t.clone())), true)?;
    }
    for o in &s.outbox {
        put(&mut out, line(&Line::Outbox(o.clone())), true)?;
    }
    for d in &s.dead {
        put(&mut out, line(&Line::DeadLetter(d.clone())), true)?;
    }
    for (key, value) in &s.adapter {
        let (text, hex) = match std::str::from_utf8(value) {
            Ok(t) => (Some(t.to_string()), None),
            Err(_) => (None, Some(hex(value))),
        };
        put(
            &mut out,
            line(&Line::Adapter {
                key: key.clone(),
                text,
                hex,
            }),
            true,
        )?;
    }
    for (due, service) in &s.drills {
        put(
            &mut out,
            line(&Line::Drill {
                due: *due,
                service: service.clone(),
            }),
            true,
        )?;
    }
    for (source, group, incident) in &s.alert_groups {
        put(
            &mut out,
            line(&Line::AlertGroup {
                source: source.clone(),
                group: group.clone(),
                incident: *incident,
            }),
            true,
        )?;
    }
    for (due, role) in &s.handoffs {
        put(
            &mut out,
            line(&Line::Handoff {
                due: *due,
                role: role.clone(),
            }),
            true,
        )?;
    }
    for o in &s.overrides {
        put(&mut out, line(&Line::Override(Box::new(o.clone()))), true)?;
    }
    let end = Line::End {
        records,
        checksum: format!("{:016x}", sum.0),
    };
    let mut last = serde_json::to_vec(&end).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    last.push(b'\n');
    out.extend_from_slice(&last);
    Ok(out)
}

/// Reads a backup file whole, checking it before anything is restored from it.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let first = lines.next().ok_or(SnapshotError::NotABackup)?;
    let version: Version = serde_json::from_slice(first).map_err(|_| SnapshotError::NotABackup)?;
    if version.format != FORMAT {
        return Err(SnapshotError::NotABackup);
    }
    if version.version > VERSION {
        return Err(SnapshotError::Newer(version.version));
    }
    let damaged = |line: usize, detail: String| SnapshotError::Damaged { line, detail };
    let header: Header = serde_json::from_slice(first)
        .map_err(|e| damaged(1, format!("the header cannot be read: {e}")))?;
    let mut s = Snapshot {
        next_incident: header.next_incident,
        next_outbox_id: header.next_outbox_id,
        last_event_at: header.last_event_at,
        ..Snapshot::default()
    };
    let mut sum = Fnv::new();
    sum.feed(first);
    let mut records = 0u64;
    let mut ended = false;
    for (i, raw) in lines.enumerate() {
        let number = i.saturating_add(2);
        if ended {
            return Err(damaged(number, "there are lines after the end line".into()));
        }
        if !raw.ends_with(b"\n") {
            return Err(SnapshotError::Truncated(format!(
                "line {number} has no line end"
            )));
        }
        let line: Line = serde_json::from_slice(raw)
            .map_err(|e| damaged(number, format!("not a backup record: {e}")))?;
        match line {
            Line::End {
                records: n,
                checksum,
            } => {
                if n != records {
                    return Err(damaged(
                        number,
                        format!("the end line counts {n} record(s), but {records} came before it"),
                    ));
                }
                if checksum != format!("{:016x}", sum.0) {
                    return Err(damaged(
                        number,
                        "the checksum does not match the records: something in the file changed after it was written".into(),
                    ));
                }
                ended = true;
                continue;
            }
            Line::Incident(inc) => s.incidents.push(*inc),
            Line::Event { incident, event } => s.events.push((incident, event)),
            Line::Timer(t) => s.timers.push(t),
            Line::Outbox(o) => s.outbox.push(o),
            Line::DeadLetter(d) => s.dead.push(d),
            Line::Adapter { key, text, hex } => {
                let value = match (text, hex) {
                    (Some(t), None) => t.into_bytes(),
                    (None, Some(h)) => unhex(&h).ok_or_else(|| {
                        damaged(number, format!("adapter {key}: its hex value is malformed"))
                    })?,
                    _ => {
                        return Err(damaged(
                            number,
                            format!("adapter {key} needs exactly one of text and hex"),
                        ));
                    }
                };
                s.adapter.push((key, value));
            }
            Line::Drill { due, service } => s.drills.push((due, service)),
            Line::AlertGroup {
                source,
                group,
                incident,
            } => s.alert_groups.push((source, group, incident)),
            Line::Handoff { due, role } => s.handoffs.push((due, role)),
            Line::Override(o) => s.overrides.push(*o),
        }
        sum.feed(raw);
        records = records.saturating_add(1);
    }
    if !ended {
        return Err(SnapshotError::Truncated("its end line is missing".into()));
    }
    check(&s)?;
    Ok(s)
}

/// What a store would refuse or misread: references to incidents that are not there, repeated
/// keys, ids the header's counters do not cover.
fn check(s: &Snapshot) -> Result<(), SnapshotError> {
    let bad = |detail: String| SnapshotError::Damaged { line: 0, detail };
    let mut ids = BTreeSet::new();
    for i in &s.incidents {
        if !ids.insert(i.id) {
            return Err(bad(format!("{} appears twice", i.id)));
        }
        if i.id.0 >= s.next_incident {
            return Err(bad(format!(
                "{} is not below the header's next_incident {}",
                i.id, s.next_incident
            )));
        }
    }
    let known = |id: IncidentId, what: &str| {
        if ids.contains(&id) {
            Ok(())
        } else {
            Err(bad(format!(
                "{what} belongs to {id}, which the file does not hold"
            )))
        }
    };
    let mut events = BTreeSet::new();
    for (id, e) in &s.events {
        known(*id, "a timeline event")?;
        if !events.insert((*id, e.seq)) {
            return Err(bad(format!("event {} of {id} appears twice", e.seq)));
        }
    }
    for t in &s.timers {
        known(t.incident, "a timer")?;
    }
    for (_, _, id) in &s.alert_groups {
        known(*id, "an alert group")?;
    }
    let mut outbox = BTreeSet::new();
    for id in s
        .outbox
        .iter()
        .map(|o| o.id)
        .chain(s.dead.iter().map(|d| d.message.id))
    {
        if !outbox.insert(id) {
            return Err(bad(format!("outbox id {id} appears twice")));
        }
        if id >= s.next_outbox_id {
            return Err(bad(format!(
                "outbox id {id} is not below the header's next_outbox_id {}",
                s.next_outbox_id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn an_empty_snapshot_round_trips_and_every_cut_is_refused() {
        let s = Snapshot {
            next_incident: 1,
            adapter: vec![("k".into(), vec![0xff, 0]), ("t".into(), b"12".to_vec())],
            ..Snapshot::default()
        };
        let bytes = encode(&s).unwrap();
        assert_eq!(decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} was accepted");
        }
    }
}
