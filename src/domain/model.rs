//! The war room's vocabulary: incidents, tiers, plans, nudges, timers and timeline events.
//!
//! Everything here is plain data with serde derives, so the store can persist it as it is.
//! Times are wall-clock UTC (`DateTime<Utc>`), never `Instant`: stored state must mean the
//! same thing after a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Serialises a `TimeDelta` as whole seconds.
pub mod secs {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        let n = i64::deserialize(d)?;
        TimeDelta::try_seconds(n).ok_or_else(|| {
            serde::de::Error::custom(format!("{n} seconds is beyond what a duration can hold"))
        })
    }
}

/// Serialises an `Option<TimeDelta>` as whole seconds or null.
pub mod opt_secs {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<TimeDelta>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.num_seconds()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TimeDelta>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            None => Ok(None),
            Some(n) => TimeDelta::try_seconds(n).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{n} seconds is beyond what a duration can hold"))
            }),
        }
    }
}

/// A map key that is stored as a string: JSON object keys must be strings, and a key such as
/// `IncidentRole::Lead(Tier::L3)` is not one by itself.
pub trait StringKey: Sized {
    /// The key as stored, such as `lead:l3`.
    fn to_key(&self) -> String;
    /// Reads a stored key, including the forms older versions wrote.
    fn from_key(key: &str) -> Option<Self>;
}

/// Serialises a `BTreeMap` whose keys implement `StringKey` as a JSON object with string keys.
pub mod string_keys {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::StringKey;

    pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: StringKey,
        V: Serialize,
        S: Serializer,
    {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(&k.to_key(), v)?;
        }
        m.end()
    }

    struct MapVisitor<K, V>(PhantomData<(K, V)>);

    impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
    where
        K: StringKey + Ord,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map with string keys")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some(key) = access.next_key::<String>()? {
                let k = K::from_key(&key)
                    .ok_or_else(|| de::Error::custom(format!("unknown map key '{key}'")))?;
                map.insert(k, access.next_value()?);
            }
            Ok(map)
        }
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: StringKey + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// `INC-<n>`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

impl FromStr for IncidentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s
            .strip_prefix("INC-")
            .or_else(|| s.strip_prefix("inc-"))
            .unwrap_or(s);
        digits
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(IncidentId)
            .ok_or_else(|| format!("'{s}' is not an incident id; write it like INC-42"))
    }
}

/// SEV1 (worst) to SEV4.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Sev1, Self::Sev2, Self::Sev3, Self::Sev4];

    pub fn from_level(level: i64) -> Option<Severity> {
        match level {
            1 => Some(Self::Sev1),
            2 => Some(Self::Sev2),
            3 => Some(Self::Sev3),
            4 => Some(Self::Sev4),
            _ => None,
        }
    }
    pub fn level(self) -> u8 {
        self as u8 + 1
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SEV{}", self.level())
    }
}

/// The support levels.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    L1,
    L2,
    L3,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Self::L1, Self::L2, Self::L3];

    pub fn from_level(level: i64) -> Option<Tier> {
        match level {
            1 => Some(Self::L1),
            2 => Some(Self::L2),
            3 => Some(Self::L3),
            _ => None,
        }
    }
    pub fn level(self) -> u8 {
        self as u8 + 1
    }
    pub fn next(self) -> Option<Tier> {
        Tier::from_level(i64::from(self.level()) + 1)
    }
    /// The role key whose holders staff this tier.
    pub fn role(self) -> RoleKey {
        RoleKey::new(match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::L3 => "l3",
        })
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.level())
    }
}

/// A track of work: Plan A troubleshoots; B, C and D are the fallbacks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Plan {
    A,
    B,
    C,
    D,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::A, Plan::B, Plan::C, Plan::D];
}

impl FromStr for Plan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let letter = s
            .strip_prefix("Plan ")
            .or_else(|| s.strip_prefix("plan "))
            .unwrap_or(s);
        match letter {
            "A" | "a" => Ok(Plan::A),
            "B" | "b" => Ok(Plan::B),
            "C" | "c" => Ok(Plan::C),
            "D" | "d" => Ok(Plan::D),
            _ => Err(format!("'{s}' is not a plan; use A, B, C or D")),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            Plan::A => 'A',
            Plan::B => 'B',
            Plan::C => 'C',
            Plan::D => 'D',
        };
        write!(f, "{c}")
    }
}

