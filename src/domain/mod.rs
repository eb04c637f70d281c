//! The pure domain: incidents, policy and the engine that turns commands and timers into
//! decisions. It imports neither serenity nor sled and never reads the clock.

pub mod alert;
pub mod chart;
pub mod command;
pub mod engine;
mod handle;
pub mod model;
mod nudge;
pub mod oncall;
pub mod policy;
pub mod render;

pub use command::{Command, Deadline};
pub use engine::{Actor, Button, Ctx, Decision, Message, MessageKind, Refusal, RefusalKind};
pub use model::*;
pub use policy::{
    Permissions, PlanTemplate, Policy, Principal, Roster, ServicePolicy, SeverityPolicy, Standing,
};
