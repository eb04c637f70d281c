//! Configuration: built-in defaults, then the user's TOML file, then environment variables,
//! validated as a whole at start. Errors name the key, where it came from, and what is expected.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use toml::{Table, Value};

use crate::domain::policy::is_role_key;
use crate::domain::{
    Permissions, Plan, PlanTemplate, Policy, Principal, RoleKey, Roster, ServicePolicy, Severity,
    SeverityPolicy, Tier, UserName,
};
use crate::spec::{CommandSet, DurationError, echo};

/// The built-in configuration, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Where the user's file is looked for when `--config` is not given.
pub const DEFAULT_USER_FILE: &str = "config/warroom.toml";

/// The largest `nudge_handoff_after` accepted: beyond it a typo would mean "never".
const HANDOFF_MAX: u32 = 100;

/// The longest duration the configuration accepts (a yearly drill fits): every time warroom
/// computes from one stays far inside what a time can hold.
pub const MAX_DURATION: TimeDelta = TimeDelta::days(366);

/// Tables that a user's file replaces wholesale instead of merging key by key: a real roster
/// must not inherit the demo people.
const REPLACED_TABLES: &[&str] = &[
    "roster",
    "permissions",
    "services",
    "schedules",
    "discord.roles",
    "discord.users",
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{origin} is not valid TOML: {reason}")]
    Syntax { origin: String, reason: String },
    #[error("configuration key '{key}' (from {origin}): {problem}")]
    Key {
        key: String,
        origin: String,
        problem: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct DiscordConfig {
    pub guild_id: Option<u64>,
    pub incident_category_id: Option<u64>,
    /// Where messages that belong to no incident go (drill reminders); they also reach the SDM
    /// by direct message.
    pub ops_channel_id: Option<u64>,
    pub dm_sdm: bool,
    /// Tests only: a fake Discord's base URL. Turns serenity's rate limiter off.
    pub api_base: Option<String>,
    /// The longest one request to Discord may take before it counts as failed (and is
    /// retried). Connecting alone is capped at a third of it.
    pub request_timeout: std::time::Duration,
    pub roles: BTreeMap<RoleKey, u64>,
    pub users: BTreeMap<UserName, u64>,
    /// Give each scheduled role's Discord role to the person on call, and take it from the
    /// others (needs Manage Roles).
    pub sync_roles: bool,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            guild_id: None,
            incident_category_id: None,
            ops_channel_id: None,
            dm_sdm: false,
            api_base: None,
            request_timeout: std::time::Duration::from_secs(15),
            roles: BTreeMap::new(),
            users: BTreeMap::new(),
            sync_roles: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub policy: Policy,
    pub console_user: UserName,
    pub discord: DiscordConfig,
    /// How the data folder is opened: durability and cache.
    pub store: crate::store::StoreOptions,
    /// The HTTP listener (`[http]`): off unless `listen` is set.
    pub http: HttpConfig,
    /// Alert intake (`[alerts]`): sources and routes.
    pub alerts: crate::alerts::AlertsConfig,
    /// The incident board (`[board]`): off unless `enabled`.
    pub board: BoardConfig,
    /// Which files and variables were read, in order.
    pub origins: Vec<String>,
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct HttpConfig {
    /// Where the listener binds, such as 127.0.0.1:8080; off when absent.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[board]`: the read-only incident board on the HTTP listener (`crate::board`).
#[derive(Clone, Debug, PartialEq)]
pub struct BoardConfig {
    /// Off unless set; needs `http.listen` (or the console's `--http`) to be served.
    pub enabled: bool,
    /// The environment variable that holds the viewer token, never a file.
    pub token_env: String,
}

impl Default for BoardConfig {
    fn default() -> BoardConfig {
        BoardConfig {
            enabled: false,
            token_env: "WARROOM_BOARD_TOKEN".into(),
        }
    }
}

/// Where each key's value came from, for error messages.
type Origins = BTreeMap<String, String>;

fn merge(base: &mut Table, over: Table, prefix: &str, origin: &str, origins: &mut Origins) {
    for (k, v) in over {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let replace = REPLACED_TABLES.contains(&path.as_str());
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) if !replace => {
                merge(b, o, &path, origin, origins)
            }
            (_, v) => {
                mark(&v, &path, origin, origins);
                base.insert(k, v);
            }
        }
    }
}

fn mark(v: &Value, path: &str, origin: &str, origins: &mut Origins) {
    origins.insert(path.to_string(), origin.to_string());
    if let Value::Table(t) = v {
        for (k, v) in t {
            mark(v, &format!("{path}.{k}"), origin, origins);
        }
    }
}

struct Reader<'a> {
    origins: &'a Origins,
}

impl Reader<'_> {
    fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        let origin = self
            .origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "the built-in defaults".into());
        ConfigError::Key {
            key: key.to_string(),
            origin,
            problem: problem.into(),
        }
    }

    fn table<'t>(
        &self,
        t: &'t Table,
        key: &str,
        path: &str,
    ) -> Result<Option<&'t Table>, ConfigError> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(self.err(
                path,
                format!("expected a table, found {}", other.type_str()),
            )),
        }
    }

    fn only_keys(&self, t: &Table, path: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        for k in t.keys() {
            if !allowed.contains(&k.as_str()) {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                return Err(self.err(
                    &key,
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, t: &Table, key: &str, path: &str) -> Result<Option<String>, ConfigError> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                path,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    fn duration(&self, t: &Table, key: &str, path: &str) -> Result<Option<TimeDelta>, ConfigError> {
        let expected = "expected a duration like \"30m\" or \"1h30m\", or \"off\"";
        match t.get(key) {
            None => Err(self.err(path, format!("missing; {expected}"))),
            Some(Value::String(s)) if s.trim() == "off" => Ok(None),
            Some(Value::String(s)) => match crate::spec::parse_duration_within(s, MAX_DURATION) {
                Ok(d) => Ok(Some(d)),
                Err(DurationError::NotADuration) => {
                    Err(self.err(path, format!("{expected}, found \"{}\"", echo(s))))
                }
                Err(DurationError::Fraction | DurationError::TooLong) => Err(self.err(
                    path,
                    format!(
                        "expected whole seconds from 1s to {}, or \"off\", found \"{}\"",
                        crate::domain::engine::human(MAX_DURATION),
                        echo(s)
                    ),
                )),
            },
            Some(other) => Err(self.err(path, format!("{expected}, found {}", other.type_str()))),
        }
    }

    fn id(&self, t: &Table, key: &str, path: &str) -> Result<Option<u64>, ConfigError> {
        let expected = "expected a Discord id (a string of digits), or \"\" for none";
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| self.err(path, format!("{expected}, found \"{s}\""))),
            Some(Value::Integer(i)) if *i > 0 => Ok(Some(*i as u64)),
            Some(other) => Err(self.err(path, format!("{expected}, found {other}"))),
        }
    }
}

fn env_value(raw: &str) -> Value {
    // A variable holds a TOML value where it parses as one (3, true, ["l1"]), else a string.
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
        Err(_) => Value::String(raw.to_string()),
    }
}

