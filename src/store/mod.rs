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
//! `postgres.rs` is the PostgreSQL schema, and backups in and out of it (the commit path on
//! PostgreSQL is not built yet: see that module).

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
