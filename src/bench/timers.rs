//! Timers: restart with many pending timers (open the folder, fire the first overdue one,
//! durably), the cost of firing one, and lateness on the real clock: timers spread over time
//! among 100,000 pending, and a burst of 10,000 due at the same instant.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use crate::app::{App, ReplyKind};
use crate::clock::{Clock, VirtualClock};
use crate::config::Config;
use crate::domain::UserName;
use crate::store::{Durability, Store, StoreOptions};

use super::{Figure, ms, percentile, us};

/// The real clock, shifted by a fixed offset: time passes as it really does, from a chosen
/// instant, so timers filled at chosen virtual times fall due during the measurement.
struct ShiftedClock {
    offset: TimeDelta,
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
            .checked_add_signed(self.offset)
            .unwrap_or_else(Utc::now)
    }
    fn real_wait(&self, t: DateTime<Utc>) -> Option<Duration> {
        Some(
            t.signed_duration_since(self.now())
                .to_std()
                .unwrap_or_default(),
        )
    }
}

/// A fixed origin for filled stores, far from today so that nothing is confused with it.
fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Fill options: the fill itself is not measured, so it skips the fdatasync.
fn fill_options() -> StoreOptions {
    StoreOptions {
        durability: Durability::Flush,
        ..StoreOptions::default()
    }
}

/// Opens one SEV2 incident at each of `times` (three timers each: the L1 budget and the Plan A
/// silence check one hour later, the Plan B deadline four hours later).
/// `times` must not go backwards: a virtual clock only moves forward.
fn fill_at(dir: &Path, times: impl Iterator<Item = DateTime<Utc>>) -> anyhow::Result<usize> {
    let mut times = times.peekable();
    let first = times.peek().copied().unwrap_or_else(origin);
    let config = Arc::new(Config::builtin()?);
    let clock = Arc::new(VirtualClock::new(first));
    let app = App::new(
        Store::open_with(dir, &fill_options())?,
        config,
        clock.clone(),
    );
    let alice = app.actor(&UserName::new("alice"));
    let mut n = 0;
    for at in times {
        clock.set(at);
        open(&app, &alice, n)?;
        n += 1;
    }
    Ok(n)
}

fn open(app: &App, who: &crate::domain::Actor, n: usize) -> anyhow::Result<()> {
    let r = app.run_line(
        who,
        None,
        &format!("/incident open title:\"load {n}\" severity:2 service:mail force:true"),
    );
    anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
    Ok(())
}

/// Fills the sled folder `dir` with about `pending` timers: `overdue` incidents whose timers
/// fell due two hours ago, then the bulk opened a day ahead by 8 callers at once. Returns the
/// virtual instant the bulk was opened at.
pub(super) fn fill_pending(
    dir: &Path,
    pending: usize,
    overdue: usize,
) -> anyhow::Result<DateTime<Utc>> {
    let config = Arc::new(Config::builtin()?);
    let now = Utc::now();
    let past = now.checked_sub_signed(TimeDelta::hours(2)).unwrap_or(now);
    fill_at(dir, (0..overdue).map(|_| past))?;
    let future = now.checked_add_signed(TimeDelta::days(1)).unwrap_or(now);
    let clock = Arc::new(VirtualClock::new(future));
    let app = Arc::new(App::new(
        Store::open_with(dir, &fill_options())?,
        config,
        clock,
    ));
    let incidents = pending.div_ceil(3).saturating_sub(overdue);
    let callers = 8;
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let app = app.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let alice = app.actor(&UserName::new("alice"));
                let mut n = c;
                while n < incidents {
                    open(&app, &alice, n)?;
                    n += callers;
                }
                Ok(())
            })
        })
        .collect();
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("a fill thread panicked"))??;
    }
    Ok(future)
}