impl Config {
    /// The built-in configuration alone.
    pub fn builtin() -> Result<Config, ConfigError> {
        Config::load(None, &[])
    }

    /// Loads defaults, then `file` (if any), then `WARROOM__…` variables from `env`.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut origins = Origins::new();
        let mut merged: Table =
            DEFAULT_TOML
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: "the built-in defaults".into(),
                    reason: e.message().to_string(),
                })?;
        let mut read = vec!["built-in defaults".to_string()];
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let origin = path.display().to_string();
            let user: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.clone(),
                    reason: e.to_string().trim().to_string(),
                })?;
            merge(&mut merged, user, "", &origin, &mut origins);
            read.push(origin);
        }
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("WARROOM__") else {
                continue;
            };
            let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            let Some((first, below)) = parts.split_first() else {
                continue;
            };
            let origin = format!("environment variable {name}");
            let mut leaf = env_value(raw);
            for p in below.iter().rev() {
                let mut t = Table::new();
                t.insert(p.clone(), leaf);
                leaf = Value::Table(t);
            }
            let mut t = Table::new();
            t.insert(first.clone(), leaf);
            merge(&mut merged, t, "", &origin, &mut origins);
            read.push(origin);
        }
        let mut cfg = Config::from_table(&merged, &origins)?;
        cfg.origins = read;
        Ok(cfg)
    }

    fn from_table(t: &Table, origins: &Origins) -> Result<Config, ConfigError> {
        let r = Reader { origins };
        r.only_keys(
            t,
            "",
            &[
                "policy",
                "permissions",
                "roster",
                "console",
                "discord",
                "services",
                "store",
                "http",
                "alerts",
                "schedules",
                "board",
            ],
        )?;

        let policy_t = r
            .table(t, "policy", "policy")?
            .ok_or_else(|| r.err("policy", "missing"))?;
        r.only_keys(policy_t, "policy", &["sev1", "sev2", "sev3", "sev4"])?;
        let mut severities = Severity::ALL.map(SeverityPolicy::default_for);
        for sev in Severity::ALL {
            let name = format!("sev{}", sev.level());
            let path = format!("policy.{name}");
            let Some(s) = r.table(policy_t, &name, &path)? else {
                return Err(r.err(&path, "missing"));
            };
            r.only_keys(
                s,
                &path,
                &[
                    "l1_budget",
                    "l2_budget",
                    "sdm_alert_tier",
                    "plan_b_after",
                    "nudge_repeat",
                    "update_cadence",
                    "snooze_max",
                    "snooze_total",
                    "nudge_handoff_after",
                ],
            )?;
            let d = |k: &str| r.duration(s, k, &format!("{path}.{k}"));
            let tier_key = format!("{path}.sdm_alert_tier");
            let sdm_alert_tier = match s.get("sdm_alert_tier") {
                Some(Value::Integer(0)) => None,
                Some(Value::Integer(n)) => Some(Tier::from_level(*n).ok_or_else(|| {
                    r.err(
                        &tier_key,
                        format!("expected 0 (never) or a tier 1 to 3, found {n}"),
                    )
                })?),
                Some(other) => {
                    return Err(r.err(
                        &tier_key,
                        format!("expected 0 (never) or a tier 1 to 3, found {other}"),
                    ));
                }
                None => {
                    return Err(r.err(&tier_key, "missing; expected 0 (never) or a tier 1 to 3"));
                }
            };
            let handoff_key = format!("{path}.nudge_handoff_after");
            let handoff_expected = format!(
                "expected 0 (never) or a count of unanswered reminders from 1 to {HANDOFF_MAX}"
            );
            let nudge_handoff_after = match s.get("nudge_handoff_after") {
                Some(Value::Integer(n)) => u32::try_from(*n)
                    .ok()
                    .filter(|n| *n <= HANDOFF_MAX)
                    .ok_or_else(|| r.err(&handoff_key, format!("{handoff_expected}, found {n}")))?,
                Some(other) => {
                    return Err(r.err(&handoff_key, format!("{handoff_expected}, found {other}")));
                }
                None => {
                    return Err(r.err(&handoff_key, format!("missing; {handoff_expected}")));
                }
            };
            let sp = SeverityPolicy {
                l1_budget: d("l1_budget")?,
                l2_budget: d("l2_budget")?,
                sdm_alert_tier,
                plan_b_after: d("plan_b_after")?,
                nudge_repeat: d("nudge_repeat")?,
                update_cadence: d("update_cadence")?,
                snooze_max: d("snooze_max")?,
                snooze_total: d("snooze_total")?,
                nudge_handoff_after,
            };
            if let (Some(max), Some(total)) = (sp.snooze_max, sp.snooze_total)
                && max > total
            {
                return Err(r.err(
                    &format!("{path}.snooze_max"),
                    "must not exceed snooze_total",
                ));
            }
            if let Some(slot) = severities.get_mut(sev.index()) {
                *slot = sp;
            }
        }

        let mut roster = Roster::default();
        let roster_t = r.table(t, "roster", "roster")?.cloned().unwrap_or_default();
        for (user, roles) in &roster_t {
            let path = format!("roster.{user}");
            if !user.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                || !user
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
                || user.len() > 32
            {
                return Err(r.err(&path, "a user name is lowercase letters, digits, '_', '.' or '-', starting with a letter"));
            }
            let Value::Array(list) = roles else {
                return Err(r.err(
                    &path,
                    format!(
                        "expected a list of role keys like [\"l1\"], found {}",
                        roles.type_str()
                    ),
                ));
            };
            let mut set = BTreeSet::new();
            for role in list {
                match role {
                    Value::String(k) if is_role_key(k) => {
                        set.insert(RoleKey::new(k));
                    }
                    other => {
                        return Err(r.err(&path, format!("expected role keys such as \"l1\" or \"sdm\" (lowercase), found {other}")));
                    }
                }
            }
            roster.users.insert(UserName::new(user), set);
        }

        let specs = CommandSet::builtin();
        let mut permissions = Permissions::default();
        for c in specs.runnable() {
            let who = c
                .who
                .iter()
                .map(|w| Principal::parse(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| r.err(&format!("commands/{}", c.path), e))?;
            permissions.by_command.insert(c.path.clone(), who);
        }
        if let Some(perm) = r.table(t, "permissions", "permissions")? {
            for (path, who) in perm {
                let key = format!("permissions.\"{path}\"");
                if specs.find(path).is_none() {
                    let known = specs
                        .runnable()
                        .iter()
                        .map(|c| c.path.clone())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(r.err(&key, format!("no such command; expected one of: {known}")));
                }
                let Value::Array(list) = who else {
                    return Err(r.err(&key, "expected a list of principals like [\"sdm\", \"l3\"]"));
                };
                let mut principals = Vec::new();
                for w in list {
                    let Value::String(w) = w else {
                        return Err(r.err(&key, format!("expected a principal string, found {w}")));
                    };
                    principals.push(Principal::parse(w).map_err(|e| r.err(&key, e))?);
                }
                permissions.by_command.insert(path.clone(), principals);
            }
        }

        let console = r
            .table(t, "console", "console")?
            .cloned()
            .unwrap_or_default();
        r.only_keys(&console, "console", &["acting_user"])?;
        let console_user = UserName::new(
            &r.string(&console, "acting_user", "console.acting_user")?
                .unwrap_or_else(|| "alice".into()),
        );
        if !roster.contains(&console_user) && !roster.users.is_empty() {
            return Err(r.err(
                "console.acting_user",
                format!(
                    "'{console_user}' is not on the roster; expected one of: {}",
                    roster.names()
                ),
            ));
        }

        let dt = r
            .table(t, "discord", "discord")?
            .cloned()
            .unwrap_or_default();
        r.only_keys(
            &dt,
            "discord",
            &[
                "guild_id",
                "incident_category_id",
                "ops_channel_id",
                "dm_sdm",
                "api_base",
                "request_timeout",
                "roles",
                "users",
                "sync_roles",
            ],
        )?;
        let mut discord = DiscordConfig {
            guild_id: r.id(&dt, "guild_id", "discord.guild_id")?,
            ops_channel_id: r.id(&dt, "ops_channel_id", "discord.ops_channel_id")?,
            incident_category_id: r.id(
                &dt,
                "incident_category_id",
                "discord.incident_category_id",
            )?,
            sync_roles: match dt.get("sync_roles") {
                None => false,
                Some(Value::Boolean(b)) => *b,
                Some(other) => {
                    return Err(r.err(
                        "discord.sync_roles",
                        format!("expected true or false, found {other}"),
                    ));
                }
            },
            dm_sdm: match dt.get("dm_sdm") {
                None => true,
                Some(Value::Boolean(b)) => *b,
                Some(other) => {
                    return Err(r.err(
                        "discord.dm_sdm",
                        format!("expected true or false, found {other}"),
                    ));
                }
            },
            api_base: r
                .string(&dt, "api_base", "discord.api_base")?
                .filter(|s| !s.is_empty()),
            request_timeout: match dt.get("request_timeout") {
                None => DiscordConfig::default().request_timeout,
                Some(_) => r
                    .duration(&dt, "request_timeout", "discord.request_timeout")?
                    .and_then(|d| d.to_std().ok())
                    .filter(|d| {
                        *d >= std::time::Duration::from_secs(1)
                            && *d <= std::time::Duration::from_secs(120)
                    })
                    .ok_or_else(|| {
                        r.err(
                            "discord.request_timeout",
                            "expected a duration from 1s to 2m, like \"15s\"",
                        )
                    })?,
            },
            ..Default::default()
        };
        if let Some(base) = &discord.api_base
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(r.err(
                "discord.api_base",
                format!("expected a URL like http://127.0.0.1:8080, found \"{base}\""),
            ));
        }
        if let Some(roles) = r.table(&dt, "roles", "discord.roles")? {
            for k in roles.keys() {
                let path = format!("discord.roles.{k}");
                if !is_role_key(k) {
                    return Err(r.err(&path, "a role key is lowercase, like sdm or l2"));
                }
                if let Some(id) = r.id(roles, k, &path)? {
                    discord.roles.insert(RoleKey::new(k), id);
                }
            }
        }
        if let Some(users) = r.table(&dt, "users", "discord.users")? {
            for k in users.keys() {
                let path = format!("discord.users.{k}");
                let user = UserName::new(k);
                if !roster.contains(&user) {
                    return Err(r.err(
                        &path,
                        format!(
                            "'{k}' is not on the roster; expected one of: {}",
                            roster.names()
                        ),
                    ));
                }
                if let Some(id) = r.id(users, k, &path)? {
                    discord.users.insert(user, id);
                }
            }
        }
        let extra_roles: BTreeSet<RoleKey> = discord.roles.keys().cloned().collect();
        let services = read_services(&r, t)?;
        let schedules = read_schedules(&r, t, &roster)?;
        let store_t = r.table(t, "store", "store")?.cloned().unwrap_or_default();
        r.only_keys(
            &store_t,
            "store",
            &["durability", "cache_mb", "url", "lease"],
        )?;
        let mut store = crate::store::StoreOptions::default();
        match r
            .string(&store_t, "durability", "store.durability")?
            .as_deref()
        {
            None | Some("fsync") => {}
            Some("flush") => store.durability = crate::store::Durability::Flush,
            Some(other) => {
                return Err(r.err(
                    "store.durability",
                    format!("expected \"fsync\" (the default: every answer is on disk) or \"flush\" (faster; an OS crash or power cut can lose the last half second), found \"{other}\""),
                ));
            }
        }
        if let Some(url) = r.string(&store_t, "url", "store.url")?
            && !url.is_empty()
        {
            store.url = Some(
                crate::store::postgres::PgUrl::parse(&url).map_err(|e| r.err("store.url", e))?,
            );
        }
        if store_t.contains_key("lease") {
            match r.duration(&store_t, "lease", "store.lease")? {
                Some(d) if d <= TimeDelta::minutes(10) => {
                    store.lease = d.to_std().unwrap_or(store.lease);
                }
                _ => {
                    return Err(r.err(
                        "store.lease",
                        "expected how long an active replica's lease lasts unless renewed, from \"1s\" to \"10m\" (default \"15s\"): a standby takes over about that long after the active dies",
                    ));
                }
            }
        }
        match store_t.get("cache_mb") {
            None => {}
            Some(Value::Integer(mb)) if (1..=65536).contains(mb) => {
                store.cache_bytes = (*mb as u64).saturating_mul(1024 * 1024);
            }
            Some(other) => {
                return Err(r.err(
                    "store.cache_mb",
                    format!("expected a whole number of megabytes from 1 to 65536, found {other}"),
                ));
            }
        }
        Ok(Config {
            policy: Policy {
                severities,
                permissions,
                roster,
                extra_roles,
                services,
                schedules,
            },
            console_user,
            discord,
            store,
            http: read_http(&r, t)?,
            alerts: read_alerts(&r, t)?,
            board: read_board(&r, t)?,
            origins: Vec::new(),
        })
    }

    /// The effective policy as a table, for `warroom check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Configuration read from: {}",
            self.origins.join(", then ")
        );
        let _ = writeln!(out, "\nEscalation policy:");
        let _ = writeln!(
            out,
            "{:<20}{:>8}{:>8}{:>8}{:>8}",
            "setting", "SEV1", "SEV2", "SEV3", "SEV4"
        );
        let d = |x: Option<TimeDelta>| x.map_or("off".to_string(), crate::domain::engine::human);
        type Getter = fn(&SeverityPolicy) -> Option<TimeDelta>;
        let rows: [(&str, Getter); 7] = [
            ("l1_budget", |s| s.l1_budget),
            ("l2_budget", |s| s.l2_budget),
            ("plan_b_after", |s| s.plan_b_after),
            ("nudge_repeat", |s| s.nudge_repeat),
            ("update_cadence", |s| s.update_cadence),
            ("snooze_max", |s| s.snooze_max),
            ("snooze_total", |s| s.snooze_total),
        ];
        for (name, get) in rows {
            let _ = write!(out, "{name:<20}");
            for s in &self.policy.severities {
                let _ = write!(out, "{:>8}", d(get(s)));
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<20}", "sdm_alert_tier");
        for s in &self.policy.severities {
            let _ = write!(
                out,
                "{:>8}",
                s.sdm_alert_tier.map_or("never".into(), |t| t.to_string())
            );
        }
        let _ = write!(out, "\n{:<20}", "nudge_handoff_after");
        for s in &self.policy.severities {
            let _ = write!(
                out,
                "{:>8}",
                match s.nudge_handoff_after {
                    0 => "never".to_string(),
                    n => n.to_string(),
                }
            );
        }
        let _ = writeln!(out, "\n\nRoster:");
        for (u, roles) in &self.policy.roster.users {
            let r = roles
                .iter()
                .map(RoleKey::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(out, "  {u}: {r}");
        }
        if !self.policy.schedules.is_empty() {
            let _ = writeln!(out, "\nOn-call schedules:");
            for sc in &self.policy.schedules {
                let people = sc
                    .rotation
                    .iter()
                    .map(UserName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    out,
                    "  {}: {} in {}, shifts of {} from {} local, starting {}: {people}",
                    sc.name,
                    sc.role,
                    sc.zone.name(),
                    crate::domain::engine::human(sc.shift),
                    sc.handoff.format("%H:%M"),
                    sc.start
                );
            }
        }
        if !self.policy.services.is_empty() {
            let _ = writeln!(out, "\nServices:");
        }
        for (name, svc) in &self.policy.services {
            let plans = svc
                .plans
                .iter()
                .map(|(p, t)| {
                    format!(
                        "Plan {p} \"{}\" ({} checklist items)",
                        t.title,
                        t.checklist.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let drills = svc
                .drill_every
                .map_or("no drill schedule".to_string(), |d| {
                    format!("a drill every {}", crate::domain::engine::human(d))
                });
            let _ = writeln!(
                out,
                "  {name}: {} runbook link(s), {drills}; templates: {}",
                svc.runbook.len(),
                if plans.is_empty() {
                    "none".into()
                } else {
                    plans
                }
            );
        }
        let _ = writeln!(out, "\nWho may run what:");
        for (path, who) in &self.policy.permissions.by_command {
            let w = who
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" or ");
            let _ = writeln!(out, "  /{path}: {w}");
        }
        let g = |x: Option<u64>| x.map_or("not set".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "\nDiscord: guild {}, incident category {}, ops channel {}, SDM DMs {}, request timeout {}s, {} role(s) and {} user(s) mapped",
            g(self.discord.guild_id),
            g(self.discord.incident_category_id),
            g(self.discord.ops_channel_id),
            if self.discord.dm_sdm { "on" } else { "off" },
            self.discord.request_timeout.as_secs(),
            self.discord.roles.len(),
            self.discord.users.len()
        );
        match self.http.listen {
            Some(addr) => {
                let _ = writeln!(
                    out,
                    "\nHTTP: listening on {addr} (alerts, /health, /ready, /metrics)"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "\nHTTP: off (set http.listen to serve alerts and metrics)"
                );
            }
        }
        out.push_str(&self.alerts.describe());
        let _ = writeln!(
            out,
            "\nBoard: {}",
            if self.board.enabled {
                format!(
                    "on, on the HTTP listener; viewer token from ${}",
                    self.board.token_env
                )
            } else {
                "off (set board.enabled = true)".into()
            }
        );
        out
    }
}

/// `[http]`: `listen`, an address and port.
fn read_http(r: &Reader, t: &Table) -> Result<HttpConfig, ConfigError> {
    let Some(ht) = r.table(t, "http", "http")? else {
        return Ok(HttpConfig::default());
    };
    r.only_keys(ht, "http", &["listen"])?;
    let listen = match r.string(ht, "listen", "http.listen")? {
        None => None,
        Some(s) if s.trim().is_empty() || s.trim() == "off" => None,
        Some(s) => Some(s.trim().parse().map_err(|_| {
            r.err(
                "http.listen",
                format!(
                    "expected an address and port like \"127.0.0.1:8080\" (or \"off\"), found \"{}\"",
                    echo(&s)
                ),
            )
        })?),
    };
    Ok(HttpConfig { listen })
}

/// `[board]`: `enabled` and `token_env`.
fn read_board(r: &Reader, t: &Table) -> Result<BoardConfig, ConfigError> {
    let mut cfg = BoardConfig::default();
    let Some(bt) = r.table(t, "board", "board")? else {
        return Ok(cfg);
    };
    r.only_keys(bt, "board", &["enabled", "token_env"])?;
    match bt.get("enabled") {
        None => {}
        Some(Value::Boolean(b)) => cfg.enabled = *b,
        Some(other) => {
            return Err(r.err(
                "board.enabled",
                format!("expected true or false, found {}", other.type_str()),
            ));
        }
    }
    if let Some(n) = r.string(bt, "token_env", "board.token_env")? {
        let ok = !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !n.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(r.err(
                "board.token_env",
                format!(
                    "expected an environment variable name (letters, digits and '_'), found \"{}\"",
                    echo(&n)
                ),
            ));
        }
        cfg.token_env = n;
    }
    Ok(cfg)
}

/// `[alerts]`: `[alerts.sources.NAME]` tables and `[[alerts.routes]]`.
fn read_alerts(r: &Reader, t: &Table) -> Result<crate::alerts::AlertsConfig, ConfigError> {
    use crate::alerts::{AlertsConfig, SourceConfig, SourceKind};
    use crate::domain::alert::Route;
    let mut cfg = AlertsConfig::default();
    let Some(at) = r.table(t, "alerts", "alerts")? else {
        return Ok(cfg);
    };
    r.only_keys(at, "alerts", &["sources", "routes"])?;
    if let Some(sources) = r.table(at, "sources", "alerts.sources")? {
        for (name, v) in sources {
            let path = format!("alerts.sources.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(r.err(
                    &path,
                    "a source name is served at POST /alerts/NAME: lowercase letters, digits, '-' or '_', at most 64",
                ));
            }
            let Value::Table(st) = v else {
                return Err(r.err(&path, "expected a table like [alerts.sources.prom]"));
            };
            r.only_keys(
                st,
                &path,
                &["kind", "token_env", "secret_env", "auto_resolve", "service"],
            )?;
            let kind = match r.string(st, "kind", &format!("{path}.kind"))?.as_deref() {
                Some("alertmanager") => SourceKind::Alertmanager,
                Some("grafana") => SourceKind::Grafana,
                Some("events") => SourceKind::Events,
                Some(other) => {
                    return Err(r.err(
                        &format!("{path}.kind"),
                        format!(
                            "expected \"alertmanager\", \"grafana\" or \"events\", found \"{}\"",
                            echo(other)
                        ),
                    ));
                }
                None => {
                    return Err(r.err(
                        &format!("{path}.kind"),
                        "missing; expected \"alertmanager\", \"grafana\" or \"events\"",
                    ));
                }
            };
            let env_name = |key: &str, required: bool| -> Result<Option<String>, ConfigError> {
                let kpath = format!("{path}.{key}");
                match r.string(st, key, &kpath)? {
                    None if required => Err(r.err(
                        &kpath,
                        "missing; expected the name of the environment variable that holds the token, like \"WARROOM_ALERTS_PROM\" (the token itself never goes in a file)",
                    )),
                    None => Ok(None),
                    Some(n)
                        if !n.is_empty()
                            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !n.starts_with(|c: char| c.is_ascii_digit()) =>
                    {
                        Ok(Some(n))
                    }
                    Some(n) => Err(r.err(
                        &kpath,
                        format!(
                            "expected an environment variable name (letters, digits and '_'), found \"{}\"",
                            echo(&n)
                        ),
                    )),
                }
            };
            let token_env = env_name("token_env", true)?.unwrap_or_default();
            let secret_env = env_name("secret_env", false)?;
            if secret_env.is_some() && kind != SourceKind::Grafana {
                return Err(r.err(
                    &format!("{path}.secret_env"),
                    "only a grafana source signs its bodies (X-Grafana-Alerting-Signature); remove secret_env",
                ));
            }
            let auto_resolve = match st.get("auto_resolve") {
                None => false,
                Some(Value::Boolean(b)) => *b,
                Some(other) => {
                    return Err(r.err(
                        &format!("{path}.auto_resolve"),
                        format!("expected true or false, found {other}"),
                    ));
                }
            };
            let service = r
                .string(st, "service", &format!("{path}.service"))?
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            cfg.sources.insert(
                name.clone(),
                SourceConfig {
                    kind,
                    token_env,
                    secret_env,
                    auto_resolve,
                    service,
                },
            );
        }
    }
    match at.get("routes") {
        None => {}
        Some(Value::Array(routes)) => {
            for (i, rv) in routes.iter().enumerate() {
                let path = format!("alerts.routes[{i}]");
                let Value::Table(rt) = rv else {
                    return Err(r.err(
                        "alerts.routes",
                        format!("{path}: expected a table like [[alerts.routes]] with match and severity"),
                    ));
                };
                let err = |problem: String| r.err("alerts.routes", format!("{path}: {problem}"));
                for k in rt.keys() {
                    if !["match", "severity", "service"].contains(&k.as_str()) {
                        return Err(err(format!(
                            "unknown key '{k}'; expected one of: match, severity, service"
                        )));
                    }
                }
                let mut route = Route::default();
                match rt.get("match") {
                    Some(Value::Table(m)) if !m.is_empty() => {
                        for (k, v) in m {
                            let Value::String(v) = v else {
                                return Err(err(format!(
                                    "match.{k}: expected a label value as a string, found {v}"
                                )));
                            };
                            route.matchers.insert(k.clone(), v.clone());
                        }
                    }
                    Some(other) => {
                        return Err(err(format!(
                            "match: expected a table of labels like {{ severity = \"critical\" }}, found {other}"
                        )));
                    }
                    None => {
                        return Err(err(
                            "match is missing; expected a table of labels like { severity = \"critical\" }".into(),
                        ));
                    }
                }
                match rt.get("severity") {
                    None => {}
                    Some(Value::Integer(n)) => {
                        route.severity =
                            Some(Severity::from_level(*n).ok_or_else(|| {
                                err(format!("severity: expected 1 to 4, found {n}"))
                            })?);
                    }
                    Some(other) => {
                        return Err(err(format!("severity: expected 1 to 4, found {other}")));
                    }
                }
                match rt.get("service") {
                    None => {}
                    Some(Value::String(s)) if !s.trim().is_empty() => {
                        route.service = Some(s.trim().to_string())
                    }
                    Some(other) => {
                        return Err(err(format!(
                            "service: expected a non-empty service name, found {other}"
                        )));
                    }
                }
                if route.severity.is_none() && route.service.is_none() {
                    return Err(err(
                        "sets neither severity nor service; give it at least one".into(),
                    ));
                }
                cfg.routes.push(route);
            }
        }
        Some(other) => {
            return Err(r.err(
                "alerts.routes",
                format!(
                    "expected [[alerts.routes]] tables, found {}",
                    other.type_str()
                ),
            ));
        }
    }
    Ok(cfg)
}

