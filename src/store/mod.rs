//! The durable store: what a commit, a claim and a delivery mean, whatever keeps them.
//!
//! The contract:
//! - **A commit** (`Store::commit`) applies one decision (an incident's new state, its timeline
//!   events, its timer changes and its outgoing messages) atomically; it is durable, as
//!   `StoreOptions::durability` says, once `Store::make_durable` has covered it, and no reply or
//!   delivery goes out before that.
//! - **A claim**: a fired timer leaves the timers in the same commit that queues its messages,
//!   so it fires exactly once.
//! - **A delivery**: a message leaves the outbox only once delivered, dead-lettered (with its
//!   notices, atomically) or replaced by its fallback copies: at least once, keyed by its id.
//! - **A damaged folder** is refused with `StoreError::Corrupt` and never written to
//!   (`integrity`); `salvage` reads what survives, on a copy.
//!
//! `sled.rs` keeps it in one embedded sled database; `salvage.rs` is `warroom doctor`'s reader;
//! `snapshot.rs` is the backup file's format (`warroom backup` and `warroom restore`);
//! `postgres.rs` is the PostgreSQL store: schema, backups, commit path, lease and fencing
//! (`App` does not run on it yet: see that module). `Backend` is the interface both offer.

pub mod integrity;
mod oncall;
pub mod postgres;
mod salvage;
mod sled;
pub mod snapshot;

pub use self::sled::Store;
pub use salvage::{Salvage, salvage};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::delivery::Destination;
use crate::domain::{
    Button, Event, Incident, IncidentId, MessageKind, NudgeId, Target, TimerKind, TimerSeq,
};

use chrono::{DateTime, Utc};

#[derive(Clone, Debug, thiserror::Error)]
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
    #[error(
        "{target} is not empty (it holds {holds}); a backup is restored only into an empty store: give a new data folder"
    )]
    NotEmpty { target: String, holds: String },
    #[error("storage error: {0}")]
    Sled(String),
    #[error(
        "PostgreSQL at {target} cannot be used: {detail}; nothing was changed. Check that the server runs, that the URL's user may connect to its database, and try again"
    )]
    Postgres { target: String, detail: String },
    #[error(
        "the database at {target} has schema version {found}, newer than the {known} this warroom knows; nothing was changed. Run the warroom version that migrated it, or a newer one"
    )]
    NewerSchema {
        target: String,
        found: i64,
        known: i64,
    },
    /// A fired timer another transaction holds or has already taken: nothing was committed.
    #[error(
        "timer {seq} of {incident} was claimed by another process; nothing of this batch was kept"
    )]
    Claimed { incident: IncidentId, seq: u32 },
    /// This replica's lease term is no longer the database's: another took over.
    #[error(
        "this replica was deposed: its lease term {term} is no longer current (the lease is at term {current}); nothing was committed or sent"
    )]
    Deposed { term: i64, current: i64 },
    /// sled found corrupt data on a read; `Store::explain` turns it into `Corrupt`.
    #[error(
        "the data folder is damaged ({0}); nothing was changed. Move it aside to start afresh, or restore it from a backup"
    )]
    SledCorrupt(String),
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        match e {
            ::sled::Error::Corruption { .. } => StoreError::SledCorrupt(e.to_string()),
            ::sled::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                StoreError::SledCorrupt(io.to_string())
            }
            e => StoreError::Sled(e.to_string()),
        }
    }
}

impl From<::sled::transaction::TransactionError<()>> for StoreError {
    fn from(e: ::sled::transaction::TransactionError<()>) -> Self {
        use ::sled::transaction::TransactionError;
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
    pub(crate) key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct TimerRecord {
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

/// How much a commit waits for before it counts as saved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// An `fdatasync` of the database covers the commit before the reply: survives a process
    /// crash, an OS crash and a power cut (given a disk that honours the sync).
    Fsync,
    /// sled's own flush only (`sync_file_range`, with sled's real fsync every 500 ms): survives
    /// a process crash; an OS crash or power cut can lose the last half second of answers.
    Flush,
}

/// How a store is opened.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreOptions {
    pub durability: Durability,
    /// sled's page cache, in bytes: the bulk of warroom's memory.
    pub cache_bytes: u64,
    /// `[store] url`: a PostgreSQL database instead of the sled folder.
    pub url: Option<postgres::PgUrl>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Fsync,
            cache_bytes: 16 * 1024 * 1024,
            url: None,
        }
    }
}

