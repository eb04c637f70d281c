//! Commands: per-command latency of the engine alone and of the engine plus the durable
//! commit, beside a raw `write` + `fdatasync` loop on the same folder; durable throughput with
//! 1, 4, 16 and 64 concurrent callers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::app::{App, ReplyKind};
use crate::clock::{Clock, VirtualClock};
use crate::config::Config;
use crate::domain::engine::{self, Ctx};
use crate::domain::{Command, IncidentId, Plan, UserName};
use crate::store::Store;

use super::{Figure, percentile, us};

/// Runs of each throughput level; the median is reported.
const RUNS: usize = 3;

/// Runs `rounds` of open + 3 updates + escalate per incident and reports medians and p99s.
pub fn run(dir: &std::path::Path, rounds: usize) -> anyhow::Result<Vec<Figure>> {
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
            &format!("/incident open title:\"bench {i}\" severity:1 service:mail force:true"),
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
            overrides: &[],
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
    let floor = fdatasync_floor(dir, durable.len())?;
    let (fm, f99) = (percentile(&floor, 0.5), percentile(&floor, 0.99));
    let pending = app.store().pending_timers()?;
    let ids: Vec<Option<IncidentId>> = (1..=rounds as u64).map(|n| Some(IncidentId(n))).collect();
    let app = Arc::new(app);
    // Each level three times, the median kept: one run of a fraction of a second moves by
    // tens of percent with this machine's noise.
    let mut rates = Vec::new();
    for callers in [1usize, 4, 16, 64] {
        let mut runs = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            runs.push(concurrent_rate(
                &app,
                &ids,
                callers,
                (rounds * 8).clamp(64, 4000),
            )?);
        }
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let spread = format!(
            "{:.0}–{:.0}",
            runs.first().map_or(0.0, |r| r.rate),
            runs.last().map_or(0.0, |r| r.rate)
        );
        if let Some(median) = runs.into_iter().nth(RUNS / 2) {
            rates.push((callers, median, spread));
        }
    }
    let single = rates.first().map_or(0.0, |r| r.1.rate);
    let ratio = dm.as_secs_f64() / fm.as_secs_f64().max(1e-9);
    let mut out = vec![
        Figure::new(
            "command_p50",
            "durable command p50 (parse, engine, commit, fdatasync)",
            us(dm),
            "µs",
        )
        .floor("write + fdatasync p50", us(fm), "µs")
        .target("within 2× the fdatasync p50", ratio <= 2.0)
        .note(format!(
            "{} commands, {pending} timers pending",
            durable.len()
        )),
        Figure::new("command_p99", "durable command p99", us(d99), "µs")
            .floor("write + fdatasync p99", us(f99), "µs")
            .target("≤ 5 ms", d99 <= Duration::from_millis(5)),
        Figure::new(
            "engine_p50",
            "engine alone p50 (same decisions)",
            us(pm),
            "µs",
        )
        .note(format!("p99 {:.0} µs", us(p99))),
    ];
    for (callers, r, spread) in rates {
        let mut f = Figure::new(
            &format!("commands_per_s_{callers}"),
            format!("durable commands/s, {callers} concurrent callers (median of {RUNS})"),
            r.rate,
            "commands/s",
        )
        .note(format!(
            "{:.2}× one caller; runs {spread}; {:.1} commands per sync; {:.0} µs CPU per command",
            r.rate / single.max(1e-9),
            r.per_sync,
            r.cpu_per_command
        ));
        if callers == 64 {
            let want = (5.0 * single).min(10_000.0);
            f = f.floor("one caller", single, "commands/s").target(
                format!("≥ 10,000 or ≥ 5× one caller, whichever is lower ({want:.0})"),
                r.rate >= want,
            );
        }
        out.push(f);
    }
    Ok(out)
}

/// The disk's own floor: a 4 KiB write and an fdatasync, `n` times, in the same folder.
fn fdatasync_floor(dir: &std::path::Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    use std::io::Write as _;
    let path = dir.join("bench-fdatasync-floor");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        out.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    out.sort();
    Ok(out)
}

/// CPU time used by this process so far (user + system), from /proc; zero where unreadable.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) end with ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 Hz.
    Duration::from_millis(ticks(11).saturating_add(ticks(12)).saturating_mul(10))
}

/// What one throughput run measured.
struct Rate {
    rate: f64,
    per_sync: f64,
    cpu_per_command: f64,
}

/// Durable commands per second with `callers` threads posting updates at once, `total` in all.
fn concurrent_rate(
    app: &Arc<App>,
    ids: &[Option<IncidentId>],
    callers: usize,
    total: usize,
) -> anyhow::Result<Rate> {
    let per = total / callers.max(1);
    let t = Instant::now();
    let cpu = cpu_time();
    let syncs = app.store().syncs();
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let app = app.clone();
            let ids = ids.to_vec();
            std::thread::spawn(move || -> Result<(), String> {
                let alice = app.actor(&UserName::new("alice"));
                for n in 0..per {
                    let id = ids.get((c * per + n) % ids.len().max(1)).copied().flatten();
                    let r = app.run_line(&alice, id, &format!("/update text:\"c{c} n{n}\""));
                    if r.kind != ReplyKind::Reply {
                        return Err(r.text);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("a bench caller panicked"))?
            .map_err(|e| anyhow::anyhow!("bench update failed: {e}"))?;
    }
    let n = (per * callers) as f64;
    let elapsed = t.elapsed();
    Ok(Rate {
        rate: n / elapsed.as_secs_f64().max(1e-9),
        per_sync: n / (app.store().syncs().saturating_sub(syncs)).max(1) as f64,
        cpu_per_command: us(cpu_time().saturating_sub(cpu)) / n.max(1.0),
    })
}
