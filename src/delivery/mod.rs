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

/// How people name a message's destination.
pub fn place(msg: &crate::store::Outgoing) -> String {
    match (&msg.to, msg.incident.0) {
        (Destination::Incident, 0) | (Destination::Ops, _) => "the ops channel".to_string(),
        (Destination::Incident, _) => format!("#{}", msg.channel),
        (Destination::Direct { user }, _) => format!("{user}'s direct messages"),
    }
}

fn excerpt(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(100)
        .collect();
    if text.chars().count() > 100 {
        format!("{one_line}…")
    } else {
        one_line
    }
}

/// `warroom outbox`: what waits for delivery and what was given up on, for people.
pub fn listing(waiting: &[crate::store::Outgoing], dead: &[crate::store::DeadLetter]) -> String {
    use crate::domain::engine::clock;
    let about = |m: &crate::store::Outgoing| {
        let inc = if m.incident.0 == 0 {
            "-".to_string()
        } else {
            m.incident.to_string()
        };
        format!(
            "{:>6}  {inc} → {}  {} at {}  \"{}\"",
            m.id,
            place(m),
            m.kind.as_str(),
            clock(m.at),
            excerpt(&m.text)
        )
    };
    let mut out = format!("Waiting for delivery: {}\n", waiting.len());
    for m in waiting {
        out.push_str(&about(m));
        out.push('\n');
    }
    out.push_str(&format!("\nDead letters (given up on): {}\n", dead.len()));
    for d in dead {
        out.push_str(&about(&d.message));
        out.push_str(&format!("\n        why: {}\n", excerpt(&d.reason)));
    }
    if !dead.is_empty() {
        out.push_str(
            "\nSend one again with `warroom outbox retry ID`, or all of them with `warroom outbox retry --all`.\n",
        );
    }
    out
}
