//! The durable store: what a commit, a claim and a delivery mean, whatever keeps them.
//!
//! The contract:
//! - **A commit** (`Store::commit`) applies one decision (an incident's new state, its timeline
//!   events, its timer changes and its outgoing messages) atomically; it is durable, as
//!   `StoreOptions::durability` says, once `Backend::make_all_durable` has covered it, and no reply or
//!   delivery goes out before that.
//! - **A claim**: a fired timer leaves the timers in the same commit that queues its messages,
//!   so it fires exactly once.
//! - **A delivery**: a message leaves the outbox only once delivered, dead-lettered (with its
//!   notices, atomically) or replaced by its fallback copies: at least once, keyed by its id.
//! - **A damaged folder** is refused with `StoreError::Corrupt` and never written to
//!   (`integrity`); `salvage` reads what survives, on a copy.
//!
//! `sled.rs` keeps it in one embedded sled database, written through `commit.rs` (one writer,
//! the journal of `journal.rs`, group sync, checkpoints); `salvage.rs` is `warroom doctor`'s reader;
//! `snapshot.rs` is the backup file's format (`warroom backup` and `warroom restore`);
//! `postgres/` is the PostgreSQL store: schema, backups, commit path, lease and fencing, and
//! the rest of the interface (`records.rs`). `Backend` is the interface both offer, and all that
//! `App` and the front ends see.

mod commit;
pub mod integrity;
mod journal;
mod oncall;
pub mod postgres;
mod salvage;
mod sled;
pub mod snapshot;

pub use self::sled::Store;
pub use salvage::{Salvage, salvage};

use std::path::PathBuf;
use std::sync::Arc;

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
    /// A sync or an apply failed after the change reached the journal: whether it is kept is
    /// known only after a restart replays the journal.
    #[error(
        "the data folder {dir} could not confirm a change reached the disk ({detail}); it may or may not have been kept, and this process saves nothing more. Check the disk, restart warroom (it completes what its journal holds), then look at /incident status"
    )]
    Unconfirmed { dir: PathBuf, detail: String },
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
    /// `after` as the caller shares it, if it does: the sled store keeps that copy for later
    /// reads instead of cloning `after`.
    pub shared: Option<&'a Arc<Incident>>,
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
    /// `[store] lease`: on PostgreSQL, how long the active replica's lease lasts unless
    /// renewed (it is renewed every third of that).
    pub lease: std::time::Duration,
    /// sled: after this many commits, a clean close reopens sled once so that it writes a fresh
    /// snapshot and the next start reads a short log (see `sled::Refresh`).
    pub refresh_after: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Fsync,
            cache_bytes: 16 * 1024 * 1024,
            url: None,
            lease: std::time::Duration::from_secs(15),
            refresh_after: 20_000,
        }
    }
}

/// Opens the store `options` names: the PostgreSQL database of `options.url`, else the sled
/// folder `dir`.
pub fn open(
    dir: &std::path::Path,
    options: &StoreOptions,
) -> Result<std::sync::Arc<dyn Backend>, StoreError> {
    Ok(match &options.url {
        Some(url) => std::sync::Arc::new(postgres::PgStore::connect(url)?),
        None => std::sync::Arc::new(Store::open_with(dir, options)?),
    })
}

