//! Slash-command definitions, loaded from `commands/*.toml` (compiled in), and everything they
//! drive: the text parser, `/help`, the README's command table and, later, Discord registration.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use regex::Regex;
use serde::Deserialize;

use crate::domain::engine::human;
use crate::domain::{
    Command, Deadline, IncidentRole, NudgeId, Plan, RoleKey, Severity, Tier, TrackState, UserName,
    policy::is_role_key,
};

/// The definition files, one per top-level command. A test checks this list against the folder.
pub const SOURCES: &[(&str, &str)] = &[
    ("ack", include_str!("../commands/ack.toml")),
    ("escalate", include_str!("../commands/escalate.toml")),
    ("handover", include_str!("../commands/handover.toml")),
    ("help", include_str!("../commands/help.toml")),
    ("incident", include_str!("../commands/incident.toml")),
    ("oncall", include_str!("../commands/oncall.toml")),
    ("participant", include_str!("../commands/participant.toml")),
    ("plan", include_str!("../commands/plan.toml")),
    ("report", include_str!("../commands/report.toml")),
    ("role", include_str!("../commands/role.toml")),
    ("snooze", include_str!("../commands/snooze.toml")),
    ("timeline", include_str!("../commands/timeline.toml")),
    ("update", include_str!("../commands/update.toml")),
    ("vendor", include_str!("../commands/vendor.toml")),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    description: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    choices: Vec<String>,
    max_length: Option<usize>,
    #[serde(default)]
    autocomplete: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSub {
    name: String,
    description: String,
    who: Vec<String>,
    #[serde(default)]
    options: Vec<RawOption>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    name: String,
    description: String,
    who: Option<Vec<String>>,
    #[serde(default)]
    options: Vec<RawOption>,
    #[serde(default)]
    sub: Vec<RawSub>,
}

/// What an option holds. Each maps to a Discord option type and to a console syntax.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OptionType {
    Text,
    Boolean,
    Severity,
    Tier,
    Plan,
    Duration,
    User,
    Team,
    Choice,
    Nudge,
    Deadline,
    /// A whole number from 1, such as a checklist item.
    Number,
}

impl OptionType {
    fn parse(s: &str) -> Option<OptionType> {
        Some(match s {
            "text" => Self::Text,
            "boolean" => Self::Boolean,
            "severity" => Self::Severity,
            "tier" => Self::Tier,
            "plan" => Self::Plan,
            "duration" => Self::Duration,
            "user" => Self::User,
            "team" => Self::Team,
            "choice" => Self::Choice,
            "nudge" => Self::Nudge,
            "deadline" => Self::Deadline,
            "number" => Self::Number,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub kind: OptionType,
    pub description: String,
    pub required: bool,
    pub choices: Vec<String>,
    pub max_length: Option<usize>,
    /// Discord suggests values as the user types (for example plan templates).
    pub autocomplete: bool,
}

impl OptionSpec {
    /// The placeholder shown in usage lines.
    pub fn placeholder(&self) -> String {
        match self.kind {
            OptionType::Text => "<text>".into(),
            OptionType::Boolean => "<true|false>".into(),
            OptionType::Severity => "<1-4>".into(),
            OptionType::Tier => "<1-3>".into(),
            OptionType::Plan => "<A-D>".into(),
            OptionType::Duration => "<duration, e.g. 45m>".into(),
            OptionType::User => "<user>".into(),
            OptionType::Team => "<role>".into(),
            OptionType::Choice => format!("<{}>", self.choices.join("|")),
            OptionType::Nudge => "<nudge number>".into(),
            OptionType::Deadline => "<30m or 23:40>".into(),
            OptionType::Number => "<number>".into(),
        }
    }
}

/// One runnable command: a top-level command without subcommands, or one subcommand.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandSpec {
    /// `"incident open"` or `"update"`.
    pub path: String,
    pub description: String,
    pub who: Vec<String>,
    pub options: Vec<OptionSpec>,
}

impl CommandSpec {
    pub fn usage(&self) -> String {
        let mut s = format!("/{}", self.path);
        for o in &self.options {
            if o.required {
                s.push_str(&format!(" {}:{}", o.name, o.placeholder()));
            }
        }
        for o in &self.options {
            if !o.required {
                s.push_str(&format!(" [{}:{}]", o.name, o.placeholder()));
            }
        }
        s
    }
}

/// A top-level command as Discord sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopSpec {
    pub name: String,
    pub description: String,
    /// Present when the command is itself runnable (no subcommands).
    pub leaf: Option<CommandSpec>,
    pub subs: Vec<(String, CommandSpec)>,
}

impl TopSpec {
    pub fn runnable(&self) -> Vec<&CommandSpec> {
        match &self.leaf {
            Some(l) => vec![l],
            None => self.subs.iter().map(|(_, c)| c).collect(),
        }
    }
}

/// A definition file that does not describe a valid command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("commands/{file}.toml: {problem}")]
pub struct SpecError {
    pub file: String,
    pub problem: String,
}

/// All command definitions.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandSet {
    pub tops: Vec<TopSpec>,
}

