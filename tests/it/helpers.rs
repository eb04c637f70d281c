//! Shared helpers: running the real binary, reading its jsonl, building an in-process app.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use warroom::app::App;
use warroom::clock::VirtualClock;
use warroom::config::Config;
use warroom::store::Store;

pub const START: &str = "2026-11-23T22:00:00Z";

pub fn story() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed-story.txt"
    ))
    .expect("fixture")
}

/// One jsonl line from the console.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub kind: String,
    pub text: String,
    pub mentions: Vec<String>,
}

impl Line {
    pub fn mentions(&self, who: &str) -> bool {
        self.mentions.iter().any(|m| m == who)
    }
}

pub struct Run {
    pub lines: Vec<Line>,
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

impl Run {
    /// The error replies, in order.
    pub fn errors(&self) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.kind == "error").collect()
    }

    /// The text of the first line starting with `prefix` (a reply such as "Timeline of").
    pub fn text_starting(&self, prefix: &str) -> &str {
        &self
            .lines
            .iter()
            .find(|l| l.text.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starts with {prefix:?}: {:#?}", self.lines))
            .text
    }
}

/// Runs `warroom console --format jsonl` on `data` with the virtual clock at `clock`.
pub fn console(data: &Path, clock: &str, input: &str) -> Run {
    run_binary(
        &[
            "console",
            "--data",
            data.to_str().expect("utf-8 temp path"),
            "--clock",
            &format!("virtual:{clock}"),
            "--format",
            "jsonl",
        ],
        input,
    )
}

/// Runs the binary and keeps its output as text: for commands that print no jsonl.
pub fn run_plain(args: &[&str], input: &str) -> Run {
    let out = spawn_binary(args, input);
    Run {
        lines: Vec::new(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}

fn spawn_binary(args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args(args)
        .env_remove("WARROOM_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warroom");
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    // A warroom that refuses to start (a damaged folder, say) exits before reading its input;
    // that is its answer, not the harness's failure.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        panic!("write stdin: {e}");
    }
    child.wait_with_output().expect("warroom runs")
}

pub fn run_binary(args: &[&str], input: &str) -> Run {
    let out = spawn_binary(args, input);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let lines: Vec<Line> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl {l}: {e}"));
            Line {
                at: DateTime::parse_from_rfc3339(v["at"].as_str().expect("at"))
                    .expect("rfc3339")
                    .with_timezone(&Utc),
                channel: v["channel"].as_str().expect("channel").to_string(),
                kind: v["kind"].as_str().expect("kind").to_string(),
                text: v["text"].as_str().expect("text").to_string(),
                mentions: v["mentions"]
                    .as_array()
                    .expect("mentions")
                    .iter()
                    .map(|m| m.as_str().expect("mention").to_string())
                    .collect(),
            }
        })
        .collect();
    Run {
        lines,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// An in-process app on a real sled store in `dir`, with a virtual clock.
pub fn app(dir: &Path) -> (Arc<App>, Arc<VirtualClock>) {
    let store = Store::open(dir).expect("open store");
    let clock = Arc::new(VirtualClock::new(at(START)));
    let app = Arc::new(App::new(
        store,
        Arc::new(Config::builtin().expect("builtin config")),
        clock.clone(),
    ));
    (app, clock)
}

/// Whether this run is CI's (`CI` set): there, everything outside the repository that a test
/// needs is installed by `.ci/run`, so its absence is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A file from `../shared/` beside the repository (test data that is not ours to commit).
/// This is the one place a test may read outside the repository. Outside CI a missing file is
/// a skip of that part only, said aloud; under CI it is a failure. Callers name their file
/// relative to `shared/`, and `layout.rs` keeps the list of such files.
pub fn shared_file(rel: &str) -> Option<std::path::PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join(rel);
    match std::fs::metadata(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            if under_ci() {
                panic!(
                    "CI is set but {} cannot be read: {e}; CI runs with shared/ beside the clone",
                    path.display()
                );
            }
            say(&format!(
                "SKIPPING the part that needs {}: it is missing ({e}). It comes with the shared/ folder beside the repository.",
                path.display()
            ));
            None
        }
    }
}

/// Writes a note to the stderr handle, not through the test harness's captured `eprintln!`, so
/// that a skip shows in the output even for a passing test.
pub fn say(note: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{note}");
}

