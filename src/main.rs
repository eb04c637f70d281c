//! The `warroom` binary: a thin command line over the library.

// Totality, as in the library: see src/lib.rs.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use warroom::config::{self, Config};
use warroom::console::{self, ClockChoice, ConsoleOptions, Format};
use warroom::domain::{IncidentId, render};
use warroom::store::Store;

#[derive(Parser)]
#[command(
    name = "warroom",
    version,
    about = "Runs emergency war rooms: tiered escalation, scheduled Plan B, durable timers"
)]
struct Cli {
    /// The configuration file (default: config/warroom.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(clap::Args, Clone)]
struct DataArg {
    /// The data folder (created if missing).
    #[arg(
        long,
        global = true,
        env = "WARROOM_DATA",
        default_value = "warroom-data",
        value_name = "DIR"
    )]
    data: PathBuf,
    /// A PostgreSQL database instead of the data folder (default: `[store] url`, or
    /// WARROOM__STORE__URL), like postgres://warroom@db.example/warroom. Its password is never
    /// printed.
    #[arg(long = "store", global = true, value_name = "URL")]
    store: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The local war room in the terminal (the default).
    Console {
        #[command(flatten)]
        data: DataArg,
        /// system, or virtual:RFC3339 for a clock that moves only with /clock advance.
        #[arg(long, default_value = "system", value_name = "CLOCK")]
        clock: ClockChoice,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The acting user (default: console.acting_user, alice in the demo roster).
        #[arg(long = "as", value_name = "USER")]
        acting: Option<String>,
        /// Also serve alerts, /health, /ready and /metrics on this address (port 0: any free
        /// port, printed at start).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// The bot on Discord: needs DISCORD_TOKEN and discord.guild_id in the configuration.
    Discord {
        #[command(flatten)]
        data: DataArg,
        /// Tests only: a fake Discord's base URL (turns serenity's rate limiter off).
        #[arg(long, value_name = "URL")]
        discord_api_base: Option<String>,
    },
    /// Registers the slash commands from commands/ for the guild, or globally.
    Register {
        /// Register globally instead of for discord.guild_id (takes up to an hour to show).
        #[arg(long)]
        global: bool,
    },
    /// Validates the configuration and prints the effective policy.
    CheckConfig,
    /// Prints the command table (Markdown), generated from commands/.
    Commands,
    /// Who is on call for each scheduled role now (or --at TIME), who is next, and when the
    /// handoff is. Reads the overrides from the data folder when it can (not while the bot
    /// holds it: then the rotation alone, with a note).
    Oncall {
        /// RFC 3339, like 2026-11-02T22:00:00Z (default: now).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Only this role key.
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// The performance harness, on fresh temporary stores: each figure beside its floor from
    /// the same run, and its target. Without options: the command figures only.
    Bench {
        /// How many incidents the command figures run (each: open, 3 updates, escalate).
        #[arg(long, default_value_t = 500)]
        rounds: usize,
        /// Also fill a store with this many pending timers and time restart and firing.
        #[arg(long, default_value_t = 0)]
        timers: usize,
        /// Also measure timer lateness on the real clock: this many pending with spread due
        /// times, then a burst of a tenth as many due at once.
        #[arg(long, default_value_t = 0)]
        lateness: usize,
        /// Also measure peak RSS with this many open incidents (in a child process).
        #[arg(long, default_value_t = 0, value_name = "INCIDENTS")]
        memory: usize,
        /// Also run the courier under faults (a stalled lane, an outage) this many times.
        #[arg(long, default_value_t = 0, value_name = "RUNS")]
        delivery: usize,
        /// Also time the board's index page with this many open incidents (the target is for
        /// 1000).
        #[arg(long, default_value_t = 0, value_name = "INCIDENTS")]
        board: usize,
        /// Everything, at the sizes of the README's table: --timers 1000000 --lateness 100000
        /// --memory 10000 --delivery 3 --board 1000.
        #[arg(long)]
        all: bool,
        /// Also run the store section: the same decisions on a sled folder and on this
        /// (empty) PostgreSQL database, side by side.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
        /// Internal: the memory section's child process.
        #[arg(long, hide = true, value_name = "INCIDENTS")]
        memory_child: Option<usize>,
        /// Internal: the restart section's child process, killed after one command.
        #[arg(long, hide = true)]
        crash_child: bool,
        #[arg(long, hide = true)]
        dir: Option<PathBuf>,
    },
    /// Lists the messages waiting for delivery and the dead letters; `retry` sends dead
    /// letters again. Run it while the bot is stopped: one process holds a data folder.
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxCmd>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Checks a data folder without changing it (a copy is opened), reports what is readable,
    /// and with --export writes what survives into a new folder.
    Doctor {
        #[command(flatten)]
        data: DataArg,
        /// A new folder to write everything readable into.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Writes a consistent snapshot of the store to FILE (the format: src/store/snapshot.rs).
    /// Works while the bot runs: the running process takes it, through warroom.sock.
    Backup {
        #[command(flatten)]
        data: DataArg,
        /// The backup file to write (replaced whole, only once complete).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Loads a backup into an empty store; refuses one that holds anything.
    Restore {
        #[command(flatten)]
        data: DataArg,
        /// The backup file, as `warroom backup --out` wrote it.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
    /// Prints the post-incident report of an incident, or (without one) the index of all
    /// incidents with drills set apart.
    Report {
        /// The incident, like INC-1.
        incident: Option<String>,
        /// Also write the report's timeline chart as SVG to this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        #[command(flatten)]
        data: DataArg,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
    },
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// Puts a dead letter (by its id, from `warroom outbox`) back in the delivery queue.
    Retry {
        /// The dead letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
enum BenchFormat {
    Text,
    Json,
    /// The README's table.
    Md,
}

#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Md,
    Json,
}

/// The bot token, from the environment only; it is never printed or logged.
fn discord_token() -> anyhow::Result<String> {
    match std::env::var("DISCORD_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => anyhow::bail!(
            "DISCORD_TOKEN is not set: put the bot token of your Discord application in the environment (it is never read from a file)"
        ),
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Arc<Config>> {
    let path = path.or_else(|| {
        let p = PathBuf::from(config::DEFAULT_USER_FILE);
        p.exists().then_some(p)
    });
    Ok(Arc::new(Config::load(
        path.as_deref(),
        &config::warroom_env(),
    )?))
}

/// The PostgreSQL database a backup or restore uses: `--store`, else `[store] url`.
fn pg_url(
    arg: Option<String>,
    cfg: &Config,
) -> anyhow::Result<Option<warroom::store::postgres::PgUrl>> {
    match arg {
        Some(u) => Ok(Some(
            warroom::store::postgres::PgUrl::parse(&u)
                .map_err(|e| anyhow::anyhow!("--store: {e}"))?,
        )),
        None => Ok(cfg.store.url.clone()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cfg = load_config(cli.config)?;
    // `--store URL` wins over `[store] url` for the subcommand that names it.
    let store_arg = match &cli.command {
        Some(
            Cmd::Console { data, .. }
            | Cmd::Discord { data, .. }
            | Cmd::Oncall { data, .. }
            | Cmd::Outbox { data, .. }
            | Cmd::Doctor { data, .. }
            | Cmd::Backup { data, .. }
            | Cmd::Restore { data, .. }
            | Cmd::Report { data, .. },
        ) => data.store.clone(),
        _ => None,
    };
    if let Some(url) = pg_url(store_arg, &cfg)? {
        let mut c = (*cfg).clone();
        c.store.url = Some(url);
        cfg = Arc::new(c);
    }
    if let (Some(url), Some(Cmd::Doctor { .. })) = (&cfg.store.url, &cli.command) {
        anyhow::bail!(
            "warroom doctor checks a sled data folder, and store.url names a PostgreSQL database ({}); PostgreSQL checks its own pages. Unset store.url (or WARROOM__STORE__URL) to check the folder",
            url.shown()
        );
    }
    match cli.command.unwrap_or(Cmd::Console {
        data: DataArg {
            data: std::env::var_os("WARROOM_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("warroom-data")),
            store: None,
        },
        clock: ClockChoice::System,
        format: Format::Text,
        acting: None,
        http: None,
    }) {
        Cmd::Console {
            data,
            clock,
            format,
            acting,
            http,
        } => {
            let opts = ConsoleOptions {
                data: data.data,
                config: cfg,
                clock,
                format,
                acting: acting.map(|a| warroom::domain::UserName::new(&a)),
                http,
            };
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            console::run(opts, stdin, Box::new(std::io::stdout())).await
        }
        Cmd::Bench {
            rounds,
            mut timers,
            mut lateness,
            mut memory,
            mut delivery,
            mut board,
            all,
            store,
            format,
            memory_child,
            crash_child,
            dir,
        } => {
            let store = pg_url(store, &cfg)?;
            if let (Some(n), Some(dir)) = (memory_child, &dir) {
                println!("{}", warroom::bench::memory_child(dir, n)?);
                return Ok(());
            }
            if let (true, Some(dir)) = (crash_child, &dir) {
                return warroom::bench::crash_child(dir);
            }
            if all {
                timers = timers.max(1_000_000);
                lateness = lateness.max(100_000);
                memory = memory.max(10_000);
                delivery = delivery.max(3);
                board = board.max(1000);
            }
            let dir = std::env::temp_dir().join(format!("warroom-bench-{}", std::process::id()));
            // For a look at what a section left behind.
            let keep = std::env::var_os("WARROOM_BENCH_KEEP").is_some();
            let mut report = warroom::bench::Report::new();
            let sections: [(&str, bool); 7] = [
                ("commands", true),
                ("lateness", lateness > 0),
                ("restart", timers > 0),
                ("memory", memory > 0),
                ("delivery", delivery > 0),
                ("board", board > 0),
                ("stores", store.is_some()),
            ];
            for (name, wanted) in sections {
                if !wanted {
                    continue;
                }
                let sub = dir.join(name);
                eprintln!("bench: {name}…");
                let figures = match name {
                    "commands" => warroom::bench::commands(&sub, rounds),
                    "lateness" => {
                        warroom::bench::lateness(&sub, lateness, (lateness / 10).max(1)).await
                    }
                    "restart" => warroom::bench::restart(&sub, timers),
                    "memory" => warroom::bench::rss(&sub, memory),
                    "board" => warroom::bench::board(&sub, board),
                    "stores" => match &store {
                        Some(url) => warroom::bench::stores(&sub, url, rounds, timers),
                        None => Ok(Vec::new()),
                    },
                    _ => warroom::bench::delivery(&sub, delivery).await,
                };
                if !keep {
                    let _ = std::fs::remove_dir_all(&sub);
                }
                report.figures.extend(figures?);
            }
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            match format {
                BenchFormat::Text => print!("{}", report.text()),
                BenchFormat::Md => print!("{}", report.markdown()),
                BenchFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
        Cmd::Oncall { at, role, data } => {
            let at = match at {
                None => chrono::Utc::now(),
                Some(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--at '{s}' is not a time; write RFC 3339, like 2026-11-02T22:00:00Z"
                        )
                    })?,
            };
            let role = role.map(|r| warroom::domain::RoleKey::new(r.trim()));
            let (overrides, note) = if data.data.join("db").exists() || cfg.store.url.is_some() {
                match warroom::store::open(&data.data, &cfg.store) {
                    Ok(store) => (store.overrides()?, String::new()),
                    Err(e) => (
                        Vec::new(),
                        format!("\n(Overrides not read: {e}. Shown: the rotation alone.)"),
                    ),
                }
            } else {
                (Vec::new(), String::new())
            };
            let oc = warroom::domain::oncall::OnCall {
                schedules: &cfg.policy.schedules,
                overrides: &overrides,
            };
            println!(
                "{}{note}",
                warroom::domain::oncall::render(&oc, role.as_ref(), at)
            );
            Ok(())
        }
        Cmd::Commands => {
            print!("{}", warroom::spec::CommandSet::builtin().markdown_table());
            Ok(())
        }
        Cmd::Discord {
            data,
            discord_api_base,
        } => {
            let mut cfg = (*cfg).clone();
            if discord_api_base.is_some() {
                cfg.discord.api_base = discord_api_base;
            }
            warroom::discord::run(warroom::discord::DiscordOptions {
                token: discord_token()?,
                config: Arc::new(cfg),
                data: data.data,
                clock: Arc::new(warroom::clock::SystemClock),
            })
            .await
        }
        Cmd::Register { global } => {
            let n = warroom::discord::register(&discord_token()?, &cfg, global).await?;
            println!(
                "Registered {n} commands {}.",
                if global {
                    "globally"
                } else {
                    "for the configured guild"
                }
            );
            Ok(())
        }
        Cmd::CheckConfig => {
            print!("{}", cfg.describe());
            // A source whose token variable is unset would stop the start: say so here too.
            if !cfg.alerts.sources.is_empty() {
                warroom::http::sources_from_env(&cfg)?;
                if cfg.http.listen.is_none() {
                    println!(
                        "\nNote: alert sources are configured but http.listen is off, so warroom discord will not receive them."
                    );
                }
            }
            println!("\nThe configuration is valid.");
            Ok(())
        }
        Cmd::Doctor { data, export } => doctor(&data.data, export.as_deref()),
        Cmd::Backup { data, out } => {
            let (snap, from) = match cfg.store.url.clone() {
                Some(url) => (warroom::backup::backup_pg(&url, &out)?, url.shown()),
                None => (
                    warroom::backup::backup(&data.data, &cfg.store, &out)?,
                    data.data.display().to_string(),
                ),
            };
            println!(
                "Backed up {} of {from} into {}.",
                snap.summary(),
                out.display()
            );
            Ok(())
        }
        Cmd::Restore { data, input } => {
            let (snap, into) = match cfg.store.url.clone() {
                Some(url) => (warroom::backup::restore_pg(&url, &input)?, url.shown()),
                None => (
                    warroom::backup::restore(&data.data, &cfg.store, &input)?,
                    data.data.display().to_string(),
                ),
            };
            println!(
                "Restored {} from {} into {into}.",
                snap.summary(),
                input.display(),
            );
            Ok(())
        }
        Cmd::Outbox { action, data } => {
            let store = warroom::store::open(&data.data, &cfg.store)?;
            match action {
                None => {
                    print!(
                        "{}",
                        warroom::delivery::listing(
                            &store.outbox().map_err(|e| store.explain(e))?,
                            &store.dead_letter_list().map_err(|e| store.explain(e))?
                        )
                    );
                }
                Some(OutboxCmd::Retry { id, all }) => {
                    let n = store
                        .retry_dead(if all { None } else { id })
                        .map_err(|e| store.explain(e))?;
                    match (n, id) {
                        (0, Some(id)) if !all => anyhow::bail!(
                            "there is no dead letter {id} in {}; `warroom outbox` lists them",
                            store.describe()
                        ),
                        _ => println!(
                            "{n} message(s) back in the delivery queue; they go out when warroom next runs on this folder."
                        ),
                    }
                }
            }
            Ok(())
        }
        Cmd::Report {
            incident,
            svg,
            data,
            format,
        } => {
            let store = warroom::store::open(&data.data, &cfg.store)?;
            let Some(incident) = incident else {
                let all = store.incidents().map_err(|e| store.explain(e))?;
                let events: Vec<_> = all
                    .iter()
                    .map(|i| store.events(i.id))
                    .collect::<Result<_, _>>()?;
                let pairs: Vec<_> = all.iter().zip(events.iter().map(Vec::as_slice)).collect();
                print!("{}", render::index(&pairs));
                return Ok(());
            };
            let id: IncidentId = incident.parse().map_err(anyhow::Error::msg)?;
            let inc = store
                .incident(id)?
                .with_context(|| format!("{id} does not exist in {}", store.describe()))?;
            let events = store.events(id).map_err(|e| store.explain(e))?;
            if let Some(path) = svg {
                let chart = warroom::domain::chart::svg(&inc, &events, chrono::Utc::now());
                std::fs::write(&path, chart)
                    .with_context(|| format!("cannot write the chart to {}", path.display()))?;
            }
            match format {
                ReportFormat::Md => print!("{}", render::report(&inc, &events)),
                ReportFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "incident": inc,
                        "timeline": events,
                    }))?
                ),
            }
            Ok(())
        }
    }
}

/// `warroom doctor`: what a folder holds, read from a copy; optionally exported.
fn doctor(dir: &std::path::Path, export: Option<&std::path::Path>) -> anyhow::Result<()> {
    println!(
        "Checking {} (a copy is opened; the folder itself is not changed)",
        dir.display()
    );
    let s = warroom::store::salvage(dir);
    match &s.record {
        Ok(Some(r)) => println!(
            "commit record: {} incident(s), {} event(s); last closed {}",
            r.incidents,
            r.events,
            if r.clean.is_some() {
                "cleanly"
            } else {
                "without a clean close (crash or running)"
            }
        ),
        Ok(None) => println!("commit record: none (a folder from before warroom kept one)"),
        Err(e) => println!("commit record: unreadable: {e}"),
    }
    if let Some(why) = &s.unopenable {
        println!("database: cannot be opened at all: {why}");
    }
    match &s.journal {
        Ok(0) => {}
        Ok(n) => println!(
            "journal: {n} change(s) answered but not yet in the database, completed in the copy and counted below"
        ),
        Err(e) => println!(
            "journal: cannot be read to the end ({e}); only the changes before that point are counted below"
        ),
    }
    println!(
        "readable: {} incident(s), {} timeline event(s), {} pending timer(s), {} waiting message(s), {} dead letter(s), {} drill schedule(s)",
        s.incidents.len(),
        s.events.len(),
        s.timers,
        s.outbox.len(),
        s.dead.len(),
        s.drills.len()
    );
    for (tree, n) in &s.unreadable {
        println!("unreadable: {n} record(s) in {tree}");
    }
    match &s.verdict {
        None if s.unopenable.is_none() && s.record.is_ok() => {
            println!("verdict: the folder is whole; warroom opens it.")
        }
        None => println!("verdict: damaged; warroom refuses it."),
        Some(why) => println!("verdict: damaged ({why}); warroom refuses it."),
    }
    let Some(out) = export else {
        if s.verdict.is_some() || s.unopenable.is_some() {
            println!(
                "To keep what survives: warroom doctor --data {} --export NEW-FOLDER",
                dir.display()
            );
        }
        return Ok(());
    };
    if out.join("db").exists() || out.join("warroom.lock").exists() {
        anyhow::bail!(
            "{} is already a data folder; export into a new one",
            out.display()
        );
    }
    let store = Store::open(out)?;
    store.import(&s)?;
    println!(
        "exported {} incident(s), {} event(s), {} waiting message(s) and {} dead letter(s) into {}",
        s.incidents.len(),
        s.events.len(),
        s.outbox.len(),
        s.dead.len(),
        out.display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // sled panics on some damaged files; the store catches that and explains it, so the
    // panic's own trace would only alarm. Panics anywhere else are still printed.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_sled = info.location().is_some_and(|l| l.file().contains("/sled-"));
        if in_sled {
            tracing::debug!(%info, "sled panicked on a damaged file");
        } else {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warroom: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warroom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
