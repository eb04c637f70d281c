//! `warroom bench`: the performance harness. Each section measures one thing beside its floor
//! from the same run (the raw disk sync, the engine alone, an idle process), and each figure
//! carries the target, so that one run shows where warroom stands.
//!
//! Sections: `commands` (durable latency and throughput), `timers` (restart and firing cost,
//! timer lateness on the real clock), `memory` (peak RSS with open incidents, in a child
//! process), `delivery` (the courier under faults), `board` (the incident board's index page
//! of many open incidents), `stores` (with `--store URL`: the same decisions on sled and on
//! PostgreSQL, side by side). Output: text, JSON or a Markdown table.

mod board;
mod commands;
mod delivery;
mod memory;
mod stores;
mod timers;

use std::time::Duration;

use serde::Serialize;

pub use board::board;
pub use commands::run as commands;
pub use delivery::delivery;
pub use memory::{child as memory_child, rss};
pub use stores::stores;
pub use timers::{crash_child, lateness, restart};

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// A stable name, for scripts reading the JSON.
    pub key: String,
    /// What was measured, in words.
    pub measure: String,
    pub value: f64,
    pub unit: &'static str,
    /// The floor it is compared with, measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
    /// The target, in words, and whether this run met it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    pub what: String,
    pub value: f64,
    pub unit: &'static str,
}

impl Figure {
    pub fn new(key: &str, measure: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure {
            key: key.to_string(),
            measure: measure.into(),
            value,
            unit,
            floor: None,
            target: None,
            met: None,
            note: None,
        }
    }

    pub fn floor(mut self, what: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        self.floor = Some(Floor {
            what: what.into(),
            value,
            unit,
        });
        self
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Figure {
        self.target = Some(target.into());
        self.met = Some(met);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }

    /// The value with its unit, as a person reads it.
    fn shown(&self) -> String {
        show(self.value, self.unit)
    }
}

fn show(value: f64, unit: &str) -> String {
    match unit {
        "commands/s" => format!("{value:.0} commands/s"),
        "×" => format!("{value:.2}×"),
        "MiB" => format!("{value:.1} MiB"),
        "ms" if value < 10.0 => format!("{value:.2} ms"),
        u => format!("{value:.0} {u}"),
    }
}

/// What one run of the bench measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub cores: usize,
    pub started: String,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn new() -> Report {
        Report {
            version: env!("CARGO_PKG_VERSION"),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            figures: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.figures {
            out.push_str(&format!("{}: {}", f.measure, f.shown()));
            if let Some(fl) = &f.floor {
                out.push_str(&format!(
                    " (floor, {}: {}",
                    fl.what,
                    show(fl.value, fl.unit)
                ));
                if fl.unit == f.unit && fl.value > 0.0 {
                    out.push_str(&format!(", {:.2}×", f.value / fl.value));
                }
                out.push(')');
            }
            if let (Some(t), Some(met)) = (&f.target, f.met) {
                out.push_str(&format!(
                    " [target {t}: {}]",
                    if met { "met" } else { "NOT met" }
                ));
            }
            if let Some(n) = &f.note {
                out.push_str(&format!("; {n}"));
            }
            out.push('\n');
        }
        out
    }

    /// The README's table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| measure | this run | floor, same run | target | met |\n|---|---|---|---|---|\n",
        );
        for f in &self.figures {
            let floor = f.floor.as_ref().map_or(String::new(), |fl| {
                let ratio = if fl.unit == f.unit && fl.value > 0.0 {
                    format!(" ({:.2}×)", f.value / fl.value)
                } else {
                    String::new()
                };
                format!("{}: {}{ratio}", fl.what, show(fl.value, fl.unit))
            });
            let note = f.note.as_ref().map_or(String::new(), |n| format!("; {n}"));
            out.push_str(&format!(
                "| {} | {}{note} | {floor} | {} | {} |\n",
                f.measure,
                f.shown(),
                f.target.clone().unwrap_or_default(),
                match f.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            ));
        }
        out
    }
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).or(sorted.last()).copied().unwrap_or_default()
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
