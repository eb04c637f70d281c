//! Typed commands: what a parsed slash command means to the engine.

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};

use super::model::{IncidentRole, NudgeId, Plan, RoleKey, Severity, Tier, TrackState, UserName};

/// A moment given by a user: a span from now (`30m`) or a UTC clock time (`23:40`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Deadline {
    In(TimeDelta),
    At(NaiveTime),
    Exactly(DateTime<Utc>),
}

impl Deadline {
    /// How far ahead a deadline (a vendor's promised callback) may fall.
    pub const MAX_AHEAD: TimeDelta = TimeDelta::days(7);

    /// The absolute time this deadline names, seen from `now`; a clock time means its next
    /// occurrence. None when that time is beyond what a time can hold.
    pub fn resolve(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Deadline::In(d) => now.checked_add_signed(d),
            Deadline::Exactly(t) => Some(t),
            Deadline::At(t) => {
                let today = now.date_naive().and_time(t).and_utc();
                if today > now {
                    Some(today)
                } else {
                    today.checked_add_signed(TimeDelta::days(1))
                }
            }
        }
    }
}

/// A command that changes an incident. Read-only commands (status, timeline, report, help)
/// are answered by the renderers instead.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Open {
        title: String,
        severity: Severity,
        service: String,
        drill: bool,
        /// Open it even if the same person opened one for this service minutes ago.
        force: bool,
    },
    Severity {
        level: Severity,
        reason: String,
    },
    Resolve {
        summary: String,
        plan: Option<Plan>,
    },
    Escalate {
        tier: Option<Tier>,
        reason: String,
    },
    PlanOpen {
        plan: Plan,
        /// None: the service's template for this plan.
        title: Option<String>,
        lead: Option<UserName>,
        team: Option<RoleKey>,
        cadence: Option<TimeDelta>,
    },
    PlanAssign {
        plan: Plan,
        lead: Option<UserName>,
        member: Option<UserName>,
    },
    PlanClose {
        plan: Plan,
        outcome: TrackState,
        note: Option<String>,
    },
    PlanDecline {
        reason: String,
    },
    PlanCheck {
        plan: Plan,
        item: u32,
    },
    Update {
        text: String,
        plan: Option<Plan>,
    },
    Ack {
        nudge: Option<NudgeId>,
    },
    Snooze {
        duration: TimeDelta,
        reason: String,
        nudge: Option<NudgeId>,
    },
    RoleAssign {
        role: IncidentRole,
        user: UserName,
    },
    /// Adds someone off the roster to this incident, as `staff`, `fm` or `vendor`.
    ParticipantAdd {
        user: UserName,
        kind: RoleKey,
    },
    Handover {
        to: UserName,
        summary: String,
        plan: Option<Plan>,
    },
    VendorAdd {
        vendor: String,
        case: String,
        callback: Option<Deadline>,
    },
    VendorUpdate {
        case: String,
        text: String,
    },
    VendorClose {
        case: String,
        note: Option<String>,
    },
}

impl Command {
    /// The command path as written in `commands/`, used for permissions.
    pub fn path(&self) -> &'static str {
        match self {
            Command::Open { .. } => "incident open",
            Command::Severity { .. } => "incident severity",
            Command::Resolve { .. } => "incident resolve",
            Command::Escalate { .. } => "escalate",
            Command::PlanOpen { .. } => "plan open",
            Command::PlanAssign { .. } => "plan assign",
            Command::PlanClose { .. } => "plan close",
            Command::PlanDecline { .. } => "plan decline",
            Command::PlanCheck { .. } => "plan check",
            Command::Update { .. } => "update",
            Command::Ack { .. } => "ack",
            Command::Snooze { .. } => "snooze",
            Command::RoleAssign { .. } => "role assign",
            Command::ParticipantAdd { .. } => "participant add",
            Command::Handover { .. } => "handover",
            Command::VendorAdd { .. } => "vendor add",
            Command::VendorUpdate { .. } => "vendor update",
            Command::VendorClose { .. } => "vendor close",
        }
    }

    /// The plan a command is about, for the `lead` principal.
    pub fn plan(&self) -> Option<Plan> {
        match self {
            Command::PlanOpen { plan, .. }
            | Command::PlanAssign { plan, .. }
            | Command::PlanClose { plan, .. }
            | Command::PlanCheck { plan, .. } => Some(*plan),
            Command::Update { plan, .. } | Command::Handover { plan, .. } => *plan,
            _ => None,
        }
    }
}
