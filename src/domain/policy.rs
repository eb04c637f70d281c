//! The escalation policy per severity, who may run what, and the roster of people.
//!
//! These are inputs to the engine, built by `config` from TOML; the engine never reads files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::TimeDelta;

use super::model::{RoleKey, Severity, Tier, UserName};

/// The policy for one severity. `None` means "off".
#[derive(Clone, Debug, PartialEq)]
pub struct SeverityPolicy {
    pub l1_budget: Option<TimeDelta>,
    pub l2_budget: Option<TimeDelta>,
    /// The SDM is alerted on entering this tier; None: never.
    pub sdm_alert_tier: Option<Tier>,
    pub plan_b_after: Option<TimeDelta>,
    pub nudge_repeat: Option<TimeDelta>,
    pub update_cadence: Option<TimeDelta>,
    pub snooze_max: Option<TimeDelta>,
    pub snooze_total: Option<TimeDelta>,
    /// After this many unanswered reminders a nudge is handed on (next tier, then the SDM)
    /// instead of repeating again; 0: never.
    pub nudge_handoff_after: u32,
}

impl SeverityPolicy {
    /// The time budget of a tier before auto-escalation; L3 has none.
    pub fn budget(&self, tier: Tier) -> Option<TimeDelta> {
        match tier {
            Tier::L1 => self.l1_budget,
            Tier::L2 => self.l2_budget,
            Tier::L3 => None,
        }
    }

    /// The spec's defaults.
    pub fn default_for(sev: Severity) -> SeverityPolicy {
        let m = |n: i64| Some(TimeDelta::minutes(n));
        let h = |n: i64| Some(TimeDelta::hours(n));
        match sev {
            Severity::Sev1 => SeverityPolicy {
                l1_budget: m(30),
                l2_budget: h(1),
                sdm_alert_tier: Some(Tier::L3),
                plan_b_after: h(2),
                nudge_repeat: m(15),
                update_cadence: m(30),
                snooze_max: h(1),
                snooze_total: h(3),
                nudge_handoff_after: 4,
            },
            Severity::Sev2 => SeverityPolicy {
                l1_budget: h(1),
                l2_budget: h(2),
                sdm_alert_tier: Some(Tier::L3),
                plan_b_after: h(4),
                nudge_repeat: m(30),
                update_cadence: h(1),
                snooze_max: h(2),
                snooze_total: h(6),
                nudge_handoff_after: 4,
            },
            Severity::Sev3 => SeverityPolicy {
                l1_budget: h(4),
                l2_budget: h(8),
                sdm_alert_tier: Some(Tier::L3),
                plan_b_after: None,
                nudge_repeat: h(1),
                update_cadence: h(4),
                snooze_max: h(4),
                snooze_total: h(12),
                nudge_handoff_after: 4,
            },
            Severity::Sev4 => SeverityPolicy {
                l1_budget: None,
                l2_budget: None,
                sdm_alert_tier: None,
                plan_b_after: None,
                nudge_repeat: None,
                update_cadence: None,
                snooze_max: None,
                snooze_total: None,
                nudge_handoff_after: 4,
            },
        }
    }
}

/// Where a person stands, for authorisation: the one distinction warroom draws between people.
///
/// | standing | who | may run |
/// |---|---|---|
/// | `Staff` | holds a role key other than `fm` and `vendor` (`l1`, `sdm`, `rebuild`…), or, off the roster, was added with `/participant add kind:staff` | whatever the command's who-list admits them to |
/// | `External` | facilities or vendor staff: holds `fm` and/or `vendor` and nothing else, or, off the roster, was added as `kind:fm` / `kind:vendor` | only commands open to `participant` or `anyone`; they never hold a position (plan lead, commander, SDM, tier lead), nor take one over by `/handover` |
/// | `Outsider` | holds no role at all | commands open to `anyone`, and what a position allows a roster person with no role |
///
/// The roster (with the front end's roles, such as mapped Discord roles) decides for everyone
/// it gives a role; `/participant add`'s kind only classifies people it gives none. So a
/// person who holds a staff role and `fm` (say `l1` and `fm`) is staff: the roster trusts them
/// with L1 work, and `fm` only adds them to `@fm` pings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Staff,
    External,
    Outsider,
}

impl Standing {
    /// `roles`: the person's own role keys (roster, front end); `kind`: the kind they were
    /// added to this incident with, if they were.
    pub fn of(roles: &BTreeSet<RoleKey>, kind: Option<&RoleKey>) -> Standing {
        let decisive: Vec<&RoleKey> = if roles.is_empty() {
            kind.into_iter().collect()
        } else {
            roles.iter().collect()
        };
        if decisive.is_empty() {
            Standing::Outsider
        } else if decisive.iter().all(|r| r.is_external()) {
            Standing::External
        } else {
            Standing::Staff
        }
    }
}

/// How facilities and vendor staff are named in refusals: `on-site facilities (fm)`.
pub fn external_label(roles: &BTreeSet<RoleKey>) -> &'static str {
    let fm = roles.contains(&RoleKey::new("fm"));
    let vendor = roles.contains(&RoleKey::new("vendor"));
    match (fm, vendor) {
        (true, true) => "facilities (fm) and vendor staff",
        (true, false) => "on-site facilities (fm)",
        _ => "vendor staff",
    }
}

