//! warroom's integration tests: one crate, a module per area, shared helpers in `helpers`.

mod bad_input;
mod console_story;
mod engine;
mod helpers;
mod layout;
mod store;