/// A role key such as `l1`, `sdm`, `rebuild`, `fm` or `vendor`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoleKey(String);

impl RoleKey {
    pub fn new(key: &str) -> RoleKey {
        RoleKey(key.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn sdm() -> RoleKey {
        RoleKey::new("sdm")
    }
    /// Whether this key names a tier role (l1, l2, l3).
    pub fn is_tier(&self) -> bool {
        matches!(self.0.as_str(), "l1" | "l2" | "l3")
    }
    /// FM and vendor staff may post updates and read, but run no privileged command.
    pub fn is_external(&self) -> bool {
        matches!(self.0.as_str(), "fm" | "vendor")
    }
}

impl fmt::Display for RoleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A roster user name such as `alice`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserName(String);

impl UserName {
    pub fn new(name: &str) -> UserName {
        UserName(name.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a message pings: everyone holding a role, or one person.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    Role(RoleKey),
    User(UserName),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Role(r) => write!(f, "@{r}"),
            Target::User(u) => write!(f, "@{u}"),
        }
    }
}

/// A nudge's number within its incident, shown on the nudge (`#3`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NudgeId(pub u32);

impl fmt::Display for NudgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A timer's number within its incident. With the incident id it is unique.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerSeq(pub u32);

/// Whether an incident is real or a DR drill.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Exercise {
    #[default]
    Real,
    Drill,
}

/// The incident roles that `/role assign` hands out for one incident.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IncidentRole {
    Sdm,
    Commander,
    Lead(Tier),
}

impl IncidentRole {
    pub fn parse(s: &str) -> Option<IncidentRole> {
        match s {
            "sdm" => Some(Self::Sdm),
            "commander" => Some(Self::Commander),
            "l1" => Some(Self::Lead(Tier::L1)),
            "l2" => Some(Self::Lead(Tier::L2)),
            "l3" => Some(Self::Lead(Tier::L3)),
            _ => None,
        }
    }
    /// The role key this assignment grants within the incident, if any.
    pub fn grants(self) -> Option<RoleKey> {
        match self {
            Self::Sdm => Some(RoleKey::sdm()),
            Self::Commander => None,
            Self::Lead(t) => Some(t.role()),
        }
    }
}

/// Stored as `sdm`, `commander`, `lead:l1`, `lead:l2`, `lead:l3`. Versions before these keys
/// wrote the unit variants by name (`Sdm`, `Commander`) and could not store a lead at all.
impl StringKey for IncidentRole {
    fn to_key(&self) -> String {
        match self {
            Self::Sdm => "sdm".into(),
            Self::Commander => "commander".into(),
            Self::Lead(t) => format!("lead:{}", t.role()),
        }
    }
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "sdm" | "Sdm" => Some(Self::Sdm),
            "commander" | "Commander" => Some(Self::Commander),
            _ => Tier::ALL
                .into_iter()
                .find(|t| key.strip_prefix("lead:") == Some(t.role().as_str()))
                .map(Self::Lead),
        }
    }
}

impl fmt::Display for IncidentRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sdm => f.write_str("SDM"),
            Self::Commander => f.write_str("commander"),
            Self::Lead(t) => write!(f, "{t} lead"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum IncidentState {
    Open,
    Resolved {
        at: DateTime<Utc>,
        by: UserName,
        summary: String,
        plan: Option<Plan>,
    },
}

/// Where the Plan B decision stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PlanBDecision {
    /// The deadline has not been answered yet (or is off for this severity).
    Pending,
    Opened {
        at: DateTime<Utc>,
    },
    Declined {
        at: DateTime<Utc>,
        by: UserName,
        reason: String,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackState {
    Active,
    StandingDown,
    Succeeded,
    Abandoned,
}

impl fmt::Display for TrackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackState::Active => "active",
            TrackState::StandingDown => "standing down",
            TrackState::Succeeded => "succeeded",
            TrackState::Abandoned => "abandoned",
        })
    }
}

/// How often a track must post before its lead is nudged.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cadence {
    /// Follows the severity's `update_cadence`, also after a severity change.
    Policy,
    /// Set when the plan was opened; a severity change leaves it alone.
    #[serde(with = "secs")]
    Custom(TimeDelta),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackUpdate {
    pub at: DateTime<Utc>,
    pub by: UserName,
    pub text: String,
}