/// With `pending` timers in the store: restart to the first overdue fire (open the folder, find
/// the deadline, fire it, sync), five times; then the cost of firing one due timer.
pub fn restart(dir: &Path, pending: usize) -> anyhow::Result<Vec<Figure>> {
    const OVERDUE: usize = 5;
    const CRASHES: usize = 3;
    let config = Arc::new(Config::builtin()?);
    let t = Instant::now();
    // Overdue incidents for the clean restarts and for the restarts after a crash.
    let future = fill_pending(dir, pending, OVERDUE + CRASHES)?;
    let fill = t.elapsed();

    let clean = (0..OVERDUE)
        .map(|_| restart_once(dir, &config))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // After a kill -9: the folder is checked on a copy, then the journal replayed.
    let crashed = (0..CRASHES)
        .map(|_| {
            crash_after_one_answer(dir)?;
            restart_once(dir, &config)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_fire = sorted_first(&clean);
    let crash_fire = sorted_first(&crashed);
    let pending_now = Store::open(dir)?.pending_timers();

    let clock = Arc::new(VirtualClock::new(future));
    let app = App::new(Store::open(dir)?, config, clock.clone());
    let mut fire = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let Some(due) = app.next_due()? else { break };
        clock.set(due);
        let t = Instant::now();
        app.fire_one(due)?;
        fire.push(t.elapsed());
    }
    fire.sort();
    let worst = percentile(&first_fire, 1.0);
    Ok(vec![
        Figure::new(
            "restart_first_fire_ms",
            format!("restart to first overdue fire, {pending_now} pending (median of {OVERDUE})"),
            ms(percentile(&first_fire, 0.5)),
            "ms",
        )
        .target("≤ 1 s", worst <= Duration::from_secs(1))
        .note(format!(
            "worst {:.0} ms; each restart in order, ms (of which opening the store): {}; filled in {:.0} s; warm page cache",
            ms(worst),
            in_order(&clean),
            fill.as_secs_f64()
        )),
        Figure::new(
            "crash_restart_first_fire_ms",
            format!(
                "restart after kill -9 to first overdue fire, {pending_now} pending (median of {CRASHES})"
            ),
            ms(percentile(&crash_fire, 0.5)),
            "ms",
        )
        .note(format!(
            "each in order, ms (of which opening the store): {}; the folder is checked on a copy first",
            in_order(&crashed)
        )),
        Figure::new(
            "fire_one_p50",
            "fire one due timer (claim, decide, commit, sync) p50",
            us(percentile(&fire, 0.5)),
            "µs",
        )
        .note(format!(
            "p99 {:.0} µs over {}",
            us(percentile(&fire, 0.99)),
            fire.len()
        )),
    ])
}

/// Opens `dir` and fires its first overdue timer durably: the time to that fire, and to the
/// open alone.
fn restart_once(dir: &Path, config: &Arc<Config>) -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    let store = Store::open(dir)?;
    let opened = t.elapsed();
    let app = App::new(store, config.clone(), Arc::new(crate::clock::SystemClock));
    let fired = app.fire_one(Utc::now())?;
    anyhow::ensure!(
        fired,
        "no overdue timer fired after the restart (next deadline: {:?})",
        app.next_due()?
    );
    Ok((t.elapsed(), opened))
}

/// Each restart as "first fire (open)" in ms, in the order they ran.
fn in_order(runs: &[(Duration, Duration)]) -> String {
    runs.iter()
        .map(|(f, o)| format!("{:.0} ({:.0})", ms(*f), ms(*o)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The restarts' times to their first fire, sorted.
fn sorted_first(runs: &[(Duration, Duration)]) -> Vec<Duration> {
    let mut v: Vec<Duration> = runs.iter().map(|(f, _)| *f).collect();
    v.sort();
    v
}

/// Runs `crash_child` in a fresh process (this program, `bench --crash-child`) on `dir` until
/// it has answered one command, then kills it with SIGKILL: the folder as a crash leaves it.
fn crash_after_one_answer(dir: &Path) -> anyhow::Result<()> {
    use std::io::{BufRead as _, Read as _};
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--crash-child", "--dir"])
        .arg(dir)
        // The child ends when its input does: it never outlives this process.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let read = match child.stdout.take() {
        Some(out) => std::io::BufReader::new(out).read_line(&mut line),
        None => Ok(0),
    };
    let _ = child.kill();
    let _ = child.wait();
    drop(child.stdin.take());
    if line.trim() == "answered" {
        return Ok(());
    }
    let mut why = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut why);
    }
    anyhow::bail!(
        "the crash child did not answer ({}): {}",
        read.map_or_else(|e| e.to_string(), |_| format!("{line:?}")),
        why.trim()
    )
}

