//! Slash-command registration built from `commands/`, and the way back: a Discord
//! interaction's options turned into the same `Invocation` the console parser produces.

use std::collections::BTreeMap;

use serenity::all::{
    CommandDataOption, CommandDataOptionValue, CommandOptionType, CreateCommand,
    CreateCommandOption,
};

use crate::config::DiscordConfig;
use crate::spec::{
    CommandSet, CommandSpec, Invocation, OptionSpec, OptionType, Value, parse_value,
};

fn option(o: &OptionSpec) -> CreateCommandOption {
    let kind = match o.kind {
        OptionType::Text
        | OptionType::Plan
        | OptionType::Duration
        | OptionType::Choice
        | OptionType::Deadline => CommandOptionType::String,
        OptionType::Boolean => CommandOptionType::Boolean,
        OptionType::Severity | OptionType::Tier | OptionType::Nudge | OptionType::Number => {
            CommandOptionType::Integer
        }
        OptionType::User => CommandOptionType::User,
        OptionType::Team => CommandOptionType::Role,
    };
    let mut c = CreateCommandOption::new(kind, &o.name, &o.description).required(o.required);
    match o.kind {
        OptionType::Severity => {
            for (n, label) in [
                (1, "SEV1 (worst)"),
                (2, "SEV2"),
                (3, "SEV3"),
                (4, "SEV4 (mildest)"),
            ] {
                c = c.add_int_choice(label, n);
            }
        }
        OptionType::Tier => {
            for n in 1..=3 {
                c = c.add_int_choice(format!("L{n}"), n);
            }
        }
        OptionType::Plan => {
            for p in ["A", "B", "C", "D"] {
                c = c.add_string_choice(format!("Plan {p}"), p);
            }
        }
        OptionType::Choice => {
            for ch in &o.choices {
                c = c.add_string_choice(ch, ch);
            }
        }
        OptionType::Nudge | OptionType::Number => c = c.min_int_value(1),
        _ => {}
    }
    if o.autocomplete {
        c = c.set_autocomplete(true);
    }
    if let Some(max) = o.max_length {
        c = c.max_length(max.min(6000) as u16);
    }
    c
}

fn options(spec: &CommandSpec) -> Vec<CreateCommandOption> {
    spec.options.iter().map(option).collect()
}

/// The registration payload for every command in `commands/`.
pub fn registration(set: &CommandSet) -> Vec<CreateCommand> {
    set.tops
        .iter()
        .map(|top| {
            let cmd = CreateCommand::new(&top.name).description(&top.description);
            match &top.leaf {
                Some(leaf) => cmd.set_options(options(leaf)),
                None => cmd.set_options(
                    top.subs
                        .iter()
                        .map(|(name, spec)| {
                            let mut sub = CreateCommandOption::new(
                                CommandOptionType::SubCommand,
                                name,
                                &spec.description,
                            );
                            for o in options(spec) {
                                sub = sub.add_sub_option(o);
                            }
                            sub
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

/// The warroom name of a Discord user: their roster name through `discord.users`, or
/// `discord-<id>` for someone off the roster (who may still be added to an incident).
pub fn user_name(discord: &DiscordConfig, id: u64) -> crate::domain::UserName {
    discord
        .users
        .iter()
        .find(|(_, v)| **v == id)
        .map(|(u, _)| u.clone())
        .unwrap_or_else(|| crate::domain::UserName::new(&format!("discord-{id}")))
}

/// Builds an invocation from a slash command's name and options.
pub fn invocation(
    set: &CommandSet,
    discord: &DiscordConfig,
    name: &str,
    opts: &[CommandDataOption],
) -> Result<Invocation, String> {
    let top = set
        .top(name)
        .ok_or_else(|| format!("/{name} is not a warroom command; /help lists them"))?;
    let (spec, opts) = match &top.leaf {
        Some(leaf) => (leaf, opts),
        None => {
            let Some(first) = opts.first() else {
                return Err(format!("/{name} needs a subcommand"));
            };
            let CommandDataOptionValue::SubCommand(inner) = &first.value else {
                return Err(format!("/{name} needs a subcommand"));
            };
            let spec = top
                .subs
                .iter()
                .find(|(s, _)| *s == first.name)
                .map(|(_, c)| c)
                .ok_or_else(|| format!("/{name} has no subcommand '{}'", first.name))?;
            (spec, inner.as_slice())
        }
    };
    let fail = |m: String| format!("/{}: {m}\nusage: {}", spec.path, spec.usage());
    let mut values = BTreeMap::new();
    for o in opts {
        let def = spec
            .options
            .iter()
            .find(|d| d.name == o.name)
            .ok_or_else(|| fail(format!("unknown option '{}'", o.name)))?;
        let value = match &o.value {
            CommandDataOptionValue::String(s) => parse_value(def, s).map_err(fail)?,
            CommandDataOptionValue::Integer(i) => parse_value(def, &i.to_string()).map_err(fail)?,
            CommandDataOptionValue::Boolean(b) => Value::Bool(*b),
            CommandDataOptionValue::User(id) => Value::User(user_name(discord, id.get())),
            CommandDataOptionValue::Role(id) => {
                let key = discord
                    .roles
                    .iter()
                    .find(|(_, v)| **v == id.get())
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| {
                        fail(format!(
                            "option '{}': <@&{}> is not a warroom role; map it under [discord.roles]",
                            o.name, id
                        ))
                    })?;
                Value::Team(key)
            }
            other => {
                return Err(fail(format!(
                    "option '{}' has an unexpected type {:?}",
                    o.name,
                    other.kind()
                )));
            }
        };
        values.insert(o.name.clone(), value);
    }
    for d in &spec.options {
        if d.required && !values.contains_key(&d.name) {
            return Err(fail(format!("missing required option '{}'", d.name)));
        }
    }
    Ok(Invocation {
        path: spec.path.clone(),
        values,
    })
}