/// The store's interface, as both backends offer it: the sled folder (`Store`) and PostgreSQL
/// (`postgres::PgStore`). `App`, the courier, the scheduler and the front ends use only this,
/// so they run unchanged on either; one contract suite (`tests/it/contract.rs`) runs against
/// both. Every write is atomic; what "durable" means is each backend's (module docs above).
pub trait Backend: Send + Sync {
    /// "sled" or "postgres", for messages and test names.
    fn kind(&self) -> &'static str;
    /// Where it is, for messages: the folder, or the URL without its password.
    fn describe(&self) -> String;
    /// The id the next opened incident gets.
    fn next_incident_id(&self) -> Result<IncidentId, StoreError>;
    /// A fresh outbox id, above every one handed out before.
    fn outbox_id(&self) -> Result<u64, StoreError>;
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// The same incident, shared: a store that keeps decoded incidents hands out its copy
    /// instead of cloning it (the decision path reads one per command).
    fn incident_shared(&self, id: IncidentId) -> Result<Option<Arc<Incident>>, StoreError> {
        Ok(self.incident(id)?.map(Arc::new))
    }
    /// Every incident, in id order.
    fn incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// The newest open incident.
    fn latest_open(&self) -> Result<Option<Incident>, StoreError>;
    /// Incidents opened at or after `since`, newest first.
    fn incidents_opened_since(&self, since: DateTime<Utc>) -> Result<Vec<Incident>, StoreError>;
    /// The open incident that holds alert group `group` of `source`, if any.
    fn alert_incident(&self, source: &str, group: &str) -> Result<Option<IncidentId>, StoreError>;
    /// One incident's timeline, in order.
    fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError>;
    /// The time of the latest event ever committed, if any.
    fn last_event_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The earliest pending timers due at or before `now`, at most `limit`, in deadline order.
    fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueTimer>, StoreError>;
    /// The earliest pending timer.
    fn next_timer(&self) -> Result<Option<DueTimer>, StoreError>;
    /// Removes a timer its incident no longer knows (already consumed).
    fn drop_timer(&self, t: &DueTimer) -> Result<(), StoreError>;
    fn pending_timers(&self) -> Result<usize, StoreError>;
    /// The deadlines of one incident's pending timers, as the stored timers hold them (not the incident record).
    fn timers_of(&self, id: IncidentId) -> Result<Vec<DateTime<Utc>>, StoreError>;
    /// Applies the decisions, in order, as one atomic unit (claiming their fired timers).
    fn commit_all(&self, commits: &[Commit]) -> Result<(), StoreError>;
    /// Returns once every commit so far is durable (a no-op where a commit is durable already).
    fn make_all_durable(&self) -> Result<(), StoreError>;
    /// `commit_all`, returning once it is durable.
    fn commit_durably(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.commit_all(commits)?;
        self.make_all_durable()
    }
    /// Commits made through this handle.
    fn committed(&self) -> u64;
    /// Data syncs this handle has issued (each PostgreSQL commit is one, at the server).
    fn syncs(&self) -> u64;
    /// The error as a person should read it (sled's damaged-folder message, for one).
    fn explain(&self, e: StoreError) -> StoreError;
    /// The messages waiting for delivery, in outbox order.
    fn outbox(&self) -> Result<Vec<Outgoing>, StoreError>;
    /// The message was delivered: it leaves the outbox.
    fn delivered(&self, id: u64) -> Result<(), StoreError>;
    /// Queues messages outside a decision (copies, notices, a lost answer), in one batch.
    fn queue(&self, msgs: &[Outgoing]) -> Result<(), StoreError>;
    /// Queues `original`'s fallback copies and marks it, if it still waits (else false).
    fn queue_fallback(&self, original: &Outgoing, copies: &[Outgoing]) -> Result<bool, StoreError>;
    /// Moves a refused message to the dead letters and queues `notices`, atomically.
    fn dead_letter(
        &self,
        msg: &Outgoing,
        reason: &str,
        notices: &[Outgoing],
    ) -> Result<(), StoreError>;
    fn dead_letter_list(&self) -> Result<Vec<DeadLetter>, StoreError>;
    fn dead_letters(&self) -> Result<usize, StoreError>;
    /// Puts dead letters back in the outbox (`id` None: all). Returns how many.
    fn retry_dead(&self, id: Option<u64>) -> Result<usize, StoreError>;
    /// Scheduled drills: (due, service), earliest first.
    fn drills(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError>;
    fn drill_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError>;
    /// Replaces (None: removes) a service's next drill and queues `outbox`, atomically.
    fn set_drill(
        &self,
        service: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError>;
    /// Pending shift handoffs: (due, role key), earliest first.
    fn handoffs(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError>;
    fn handoff_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError>;
    /// Replaces (None: removes) a role's next handoff and queues `outbox`, atomically.
    fn set_handoff(
        &self,
        role: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError>;
    /// Every on-call override, oldest first (removed ones too, marked).
    fn overrides(&self) -> Result<Vec<crate::domain::oncall::Override>, StoreError>;
    fn override_id(&self) -> Result<u64, StoreError>;
    /// Stores an override, durably.
    fn put_override(&self, o: &crate::domain::oncall::Override) -> Result<(), StoreError>;
    /// A front end's own durable mapping (an incident's Discord channel id, say).
    fn adapter_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn adapter_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn adapter_remove(&self, key: &str) -> Result<(), StoreError>;
    /// The whole state at one instant.
    fn snapshot(&self) -> Result<snapshot::Snapshot, StoreError>;
    /// Loads a backup into this empty store; refuses one that holds anything.
    fn restore(&self, s: &snapshot::Snapshot) -> Result<(), StoreError>;
    /// What it holds, if anything.
    fn holds(&self) -> Result<Option<String>, StoreError>;
    /// Whether this process may act on the chat platform now: always on sled (one process
    /// holds the folder); on PostgreSQL only while it is the active replica (`PgStore::may_act`).
    fn may_act(&self, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// The PostgreSQL store behind it, for the replicas' lease (None on sled).
    fn postgres(&self) -> Option<&postgres::PgStore> {
        None
    }
}

/// The `Backend` methods both stores offer under the same name and signature, delegated to
/// their inherent methods (which path syntax prefers over the trait's).
macro_rules! delegate_backend {
    () => {
        fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
            Self::next_incident_id(self)
        }
        fn outbox_id(&self) -> Result<u64, StoreError> {
            Self::outbox_id(self)
        }
        fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
            Self::incident(self, id)
        }
        fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
            Self::incidents(self)
        }
        fn latest_open(&self) -> Result<Option<Incident>, StoreError> {
            Self::latest_open(self)
        }
        fn incidents_opened_since(
            &self,
            since: DateTime<Utc>,
        ) -> Result<Vec<Incident>, StoreError> {
            Self::incidents_opened_since(self, since)
        }
        fn alert_incident(
            &self,
            source: &str,
            group: &str,
        ) -> Result<Option<IncidentId>, StoreError> {
            Self::alert_incident(self, source, group)
        }
        fn events(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
            Self::events(self, id)
        }
        fn last_event_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
            Self::last_event_at(self)
        }
        fn due_timers(
            &self,
            now: DateTime<Utc>,
            limit: usize,
        ) -> Result<Vec<DueTimer>, StoreError> {
            Self::due_timers(self, now, limit)
        }
        fn next_timer(&self) -> Result<Option<DueTimer>, StoreError> {
            Self::next_timer(self)
        }
        fn drop_timer(&self, t: &DueTimer) -> Result<(), StoreError> {
            Self::drop_timer(self, t)
        }
        fn timers_of(&self, id: IncidentId) -> Result<Vec<DateTime<Utc>>, StoreError> {
            Self::timers_of(self, id)
        }
        fn commit_all(&self, commits: &[Commit]) -> Result<(), StoreError> {
            Self::commit_all(self, commits)
        }
        fn committed(&self) -> u64 {
            Self::committed(self)
        }
        fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
            Self::outbox(self)
        }
        fn delivered(&self, id: u64) -> Result<(), StoreError> {
            Self::delivered(self, id)
        }
        fn queue(&self, msgs: &[Outgoing]) -> Result<(), StoreError> {
            Self::queue(self, msgs)
        }
        fn queue_fallback(
            &self,
            original: &Outgoing,
            copies: &[Outgoing],
        ) -> Result<bool, StoreError> {
            Self::queue_fallback(self, original, copies)
        }
        fn dead_letter(
            &self,
            msg: &Outgoing,
            reason: &str,
            notices: &[Outgoing],
        ) -> Result<(), StoreError> {
            Self::dead_letter(self, msg, reason, notices)
        }
        fn dead_letter_list(&self) -> Result<Vec<DeadLetter>, StoreError> {
            Self::dead_letter_list(self)
        }
        fn retry_dead(&self, id: Option<u64>) -> Result<usize, StoreError> {
            Self::retry_dead(self, id)
        }
        fn drills(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
            Self::drills(self)
        }
        fn drill_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
            Self::drill_first(self)
        }
        fn set_drill(
            &self,
            service: &str,
            due: Option<DateTime<Utc>>,
            outbox: &[Outgoing],
        ) -> Result<(), StoreError> {
            Self::set_drill(self, service, due, outbox)
        }
        fn handoffs(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
            Self::handoffs(self)
        }
        fn handoff_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
            Self::handoff_first(self)
        }
        fn set_handoff(
            &self,
            role: &str,
            due: Option<DateTime<Utc>>,
            outbox: &[Outgoing],
        ) -> Result<(), StoreError> {
            Self::set_handoff(self, role, due, outbox)
        }
        fn overrides(&self) -> Result<Vec<crate::domain::oncall::Override>, StoreError> {
            Self::overrides(self)
        }
        fn override_id(&self) -> Result<u64, StoreError> {
            Self::override_id(self)
        }
        fn put_override(&self, o: &crate::domain::oncall::Override) -> Result<(), StoreError> {
            Self::put_override(self, o)
        }
        fn adapter_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Self::adapter_get(self, key)
        }
        fn adapter_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            Self::adapter_put(self, key, value)
        }
        fn adapter_remove(&self, key: &str) -> Result<(), StoreError> {
            Self::adapter_remove(self, key)
        }
        fn snapshot(&self) -> Result<snapshot::Snapshot, StoreError> {
            Self::snapshot(self)
        }
        fn restore(&self, s: &snapshot::Snapshot) -> Result<(), StoreError> {
            Self::restore(self, s)
        }
    };
}