/// A program outside the repository that a test runs (such as `prometheus-alertmanager`),
/// looked up on `PATH`. The same rule as `shared_file`: `.ci/run` installs it, so under CI its
/// absence is a failure; elsewhere that part of the test is skipped, said aloud.
pub fn program(name: &str) -> Option<std::path::PathBuf> {
    // Debian's packages that bring each program.
    let package = match name {
        "chromium" | "chromedriver" => "chromium chromium-driver",
        _ => "prometheus-alertmanager",
    };
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path),
        None => {
            if under_ci() {
                panic!(
                    "CI is set but the program {name} is not on PATH; .ci/run installs it (apt-get install -y {package})"
                );
            }
            say(&format!(
                "SKIPPING the part that needs the program {name}: it is not on PATH. Install it (apt-get install -y {package}) to run it."
            ));
            None
        }
    }
}

/// A free TCP port on 127.0.0.1, for a program that must be told its port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Where Debian's `postgresql` package puts its server programs, one folder per major version.
const DEBIAN_PG: &str = "/usr/lib/postgresql";

/// A PostgreSQL server program (`initdb`, `pg_ctl`): on `PATH`, else in Debian's versioned
/// folder, newest version first. The same CI rule as `program`: `.ci/run` installs Debian's
/// `postgresql`, so under CI a missing one fails; elsewhere that part is skipped, said aloud.
pub fn pg_program(name: &str) -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    let debian = || {
        let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(DEBIAN_PG)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs.into_iter()
            .rev()
            .map(|d| d.join("bin").join(name))
            .find(|p| p.is_file())
    };
    match on_path.or_else(debian) {
        Some(path) => Some(path),
        None => {
            if under_ci() {
                panic!(
                    "CI is set but the PostgreSQL program {name} is missing; .ci/run installs it (apt-get install -y postgresql)"
                );
            }
            say(&format!(
                "SKIPPING the part that needs a PostgreSQL server: {name} is not on PATH nor under {DEBIAN_PG}. Install it (apt-get install -y postgresql) to run it."
            ));
            None
        }
    }
}

/// A throwaway PostgreSQL cluster in a temporary folder, listening only on a Unix socket in
/// that folder, with a trusted superuser `warroom`; stopped (immediately) and removed on drop.
/// initdb refuses to run as root, so under root the server runs as `nobody`.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pg_ctl: std::path::PathBuf,
    as_nobody: bool,
}

impl PgCluster {
    /// Starts one; None (said aloud) when PostgreSQL is not installed outside CI.
    pub fn start() -> Option<PgCluster> {
        let initdb = pg_program("initdb")?;
        let pg_ctl = pg_program("pg_ctl")?;
        let dir = tempfile::tempdir().expect("a temp folder for PostgreSQL");
        // Files are made with the effective user's id: root's is 0.
        let as_nobody = {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(dir.path())
                .map(|m| m.uid() == 0)
                .unwrap_or(false)
        };
        if as_nobody {
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534))
                .expect("give the cluster's folder to nobody");
        }
        let cluster = PgCluster {
            dir,
            pg_ctl,
            as_nobody,
        };
        let data = cluster.data();
        let out = cluster
            .command(&initdb)
            .args([
                "-D",
                &data,
                "-U",
                "warroom",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.pg_ctl_start();
        Some(cluster)
    }

    fn command(&self, program: &Path) -> Command {
        if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The folder its socket is in.
    pub fn socket_dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c max_connections=40",
            self.socket_dir()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = self
            .command(&self.pg_ctl)
            .args([
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &opts,
            ])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once (like a crash), keeping its data.
    pub fn stop(&self) {
        let _ = self
            .command(&self.pg_ctl)
            .args(["stop", "-m", "immediate", "-w", "-D", &self.data()])
            .output();
    }

    /// Starts it again after `stop`.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// A URL for database `db` (created first unless it is `postgres`).
    pub fn url(&self, db: &str) -> String {
        let base = format!("postgres://warroom@/postgres?host={}", self.socket_dir());
        if db != "postgres" {
            let (client, rt) = self.client(&base);
            rt.block_on(client.batch_execute(&format!("CREATE DATABASE \"{db}\"")))
                .expect("create a database");
        }
        format!("postgres://warroom@/{db}?host={}", self.socket_dir())
    }

    /// A plain client on `url`, for a test to look at or change the database directly.
    pub fn client(&self, url: &str) -> (tokio_postgres::Client, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (client, conn) = rt
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .expect("connect to the test cluster");
        rt.spawn(conn);
        (client, rt)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