fn convert_options(file: &str, raw: Vec<RawOption>) -> Result<Vec<OptionSpec>, SpecError> {
    let err = |problem: String| SpecError {
        file: file.to_string(),
        problem,
    };
    raw.into_iter()
        .map(|o| {
            let kind = OptionType::parse(&o.kind)
                .ok_or_else(|| err(format!("option '{}' has unknown type '{}'", o.name, o.kind)))?;
            if kind == OptionType::Choice && o.choices.is_empty() {
                return Err(err(format!(
                    "option '{}' is a choice with no choices",
                    o.name
                )));
            }
            Ok(OptionSpec {
                name: o.name,
                kind,
                description: o.description,
                required: o.required,
                choices: o.choices,
                max_length: o.max_length,
                autocomplete: o.autocomplete,
            })
        })
        .collect()
}

impl CommandSet {
    /// Parses definition sources (file stem, TOML text).
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<CommandSet, SpecError> {
        let mut tops = Vec::new();
        for (file, text) in sources {
            let err = |problem: String| SpecError {
                file: file.to_string(),
                problem,
            };
            let raw: RawCommand = toml::from_str(text).map_err(|e| err(e.message().to_string()))?;
            if raw.name != *file {
                return Err(err(format!(
                    "name '{}' differs from the file name",
                    raw.name
                )));
            }
            let (leaf, subs) = match (raw.sub.is_empty(), raw.who) {
                (true, Some(who)) => (
                    Some(CommandSpec {
                        path: raw.name.clone(),
                        description: raw.description.clone(),
                        who,
                        options: convert_options(file, raw.options)?,
                    }),
                    Vec::new(),
                ),
                (true, None) => {
                    return Err(err("a command without subcommands needs 'who'".into()));
                }
                (false, None) if raw.options.is_empty() => {
                    let mut subs = Vec::new();
                    for s in raw.sub {
                        subs.push((
                            s.name.clone(),
                            CommandSpec {
                                path: format!("{} {}", raw.name, s.name),
                                description: s.description,
                                who: s.who,
                                options: convert_options(file, s.options)?,
                            },
                        ));
                    }
                    (None, subs)
                }
                (false, _) => {
                    return Err(err(
                        "a command with subcommands puts 'who' and options on each subcommand"
                            .into(),
                    ));
                }
            };
            tops.push(TopSpec {
                name: raw.name,
                description: raw.description,
                leaf,
                subs,
            });
        }
        Ok(CommandSet { tops })
    }

    /// The definitions compiled into the binary.
    // Invariant: the sources are compiled in, and a unit test parses them
    // (`builtin_definitions_parse_and_fit_discord_limits`), so a failure here is a build
    // defect, never user input.
    #[allow(clippy::expect_used)]
    pub fn builtin() -> &'static CommandSet {
        static SET: OnceLock<CommandSet> = OnceLock::new();
        SET.get_or_init(|| {
            CommandSet::from_sources(SOURCES).expect("commands/*.toml are valid (tested)")
        })
    }

    pub fn top(&self, name: &str) -> Option<&TopSpec> {
        self.tops.iter().find(|t| t.name == name)
    }

    pub fn runnable(&self) -> Vec<&CommandSpec> {
        self.tops.iter().flat_map(TopSpec::runnable).collect()
    }

    pub fn find(&self, path: &str) -> Option<&CommandSpec> {
        self.runnable().into_iter().find(|c| c.path == path)
    }

    /// Checks every definition against Discord's limits; returns the problems found.
    pub fn discord_problems(&self) -> Vec<String> {
        let name_ok = |n: &str| {
            (1..=32).contains(&n.chars().count())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        let desc_ok = |d: &str| (1..=100).contains(&d.chars().count());
        let mut p = Vec::new();
        if self.tops.len() > 100 {
            p.push("more than 100 top-level commands".into());
        }
        for t in &self.tops {
            if !name_ok(&t.name) {
                p.push(format!(
                    "/{}: name must be 1-32 lowercase characters",
                    t.name
                ));
            }
            if !desc_ok(&t.description) {
                p.push(format!("/{}: description must be 1-100 characters", t.name));
            }
            if t.subs.len() > 25 {
                p.push(format!("/{}: more than 25 subcommands", t.name));
            }
            for (sub, _) in &t.subs {
                if !name_ok(sub) {
                    p.push(format!(
                        "/{} {sub}: name must be 1-32 lowercase characters",
                        t.name
                    ));
                }
            }
            for c in t.runnable() {
                if !desc_ok(&c.description) {
                    p.push(format!("/{}: description must be 1-100 characters", c.path));
                }
                if c.options.len() > 25 {
                    p.push(format!("/{}: more than 25 options", c.path));
                }
                let mut seen_optional = false;
                for o in &c.options {
                    if !name_ok(&o.name) {
                        p.push(format!(
                            "/{} {}: option name must be 1-32 lowercase characters",
                            c.path, o.name
                        ));
                    }
                    if !desc_ok(&o.description) {
                        p.push(format!(
                            "/{} {}: option description must be 1-100 characters",
                            c.path, o.name
                        ));
                    }
                    if o.autocomplete && !o.choices.is_empty() {
                        p.push(format!(
                            "/{} {}: autocomplete and choices exclude each other",
                            c.path, o.name
                        ));
                    }
                    if o.choices.len() > 25 {
                        p.push(format!("/{} {}: more than 25 choices", c.path, o.name));
                    }
                    if o.required && seen_optional {
                        p.push(format!(
                            "/{} {}: required options must come before optional ones",
                            c.path, o.name
                        ));
                    }
                    seen_optional |= !o.required;
                }
            }
        }
        p
    }
}