fn string_list(r: &Reader, key: &str, v: Option<&Value>) -> Result<Vec<String>, ConfigError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                other => Err(r.err(
                    key,
                    format!("expected a list of non-empty strings, found {other}"),
                )),
            })
            .collect(),
        Some(other) => Err(r.err(
            key,
            format!("expected a list of strings, found {}", other.type_str()),
        )),
    }
}

/// `[services.NAME]`: runbook links, plan templates, drill schedule.
/// `[schedules.NAME]`: each a rotation staffing one role key. Refused: unknown users, bad zones,
/// a shift that leaves a gap before the next day's first handoff, and two schedules for one
/// role (they would overlap: one role has one person on call at a time).
fn read_schedules(
    r: &Reader,
    t: &Table,
    roster: &Roster,
) -> Result<Vec<crate::domain::oncall::Schedule>, ConfigError> {
    use crate::domain::oncall::{Schedule, shift_problem};
    let mut out: Vec<Schedule> = Vec::new();
    let Some(st) = r.table(t, "schedules", "schedules")? else {
        return Ok(out);
    };
    for (name, v) in st {
        let path = format!("schedules.{name}");
        if !is_role_key(name) {
            return Err(r.err(
                &path,
                "a schedule name is lowercase letters, digits, '_' or '-', like l1-emea",
            ));
        }
        let Value::Table(sv) = v else {
            return Err(r.err(&path, "expected a table like [schedules.l1-emea]"));
        };
        r.only_keys(
            sv,
            &path,
            &["role", "time_zone", "rotation", "shift", "handoff", "start"],
        )?;
        let need = |key: &str, example: &str| -> Result<String, ConfigError> {
            r.string(sv, key, &format!("{path}.{key}"))?.ok_or_else(|| {
                r.err(
                    &format!("{path}.{key}"),
                    format!("missing; for example {key} = {example}"),
                )
            })
        };
        let role = need("role", "\"l1\"")?;
        if !is_role_key(&role) || RoleKey::new(&role).is_external() {
            return Err(r.err(
                &format!("{path}.role"),
                format!(
                    "expected a staff role key such as \"l1\" or \"sdm\", found \"{}\"",
                    echo(&role)
                ),
            ));
        }
        let zone_s = need("time_zone", "\"Europe/London\"")?;
        let zone: chrono_tz::Tz = zone_s.trim().parse().map_err(|_| {
            r.err(
                &format!("{path}.time_zone"),
                format!("\"{}\" is not an IANA time zone; use a name like \"Europe/London\", \"America/New_York\" or \"UTC\"", echo(&zone_s)),
            )
        })?;
        let rotation = string_list(r, &format!("{path}.rotation"), sv.get("rotation"))?;
        if rotation.is_empty() {
            return Err(r.err(
                &format!("{path}.rotation"),
                "expected at least one roster user, like [\"alice\", \"erin\"]; an empty rotation is a gap",
            ));
        }
        let mut people = Vec::new();
        for u in &rotation {
            let user = UserName::new(u);
            if !roster.contains(&user) {
                return Err(r.err(
                    &format!("{path}.rotation"),
                    format!(
                        "'{}' is not on the roster; expected one of: {}",
                        echo(u),
                        roster.names()
                    ),
                ));
            }
            let roles = roster.roles_of(&user);
            if !roles.is_empty() && roles.iter().all(RoleKey::is_external) {
                return Err(r.err(
                    &format!("{path}.rotation"),
                    format!("'{u}' is facilities or vendor staff, who cannot hold {role}; put staff in the rotation"),
                ));
            }
            people.push(user);
        }
        let shift = r
            .duration(sv, "shift", &format!("{path}.shift"))?
            .ok_or_else(|| {
                r.err(
                    &format!("{path}.shift"),
                    "expected a duration like \"12h\", not off",
                )
            })?;
        if let Some(p) = shift_problem(shift) {
            return Err(r.err(
                &format!("{path}.shift"),
                format!("{p}; found \"{}\"", crate::domain::engine::human(shift)),
            ));
        }
        let handoff_s = need("handoff", "\"08:00\"")?;
        let handoff =
            chrono::NaiveTime::parse_from_str(handoff_s.trim(), "%H:%M").map_err(|_| {
                r.err(
                    &format!("{path}.handoff"),
                    format!(
                        "expected a local time like \"08:00\" (24-hour HH:MM), found \"{}\"",
                        echo(&handoff_s)
                    ),
                )
            })?;
        let start_s = need("start", "\"2026-11-01\"")?;
        let start = chrono::NaiveDate::parse_from_str(start_s.trim(), "%Y-%m-%d").map_err(|_| {
            r.err(
                &format!("{path}.start"),
                format!("expected a date like \"2026-11-01\" (the day the first person's first shift begins), found \"{}\"", echo(&start_s)),
            )
        })?;
        let sched = Schedule {
            name: name.clone(),
            role: RoleKey::new(&role),
            zone,
            rotation: people,
            shift,
            handoff,
            start,
        };
        if sched.boundary(0).is_none() || sched.boundary(100_000).is_none() {
            return Err(r.err(&format!("{path}.start"), "the schedule's shifts fall beyond representable time; use a date within a few years of now"));
        }
        if let Some(other) = out.iter().find(|o| o.role == sched.role) {
            return Err(r.err(
                &format!("{path}.role"),
                format!(
                    "schedules.{} already staffs {role}: two schedules for one role overlap (two people on call for it at once). Put everyone in one rotation, and use /oncall override for swaps",
                    other.name
                ),
            ));
        }
        out.push(sched);
    }
    Ok(out)
}

