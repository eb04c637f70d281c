//! A property-based fuzzer: command lines generated from the definitions in `commands/`, valid
//! and hostile, run through `App::run_line` on a real sled store with a virtual clock,
//! interleaved with clock advances (which fire timers) and switches of acting user.
//!
//! Properties, for every generated line:
//! - nothing panics (proptest reports a panic as a failing case, shrunk);
//! - a refused line (`ReplyKind::Error`) leaves the stored incidents, their timelines, the
//!   pending timers and the outbox exactly as they were;
//! - every incident and event the engine produces, for a command or a fired timer, round-trips
//!   through serde_json (the store's format) to an equal value, and is what the store then holds;
//! - the engine and the app agree: a command the engine accepts is committed, never refused by
//!   the store, and one it refuses is an error;
//! - timers falling due at one instant come to an end.
//!
//! `cargo test` runs a short fuzz (`fuzz_short`); `fuzz_long` is `#[ignore]`d and runs
//! `WARROOM_FUZZ_CASES` cases (default 10,000) of 100 command lines each: see the README.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::TimeDelta;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use warroom::app::{App, ReplyKind};
use warroom::clock::{Clock, VirtualClock};
use warroom::domain::engine::{self, Ctx};
use warroom::domain::{Event, Incident, IncidentId, UserName};
use warroom::spec::{CommandSet, CommandSpec, OptionSpec, OptionType, Request};

use crate::helpers::*;

/// Who acts: the demo roster, and someone who is on no roster.
const USERS: &[&str] = &[
    "alice", "bob", "dana", "sam", "carol", "ravi", "kim", "mallory",
];

/// Values that are wrong for almost every option: huge, negative, empty, quoted, unicode,
/// control characters, times at the ends of what can be written.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "\"",
    "\\",
    "\"unclosed",
    "\\\"",
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    "1e9",
    "NaN",
    "1000000000000000s",
    "99999999999999999999999s",
    "360000000000s",
    "31d",
    "8d",
    "7d",
    "30d",
    "0s",
    "-5m",
    "1500ms",
    "1ns",
    "24:00",
    "23:59",
    "00:00",
    "2026-11-23T21:59:59Z",
    "2026-11-24T01:00:00Z",
    "2027-11-04T13:40:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "🔥",
    "\u{1b}[2J",
    "\u{7}\u{0}",
    "l4",
    "sev0",
    "E",
    "Plan Z",
    "@",
    "#0",
    "#4294967295",
    "ünïcødé ✓",
    "\u{202e}txet",
];

/// Valid-looking values by option type, from the definitions and the demo roster.
fn valid_values(opt: &OptionSpec) -> Vec<String> {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match opt.kind {
        OptionType::Text => v(&[
            "x",
            "Mail down",
            "mail",
            "db",
            "still looking",
            "vendor says \"soon\"",
            "C-123",
            "VMware",
            "ünïcødé ✓",
            "incident",
            "plan open",
        ]),
        OptionType::Boolean => v(&["true", "false", "yes", "off"]),
        OptionType::Severity => v(&["1", "2", "3", "4", "sev2"]),
        OptionType::Tier => v(&["1", "2", "3", "l2"]),
        OptionType::Plan => v(&["A", "B", "C", "D", "b"]),
        OptionType::Duration => v(&["1s", "1m", "15m", "30m", "1h", "1h30m", "4h", "1d"]),
        OptionType::User => v(&[
            "alice", "bob", "dana", "sam", "carol", "ravi", "kim", "mallory", "@sam",
        ]),
        OptionType::Team => v(&["l1", "l2", "l3", "sdm", "rebuild", "fm", "vendor", "nobody"]),
        OptionType::Choice => opt.choices.clone(),
        OptionType::Nudge => v(&["1", "2", "3", "4", "5", "#2", "9"]),
        OptionType::Deadline => v(&["30m", "2h", "7d", "23:40", "2026-11-23T23:00:00Z"]),
        OptionType::Number => v(&["1", "2", "3", "4", "9"]),
    }
}

/// A value for `opt`: mostly valid, sometimes hostile, sometimes any string at all.
fn value(opt: &OptionSpec) -> BoxedStrategy<String> {
    let valid = prop::sample::select(valid_values(opt));
    // Also one past the longest texts (cases 60, titles 100, updates 1000).
    let long = prop::sample::select(vec![61usize, 101, 301, 1001]).prop_map(|n| "t".repeat(n));
    let hostile = prop_oneof![
        10 => prop::sample::select(HOSTILE).prop_map(str::to_string),
        1 => long,
    ];
    prop_oneof![
        12 => valid,
        3 => hostile,
        1 => any::<String>(),
        1 => "[0-9]{1,30}[smhd]?",
    ]
    .boxed()
}