/// A parsed option value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Bool(bool),
    Severity(Severity),
    Tier(Tier),
    Plan(Plan),
    Duration(TimeDelta),
    User(UserName),
    Team(RoleKey),
    Choice(String),
    Nudge(NudgeId),
    Deadline(Deadline),
    Number(u32),
}

/// A command line with its options checked against the definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub path: String,
    pub values: BTreeMap<String, Value>,
}

/// Bad input: says what was wrong and shows the usage.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub usage: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\nusage: {}", self.message, self.usage)
    }
}

impl std::error::Error for ParseError {}

// Invariant: a constant pattern, compiled by every parse in the tests; it cannot fail at run
// time on any input.
#[allow(clippy::expect_used)]
fn token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"^\s*(?:([A-Za-z][A-Za-z0-9_-]*):(?:"((?:[^"\\]|\\.)*)"|(\S*))|(\S+))"#)
            .expect("static regex")
    })
}

// Invariant: as `token_re`, a constant pattern exercised by the tests.
#[allow(clippy::expect_used)]
fn user_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-z][a-z0-9_.-]{0,31}$").expect("static regex"))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a duration as users write it: `45m`, `1h30m`, `2h 15m`.
pub fn parse_duration(s: &str) -> Option<TimeDelta> {
    let d = humantime::parse_duration(s.trim()).ok()?;
    let d = TimeDelta::from_std(d).ok()?;
    (d > TimeDelta::zero()).then_some(d)
}

/// The longest duration a command option accepts.
pub const MAX_DURATION: TimeDelta = TimeDelta::days(30);

/// Why a written duration does not fit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Not a duration at all (or zero).
    NotADuration,
    /// It has a fraction of a second: durations are stored in whole seconds.
    Fraction,
    /// Longer than the limit (or than any time can hold).
    TooLong,
}

/// Parses a duration in whole seconds, from 1s up to `max`.
pub fn parse_duration_within(s: &str, max: TimeDelta) -> Result<TimeDelta, DurationError> {
    let d = match humantime::parse_duration(s.trim()) {
        Ok(d) => d,
        Err(humantime::DurationError::NumberOverflow) => return Err(DurationError::TooLong),
        Err(_) => return Err(DurationError::NotADuration),
    };
    let d = TimeDelta::from_std(d).map_err(|_| DurationError::TooLong)?;
    if d <= TimeDelta::zero() {
        Err(DurationError::NotADuration)
    } else if d.subsec_nanos() != 0 {
        Err(DurationError::Fraction)
    } else if d > max {
        Err(DurationError::TooLong)
    } else {
        Ok(d)
    }
}

/// The longest command line read: every option at its longest fits several times over.
pub const MAX_LINE: usize = 8000;

/// How much of a user's input an error message echoes.
pub const ECHO_MAX: usize = 80;

/// User input as an error message echoes it: control characters escaped (`\u{1b}`), and cut
/// to `ECHO_MAX` characters with "…", so that neither a megabyte nor a terminal escape comes
/// back to the sender.
pub fn echo(input: &str) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for c in input.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let len = piece.chars().count();
        if shown + len > ECHO_MAX {
            out.push('…');
            break;
        }
        shown += len;
        out.push_str(&piece);
    }
    out
}