fn read_services(r: &Reader, t: &Table) -> Result<BTreeMap<String, ServicePolicy>, ConfigError> {
    let mut services = BTreeMap::new();
    let Some(st) = r.table(t, "services", "services")? else {
        return Ok(services);
    };
    for (name, v) in st {
        let path = format!("services.{name}");
        let Value::Table(svc) = v else {
            return Err(r.err(&path, "expected a table like [services.mail]"));
        };
        r.only_keys(svc, &path, &["runbook", "drill_every", "plans"])?;
        let mut sp = ServicePolicy {
            runbook: string_list(r, &format!("{path}.runbook"), svc.get("runbook"))?,
            ..Default::default()
        };
        if svc.contains_key("drill_every") {
            sp.drill_every = r.duration(svc, "drill_every", &format!("{path}.drill_every"))?;
        }
        if let Some(plans) = r.table(svc, "plans", &format!("{path}.plans"))? {
            for (letter, pv) in plans {
                let ppath = format!("{path}.plans.{letter}");
                let plan: Plan = letter
                    .parse()
                    .ok()
                    .filter(|p| *p != Plan::A)
                    .ok_or_else(|| r.err(&ppath, "expected a plan letter B, C or D"))?;
                let Value::Table(pt) = pv else {
                    return Err(r.err(
                        &ppath,
                        "expected a table with title, lead_role, cadence, checklist",
                    ));
                };
                r.only_keys(pt, &ppath, &["title", "lead_role", "cadence", "checklist"])?;
                let title = r
                    .string(pt, "title", &format!("{ppath}.title"))?
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| {
                        r.err(
                            &format!("{ppath}.title"),
                            "missing; expected the plan's goal",
                        )
                    })?;
                let lead_role = match r.string(pt, "lead_role", &format!("{ppath}.lead_role"))? {
                    Some(k) if is_role_key(&k) => Some(RoleKey::new(&k)),
                    Some(k) => {
                        return Err(r.err(
                            &format!("{ppath}.lead_role"),
                            format!("expected a role key like \"rebuild\", found \"{k}\""),
                        ));
                    }
                    None => None,
                };
                let cadence = if pt.contains_key("cadence") {
                    r.duration(pt, "cadence", &format!("{ppath}.cadence"))?
                } else {
                    None
                };
                let checklist = string_list(r, &format!("{ppath}.checklist"), pt.get("checklist"))?;
                if checklist.len() > 20 {
                    return Err(r.err(&format!("{ppath}.checklist"), "at most 20 items"));
                }
                sp.plans.insert(
                    plan,
                    PlanTemplate {
                        title,
                        lead_role,
                        cadence,
                        checklist,
                    },
                );
            }
        }
        services.insert(name.clone(), sp);
    }
    Ok(services)
}

