//! Memory: peak resident set with many open incidents, measured in a fresh child process (the
//! bench's own earlier sections would otherwise count), beside the same child's peak before it
//! opened anything.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::app::{App, ReplyKind};
use crate::clock::VirtualClock;
use crate::config::Config;
use crate::domain::UserName;
use crate::store::Store;

use super::Figure;

/// A field of /proc/self/status in kB (VmHWM: the peak; VmRSS: now).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The child's side: opens `incidents` incidents (each with one update, its messages marked
/// delivered as a courier would) in `dir`, with the store's default cache, and prints its
/// peaks as JSON.
pub fn child(dir: &Path, incidents: usize) -> anyhow::Result<String> {
    let idle = status_kb("VmHWM").unwrap_or(0);
    let config = Arc::new(Config::builtin()?);
    let cache_mb = config.store.cache_bytes / (1024 * 1024);
    let clock = Arc::new(VirtualClock::new(Utc::now()));
    let app = App::new(
        Store::open_with(dir, &config.store)?,
        config.clone(),
        clock.clone(),
    );
    let alice = app.actor(&UserName::new("alice"));
    for n in 0..incidents {
        let r = app.run_line(
            &alice,
            None,
            &format!("/incident open title:\"memory {n}\" severity:2 service:mail force:true"),
        );
        anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
        let r = app.run_line(&alice, r.incident, "/update text:\"looking\"");
        anyhow::ensure!(
            r.kind == ReplyKind::Reply,
            "bench update failed: {}",
            r.text
        );
        // A courier keeps up with the outbox in a running bot: its messages go.
        for o in app.store().outbox()? {
            app.store().delivered(o.id)?;
        }
        clock.advance(chrono::TimeDelta::seconds(1));
    }
    let open = incidents;
    Ok(serde_json::json!({
        "idle_kb": idle,
        "peak_kb": status_kb("VmHWM").unwrap_or(0),
        "open": open,
        "cache_mb": cache_mb,
    })
    .to_string())
}

/// Runs `child` in a fresh process (this executable, `bench --memory-child`) and reports it.
pub fn rss(dir: &Path, incidents: usize) -> anyhow::Result<Vec<Figure>> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["bench", "--memory-child"])
        .arg(incidents.to_string())
        .arg("--dir")
        .arg(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())?;
    let kb = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0) as f64;
    let mib = |k: &str| kb(k) / 1024.0;
    let open = v.get("open").and_then(|x| x.as_u64()).unwrap_or(0);
    Ok(vec![
        Figure::new(
            "rss_peak_mib",
            format!("peak RSS with {open} open incidents"),
            mib("peak_kb"),
            "MiB",
        )
        .floor("the same process before opening any", mib("idle_kb"), "MiB")
        .target("≤ 64 MiB", mib("peak_kb") <= 64.0)
        .note(format!(
            "sled cache store.cache_mb = {}",
            v.get("cache_mb").and_then(|x| x.as_u64()).unwrap_or(0)
        )),
    ])
}