/// Parses a value for an option; the error says what is expected.
pub fn parse_value(opt: &OptionSpec, raw: &str) -> Result<Value, String> {
    let raw_t = raw.trim();
    let bad = |what: &str| format!("option '{}': '{}' is not {what}", opt.name, echo(raw));
    match opt.kind {
        OptionType::Text => {
            if raw_t.is_empty() {
                return Err(format!("option '{}' is empty; give it some text", opt.name));
            }
            if let Some(max) = opt.max_length
                && raw_t.chars().count() > max
            {
                return Err(format!(
                    "option '{}' is {} characters long; at most {max} fit",
                    opt.name,
                    raw_t.chars().count()
                ));
            }
            Ok(Value::Text(raw_t.to_string()))
        }
        OptionType::Boolean => match raw_t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(bad("true or false")),
        },
        OptionType::Severity => raw_t
            .to_ascii_lowercase()
            .trim_start_matches("sev")
            .parse::<i64>()
            .ok()
            .and_then(Severity::from_level)
            .map(Value::Severity)
            .ok_or_else(|| bad("a severity; use 1 (worst) to 4")),
        OptionType::Tier => raw_t
            .to_ascii_lowercase()
            .trim_start_matches('l')
            .parse::<i64>()
            .ok()
            .and_then(Tier::from_level)
            .map(Value::Tier)
            .ok_or_else(|| bad("a tier; use 1, 2 or 3")),
        OptionType::Plan => raw_t
            .parse::<Plan>()
            .map(Value::Plan)
            .map_err(|_| bad("a plan; use A, B, C or D")),
        OptionType::Duration => match parse_duration_within(raw_t, MAX_DURATION) {
            Ok(d) => Ok(Value::Duration(d)),
            Err(DurationError::NotADuration) => Err(bad("a duration; write it like 45m or 1h30m")),
            Err(DurationError::Fraction) => Err(format!(
                "option '{}': '{}' has a fraction of a second; durations are whole seconds, from 1s to {}",
                opt.name,
                echo(raw_t),
                human(MAX_DURATION)
            )),
            Err(DurationError::TooLong) => Err(format!(
                "option '{}': '{}' is out of range; a duration here is from 1s to {}",
                opt.name,
                echo(raw_t),
                human(MAX_DURATION)
            )),
        },
        OptionType::User => {
            let name = raw_t.trim_start_matches('@');
            if user_re().is_match(name) {
                Ok(Value::User(UserName::new(name)))
            } else {
                Err(bad("a user name; use a roster name like alice"))
            }
        }
        OptionType::Team => {
            let key = raw_t.trim_start_matches('@');
            if is_role_key(key) {
                Ok(Value::Team(RoleKey::new(key)))
            } else {
                Err(bad("a role key; use one like rebuild or l2"))
            }
        }
        OptionType::Choice => {
            if opt.choices.iter().any(|c| c == raw_t) {
                Ok(Value::Choice(raw_t.to_string()))
            } else {
                Err(bad(&format!("one of {}", opt.choices.join(", "))))
            }
        }
        OptionType::Nudge => raw_t
            .trim_start_matches('#')
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| Value::Nudge(NudgeId(n)))
            .ok_or_else(|| bad("a nudge number, as shown on the nudge (e.g. 3)")),
        OptionType::Number => raw_t
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(Value::Number)
            .ok_or_else(|| bad("a whole number from 1")),
        OptionType::Deadline => {
            let in_form = parse_duration_within(raw_t, Deadline::MAX_AHEAD);
            if let Ok(d) = in_form {
                Ok(Value::Deadline(Deadline::In(d)))
            } else if in_form == Err(DurationError::TooLong) {
                Err(format!(
                    "option '{}': '{}' is too far ahead; it must fall within {} from now",
                    opt.name,
                    echo(raw_t),
                    human(Deadline::MAX_AHEAD)
                ))
            } else if in_form == Err(DurationError::Fraction) {
                Err(format!(
                    "option '{}': '{}' has a fraction of a second; write whole seconds, like 30m",
                    opt.name,
                    echo(raw_t)
                ))
            } else if let Ok(t) = NaiveTime::parse_from_str(raw_t, "%H:%M") {
                Ok(Value::Deadline(Deadline::At(t)))
            } else if let Ok(t) = DateTime::parse_from_rfc3339(raw_t) {
                Ok(Value::Deadline(Deadline::Exactly(t.with_timezone(&Utc))))
            } else {
                Err(bad(
                    "a callback time; write a duration (30m) or a UTC time (23:40)",
                ))
            }
        }
    }
}

impl CommandSet {
    fn overview_usage(&self) -> String {
        "/help lists every command".to_string()
    }