/// Someone a command's "who may" list admits. Together with `Permissions` (which command admits
/// which principals, from `commands/` and `[permissions]`) and `Standing`, this is the whole
/// authorisation rule; `engine::authorize` is its only interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Anybody at all, even someone off the roster.
    Anyone,
    /// Anyone in the war room: a roster person with any role, staff, FM or vendor.
    Participant,
    /// Anyone holding a tier role (l1, l2, l3), on the roster or as the incident's tier lead.
    AnyTier,
    /// Holders of the incident's current tier role.
    CurrentTier,
    /// The lead of the plan named in the command; without a plan, the incident commander.
    Lead,
    /// The person or role the nudge in question targets.
    Nudged,
    /// The person an on-call override replaces (the rotation's person for its start).
    Replaced,
    /// Holders of this role key (`sdm` includes the incident's assigned SDM). Never `fm` or
    /// `vendor`: facilities and vendor staff are admitted by `participant` and `anyone` only.
    Role(RoleKey),
}

impl Principal {
    pub fn parse(s: &str) -> Result<Principal, String> {
        Ok(match s {
            "anyone" => Principal::Anyone,
            "participant" => Principal::Participant,
            "tier" => Principal::AnyTier,
            "current-tier" => Principal::CurrentTier,
            "lead" => Principal::Lead,
            "nudged" => Principal::Nudged,
            "replaced" => Principal::Replaced,
            key if RoleKey::new(key).is_external() => {
                return Err(format!(
                    "'{key}' cannot be given a command: facilities and vendor staff run only the commands open to participant or anyone (/update, /vendor, the status, timeline and report), never anything privileged"
                ));
            }
            key if is_role_key(key) => Principal::Role(RoleKey::new(key)),
            other => {
                return Err(format!(
                    "'{other}' is not a principal; use anyone, participant, tier, current-tier, lead, nudged, replaced or a role key"
                ));
            }
        })
    }

    /// Whether facilities and vendor staff can be admitted by this principal: only by those
    /// that admit everyone in the war room. Every other principal is for staff alone, whatever
    /// position an incident (or an older warroom's stored state) names them in.
    pub fn admits_external(&self) -> bool {
        matches!(self, Principal::Anyone | Principal::Participant)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anyone => f.write_str("anyone"),
            Principal::Participant => f.write_str("anyone in the war room"),
            Principal::AnyTier => f.write_str("tier roles (l1, l2, l3)"),
            Principal::CurrentTier => f.write_str("the current tier"),
            Principal::Lead => f.write_str("the plan's lead (without a plan, the commander)"),
            Principal::Nudged => f.write_str("the nudged person or role"),
            Principal::Replaced => f.write_str("the person on call whom it replaces"),
            Principal::Role(r) => write!(f, "{r}"),
        }
    }
}

/// Role keys are short lowercase words: `l1`, `sdm`, `rebuild`.
pub fn is_role_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Who may run each command path (`"plan open"`), from `commands/` and the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions {
    pub by_command: BTreeMap<String, Vec<Principal>>,
}

impl Permissions {
    pub fn for_command(&self, path: &str) -> &[Principal] {
        self.by_command.get(path).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The people warroom knows, with their role keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Roster {
    pub users: BTreeMap<UserName, BTreeSet<RoleKey>>,
}

impl Roster {
    pub fn roles_of(&self, user: &UserName) -> BTreeSet<RoleKey> {
        self.users.get(user).cloned().unwrap_or_default()
    }
    pub fn contains(&self, user: &UserName) -> bool {
        self.users.contains_key(user)
    }
    pub fn holders(&self, role: &RoleKey) -> Vec<&UserName> {
        self.users
            .iter()
            .filter(|(_, roles)| roles.contains(role))
            .map(|(u, _)| u)
            .collect()
    }
    pub fn role_keys(&self) -> BTreeSet<RoleKey> {
        self.users.values().flatten().cloned().collect()
    }
    pub fn names(&self) -> String {
        self.users
            .keys()
            .map(UserName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A ready-made fallback plan for a service: what `/plan open` fills in.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanTemplate {
    pub title: String,
    pub lead_role: Option<RoleKey>,
    pub cadence: Option<TimeDelta>,
    pub checklist: Vec<String>,
}

/// What the configuration knows about one service: its DR runbook, plan templates and drills.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePolicy {
    pub runbook: Vec<String>,
    pub plans: BTreeMap<super::model::Plan, PlanTemplate>,
    /// How often a DR drill is due for this service.
    pub drill_every: Option<TimeDelta>,
}

/// The whole policy the engine consults.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub severities: [SeverityPolicy; 4],
    pub permissions: Permissions,
    pub roster: Roster,
    /// Role keys known beyond the roster (for example mapped to Discord roles).
    pub extra_roles: BTreeSet<RoleKey>,
    /// Per service (by name, as in `/incident open service:`).
    pub services: BTreeMap<String, ServicePolicy>,
    /// On-call schedules (`[schedules.NAME]`), at most one per role key.
    pub schedules: Vec<super::oncall::Schedule>,
}

impl Policy {
    pub fn for_severity(&self, sev: Severity) -> &SeverityPolicy {
        let [sev1, sev2, sev3, sev4] = &self.severities;
        match sev {
            Severity::Sev1 => sev1,
            Severity::Sev2 => sev2,
            Severity::Sev3 => sev3,
            Severity::Sev4 => sev4,
        }
    }
    pub fn knows_role(&self, role: &RoleKey) -> bool {
        role.is_tier()
            || *role == RoleKey::sdm()
            || self.extra_roles.contains(role)
            || self.roster.users.values().any(|r| r.contains(role))
    }
    pub fn known_roles(&self) -> String {
        let mut all = self.roster.role_keys();
        all.extend(self.extra_roles.iter().cloned());
        all.extend(Tier::ALL.map(Tier::role));
        all.insert(RoleKey::sdm());
        all.iter()
            .map(RoleKey::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