impl Backend for Store {
    fn kind(&self) -> &'static str {
        "sled"
    }
    fn describe(&self) -> String {
        self.dir().display().to_string()
    }
    delegate_backend!();
    fn incident_shared(&self, id: IncidentId) -> Result<Option<Arc<Incident>>, StoreError> {
        Store::incident_shared(self, id)
    }
    fn pending_timers(&self) -> Result<usize, StoreError> {
        Ok(Store::pending_timers(self))
    }
    fn make_all_durable(&self) -> Result<(), StoreError> {
        Store::make_all_durable(self)
    }
    fn syncs(&self) -> u64 {
        Store::syncs(self)
    }
    fn explain(&self, e: StoreError) -> StoreError {
        Store::explain(self, e)
    }
    fn dead_letters(&self) -> Result<usize, StoreError> {
        Ok(Store::dead_letters(self))
    }
    fn holds(&self) -> Result<Option<String>, StoreError> {
        Ok(Store::holds(self))
    }
}

impl Backend for postgres::PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn describe(&self) -> String {
        self.target().to_string()
    }
    delegate_backend!();
    fn pending_timers(&self) -> Result<usize, StoreError> {
        postgres::PgStore::pending_timers(self)
    }
    /// A PostgreSQL commit is durable when it returns (the server syncs its log at commit).
    fn make_all_durable(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn syncs(&self) -> u64 {
        postgres::PgStore::committed(self)
    }
    fn explain(&self, e: StoreError) -> StoreError {
        e
    }
    fn dead_letters(&self) -> Result<usize, StoreError> {
        postgres::PgStore::dead_letters(self)
    }
    fn holds(&self) -> Result<Option<String>, StoreError> {
        postgres::PgStore::holds(self)
    }
    fn may_act(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        postgres::PgStore::may_act(self, now)
    }
    fn postgres(&self) -> Option<&postgres::PgStore> {
        Some(self)
    }
}