    /// Parses one line such as `/incident open title:"Mail down" severity:1 service:mail`.
    pub fn parse(&self, line: &str) -> Result<Invocation, ParseError> {
        let line = line.trim();
        let length = line.chars().count();
        if length > MAX_LINE {
            return Err(ParseError {
                message: format!(
                    "'{}' is {length} characters long; a command line holds at most {MAX_LINE}",
                    echo(line)
                ),
                usage: self.overview_usage(),
            });
        }
        let Some(rest) = line.strip_prefix('/') else {
            return Err(ParseError {
                message: format!("'{}' is not a command; commands start with /", echo(line)),
                usage: self.overview_usage(),
            });
        };
        let name_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let name = &rest[..name_end];
        let mut rest = &rest[name_end..];
        let Some(top) = self.top(name) else {
            let names = self
                .tops
                .iter()
                .map(|t| format!("/{}", t.name))
                .collect::<Vec<_>>()
                .join(" ");
            return Err(ParseError {
                message: format!("unknown command '/{}'; commands are: {names}", echo(name)),
                usage: self.overview_usage(),
            });
        };
        let spec = match &top.leaf {
            Some(leaf) => leaf,
            None => {
                let subs = top
                    .subs
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let usage = top
                    .subs
                    .iter()
                    .map(|(_, c)| c.usage())
                    .collect::<Vec<_>>()
                    .join(" | ");
                let trimmed = rest.trim_start();
                let sub_end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
                let sub = &trimmed[..sub_end];
                if sub.is_empty() {
                    return Err(ParseError {
                        message: format!("/{name} needs a subcommand: {subs}"),
                        usage,
                    });
                }
                match top.subs.iter().find(|(s, _)| s == sub) {
                    Some((_, c)) => {
                        rest = &trimmed[sub_end..];
                        c
                    }
                    None => {
                        return Err(ParseError {
                            message: format!(
                                "/{name} has no subcommand '{}'; use one of: {subs}",
                                echo(sub)
                            ),
                            usage,
                        });
                    }
                }
            }
        };
        let fail = |message: String| ParseError {
            message: format!("/{}: {message}", spec.path),
            usage: spec.usage(),
        };
        let options_are = if spec.options.is_empty() {
            "this command takes no options".to_string()
        } else {
            let known = spec
                .options
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            format!("its options are: {known}")
        };
        let mut values = BTreeMap::new();
        // A command with a single option also takes its value bare: `/help incident`, `/ack 3`.
        if let [only] = spec.options.as_slice()
            && !rest.trim().is_empty()
            && !token_re().captures_iter(rest).any(|c| c.get(1).is_some())
        {
            let raw = rest.trim().trim_matches('"');
            values.insert(only.name.clone(), parse_value(only, raw).map_err(fail)?);
            rest = "";
        }
        while !rest.trim().is_empty() {
            let caps = token_re()
                .captures(rest)
                .ok_or_else(|| fail(format!("cannot read '{}'", echo(rest.trim()))))?;
            let whole = caps.get(0).map_or(0, |m| m.end());
            rest = &rest[whole..];
            if let Some(word) = caps.get(4) {
                let word = word.as_str();
                return Err(fail(match word.split_once(':') {
                    // Written name:value, but the name is not one an option can have (`🔥:x`).
                    Some((name, _)) if !name.is_empty() && !name.starts_with('"') => {
                        format!("unknown option '{}'; {options_are}", echo(name))
                    }
                    Some(("", _)) => format!(
                        "'{}' has no option name before the colon; {options_are}",
                        echo(word)
                    ),
                    _ => format!(
                        "unexpected '{}'; options are written name:value ({options_are}), and text with spaces goes in quotes",
                        echo(word)
                    ),
                }));
            }
            let key = caps.get(1).map_or("", |m| m.as_str());
            let raw = match (caps.get(2), caps.get(3)) {
                (Some(q), _) => unescape(q.as_str()),
                (None, Some(v)) if v.as_str().starts_with('"') => {
                    return Err(fail(format!(
                        "option '{}': the opening quote is never closed",
                        echo(key)
                    )));
                }
                (None, Some(v)) => v.as_str().to_string(),
                (None, None) => String::new(),
            };
            let Some(opt) = spec.options.iter().find(|o| o.name == key) else {
                return Err(fail(format!(
                    "unknown option '{}'; {options_are}",
                    echo(key)
                )));
            };
            if values.contains_key(key) {
                return Err(fail(format!("option '{key}' is given twice")));
            }
            let value = parse_value(opt, &raw).map_err(fail)?;
            values.insert(key.to_string(), value);
        }
        for o in &spec.options {
            if o.required && !values.contains_key(&o.name) {
                return Err(fail(format!(
                    "missing required option '{}' ({})",
                    o.name, o.description
                )));
            }
        }
        Ok(Invocation {
            path: spec.path.clone(),
            values,
        })
    }

