//! Layout rules: the pure domain imports no I/O crates, every module says what it is for,
//! the compiled-in definitions match `commands/`, and the README's table matches them.

use std::path::Path;

use warroom::spec::{CommandSet, SOURCES};

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_domain_imports_neither_serenity_nor_sled_nor_reads_the_clock() {
    let mut files = Vec::new();
    rust_files(&root().join("src/domain"), &mut files);
    assert!(files.len() >= 5);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Code only: the module docs may say what the domain avoids.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for banned in [
            "serenity",
            "sled",
            "Utc::now",
            "SystemTime",
            "Instant",
            "tokio",
            "std::fs",
            "std::net",
        ] {
            assert!(!code.contains(banned), "{} uses {banned}", f.display());
        }
    }
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not open with //!",
            f.display()
        );
    }
}

#[test]
fn compiled_in_definitions_are_exactly_the_commands_folder() {
    let mut on_disk: Vec<(String, String)> = std::fs::read_dir(root().join("commands"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    let compiled: Vec<(String, String)> = SOURCES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(on_disk, compiled);
}

#[test]
fn readme_command_table_matches_the_definitions() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let begin = "<!-- commands:begin -->\n";
    let end = "<!-- commands:end -->";
    let start = readme
        .find(begin)
        .expect("README has the commands:begin marker")
        + begin.len();
    let stop = readme
        .find(end)
        .expect("README has the commands:end marker");
    assert_eq!(
        &readme[start..stop],
        CommandSet::builtin().markdown_table(),
        "regenerate with: cargo run -- commands"
    );
}

/// The files under `../shared/` that tests may read, each through `helpers::shared_file`.
const SHARED_FILES: &[&str] = &[
    "discord/openapi.json",
    "alerts/am-v4-firing-goalert.json",
    "alerts/am-v4-firing-nested-route.json",
    "alerts/am-v4-firing-lenient-msteams.json",
    "alerts/am-v4-firing-old-nofingerprint.json",
    "alerts/am-v4-resolved-old-nofingerprint.json",
    "alerts/am-v4-resolved-kube.json",
    "alerts/grafana-webhook-firing.json",
    "alerts/pagerduty-v2-trigger.json",
    "alerts/pagerduty-v2-acknowledge.json",
    "alerts/pagerduty-v2-resolve.json",
];

/// Code without comments, so that docs may mention paths.
fn code_of(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tests_read_nothing_outside_the_repository_but_shared_files_through_the_ci_rule() {
    let mut files = Vec::new();
    rust_files(&root().join("tests"), &mut files);
    // Ways a test could name a path outside the repository: a parent folder, or an absolute
    // path under a system or home folder.
    let escapes = regex::Regex::new(
        r#"\.\./|"\.\."|"/(usr|etc|home|root|tmp|var|work|opt|srv|mnt|proc|sys|dev)(/|")|env::home_dir|"HOME""#,
    )
    .unwrap();
    let call = regex::Regex::new(r#"shared_file\(\s*"([^"]*)"\s*\)"#).unwrap();
    let mut calls = 0;
    for f in &files {
        let name = f.strip_prefix(root()).unwrap().display().to_string();
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        for (n, line) in code.lines().enumerate() {
            // The one sanctioned way out of the repository: helpers::shared_file joins "..".
            if name == "tests/it/helpers.rs" && line.trim() == ".join(\"..\")" {
                continue;
            }
            // The other: where Debian keeps PostgreSQL's server programs (helpers::pg_program).
            if name == "tests/it/helpers.rs"
                && line.trim() == "const DEBIAN_PG: &str = \"/usr/lib/postgresql\";"
            {
                continue;
            }
            // This test's own patterns.
            if name == "tests/it/layout.rs" {
                continue;
            }
            assert!(
                !escapes.is_match(line),
                "{name}:{}: reads outside the repository: {line}\nuse helpers::shared_file (and list the file in SHARED_FILES), or a temp folder",
                n + 1
            );
        }
        for c in call.captures_iter(&code) {
            calls += 1;
            assert!(
                SHARED_FILES.contains(&&c[1]),
                "{name} reads shared/{} which is not in SHARED_FILES",
                &c[1]
            );
        }
    }
    assert!(calls >= 1, "the fake Discord reads the OpenAPI description");
    // The helper itself keeps the rule: a failure under CI, a said-aloud skip elsewhere.
    let helpers = code_of(&std::fs::read_to_string(root().join("tests/it/helpers.rs")).unwrap());
    let body = helpers
        .split("pub fn shared_file(")
        .nth(1)
        .and_then(|b| b.split("\npub fn ").next())
        .expect("helpers.rs has shared_file");
    for needed in ["under_ci()", "panic!", "SKIPPING", "None"] {
        assert!(
            body.contains(needed),
            "helpers::shared_file lost its CI rule: no {needed}"
        );
    }
    // So does the helper for outside programs.
    let body = helpers
        .split("pub fn program(")
        .nth(1)
        .and_then(|b| b.split("\npub fn ").next())
        .expect("helpers.rs has program");
    for needed in ["under_ci()", "panic!", "SKIPPING", "None"] {
        assert!(
            body.contains(needed),
            "helpers::program lost its CI rule: no {needed}"
        );
    }
}