/// How a value is written: quoted (escaped) when it needs it, and sometimes raw on purpose.
fn write_value(raw: &str, quote: u8) -> String {
    let needs = raw.is_empty() || raw.contains(|c: char| c.is_whitespace() || c == '"');
    match quote {
        // Raw, however wrong that is.
        0 => raw.to_string(),
        // Quoted, escaping quotes and backslashes.
        1..=2 => format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\"")),
        _ if needs => format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\"")),
        _ => raw.to_string(),
    }
}

/// An option's name as written: its own, mostly; else another option's, a near miss or junk.
fn name(opt: &OptionSpec, spec: &CommandSpec) -> BoxedStrategy<String> {
    let mut others: Vec<String> = spec.options.iter().map(|o| o.name.clone()).collect();
    others.extend(
        ["🔥", "Text", "text2", "_", "a-b", "x", "ёж", ""]
            .iter()
            .map(|s| s.to_string()),
    );
    others.push(format!("{}x", opt.name));
    prop_oneof![
        20 => Just(opt.name.clone()),
        1 => prop::sample::select(others),
    ]
    .boxed()
}

/// A well-formed command line for `spec`: its required options, some optional ones, each
/// with a valid-looking value, written as a user would.
fn clean_line_for(spec: &'static CommandSpec) -> BoxedStrategy<String> {
    let options: Vec<BoxedStrategy<Option<String>>> = spec
        .options
        .iter()
        .map(|opt| {
            let p = if opt.required { 1.0 } else { 0.4 };
            let name = opt.name.clone();
            (
                prop::bool::weighted(p),
                prop::sample::select(valid_values(opt)),
            )
                .prop_map(move |(present, raw)| {
                    present.then(|| format!("{name}:{}", write_value(&raw, 3)))
                })
                .boxed()
        })
        .collect();
    options
        .prop_map(move |opts| {
            let mut line = format!("/{}", spec.path);
            for o in opts.into_iter().flatten() {
                line.push(' ');
                line.push_str(&o);
            }
            line
        })
        .boxed()
}

/// One command line for `spec`: options present or missing, shuffled, sometimes with junk.
fn line_for(spec: &'static CommandSpec) -> BoxedStrategy<String> {
    let options: Vec<BoxedStrategy<Option<String>>> = spec
        .options
        .iter()
        .map(|opt| {
            let p = if opt.required { 0.9 } else { 0.4 };
            (prop::bool::weighted(p), name(opt, spec), value(opt), 0u8..8)
                .prop_map(|(present, name, raw, quote)| {
                    present.then(|| format!("{name}:{}", write_value(&raw, quote)))
                })
                .boxed()
        })
        .collect();
    let junk = prop::option::weighted(
        0.05,
        prop_oneof![
            Just("extra".to_string()),
            Just("\"dangling".to_string()),
            Just(":x".to_string()),
            any::<String>(),
        ],
    );
    (options.prop_shuffle(), junk)
        .prop_map(move |(opts, junk)| {
            let mut line = format!("/{}", spec.path);
            for o in opts.into_iter().flatten().chain(junk) {
                line.push(' ');
                line.push_str(&o);
            }
            line
        })
        .boxed()
}

/// Any line: one from the definitions (most of the time, now and then mutated), or junk.
fn any_line() -> BoxedStrategy<String> {
    let specs: Vec<&'static CommandSpec> = CommandSet::builtin().runnable();
    let clean = proptest::strategy::Union::new(specs.iter().copied().map(clean_line_for)).boxed();
    let defined = proptest::strategy::Union::new(specs.into_iter().map(line_for)).boxed();
    let mutated = (
        defined.clone(),
        any::<prop::sample::Index>(),
        any::<char>(),
        0u8..3,
    )
        .prop_map(|(line, at, c, how)| {
            let chars: Vec<char> = line.chars().collect();
            let i = at.index(chars.len() + 1);
            let (head, tail) = chars.split_at(i);
            let mut out: String = head.iter().collect();
            match how {
                // Cut short.
                0 => {}
                // A character slipped in.
                1 => {
                    out.push(c);
                    out.extend(tail);
                }
                // A character dropped.
                _ => out.extend(tail.iter().skip(1)),
            }
            out
        });
    prop_oneof![
        30 => clean,
        30 => defined,
        6 => mutated,
        1 => any::<String>(),
        1 => "/[a-z]{0,12}( [a-z:\"]{0,12}){0,3}",
        1 => Just("/incident".to_string()),
        1 => Just("/help".to_string()),
    ]
    .boxed()
}

