//! warroom: a chat bot that runs emergency war rooms.
//!
//! The engine (`domain`) is pure; `store` persists it in sled; `app` ties them to a chat
//! port; `console` and `discord` are the front ends. See ARCHITECTURE.md.

// Totality: outside tests, no unwrap, expect or unchecked indexing. Each exception names the
// invariant that makes it safe, beside a local allow.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod alerts;
pub mod app;
pub mod backup;
mod batch;
pub mod bench;
pub mod board;
pub mod clock;
pub mod config;
pub mod console;
pub mod delivery;
pub mod discord;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod port;
pub mod replica;
pub mod scheduler;
pub mod spec;
pub mod store;
