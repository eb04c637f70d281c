//! Stores side by side (`warroom bench --store URL`): the same engine decisions committed
//! durably through `store::Backend`, on a fresh sled folder and on an empty PostgreSQL
//! database, in one run: per-decision commit latency, firing cost per timer (due timers listed
//! and fired in batches of 256, one commit each), and reopen to the first due listing with
//! everything still pending; with `--timers N`, both first load the same snapshot of N pending
//! timers, and the restart (or takeover) to the first overdue fire is timed too.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::config::Config;
use crate::domain::engine::{self, Actor, Ctx};
use crate::domain::{Command, Decision, Exercise, Incident, Plan, Severity, UserName};
use crate::store::postgres::{PgStore, PgUrl};
use crate::store::{Backend, Commit, DueTimer, Outgoing, Store};

use super::{Figure, ms, percentile, us};

/// What one backend measured.
struct Measured {
    commit: Vec<Duration>,
    fire_per_timer: Duration,
    fired: usize,
    pending: usize,
    reopen: Duration,
    /// With a prefilled snapshot: loading it, and then reopen (or connect) to the first overdue
    /// timer fired durably, through `App` as a restarted or newly active bot does it.
    loaded: Option<(Duration, Duration)>,
}

fn commit(
    b: &dyn Backend,
    decided: &[(Option<Incident>, Decision, Option<DueTimer>)],
) -> anyhow::Result<()> {
    let mut outboxes = Vec::with_capacity(decided.len());
    for (_, d, _) in decided {
        let channel = format!("inc-{}", d.incident.id.0);
        let out = d
            .messages
            .iter()
            .map(|m| {
                Ok(Outgoing::new(
                    b.outbox_id()?,
                    d.incident.id,
                    &channel,
                    m.clone(),
                ))
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
        outboxes.push(out);
    }
    let commits: Vec<Commit> = decided
        .iter()
        .zip(&outboxes)
        .map(|((before, d, consumed), out)| Commit {
            before: before.as_ref(),
            after: &d.incident,
            shared: None,
            events: &d.events,
            outbox: out,
            consumed: consumed.as_ref(),
        })
        .collect();
    b.commit_durably(&commits)?;
    Ok(())
}

fn decide(
    b: &dyn Backend,
    config: &Config,
    rounds: usize,
    start: chrono::DateTime<Utc>,
) -> anyhow::Result<Vec<Duration>> {
    let ctx = |now| Ctx {
        now,
        policy: &config.policy,
        overrides: &[],
    };
    let actor = |name: &str| Actor {
        user: UserName::new(name),
        roles: config.policy.roster.roles_of(&UserName::new(name)),
    };
    let alice = actor("alice");
    let refused = |e: crate::domain::Refusal| anyhow::anyhow!("bench decision refused: {e:?}");
    let mut latencies = Vec::with_capacity(rounds.saturating_mul(4));
    for i in 0..rounds {
        let now = start;
        let t = Instant::now();
        let id = b.next_incident_id()?;
        let d = engine::open(
            &ctx(now),
            &alice,
            id,
            &format!("bench {i}"),
            Severity::Sev1,
            "mail",
            Exercise::Real,
        )
        .map_err(refused)?;
        commit(b, &[(None, d, None)])?;
        latencies.push(t.elapsed());
        for n in 0..3 {
            let t = Instant::now();
            let inc = b
                .incident(id)?
                .ok_or_else(|| anyhow::anyhow!("{id} vanished"))?;
            let cmd = Command::Update {
                text: format!("step {n}"),
                plan: Some(Plan::A),
            };
            let d = engine::handle(&ctx(now), &alice, &inc, &cmd).map_err(refused)?;
            commit(b, &[(Some(inc), d, None)])?;
            latencies.push(t.elapsed());
        }
    }
    latencies.sort();
    Ok(latencies)
}

/// Fires everything due two days after `start`, in batches; returns the cost per fired timer
/// and how many fired.
fn fire(
    b: &dyn Backend,
    config: &Config,
    start: chrono::DateTime<Utc>,
) -> anyhow::Result<(Duration, usize)> {
    let ctx = |now| Ctx {
        now,
        policy: &config.policy,
        overrides: &[],
    };
    let later = start
        .checked_add_signed(TimeDelta::days(2))
        .ok_or_else(|| anyhow::anyhow!("the bench clock overflowed"))?;
    let t = Instant::now();
    let mut fired = 0usize;
    loop {
        let due = b.due_timers(later, 256)?;
        if due.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(due.len());
        let mut seen = std::collections::BTreeSet::new();
        for timer in due {
            // One firing per incident per batch, as each decision needs its incident's latest
            // state; the rest wait for the next batch.
            if !seen.insert(timer.incident) {
                continue;
            }
            let inc = b
                .incident(timer.incident)?
                .ok_or_else(|| anyhow::anyhow!("{} vanished", timer.incident))?;
            let d = engine::fire(&ctx(later), &inc, timer.seq);
            batch.push((Some(inc), d, Some(timer)));
        }
        fired = fired.saturating_add(batch.len());
        commit(b, &batch)?;
    }
    let per = t
        .elapsed()
        .checked_div(u32::try_from(fired.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default();
    Ok((per, fired))
}

/// Decides, reopens (timed, to the first due listing, with every timer still pending), fires.
fn measure<B: Backend + 'static>(
    open: impl Fn() -> anyhow::Result<B>,
    config: &Config,
    rounds: usize,
    prefill: Option<&crate::store::snapshot::Snapshot>,
) -> anyhow::Result<Measured> {
    let loaded = match prefill {
        Some(snap) => {
            let t = Instant::now();
            open()?.restore(snap)?;
            let load = t.elapsed();
            let t = Instant::now();
            let app = crate::app::App::on(
                std::sync::Arc::new(open()?),
                std::sync::Arc::new(config.clone()),
                std::sync::Arc::new(crate::clock::SystemClock),
            );
            let fired = app.fire_one(Utc::now())?;
            let first = t.elapsed();
            anyhow::ensure!(
                fired,
                "no overdue timer fired after the snapshot was loaded"
            );
            Some((load, first))
        }
        None => None,
    };
    let start = Utc::now();
    let b = open()?;
    let commit = decide(&b, config, rounds, start)?;
    let pending = b.pending_timers()?;
    drop(b);
    let t = Instant::now();
    let b = open()?;
    let _ = b.due_timers(start, 1)?;
    let reopen = t.elapsed();
    let (fire_per_timer, fired) = fire(&b, config, start)?;
    Ok(Measured {
        commit,
        fire_per_timer,
        fired,
        pending,
        reopen,
        loaded,
    })
}

/// Runs the section: `rounds` incidents (open and three updates each) on both backends; with
/// `pending` above 0, both first load the same snapshot of that many pending timers (filled
/// on sled), so that every figure is taken with them in place.
pub fn stores(
    dir: &std::path::Path,
    url: &PgUrl,
    rounds: usize,
    pending: usize,
) -> anyhow::Result<Vec<Figure>> {
    let config = Config::builtin()?;
    let pg = PgStore::connect(url)?;
    if let Some(held) = pg.holds()? {
        anyhow::bail!(
            "the bench needs an empty PostgreSQL database, and {} holds {held}; create one (createdb warroom_bench) and give its URL",
            url.shown()
        );
    }
    drop(pg);
    let prefill = match pending {
        0 => None,
        n => {
            let fill = dir.join("fill");
            super::timers::fill_pending(&fill, n, 5)?;
            let snap = Store::open(&fill)?.snapshot()?;
            let _ = std::fs::remove_dir_all(&fill);
            Some(snap)
        }
    };
    let folder = dir.join("sled");
    let results = [
        (
            "sled",
            measure(
                || Ok(Store::open(&folder)?),
                &config,
                rounds,
                prefill.as_ref(),
            )?,
        ),
        (
            "postgres",
            measure(
                || Ok(PgStore::connect(url)?),
                &config,
                rounds,
                prefill.as_ref(),
            )?,
        ),
    ];
    let mut out = Vec::new();
    let base = results.first().map(|(_, m)| percentile(&m.commit, 0.5));
    for (kind, m) in &results {
        let p50 = percentile(&m.commit, 0.5);
        let ratio = base.map_or(1.0, |b| p50.as_secs_f64() / b.as_secs_f64().max(1e-9));
        out.push(
            Figure::new(
                &format!("store_commit_p50_{kind}"),
                format!("{kind}: durable commit p50 (engine decision + commit)"),
                us(p50),
                "µs",
            )
            .note(format!(
                "p99 {:.0} µs; {:.2}× sled's p50; {} decisions",
                us(percentile(&m.commit, 0.99)),
                ratio,
                m.commit.len()
            )),
        );
        out.push(
            Figure::new(
                &format!("store_fire_per_timer_{kind}"),
                format!("{kind}: firing cost per timer (batches of up to 256, one commit each)"),
                us(m.fire_per_timer),
                "µs",
            )
            .note(format!("{} fired of {} pending", m.fired, m.pending)),
        );
    }
    for (kind, m) in &results {
        out.push(
            Figure::new(
                &format!("store_reopen_{kind}"),
                format!("{kind}: reopen (or connect) to the first due-timer listing"),
                ms(m.reopen),
                "ms",
            )
            .note(format!("{} timers pending", m.pending)),
        );
    }
    for (kind, m) in &results {
        if let Some((load, first)) = m.loaded {
            out.push(
                Figure::new(
                    &format!("store_first_fire_{kind}"),
                    format!("{kind}: restart or takeover to the first overdue timer fired durably"),
                    ms(first),
                    "ms",
                )
                .note(format!(
                    "{} timers pending; the snapshot loaded in {:.1} s",
                    m.pending,
                    load.as_secs_f64()
                )),
            );
        }
    }
    Ok(out)
}
