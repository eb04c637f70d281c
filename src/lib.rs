//! warroom: a chat bot that runs emergency war rooms.
//!
//! The engine (`domain`) is pure; `store` persists it in sled; `app` ties them to a chat
//! port; `console` and `discord` are the front ends. See ARCHITECTURE.md.

pub mod config;
pub mod domain;
pub mod spec;
pub mod store;
