//! Delivery: how the outbox reaches people, and what happens when it cannot.
//!
//! The contract:
//! - **Lanes.** Every outbox message has a [`Destination`]; a lane is one destination (an
//!   incident's channel, one person's direct messages, the ops channel). Messages are delivered
//!   in outbox order within a lane, lanes run in parallel with a bounded number in flight, and a
//!   slow, failing or rate-limited lane never delays another ([`courier`]).
//! - **At least once.** A message leaves the outbox only once delivered, dead-lettered, or
//!   replaced by its fallback copies; its outbox id is its idempotency key.
//! - **Waits.** A lane's backoff is its own, starts at 1 s, doubles, is capped at
//!   [`courier::BACKOFF_MAX`], and resets on success. A wait the platform asked for is kept by
//!   the port's rate limiter ([`ratelimit`]), so no newly queued message jumps it.
//! - **Nothing lost quietly.** A nudge that cannot reach its channel for good still reaches its
//!   targets by direct message (the SDM always) and the ops channel ([`fallback`]); a dead letter
//!   always produces a notice to the SDM and the ops channel. Trouble shows in `/incident status`
//!   and on the status card ([`health`]).

pub mod courier;
pub mod fallback;
pub mod health;
pub mod ratelimit;

use serde::{Deserialize, Serialize};

use crate::domain::{IncidentId, UserName};

pub use courier::{Courier, Drained};
pub use health::Health;

/// Where an outbox message goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// The incident's own channel (the default, and what older records meant).
    #[default]
    Incident,
    /// The operations channel (`discord.ops_channel_id`; the console's `#warroom`).
    Ops,
    /// One person's direct messages.
    Direct { user: UserName },
}

/// A lane's key: one destination. Incident 0 stands for no incident (drill reminders), whose
/// messages go to the ops channel.
pub fn lane(incident: IncidentId, to: &Destination) -> String {
    match to {
        Destination::Incident if incident.0 != 0 => format!("incident:{}", incident.0),
        Destination::Incident | Destination::Ops => "ops".to_string(),
        Destination::Direct { user } => format!("dm:{user}"),
    }
}