/// What happens before a line: nothing, mostly; or time passes, someone else acts, or the
/// line comes from another channel.
#[derive(Clone, Debug)]
enum Before {
    Nothing,
    /// The clock moves on this many seconds, firing whatever falls due.
    Advance(i64),
    /// `/as`: this user acts from now on.
    As(usize),
    /// The line comes from no incident's channel (0), from the k-th incident's, counting round
    /// the incidents opened so far, or (`u64::MAX`) from one that does not exist.
    Use(u64),
}

#[derive(Clone, Debug)]
struct Step {
    before: Before,
    line: String,
}

/// With `far`, the clock also jumps days and weeks at a time (to 30d, the console's longest
/// advance): slow, since each jump fires a timer per cadence for every plan on the way.
fn before(far: bool) -> impl Strategy<Value = Before> {
    let short = prop::sample::select(vec![1i64, 60, 300, 900, 1_800, 3_600, 7_200]);
    let long = prop::sample::select(if far {
        vec![
            21_600i64, 43_200, 86_400, 86_400, 259_200, 604_800, 2_592_000,
        ]
    } else {
        vec![21_600i64, 43_200]
    });
    prop_oneof![
        40 => Just(Before::Nothing),
        12 => short.prop_map(Before::Advance),
        1 => long.prop_map(Before::Advance),
        12 => (0..USERS.len()).prop_map(Before::As),
        1 => Just(Before::Use(0)),
        1 => Just(Before::Use(u64::MAX)),
        4 => (1u64..5).prop_map(Before::Use),
    ]
}

fn steps(lines: std::ops::RangeInclusive<usize>, far: bool) -> impl Strategy<Value = Vec<Step>> {
    // Most cases start by opening an incident, so that the commands have one to act on.
    let open = prop::bool::weighted(0.9);
    (
        open,
        prop::collection::vec((before(far), any_line()), lines),
    )
        .prop_map(|(open, steps)| {
            let mut out: Vec<Step> = steps
                .into_iter()
                .map(|(before, line)| Step { before, line })
                .collect();
            if open && let Some(first) = out.first_mut() {
                first.before = Before::Nothing;
                first.line = "/incident open title:\"Mail down\" severity:1 service:mail".into();
            }
            out
        })
}

/// Everything a refused line must leave alone, as the store's bytes would hold it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    incidents: Vec<u8>,
    events: Vec<Vec<u8>>,
    timers: usize,
    outbox: usize,
}

fn fail(what: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(what.into())
}

fn snapshot(app: &App) -> Result<Snapshot, TestCaseError> {
    let store = app.store();
    let incidents = store.incidents().map_err(|e| fail(e.to_string()))?;
    let mut events = Vec::new();
    for inc in &incidents {
        let ev = store.events(inc.id).map_err(|e| fail(e.to_string()))?;
        events.push(serde_json::to_vec(&ev).map_err(|e| fail(e.to_string()))?);
    }
    Ok(Snapshot {
        incidents: serde_json::to_vec(&incidents).map_err(|e| fail(e.to_string()))?,
        events,
        timers: store.pending_timers().map_err(|e| fail(e.to_string()))?,
        outbox: store.outbox().map_err(|e| fail(e.to_string()))?.len(),
    })
}

/// The incident and its events survive the store's format unchanged.
fn round_trips(inc: &Incident, events: &[Event]) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(inc)
        .map_err(|e| fail(format!("{} does not serialise: {e}\n{inc:#?}", inc.id)))?;
    let back: Incident = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("{} does not read back: {e}", inc.id)))?;
    if back != *inc {
        return Err(fail(format!(
            "{} changes through JSON:\n{inc:#?}\nbecomes\n{back:#?}",
            inc.id
        )));
    }
    for e in events {
        let bytes = serde_json::to_vec(e).map_err(|x| fail(format!("event: {x}")))?;
        let back: Event =
            serde_json::from_slice(&bytes).map_err(|x| fail(format!("event: {x}")))?;
        if back != *e {
            return Err(fail(format!("an event changes through JSON: {e:#?}")));
        }
    }
    Ok(())
}