/// The crash section's child: opens `dir`, posts one update to INC-1 on the real clock (no
/// scheduler runs, so nothing else changes), says "answered" once it is durable, and waits to
/// be killed (or for its input to end, when it exits).
pub fn crash_child(dir: &Path) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let app = App::new(
        Store::open(dir)?,
        Arc::new(Config::builtin()?),
        Arc::new(crate::clock::SystemClock),
    );
    let alice = app.actor(&UserName::new("alice"));
    let r = app.run_line(
        &alice,
        Some(crate::domain::IncidentId(1)),
        "/update text:\"just before the crash\"",
    );
    anyhow::ensure!(
        r.kind == ReplyKind::Reply,
        "bench update failed: {}",
        r.text
    );
    let mut out = std::io::stdout();
    writeln!(out, "answered")?;
    out.flush()?;
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    Ok(())
}

/// Runs the real scheduler on `dir` for at most `limit`, from `start` on the shifted clock,
/// until `want` timers have fired; returns each fired timer's lateness.
async fn watch_firing(
    dir: &Path,
    start: DateTime<Utc>,
    limit: Duration,
    want: usize,
) -> anyhow::Result<Vec<Duration>> {
    let config = Arc::new(Config::builtin()?);
    let offset = start.signed_duration_since(Utc::now());
    let late: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = late.clone();
    let app = Arc::new(
        App::new(Store::open(dir)?, config, Arc::new(ShiftedClock { offset })).on_fire(Arc::new(
            move |d: TimeDelta| {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(d.to_std().unwrap_or_default());
            },
        )),
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(crate::scheduler::run_scheduler(app.clone(), stop_rx));
    let t = Instant::now();
    while t.elapsed() < limit {
        if late.lock().unwrap_or_else(|p| p.into_inner()).len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = scheduler.await;
    let mut out = late.lock().unwrap_or_else(|p| p.into_inner()).clone();
    out.sort();
    Ok(out)
}

/// Timer lateness on the real clock (from each deadline to its messages being durable in the
/// outbox): `pending` timers with due times spread over half an hour, watched for 20 s; then
/// `burst` timers due at one instant.
pub async fn lateness(dir: &Path, pending: usize, burst: usize) -> anyhow::Result<Vec<Figure>> {
    const SPREAD_S: i64 = 1800;
    const WATCH: Duration = Duration::from_secs(20);
    let base = origin();
    let incidents = pending.div_ceil(3).max(1);
    let step_ms = (SPREAD_S * 1000) / incidents as i64;
    let spread = dir.join("spread");
    fill_at(
        &spread,
        (0..incidents).map(|i| {
            base.checked_add_signed(TimeDelta::milliseconds(step_ms.saturating_mul(i as i64)))
                .unwrap_or(base)
        }),
    )?;
    // The first deadlines (L1 budget and silence, one hour after opening) come 2 s into the
    // watch.
    let first_due = base.checked_add_signed(TimeDelta::hours(1)).unwrap_or(base);
    let start = first_due
        .checked_sub_signed(TimeDelta::seconds(2))
        .unwrap_or(first_due);
    let spread_late = watch_firing(&spread, start, WATCH, usize::MAX).await?;
    let _ = std::fs::remove_dir_all(&spread);

    let bursty = dir.join("burst");
    fill_at(&bursty, (0..burst.div_ceil(2).max(1)).map(|_| base))?;
    let burst_late = watch_firing(&bursty, start, WATCH, burst).await?;
    let _ = std::fs::remove_dir_all(&bursty);

    let p99 = percentile(&spread_late, 0.99);
    let last = percentile(&burst_late, 1.0);
    Ok(vec![
        Figure::new(
            "lateness_spread_p99_ms",
            format!(
                "timer lateness p99, {pending} pending, due times spread ({} fired in {} s)",
                spread_late.len(),
                WATCH.as_secs() - 2
            ),
            ms(p99),
            "ms",
        )
        .target("≤ 50 ms", p99 <= Duration::from_millis(50))
        .note(format!(
            "p50 {:.1} ms, max {:.1} ms",
            ms(percentile(&spread_late, 0.5)),
            ms(percentile(&spread_late, 1.0))
        )),
        Figure::new(
            "burst_last_ms",
            format!(
                "{} timers due at once: the last one's messages durable after the deadline",
                burst_late.len()
            ),
            ms(last),
            "ms",
        )
        .target(
            "≤ 2 s",
            last <= Duration::from_secs(2) && burst_late.len() >= burst,
        )
        .note(format!(
            "p50 {:.0} ms, p99 {:.0} ms",
            ms(percentile(&burst_late, 0.5)),
            ms(percentile(&burst_late, 0.99))
        )),
    ])
}
