//! Who else gets a message, and what they are told: the SDM's direct copy of a nudge (queued
//! with the nudge, so it never depends on the channel post), fallback copies when a nudge cannot
//! reach its channel, and the notices about undeliverable messages. Pure functions over the
//! roster and the incident; the courier queues what they return.

use std::collections::BTreeSet;

use crate::domain::{Incident, IncidentRole, MessageKind, Policy, RoleKey, Target, UserName};
use crate::store::Outgoing;

use super::Destination;

/// The people who hold the SDM role for `inc`: its assigned SDM, else the roster's.
pub fn sdm_people(policy: &Policy, inc: Option<&Incident>) -> BTreeSet<UserName> {
    if let Some(u) = inc.and_then(|i| i.assignments.get(&IncidentRole::Sdm)) {
        return BTreeSet::from([u.clone()]);
    }
    policy
        .roster
        .holders(&RoleKey::sdm())
        .into_iter()
        .cloned()
        .collect()
}

/// The people a list of targets names: a role's holders (roster and incident participants) and
/// the users named.
pub fn people(policy: &Policy, inc: Option<&Incident>, targets: &[Target]) -> BTreeSet<UserName> {
    let mut out = BTreeSet::new();
    for t in targets {
        match t {
            Target::User(u) => {
                out.insert(u.clone());
            }
            Target::Role(r) if *r == RoleKey::sdm() => out.extend(sdm_people(policy, inc)),
            Target::Role(r) => {
                out.extend(policy.roster.holders(r).into_iter().cloned());
                if let Some(i) = inc {
                    out.extend(
                        i.participants
                            .iter()
                            .filter(|(_, role)| *role == r)
                            .map(|(u, _)| u.clone()),
                    );
                }
            }
        }
    }
    out
}

/// Whether a message pings the SDM of `inc`.
pub fn targets_sdm(policy: &Policy, inc: Option<&Incident>, targets: &[Target]) -> bool {
    let sdm = sdm_people(policy, inc);
    targets.iter().any(|t| match t {
        Target::Role(r) => *r == RoleKey::sdm(),
        Target::User(u) => sdm.contains(u) || policy.roster.roles_of(u).contains(&RoleKey::sdm()),
    })
}

/// Who gets a direct copy of `msg` when it is queued: the SDM, for a nudge that pings them (or a
/// message that belongs to no incident, such as a drill reminder), where the front end can reach
/// them directly and `dm_sdm` is on.
pub fn direct_copies(
    policy: &Policy,
    inc: Option<&Incident>,
    msg: &Outgoing,
    reach: &BTreeSet<UserName>,
    dm_sdm: bool,
) -> BTreeSet<UserName> {
    let for_sdm = match msg.to {
        Destination::Direct { .. } => false,
        Destination::Ops => msg.kind == MessageKind::Nudge,
        Destination::Incident if msg.incident.0 == 0 => msg.kind == MessageKind::Nudge,
        Destination::Incident => {
            msg.kind == MessageKind::Nudge && targets_sdm(policy, inc, &msg.mentions)
        }
    };
    if !(for_sdm && dm_sdm) {
        return BTreeSet::new();
    }
    sdm_people(policy, inc)
        .into_iter()
        .filter(|u| reach.contains(u))
        .collect()
}

/// Who gets a fallback copy of a nudge that cannot reach its channel: every person it targets
/// whom the front end can reach directly, and the SDM always, less those who already have a
/// direct copy.
pub fn fallback_people(
    policy: &Policy,
    inc: Option<&Incident>,
    msg: &Outgoing,
    reach: &BTreeSet<UserName>,
    already: &BTreeSet<UserName>,
) -> BTreeSet<UserName> {
    let mut who = people(policy, inc, &msg.mentions);
    who.extend(sdm_people(policy, inc));
    who.into_iter()
        .filter(|u| reach.contains(u) && !already.contains(u))
        .collect()
}

/// The text of a fallback copy; the nudge's own text (and so its label) is kept whole.
pub fn fallback_text(msg: &Outgoing, reason: &str) -> String {
    format!(
        "{} could not reach #{} ({reason}), so here is a copy: {}",
        msg.incident, msg.channel, msg.text
    )
}

/// The notice that a lane cannot be used for now.
pub fn unreachable_text(msg: &Outgoing, place: &str, reason: &str) -> String {
    let about = if msg.incident.0 == 0 {
        String::new()
    } else {
        format!("{}: ", msg.incident)
    };
    format!(
        "{about}{place} cannot be used: {reason}. warroom keeps trying; meanwhile nudges come by direct message and here. `/incident status` shows what waits."
    )
}

/// The notice that a message was given up on.
pub fn dead_letter_text(msg: &Outgoing, place: &str, reason: &str) -> String {
    let excerpt: String = msg.text.chars().take(300).collect();
    let more = if msg.text.chars().count() > 300 {
        "…"
    } else {
        ""
    };
    let about = if msg.incident.0 == 0 {
        "A message".to_string()
    } else {
        format!("A message of {}", msg.incident)
    };
    format!(
        "{about} could not be delivered to {place}, and warroom gave up on it: {reason}. It said: \"{excerpt}{more}\". It is kept: `warroom outbox` lists it, `warroom outbox retry {}` sends it again.",
        msg.id
    )
}

/// A copy of `msg` for another destination, about the original (`about`), with its own id.
pub fn copy(msg: &Outgoing, id: u64, to: Destination, text: String) -> Outgoing {
    Outgoing {
        id,
        to,
        text,
        about: Some(msg.id),
        fallback_done: true,
        ..msg.clone()
    }
}

/// A notice (no pings but the SDM's, no buttons) about `msg`.
pub fn notice(msg: &Outgoing, id: u64, to: Destination, text: String) -> Outgoing {
    Outgoing {
        id,
        to,
        text,
        kind: MessageKind::Post,
        mentions: vec![Target::Role(RoleKey::sdm())],
        buttons: Vec::new(),
        nudge: None,
        about: Some(msg.id),
        fallback_done: true,
        ..msg.clone()
    }
}
