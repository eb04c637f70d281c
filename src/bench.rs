//! The performance harness behind `warroom bench`: per-command latency of the engine alone
//! and of the engine plus the durable sled commit, measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::app::{App, ReplyKind};
use crate::clock::{Clock, VirtualClock};
use crate::config::Config;
use crate::domain::engine::{self, Ctx};
use crate::domain::{Command, IncidentId, Plan, UserName};
use crate::store::Store;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Runs `rounds` of open + 3 updates + escalate per incident and reports medians and p99s.
pub fn run(dir: &std::path::Path, rounds: usize) -> anyhow::Result<String> {
    let config = Arc::new(Config::builtin()?);
    let clock = Arc::new(VirtualClock::new(Utc::now()));
    let app = App::new(Store::open(dir)?, config.clone(), clock.clone());
    let alice = app.actor(&UserName::new("alice"));
    let bob = app.actor(&UserName::new("bob"));
    let mut durable = Vec::with_capacity(rounds * 5);
    let mut pure = Vec::with_capacity(rounds * 5);
    for i in 0..rounds {
        let t = Instant::now();
        let r = app.run_line(
            &alice,
            None,
            &format!("/incident open title:\"bench {i}\" severity:1 service:mail"),
        );
        durable.push(t.elapsed());
        anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
        let id = r.incident;
        for n in 0..3 {
            let t = Instant::now();
            let r = app.run_line(&alice, id, &format!("/update text:\"step {n}\""));
            durable.push(t.elapsed());
            anyhow::ensure!(
                r.kind == ReplyKind::Reply,
                "bench update failed: {}",
                r.text
            );
        }
        let t = Instant::now();
        let r = app.run_line(&bob, id, "/escalate reason:\"bench\"");
        durable.push(t.elapsed());
        anyhow::ensure!(
            r.kind == ReplyKind::Reply,
            "bench escalate failed: {}",
            r.text
        );
        clock.advance(TimeDelta::seconds(1));

        // The same five decisions without parsing or storage: the engine alone.
        let ctx = Ctx {
            now: clock.now(),
            policy: &config.policy,
        };
        let t = Instant::now();
        let mut d = engine::open(
            &ctx,
            &alice,
            IncidentId(1),
            "bench",
            crate::domain::Severity::Sev1,
            "mail",
            crate::domain::Exercise::Real,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        pure.push(t.elapsed());
        for n in 0..3 {
            let cmd = Command::Update {
                text: format!("step {n}"),
                plan: Some(Plan::A),
            };
            let t = Instant::now();
            d = engine::handle(&ctx, &alice, &d.incident, &cmd)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            pure.push(t.elapsed());
        }
        let cmd = Command::Escalate {
            tier: None,
            reason: "bench".into(),
        };
        let t = Instant::now();
        engine::handle(&ctx, &bob, &d.incident, &cmd).map_err(|e| anyhow::anyhow!("{e}"))?;
        pure.push(t.elapsed());
    }
    durable.sort();
    pure.sort();
    let (dm, d99) = (percentile(&durable, 0.5), percentile(&durable, 0.99));
    let (pm, p99) = (percentile(&pure, 0.5), percentile(&pure, 0.99));
    Ok(format!(
        "commands: {} ({} incidents × open, 3 updates, escalate)\n\
         engine + parse + durable commit (flushed): median {}, p99 {}\n\
         engine alone:                            median {}, p99 {}\n\
         ratio durable / engine (medians): {:.0}×\n\
         pending timers at the end: {}\n",
        durable.len(),
        rounds,
        micros(dm),
        micros(d99),
        micros(pm),
        micros(p99),
        dm.as_secs_f64() / pm.as_secs_f64().max(1e-9),
        app.store().pending_timers()
    ))
}

/// With `pending` timers in the store: how long a restart takes to find the next deadline, and
/// how long claiming and committing one due timer takes (the work between a deadline and its
/// message reaching the outbox).
pub fn timers(dir: &std::path::Path, pending: usize, fires: usize) -> anyhow::Result<String> {
    let config = Arc::new(Config::builtin()?);
    let start = Utc::now();
    let clock = Arc::new(VirtualClock::new(start));
    let app = App::new(Store::open(dir)?, config.clone(), clock.clone());
    let alice = app.actor(&UserName::new("alice"));
    let t = Instant::now();
    let mut opened = 0;
    // Each SEV2 incident opens with three timers (L1 budget, Plan B deadline, Plan A
    // silence). Counting them in sled (`Tree::len`) walks the whole tree, so count here.
    while opened * 3 < pending {
        let r = app.run_line(
            &alice,
            None,
            &format!("/incident open title:\"load {opened}\" severity:2 service:mail"),
        );
        anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
        opened += 1;
        clock.advance(TimeDelta::seconds(1));
    }
    let fill = t.elapsed();
    drop(app);

    let mut reopen = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let store = Store::open(dir)?;
        let next = store.next_timer()?;
        reopen.push(t.elapsed());
        anyhow::ensure!(next.is_some(), "no timer after reopening");
        drop(store);
    }
    reopen.sort();

    let app = App::new(Store::open(dir)?, config, clock.clone());
    let mut fire = Vec::with_capacity(fires);
    for _ in 0..fires {
        let Some(due) = app.next_due()? else { break };
        clock.set(due);
        let t = Instant::now();
        app.fire_one(due)?;
        fire.push(t.elapsed());
    }
    fire.sort();
    Ok(format!(
        "pending timers: {} ({} incidents, filled in {:.1} s)\n\
         restart (open the store, find the next deadline): median {}, max {} over 5\n\
         fire one due timer (claim, decide, commit, queue): median {}, p99 {} over {}\n",
        app.store().pending_timers(),
        opened,
        fill.as_secs_f64(),
        micros(percentile(&reopen, 0.5)),
        micros(percentile(&reopen, 1.0)),
        micros(percentile(&fire, 0.5)),
        micros(percentile(&fire, 0.99)),
        fire.len()
    ))
}