fn stored(app: &App, id: IncidentId) -> Result<Option<Incident>, TestCaseError> {
    app.store().incident(id).map_err(|e| fail(e.to_string()))
}

/// The most timers one instant may fire before it counts as a loop.
const MAX_FIRES_AT_ONCE: usize = 1_000;

/// Moves the clock `secs` on, firing each timer at its due time, and checks each firing.
fn advance(app: &App, clock: &VirtualClock, secs: i64) -> Result<(), TestCaseError> {
    let now = clock.now();
    let target = now
        .checked_add_signed(TimeDelta::seconds(secs))
        .ok_or_else(|| fail("the fuzz clock ran past the end of time"))?;
    let mut at_once = 0;
    let mut last = now;
    loop {
        let next = app.next_due().map_err(|e| fail(e.to_string()))?;
        let Some(due) = next.filter(|d| *d <= target) else {
            break;
        };
        let at = due.max(clock.now());
        if at == last {
            at_once += 1;
            if at_once > MAX_FIRES_AT_ONCE {
                return Err(fail(format!("timers keep falling due at {at}")));
            }
        } else {
            at_once = 0;
            last = at;
        }
        clock.set(at);
        // What the engine decides for this timer, computed beside the app to check it.
        let timer = app.store().next_timer().map_err(|e| fail(e.to_string()))?;
        let expected = match &timer {
            Some(t) if t.due <= at => match stored(app, t.incident)? {
                Some(inc) if inc.timers.iter().any(|p| p.seq == t.seq) => {
                    let ctx = Ctx {
                        now: at,
                        policy: &app.config().policy,
                        overrides: &[],
                    };
                    let d = engine::fire(&ctx, &inc, t.seq);
                    round_trips(&d.incident, &d.events)?;
                    Some(d.incident)
                }
                _ => None,
            },
            _ => None,
        };
        let fired = app
            .fire_one(at)
            .map_err(|e| fail(format!("firing a timer at {at} failed: {e}")))?;
        if !fired {
            break;
        }
        FIRED.fetch_add(1, Ordering::Relaxed);
        if let Some(expected) = expected
            && stored(app, expected.id)?.as_ref() != Some(&expected)
        {
            return Err(fail(format!(
                "the store does not hold what the engine decided for a timer of {}",
                expected.id
            )));
        }
    }
    clock.set(target);
    Ok(())
}

/// The engine's own decision for `line`, computed beside the app: Some(Ok) for an accepted
/// change, Some(Err) for a refused one, None where the app answers without the engine.
fn expected(
    app: &App,
    actor: &engine::Actor,
    place: Option<IncidentId>,
    line: &str,
) -> Result<Option<Result<Incident, String>>, TestCaseError> {
    let Ok(inv) = app.specs().parse(line) else {
        return Ok(None);
    };
    let Ok(Request::Change(cmd)) = inv.to_request() else {
        return Ok(None);
    };
    let ctx = Ctx {
        now: app.clock().now(),
        policy: &app.config().policy,
        overrides: &[],
    };
    if let warroom::domain::Command::Open {
        title,
        severity,
        service,
        drill,
        ..
    } = &cmd
    {
        let id = app
            .store()
            .next_incident_id()
            .map_err(|e| fail(e.to_string()))?;
        let exercise = if *drill {
            warroom::domain::Exercise::Drill
        } else {
            warroom::domain::Exercise::Real
        };
        return Ok(Some(
            match engine::open(&ctx, actor, id, title, *severity, service, exercise) {
                Ok(d) => {
                    round_trips(&d.incident, &d.events)?;
                    Ok(d.incident)
                }
                Err(r) => Err(r.message),
            },
        ));
    }
    let Some(id) = place else {
        return Ok(None);
    };
    let Some(inc) = stored(app, id)? else {
        return Ok(None);
    };
    Ok(Some(match engine::handle(&ctx, actor, &inc, &cmd) {
        Ok(d) => {
            round_trips(&d.incident, &d.events)?;
            Ok(d.incident)
        }
        Err(r) => Err(r.message),
    }))
}

/// Lines run so far, by every case of every fuzz in this process.
static LINES: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static FIRED: AtomicU64 = AtomicU64::new(0);