    /// `/help` and `/help <command>`, generated from the definitions.
    pub fn help(&self, command: Option<&str>) -> Result<String, String> {
        match command.map(|c| c.trim().trim_start_matches('/')) {
            None | Some("") => {
                let mut out = vec!["warroom commands (/help <command> for details):".to_string()];
                for c in self.runnable() {
                    out.push(format!("  {}  — {}", c.usage(), c.description));
                }
                Ok(out.join("\n"))
            }
            Some(name) => {
                let top_name = name.split_whitespace().next().unwrap_or(name);
                let top = self.top(top_name).ok_or_else(|| {
                    format!(
                        "/help: there is no command '/{}'; /help lists them all",
                        echo(top_name)
                    )
                })?;
                let mut out = vec![format!("/{} — {}", top.name, top.description)];
                for c in top.runnable() {
                    if name.contains(' ') && c.path != name {
                        continue;
                    }
                    out.push(c.usage());
                    out.push(format!(
                        "    {} (who may: {})",
                        c.description,
                        c.who.join(", ")
                    ));
                    for o in &c.options {
                        let req = if o.required { "required" } else { "optional" };
                        out.push(format!("    {}: {} ({req})", o.name, o.description));
                    }
                }
                Ok(out.join("\n"))
            }
        }
    }

    /// The README's command table.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from("| command | what it does | who may |\n|---|---|---|\n");
        for c in self.runnable() {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.usage().replace('|', "\\|"),
                c.description,
                c.who.join(", ")
            ));
        }
        out
    }
}

/// What an invocation asks for: a change to an incident, or a read.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Change(Command),
    Status,
    Timeline,
    Report,
    Help(Option<String>),
    /// `/oncall show [role]`.
    OnCall(Option<RoleKey>),
    /// `/oncall override`.
    Override {
        role: RoleKey,
        user: UserName,
        from: Deadline,
        to: Deadline,
        reason: String,
    },
    /// `/oncall overrides`.
    Overrides,
    /// `/oncall remove`.
    RemoveOverride(u32),
}

impl Invocation {
    fn text(&self, k: &str) -> Option<String> {
        match self.values.get(k) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }
    fn need_text(&self, k: &str) -> String {
        // Required options are checked by the parser against the same definition.
        self.text(k).unwrap_or_default()
    }
    fn plan(&self, k: &str) -> Option<Plan> {
        match self.values.get(k) {
            Some(Value::Plan(p)) => Some(*p),
            _ => None,
        }
    }
    fn user(&self, k: &str) -> Option<UserName> {
        match self.values.get(k) {
            Some(Value::User(u)) => Some(u.clone()),
            _ => None,
        }
    }
    fn duration(&self, k: &str) -> Option<TimeDelta> {
        match self.values.get(k) {
            Some(Value::Duration(d)) => Some(*d),
            _ => None,
        }
    }
    fn nudge(&self) -> Option<NudgeId> {
        match self.values.get("nudge") {
            Some(Value::Nudge(n)) => Some(*n),
            _ => None,
        }
    }
    fn severity(&self, k: &str) -> Option<Severity> {
        match self.values.get(k) {
            Some(Value::Severity(s)) => Some(*s),
            _ => None,
        }
    }
    fn choice(&self, k: &str) -> Option<&str> {
        match self.values.get(k) {
            Some(Value::Choice(c)) => Some(c),
            _ => None,
        }
    }

    /// Turns the invocation into a request, through the handler table.
    pub fn to_request(&self) -> Result<Request, String> {
        let handler = HANDLERS
            .iter()
            .find(|(p, _)| *p == self.path)
            .ok_or_else(|| format!("/{} has no handler", self.path))?;
        (handler.1)(self)
    }
}

type Handler = fn(&Invocation) -> Result<Request, String>;

fn missing(path: &str, opt: &str) -> String {
    format!("/{path}: missing required option '{opt}'")
}