/// The variables that configure warroom, from the process environment.
pub fn warroom_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("WARROOM__"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_the_spec_defaults() {
        let c = Config::builtin().unwrap();
        for sev in Severity::ALL {
            assert_eq!(
                *c.policy.for_severity(sev),
                SeverityPolicy::default_for(sev),
                "{sev}"
            );
        }
        assert_eq!(c.policy.roster.users.len(), 7);
        assert_eq!(c.console_user.as_str(), "alice");
    }

    #[test]
    fn store_options_default_to_fsync_and_are_checked() {
        let c = Config::builtin().unwrap();
        assert_eq!(c.store.durability, crate::store::Durability::Fsync);
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let c = Config::load(None, &env("WARROOM__STORE__DURABILITY", "flush")).unwrap();
        assert_eq!(c.store.durability, crate::store::Durability::Flush);
        let e = Config::load(None, &env("WARROOM__STORE__DURABILITY", "sometimes"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.durability"), "{e}");
        let e = Config::load(None, &env("WARROOM__STORE__CACHE_MB", "0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.cache_mb"), "{e}");
        assert_eq!(c.store.url, None);
        let c = Config::load(
            None,
            &env(
                "WARROOM__STORE__URL",
                "postgres://warroom:pw@db.example:5433/warroom",
            ),
        )
        .unwrap();
        let url = c.store.url.expect("a url");
        assert_eq!(url.shown(), "postgres://warroom@db.example:5433/warroom");
        assert!(!format!("{url:?}").contains("pw"));
        let e = Config::load(None, &env("WARROOM__STORE__URL", "mysql://db/warroom"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("store.url") && e.contains("PostgreSQL URL"),
            "{e}"
        );
    }

    #[test]
    fn request_timeout_defaults_to_15s_and_is_bounded() {
        assert_eq!(
            Config::builtin().unwrap().discord.request_timeout,
            std::time::Duration::from_secs(15)
        );
        let env = |v: &str| {
            vec![(
                "WARROOM__DISCORD__REQUEST_TIMEOUT".to_string(),
                v.to_string(),
            )]
        };
        let c = Config::load(None, &env("3s")).unwrap();
        assert_eq!(c.discord.request_timeout, std::time::Duration::from_secs(3));
        for bad in ["0s", "10m", "off", "soon"] {
            let e = Config::load(None, &env(bad)).unwrap_err().to_string();
            assert!(e.contains("discord.request_timeout"), "{bad}: {e}");
        }
    }

    #[test]
    fn env_overrides_a_duration() {
        let env = vec![(
            "WARROOM__POLICY__SEV1__L1_BUDGET".to_string(),
            "45m".to_string(),
        )];
        let c = Config::load(None, &env).unwrap();
        assert_eq!(
            c.policy.for_severity(Severity::Sev1).l1_budget,
            Some(TimeDelta::minutes(45))
        );
    }

    #[test]
    fn nudge_handoff_after_is_a_count_or_zero_for_never() {
        let load = |v: &str| {
            Config::load(
                None,
                &[(
                    "WARROOM__POLICY__SEV3__NUDGE_HANDOFF_AFTER".to_string(),
                    v.to_string(),
                )],
            )
        };
        let c = load("0").unwrap();
        assert_eq!(c.policy.for_severity(Severity::Sev3).nudge_handoff_after, 0);
        assert_eq!(c.policy.for_severity(Severity::Sev1).nudge_handoff_after, 4);
        assert!(c.describe().contains("nudge_handoff_after"));
        assert_eq!(
            load("7")
                .unwrap()
                .policy
                .for_severity(Severity::Sev3)
                .nudge_handoff_after,
            7
        );
        for bad in ["-1", "101", "soon", "1.5"] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains("policy.sev3.nudge_handoff_after"), "{e}");
            assert!(e.contains("expected 0 (never) or a count"), "{e}");
        }
    }

    #[test]
    fn bad_duration_names_key_and_origin() {
        let env = vec![(
            "WARROOM__POLICY__SEV2__NUDGE_REPEAT".to_string(),
            "soon".to_string(),
        )];
        let e = Config::load(None, &env).unwrap_err().to_string();
        assert!(e.contains("policy.sev2.nudge_repeat"), "{e}");
        assert!(e.contains("WARROOM__POLICY__SEV2__NUDGE_REPEAT"), "{e}");
        assert!(e.contains("\"soon\""), "{e}");
    }

    #[test]
    fn durations_beyond_a_year_or_with_fractions_are_refused_by_key() {
        let load = |v: &str| {
            Config::load(
                None,
                &[(
                    "WARROOM__POLICY__SEV1__L1_BUDGET".to_string(),
                    v.to_string(),
                )],
            )
        };
        for bad in [
            "1000000000000000s",
            "367d",
            "99999999999999999999999s",
            "1500ms",
        ] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains("policy.sev1.l1_budget"), "{bad}: {e}");
            assert!(e.contains("whole seconds from 1s to 366d"), "{bad}: {e}");
        }
        let c = load("366d").unwrap();
        assert_eq!(
            c.policy.for_severity(Severity::Sev1).l1_budget,
            Some(TimeDelta::days(366))
        );
    }
}