/// A fresh data folder for one case, in the system's temporary folder.
fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warroom-fuzz")
        .tempdir()
        .expect("a temporary folder")
}

/// Runs one case: the steps on a fresh store, checking every property on the way.
fn run_case(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = data_dir();
    let (app, clock) = app(dir.path());
    let mut actor = app.actor(&UserName::new("alice"));
    let mut place: Option<IncidentId> = None;
    // The store as it stands, while known: a refused line leaves it so.
    let mut known: Option<Snapshot> = None;
    for step in steps {
        match step.before {
            Before::Nothing => {}
            Before::Advance(secs) => {
                known = None;
                advance(&app, &clock, secs)?;
            }
            Before::As(i) => actor = app.actor(&UserName::new(USERS[i])),
            Before::Use(0) => place = None,
            Before::Use(k) => {
                let next = app
                    .store()
                    .next_incident_id()
                    .map_err(|e| fail(e.to_string()))?;
                let opened = next.0.saturating_sub(1).max(1);
                place = Some(if k == u64::MAX {
                    next
                } else {
                    IncidentId((k - 1) % opened + 1)
                });
            }
        }
        let before = match known.take() {
            Some(s) => s,
            None => snapshot(&app)?,
        };
        let engine_says = expected(&app, &actor, place, &step.line)?;
        let r = app.run_line(&actor, place, &step.line);
        LINES.fetch_add(1, Ordering::Relaxed);
        if r.kind == ReplyKind::Error {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            if let Some(Ok(_)) = engine_says {
                return Err(fail(format!(
                    "the engine accepted {:?} but the app refused it: {}",
                    step.line, r.text
                )));
            }
            let after = snapshot(&app)?;
            if after != before {
                return Err(fail(format!(
                    "the refused line {:?} ({}) changed the store",
                    step.line, r.text
                )));
            }
            known = Some(after);
            continue;
        }
        match engine_says {
            // The app's own answer to a repeated /incident open: the incident already open.
            Some(Err(_)) if r.text.contains("Nothing new was opened") => {}
            Some(Err(why)) => {
                return Err(fail(format!(
                    "the engine refused {:?} ({why}) but the app answered: {}",
                    step.line, r.text
                )));
            }
            Some(Ok(inc)) if r.incident == Some(inc.id) => {
                let held = stored(&app, inc.id)?;
                if held.as_ref() != Some(&inc) {
                    return Err(fail(format!(
                        "after {:?} the store does not hold what the engine decided",
                        step.line
                    )));
                }
            }
            _ => {}
        }
        // As the console does: a reply about an incident makes it the current one.
        if r.incident.is_some() {
            place = r.incident;
        }
    }
    Ok(())
}

/// Runs `cases` cases of `lines` command lines each and reports the figures.
fn fuzz(name: &str, cases: u32, lines: std::ops::RangeInclusive<usize>, far: bool) {
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        // Shrinking a long case through sled is slow; a few hundred steps find a small one.
        max_shrink_iters: 512,
        max_shrink_time: 120_000,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let counts = || [&LINES, &REFUSED, &FIRED].map(|c| c.load(Ordering::Relaxed));
    let at_start = counts();
    let started = Instant::now();
    let result = runner.run(&steps(lines, far), |s| run_case(&s));
    let now = counts();
    let [ran, refused, fired] = [0, 1, 2].map(|i| now[i] - at_start[i]);
    say(&format!(
        "{name}: {cases} cases, {ran} command lines ({refused} refused), {fired} timers fired, in {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        match &result {
            Ok(()) => "every property held, no panic".to_string(),
            Err(e) => format!("FAILED: {e}"),
        }
    ));
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn fuzz_short() {
    fuzz("fuzz_short", 250, 1..=30, false);
}

/// The long run: `WARROOM_FUZZ_CASES` cases (default 10,000) of exactly 100 command lines,
/// so the default is 1,000,000 lines. See the README for the command.
#[test]
#[ignore = "long: run with --ignored, sized by WARROOM_FUZZ_CASES"]
fn fuzz_long() {
    let cases = std::env::var("WARROOM_FUZZ_CASES")
        .ok()
        .map(|v| {
            v.parse::<u32>()
                .unwrap_or_else(|_| panic!("WARROOM_FUZZ_CASES must be a number, not {v:?}"))
        })
        .unwrap_or(10_000);
    fuzz("fuzz_long", cases, 100..=100, true);
}