/// The store's interface, as both backends offer it: the sled folder (`Store`) and PostgreSQL
/// (`postgres::PgStore`). One contract suite (`tests/it/contract.rs`) runs against both. `App`
/// still holds the sled `Store` itself; moving it onto this trait is the next step of running
/// on PostgreSQL.
pub trait Backend {
    /// "sled" or "postgres", for messages and test names.
    fn kind(&self) -> &'static str;
    /// The id the next opened incident gets.
    fn next_incident_id(&self) -> Result<IncidentId, StoreError>;
    /// A fresh outbox id, above every one handed out before.
    fn outbox_id(&self) -> Result<u64, StoreError>;
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// One incident's timeline, in order.
    fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError>;
    /// The messages waiting for delivery, in outbox order.
    fn outbox(&self) -> Result<Vec<Outgoing>, StoreError>;
    /// The earliest pending timers due at or before `now`, at most `limit`, in deadline order.
    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueTimer>, StoreError>;
    fn pending_timers(&self) -> Result<usize, StoreError>;
    /// Applies the decisions as one atomic unit and returns once it is durable.
    fn commit_durably(&self, commits: &[Commit]) -> Result<(), StoreError>;
    /// The whole state at one instant.
    fn snapshot(&self) -> Result<snapshot::Snapshot, StoreError>;
    /// Loads a backup into this empty store; refuses one that holds anything.
    fn restore(&self, s: &snapshot::Snapshot) -> Result<(), StoreError>;
    /// What it holds, if anything.
    fn holds(&self) -> Result<Option<String>, StoreError>;
}

impl Backend for Store {
    fn kind(&self) -> &'static str {
        "sled"
    }
    fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        Store::next_incident_id(self)
    }
    fn outbox_id(&self) -> Result<u64, StoreError> {
        Store::outbox_id(self)
    }
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        Store::incident(self, id)
    }
    fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        Store::events(self, id)
    }
    fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
        Store::outbox(self)
    }
    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        Store::due_timers(self, now, limit)
    }
    fn pending_timers(&self) -> Result<usize, StoreError> {
        Ok(Store::pending_timers(self))
    }
    fn commit_durably(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.commit_all(commits)?;
        self.make_all_durable()
    }
    fn snapshot(&self) -> Result<snapshot::Snapshot, StoreError> {
        Store::snapshot(self)
    }
    fn restore(&self, s: &snapshot::Snapshot) -> Result<(), StoreError> {
        Store::restore(self, s)
    }
    fn holds(&self) -> Result<Option<String>, StoreError> {
        Ok(Store::holds(self))
    }
}

impl Backend for postgres::PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        postgres::PgStore::next_incident_id(self)
    }
    fn outbox_id(&self) -> Result<u64, StoreError> {
        postgres::PgStore::outbox_id(self)
    }
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        postgres::PgStore::incident(self, id)
    }
    fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        postgres::PgStore::events(self, id)
    }
    fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
        postgres::PgStore::outbox(self)
    }
    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        postgres::PgStore::due_timers(self, now, limit)
    }
    fn pending_timers(&self) -> Result<usize, StoreError> {
        postgres::PgStore::pending_timers(self)
    }
    fn commit_durably(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.commit_all(commits)
    }
    fn snapshot(&self) -> Result<snapshot::Snapshot, StoreError> {
        postgres::PgStore::snapshot(self)
    }
    fn restore(&self, s: &snapshot::Snapshot) -> Result<(), StoreError> {
        postgres::PgStore::restore(self, s)
    }
    fn holds(&self) -> Result<Option<String>, StoreError> {
        postgres::PgStore::holds(self)
    }
}
