//! warroom's integration tests: one crate, a module per area, shared helpers in `helpers`.

mod alertmanager;
mod alerts;
mod backup;
mod bad_input;
mod bench;
mod board;
mod browser;
mod console_story;
mod crash;
mod damage;
mod delivery;
mod discord;
mod engine;
mod fake_discord;
mod flood;
mod fuzz;
mod hardening;
mod helpers;
mod layout;
mod metrics;
mod oncall;
mod overnight;
mod report;
mod roles;
mod store;
mod totality;