/// One handler per runnable definition; a test checks both directions.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("incident open", |i| {
        Ok(Request::Change(Command::Open {
            title: i.need_text("title"),
            severity: i
                .severity("severity")
                .ok_or_else(|| missing(&i.path, "severity"))?,
            service: i.need_text("service"),
            drill: matches!(i.values.get("drill"), Some(Value::Bool(true))),
            force: matches!(i.values.get("force"), Some(Value::Bool(true))),
        }))
    }),
    ("incident status", |_| Ok(Request::Status)),
    ("incident severity", |i| {
        Ok(Request::Change(Command::Severity {
            level: i
                .severity("level")
                .ok_or_else(|| missing(&i.path, "level"))?,
            reason: i.need_text("reason"),
        }))
    }),
    ("incident resolve", |i| {
        Ok(Request::Change(Command::Resolve {
            summary: i.need_text("summary"),
            plan: i.plan("plan"),
        }))
    }),
    ("escalate", |i| {
        Ok(Request::Change(Command::Escalate {
            tier: match i.values.get("tier") {
                Some(Value::Tier(t)) => Some(*t),
                _ => None,
            },
            reason: i.need_text("reason"),
        }))
    }),
    ("plan open", |i| {
        Ok(Request::Change(Command::PlanOpen {
            plan: i.plan("plan").ok_or_else(|| missing(&i.path, "plan"))?,
            title: i.text("title"),
            lead: i.user("lead"),
            team: match i.values.get("team") {
                Some(Value::Team(r)) => Some(r.clone()),
                _ => None,
            },
            cadence: i.duration("cadence"),
        }))
    }),
    ("plan assign", |i| {
        Ok(Request::Change(Command::PlanAssign {
            plan: i.plan("plan").ok_or_else(|| missing(&i.path, "plan"))?,
            lead: i.user("lead"),
            member: i.user("member"),
        }))
    }),
    ("plan close", |i| {
        let outcome = match i.choice("outcome") {
            Some("succeeded") => TrackState::Succeeded,
            Some("abandoned") => TrackState::Abandoned,
            Some("stood-down") => TrackState::StandingDown,
            _ => return Err(missing(&i.path, "outcome")),
        };
        Ok(Request::Change(Command::PlanClose {
            plan: i.plan("plan").ok_or_else(|| missing(&i.path, "plan"))?,
            outcome,
            note: i.text("note"),
        }))
    }),
    ("plan check", |i| {
        Ok(Request::Change(Command::PlanCheck {
            plan: i.plan("plan").ok_or_else(|| missing(&i.path, "plan"))?,
            item: match i.values.get("item") {
                Some(Value::Number(n)) => *n,
                _ => return Err(missing(&i.path, "item")),
            },
        }))
    }),
    ("plan decline", |i| {
        Ok(Request::Change(Command::PlanDecline {
            reason: i.need_text("reason"),
        }))
    }),
    ("update", |i| {
        Ok(Request::Change(Command::Update {
            text: i.need_text("text"),
            plan: i.plan("plan"),
        }))
    }),
    ("ack", |i| {
        Ok(Request::Change(Command::Ack { nudge: i.nudge() }))
    }),
    ("snooze", |i| {
        Ok(Request::Change(Command::Snooze {
            duration: i
                .duration("duration")
                .ok_or_else(|| missing(&i.path, "duration"))?,
            reason: i.need_text("reason"),
            nudge: i.nudge(),
        }))
    }),
    ("participant add", |i| {
        let kind = i.choice("kind").ok_or_else(|| missing(&i.path, "kind"))?;
        Ok(Request::Change(Command::ParticipantAdd {
            user: i.user("user").ok_or_else(|| missing(&i.path, "user"))?,
            kind: RoleKey::new(kind),
        }))
    }),
    ("role assign", |i| {
        let role = i
            .choice("role")
            .and_then(IncidentRole::parse)
            .ok_or_else(|| missing(&i.path, "role"))?;
        Ok(Request::Change(Command::RoleAssign {
            role,
            user: i.user("user").ok_or_else(|| missing(&i.path, "user"))?,
        }))
    }),
    ("handover", |i| {
        Ok(Request::Change(Command::Handover {
            to: i.user("to").ok_or_else(|| missing(&i.path, "to"))?,
            summary: i.need_text("summary"),
            plan: i.plan("plan"),
        }))
    }),
    ("oncall show", |i| {
        Ok(Request::OnCall(match i.values.get("role") {
            Some(Value::Team(r)) => Some(r.clone()),
            _ => None,
        }))
    }),
    ("oncall override", |i| {
        let deadline = |k: &str| match i.values.get(k) {
            Some(Value::Deadline(d)) => Ok(*d),
            _ => Err(missing(&i.path, k)),
        };
        Ok(Request::Override {
            role: match i.values.get("role") {
                Some(Value::Team(r)) => r.clone(),
                _ => return Err(missing(&i.path, "role")),
            },
            user: i.user("user").ok_or_else(|| missing(&i.path, "user"))?,
            from: deadline("from")?,
            to: deadline("to")?,
            reason: i.need_text("reason"),
        })
    }),
    ("oncall overrides", |_| Ok(Request::Overrides)),
    ("oncall remove", |i| match i.values.get("override") {
        Some(Value::Number(n)) => Ok(Request::RemoveOverride(*n)),
        _ => Err(missing(&i.path, "override")),
    }),
    ("vendor add", |i| {
        Ok(Request::Change(Command::VendorAdd {
            vendor: i.need_text("name"),
            case: i.need_text("case"),
            callback: match i.values.get("callback") {
                Some(Value::Deadline(d)) => Some(*d),
                _ => None,
            },
        }))
    }),
    ("vendor update", |i| {
        Ok(Request::Change(Command::VendorUpdate {
            case: i.need_text("case"),
            text: i.need_text("text"),
        }))
    }),
    ("vendor close", |i| {
        Ok(Request::Change(Command::VendorClose {
            case: i.need_text("case"),
            note: i.text("note"),
        }))
    }),
    ("timeline", |_| Ok(Request::Timeline)),
    ("report", |_| Ok(Request::Report)),
    ("help", |i| Ok(Request::Help(i.text("command")))),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_definitions_parse_and_fit_discord_limits() {
        let set = CommandSet::from_sources(SOURCES).unwrap();
        assert_eq!(set.tops.len(), SOURCES.len());
        let problems = set.discord_problems();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_definition_has_a_handler_and_every_handler_a_definition() {
        let set = CommandSet::builtin();
        let defined: Vec<&str> = set.runnable().iter().map(|c| c.path.as_str()).collect();
        let handled: Vec<&str> = HANDLERS.iter().map(|(p, _)| *p).collect();
        for d in &defined {
            assert!(handled.contains(d), "/{d} is defined but has no handler");
        }
        for h in &handled {
            assert!(defined.contains(h), "handler /{h} has no definition");
        }
    }

    #[test]
    fn the_limit_checker_catches_bad_definitions() {
        let bad = r#"
name = "BadName"
description = ""
who = ["anyone"]
[[options]]
name = "x"
type = "text"
description = "fine"
"#;
        let set = CommandSet::from_sources(&[("BadName", bad)]).unwrap();
        let p = set.discord_problems();
        assert!(p.iter().any(|s| s.contains("lowercase")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("1-100")), "{p:?}");
    }

    #[test]
    fn parses_quoted_values_and_durations() {
        let set = CommandSet::builtin();
        let i = set
            .parse(r#"/snooze duration:1h30m reason:"vendor says \"soon\"""#)
            .unwrap();
        assert_eq!(i.path, "snooze");
        assert_eq!(
            i.values["duration"],
            Value::Duration(TimeDelta::minutes(90))
        );
        assert_eq!(
            i.values["reason"],
            Value::Text("vendor says \"soon\"".into())
        );
    }

    #[test]
    fn a_single_option_may_be_given_bare() {
        let set = CommandSet::builtin();
        let i = set.parse("/help incident").unwrap();
        assert_eq!(i.values["command"], Value::Text("incident".into()));
        let i = set.parse("/ack 3").unwrap();
        assert_eq!(i.values["nudge"], Value::Nudge(NudgeId(3)));
        assert!(
            set.parse("/ack three")
                .unwrap_err()
                .message
                .contains("not a nudge number")
        );
    }

    #[test]
    fn an_option_name_no_option_can_have_is_named_with_the_valid_ones() {
        let e = CommandSet::builtin().parse("/update 🔥:x").unwrap_err();
        assert_eq!(
            e.message,
            "/update: unknown option '🔥'; its options are: text, plan"
        );
        let e = CommandSet::builtin().parse("/update :x").unwrap_err();
        assert!(e.message.contains("':x' has no option name"), "{e}");
    }

    #[test]
    fn echoed_input_is_cut_and_its_control_characters_escaped() {
        assert_eq!(echo("plain"), "plain");
        assert_eq!(echo("a\u{1b}[2Jb\u{7}"), "a\\u{1b}[2Jb\\u{7}");
        let long = "x".repeat(1_000_000);
        let shown = echo(&long);
        assert_eq!(shown.chars().count(), ECHO_MAX + 1);
        assert!(shown.ends_with('…'));
        // An escape is never cut in half.
        let e = echo(&format!("{}\u{1b}", "y".repeat(ECHO_MAX - 2)));
        assert!(e.ends_with("y…"), "{e}");
    }

    #[test]
    fn rejects_unknown_option_with_usage() {
        let e = CommandSet::builtin()
            .parse("/update text:hi colour:red")
            .unwrap_err();
        assert!(e.message.contains("unknown option 'colour'"), "{e}");
        assert!(e.usage.starts_with("/update text:<text>"), "{e}");
    }
}