/// A handover waiting for the incoming person's acknowledgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingHandover {
    pub from: Option<UserName>,
    pub to: UserName,
    pub summary: String,
    pub at: DateTime<Utc>,
    pub nudge: NudgeId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub plan: Plan,
    pub title: String,
    pub lead: Option<UserName>,
    pub team: Option<RoleKey>,
    pub members: Vec<UserName>,
    pub state: TrackState,
    pub opened_at: DateTime<Utc>,
    pub opened_by: UserName,
    pub cadence: Cadence,
    /// Opening or the last update: the silence timer counts from here.
    pub last_activity: DateTime<Utc>,
    pub last_update: Option<TrackUpdate>,
    pub updates: u32,
    pub closed_at: Option<DateTime<Utc>>,
    pub outcome_note: Option<String>,
    pub handover: Option<PendingHandover>,
    /// The runbook checklist, when the plan opened from a template.
    #[serde(default)]
    pub checklist: Vec<ChecklistItem>,
}

impl Track {
    /// A track opened now, with no updates yet.
    pub fn new(
        plan: Plan,
        title: String,
        opened_by: UserName,
        at: DateTime<Utc>,
        cadence: Cadence,
    ) -> Track {
        Track {
            plan,
            title,
            lead: None,
            team: None,
            members: Vec::new(),
            state: TrackState::Active,
            opened_at: at,
            opened_by,
            cadence,
            last_activity: at,
            last_update: None,
            updates: 0,
            closed_at: None,
            outcome_note: None,
            handover: None,
            checklist: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChecklistItem {
    pub text: String,
    pub done: Option<(DateTime<Utc>, UserName)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorCase {
    pub vendor: String,
    pub case: String,
    pub added_at: DateTime<Utc>,
    pub added_by: UserName,
    pub callback: Option<DateTime<Utc>>,
    pub callback_outcome: CallbackOutcome,
    pub last_update: Option<TrackUpdate>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallbackOutcome {
    /// No callback promised, or still waiting for it.
    Waiting,
    Met {
        at: DateTime<Utc>,
    },
    Missed,
}

/// What a nudge is about; this decides what answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NudgeKind {
    /// The incident entered this tier; its people must pick it up.
    TierPickup { tier: Tier },
    /// The SDM's alert at the policy's tier.
    SdmAlert,
    /// The fixed Plan B deadline passed; answered only by opening or declining Plan B.
    PlanBDue,
    /// A track has been silent for its cadence; an update answers it.
    TrackSilent { plan: Plan },
    /// A vendor's promised callback passed with no news on the case.
    VendorCallback { case: String },
    /// A handover card waits for the incoming person (None: the whole incident).
    Handover { plan: Option<Plan> },
    /// A scheduled DR drill is due for this service.
    DrillDue { service: String },
    /// The monitoring source reports the incident's alerts resolved; the current tier is asked
    /// to confirm with `/incident resolve`.
    ConfirmResolved,
}

impl NudgeKind {
    pub fn label(&self) -> String {
        match self {
            NudgeKind::TierPickup { tier } => format!("{tier} pickup"),
            NudgeKind::SdmAlert => "SDM alert".into(),
            NudgeKind::PlanBDue => "Plan B deadline".into(),
            NudgeKind::TrackSilent { plan } => format!("Plan {plan} silent"),
            NudgeKind::VendorCallback { case } => format!("vendor callback {case}"),
            NudgeKind::Handover { plan: Some(p) } => format!("handover of Plan {p}"),
            NudgeKind::Handover { plan: None } => "handover of the incident".into(),
            NudgeKind::DrillDue { service } => format!("drill due for {service}"),
            NudgeKind::ConfirmResolved => "confirm the resolve".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NudgeState {
    Open,
    Answered {
        at: DateTime<Utc>,
        by: Option<UserName>,
        how: String,
    },
    /// Its reminders went unanswered `nudge_handoff_after` times: it was closed and handed on
    /// as nudge `to`, to the next tier or the SDM.
    HandedOff {
        at: DateTime<Utc>,
        to: NudgeId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nudge {
    pub id: NudgeId,
    pub kind: NudgeKind,
    pub targets: Vec<Target>,
    /// The first text, repeated (with a reminder count) until answered.
    pub text: String,
    pub raised_at: DateTime<Utc>,
    pub last_sent: DateTime<Utc>,
    pub sends: u32,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub state: NudgeState,
    /// The nudge this one was handed on from, after its reminders went unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NudgeId>,
    /// When it stopped repeating for good: unanswered and nobody further to hand it to. It
    /// stays open, so its answer still closes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Nudge {
    pub fn is_open(&self) -> bool {
        matches!(self.state, NudgeState::Open)
    }
    /// Open and still repeating (not stopped for good after its last reminder).
    pub fn is_repeating(&self) -> bool {
        self.is_open() && self.stopped_at.is_none()
    }
    /// How many reminders it has had: every send after the first.
    pub fn reminders(&self) -> u32 {
        self.sends.saturating_sub(1)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snooze {
    pub at: DateTime<Utc>,
    pub by: UserName,
    pub nudge: NudgeId,
    #[serde(with = "secs")]
    pub length: TimeDelta,
    pub reason: String,
}

/// What a timer does when it fires. Persisted as data and dispatched with `match`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerKind {
    /// The tier's time budget ran out: escalate to the next tier.
    TierBudget { tier: Tier },
    /// The fixed Plan B deadline, counted from opening.
    PlanBDeadline,
    /// A track has been silent for its cadence.
    TrackSilence { plan: Plan },
    /// Repeat an unanswered nudge.
    NudgeRepeat { nudge: NudgeId },
    /// A vendor's promised callback time.
    VendorCallback { case: String },
}

impl TimerKind {
    pub fn label(&self) -> String {
        match self {
            TimerKind::TierBudget { tier } => match tier.next() {
                Some(next) => format!("auto-escalation {tier} → {next}"),
                None => format!("{tier} budget"),
            },
            TimerKind::PlanBDeadline => "Plan B deadline".into(),
            TimerKind::TrackSilence { plan } => format!("Plan {plan} silence check"),
            TimerKind::NudgeRepeat { nudge } => format!("repeat of nudge {nudge}"),
            TimerKind::VendorCallback { case } => format!("vendor callback {case}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingTimer {
    pub seq: TimerSeq,
    pub due: DateTime<Utc>,
    pub kind: TimerKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub service: String,
    pub severity: Severity,
    pub exercise: Exercise,
    pub opener: UserName,
    /// The chat channel's name, for example `inc-42-core-mail-server`.
    pub channel: String,
    pub opened_at: DateTime<Utc>,
    pub state: IncidentState,
    pub tier: Tier,
    pub tier_entered_at: DateTime<Utc>,
    pub sdm_alerted_at: Option<DateTime<Utc>>,
    pub plan_b: PlanBDecision,
    /// Keyed `sdm`, `commander`, `lead:l3` in storage (see `StringKey`).
    #[serde(with = "string_keys")]
    pub assignments: BTreeMap<IncidentRole, UserName>,
    pub tracks: BTreeMap<Plan, Track>,
    pub nudges: Vec<Nudge>,
    pub timers: Vec<PendingTimer>,
    pub snoozes: Vec<Snooze>,
    pub vendor_cases: Vec<VendorCase>,
    /// A pending handover of the whole incident (command), if any.
    pub handover: Option<PendingHandover>,
    /// People added to this incident's war room, with their role key (staff, fm, vendor).
    #[serde(default)]
    pub participants: BTreeMap<UserName, RoleKey>,
    /// The alert group that opened it, when monitoring did (see `domain::alert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertLink>,
    /// Next number for a timer or a nudge of this incident.
    pub next_seq: u32,
    /// How many timeline events the incident has; the next event gets this number.
    pub timeline_len: u32,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        matches!(self.state, IncidentState::Open)
    }
    pub fn is_drill(&self) -> bool {
        self.exercise == Exercise::Drill
    }
    /// The incident commander: assigned, or else the opener.
    pub fn commander(&self) -> &UserName {
        self.assignments
            .get(&IncidentRole::Commander)
            .unwrap_or(&self.opener)
    }
    pub fn nudge(&self, id: NudgeId) -> Option<&Nudge> {
        self.nudges.iter().find(|n| n.id == id)
    }
    pub fn next_timers(&self) -> Vec<&PendingTimer> {
        let mut t: Vec<&PendingTimer> = self.timers.iter().collect();
        t.sort_by_key(|t| (t.due, t.seq));
        t
    }
    pub fn active_tracks(&self) -> impl Iterator<Item = &Track> {
        self.tracks
            .values()
            .filter(|t| t.state == TrackState::Active)
    }
}

/// Whether a monitoring source reports an alert as firing or resolved (from its `status`,
/// never from `endsAt`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        })
    }
}

/// One alert of a group, as last reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenAlert {
    /// Its fingerprint, or (older senders have none) its labels written out.
    pub identity: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    pub status: AlertStatus,
    /// When warroom first heard of it.
    pub first_seen: DateTime<Utc>,
}

/// The alert group an incident was opened for: while the incident is open, every notification
/// about the group (`source`, `group`) lands here, and the store indexes it by that pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertLink {
    /// The source's name in `[alerts.sources]`, such as `prom`.
    pub source: String,
    /// Alertmanager's `groupKey`, Grafana's group key, or the Events API `dedup_key`.
    pub group: String,
    pub alerts: Vec<SeenAlert>,
    /// The source reported the whole group resolved, and nothing has fired since.
    #[serde(default)]
    pub reported_resolved: bool,
    /// The source acknowledged it (Events API).
    #[serde(default)]
    pub acknowledged: bool,
}

/// What happened, for the timeline and the report. The text is for people; the kind is for
/// the report's arithmetic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    Opened,
    Escalated {
        from: Tier,
        to: Tier,
        auto: bool,
    },
    SdmAlerted,
    SeverityChanged {
        from: Severity,
        to: Severity,
    },
    PlanOpened {
        plan: Plan,
    },
    PlanAssigned {
        plan: Plan,
    },
    PlanClosed {
        plan: Plan,
        state: TrackState,
    },
    PlanBDeclined,
    Update {
        plan: Plan,
    },
    ChecklistTicked {
        plan: Plan,
        item: u32,
    },
    Nudged {
        nudge: NudgeId,
        repeat: u32,
    },
    // Its reminders unanswered, the nudge was handed on as nudge `to`.
    HandedOff {
        nudge: NudgeId,
        to: NudgeId,
    },
    // Nobody further to hand it to: it stopped repeating, and stays open.
    NudgeStopped {
        nudge: NudgeId,
    },
    Acknowledged {
        nudge: NudgeId,
    },
    Snoozed {
        nudge: NudgeId,
    },
    RoleAssigned,
    ParticipantAdded,
    HandoverOffered {
        plan: Option<Plan>,
    },
    HandoverAccepted {
        plan: Option<Plan>,
    },
    VendorAdded,
    VendorUpdated,
    VendorCallbackMissed,
    VendorClosed,
    Resolved {
        plan: Option<Plan>,
    },
    /// An alert of the incident's group fired (first time, or again after a resolve).
    AlertFired,
    /// The source reports an alert, or the whole group, resolved.
    AlertResolved,
    /// The source acknowledged the alert (an Events API `acknowledge`).
    AlertAcknowledged,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u32,
    pub at: DateTime<Utc>,
    /// None: warroom itself (a timer).
    pub actor: Option<UserName>,
    pub kind: EventKind,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Roles(#[serde(with = "string_keys")] BTreeMap<IncidentRole, UserName>);

    #[test]
    fn incident_roles_are_stored_under_string_keys_and_read_back() {
        let mut m = BTreeMap::new();
        m.insert(IncidentRole::Sdm, UserName::new("sam"));
        m.insert(IncidentRole::Commander, UserName::new("bob"));
        for t in Tier::ALL {
            m.insert(IncidentRole::Lead(t), UserName::new("dana"));
        }
        let json = serde_json::to_string(&Roles(m.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"sdm":"sam","commander":"bob","lead:l1":"dana","lead:l2":"dana","lead:l3":"dana"}"#
        );
        assert_eq!(serde_json::from_str::<Roles>(&json).unwrap(), Roles(m));
    }

    #[test]
    fn the_old_variant_name_keys_still_read() {
        let old: Roles = serde_json::from_str(r#"{"Sdm":"sam","Commander":"bob"}"#).unwrap();
        assert_eq!(old.0[&IncidentRole::Sdm], UserName::new("sam"));
        assert_eq!(old.0[&IncidentRole::Commander], UserName::new("bob"));
        let e = serde_json::from_str::<Roles>(r#"{"Lead":"dana"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown map key 'Lead'"), "{e}");
    }

    #[test]
    fn out_of_range_stored_seconds_are_an_error_not_a_panic() {
        #[derive(Debug, Deserialize)]
        struct S(#[serde(with = "secs")] TimeDelta);
        assert!(serde_json::from_str::<S>(&i64::MAX.to_string()).is_err());
        assert_eq!(
            serde_json::from_str::<S>("90").unwrap().0,
            TimeDelta::seconds(90)
        );
    }
}
