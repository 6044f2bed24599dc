//! Tidy checks: ARCHITECTURE.md's invariants about where code may print, exit and talk to a host,
//! and the layout of these tests, checked by reading the source tree (plain text, comments left
//! out). Each rule lists the files allowed to break it, with the reason; a listed file that no
//! longer needs its place is an error too, so the lists stay as true as the rules.
//!
//! The rules see text, not types: a call is recognised by its spelling (`Term::stderr()`,
//! `conn.run_root(`). `clippy.toml` backs the `process::exit` rule with `disallowed-methods`,
//! which sees resolved paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Files of the binary that write to the terminal: its renderers.
const BINARY_PRINTS: &[(&str, &str)] = &[
    (
        "src/main.rs",
        "renders the error that ends a run, and the Ctrl-C notices",
    ),
    (
        "src/ui.rs",
        "progress lines, the live view's terminal, the result table on stdout",
    ),
    (
        "src/change.rs",
        "apply/rollback: the plan before --ask, its question, the ledger notice",
    ),
    (
        "src/exec.rs",
        "exec: each host's output lines and the summary",
    ),
    ("src/history.rs", "history: the notices of --to-deployment"),
    (
        "src/install.rs",
        "install: --print, its progress lines, the wipe prompt and the report",
    ),
    (
        "src/passphrase.rs",
        "the passphrase prompt and its answers, whether there is a terminal",
    ),
    (
        "src/secret.rs",
        "unechoed terminal input and whether there is a terminal to ask on",
    ),
    (
        "src/build.rs",
        "build --systems-out: the note naming the hosts left out of the file",
    ),
];

/// Files of the library crates that write to stdout or stderr, and why that is not printing.
const LIBRARY_PRINTS: &[(&str, &str)] = &[
    (
        "crates/hbdeploy-ssh/src/relay.rs",
        "the relay's stdout is nix-daemon's protocol stream to `nix copy`, not text for people",
    ),
    (
        "crates/hbdeploy-lab/src/bin/hbdeploy-bench.rs",
        "the benchmark's own binary, a development tool outside the deployer",
    ),
];

/// Where a process may end without running destructors (`process::exit`, `process::abort`).
const EXITS: &[(&str, &str)] = &[];

/// Files of the pipeline outside `remote/` that send a command to a host: only the host port's
/// implementation for the SSH connection, which passes on the command lines `remote/` makes.
const REMOTE_CALLS: &[(&str, &str)] = &[(
    "crates/hbdeploy-pipeline/src/port.rs",
    "the host port's methods, implemented for the SSH connection: they pass command lines on",
)];

/// Files of the pipeline outside `remote/` that hold shell text: the fake host of the unit tests,
/// which recognises the protocol's scripts in the command lines it is sent.
const SHELL_TEXT: &[(&str, &str)] = &[(
    "crates/hbdeploy-pipeline/src/fake.rs",
    "the unit tests' fake host reads the scripts' command lines back (`sh -c SCRIPT hbdeploy`, `set -- ARG…` and SCRIPT)",
)];

/// The longest a file of these tests may be.
const MAX_TEST_LINES: usize = 400;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the repository), its text with comments left out.
pub(crate) fn sources(dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                let relative = path.strip_prefix(root()).expect("under the repository");
                found.push((relative.display().to_string(), code_only(&text)));
            }
        }
    }
    found.sort();
    found
}

/// The product's sources: the binary's `src/` and every library crate's `src/`.
fn product_sources() -> Vec<(String, String)> {
    let mut all = sources("src");
    let crates = std::fs::read_dir(root().join("crates")).expect("crates/");
    let mut names: Vec<String> = crates
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        all.extend(sources(&format!("crates/{name}/src")));
    }
    all
}

/// `text` without `//` comments (doc comments included), line by line, so that prose about a
/// rule (`never calls process::exit`) is not taken for a call. A `//` inside a string ends the
/// line early, which can only hide code, never invent it.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text` has `word` where it is not the tail of a longer name or a method call
/// (`io::stdout()` and `stdout()` count, `.stdout()` and `my_stdout()` do not).
fn has_call(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        !before.is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric())
    })
}

/// What in `text` writes to the process's stdout or stderr.
fn printing(text: &str) -> Vec<&'static str> {
    let mut found: Vec<&'static str> = ["println!", "print!", "eprintln!", "eprint!", "dbg!"]
        .into_iter()
        .filter(|m| has_call(text, m))
        .collect();
    found.extend(
        [
            "stdout()",
            "stderr()",
            "buffered_stdout()",
            "buffered_stderr()",
        ]
        .into_iter()
        .filter(|call| has_call(text, call)),
    );
    found
}

/// What in `text` ends the process without running destructors.
fn exiting(text: &str) -> Vec<&'static str> {
    [
        "process::exit",
        "process::abort",
        "libc::exit",
        "libc::_exit",
    ]
    .into_iter()
    .filter(|call| text.contains(call))
    .collect()
}

/// What in `text` sends a command to a host on an SSH connection: the root-running methods
/// (only `Connection` has them) on any receiver; `run`, `run_with_stdin` and `hold` on a
/// receiver named like a connection (`conn`, `self.conn`, `connection`, `Connection::`).
fn remote_calls(text: &str) -> Vec<String> {
    let flat: String = text.split_whitespace().collect();
    let mut found = Vec::new();
    for method in [
        ".run_root(",
        ".hold_root(",
        ".stream_root(",
        ".run_root_with_stdin(",
    ] {
        if flat.contains(method) {
            found.push(method.to_owned());
        }
    }
    for method in ["run(", "hold(", "run_with_stdin("] {
        for (at, _) in flat.match_indices(method) {
            let before = &flat[..at];
            let Some(receiver) = before
                .strip_suffix('.')
                .or_else(|| before.strip_suffix("::"))
            else {
                continue;
            };
            let name: String = receiver
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let lower = name.to_lowercase();
            if lower.ends_with("conn") || lower.ends_with("connection") {
                found.push(format!("{name}.{method}"));
            }
        }
    }
    found
}

/// Checks that exactly the `allowed` files of `files` are `offending`: a violation elsewhere and
/// an allowed file with nothing left to allow are both reported.
fn check<T: std::fmt::Debug>(
    rule: &str,
    files: &[(String, String)],
    offending: impl Fn(&str) -> Vec<T>,
    allowed: &[(&str, &str)],
) -> Vec<String> {
    let allowed: BTreeSet<&str> = allowed.iter().map(|(path, _)| *path).collect();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, text) in files {
        let found = offending(text);
        if found.is_empty() {
            continue;
        }
        if allowed.contains(path.as_str()) {
            seen.insert(path.as_str());
        } else {
            errors.push(format!("{path}: {rule}: {found:?}"));
        }
    }
    for path in allowed.difference(&seen) {
        errors.push(format!(
            "{path}: listed as allowed to break \"{rule}\" but no longer does: remove it from the list in tests/it/tidy.rs"
        ));
    }
    errors
}

fn assert_clean(errors: Vec<String>) {
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn only_the_binarys_renderers_print() {
    let files = sources("src");
    assert_clean(check(
        "only the binary's renderers print (add a renderer to BINARY_PRINTS with its reason, or send the text to one)",
        &files,
        printing,
        BINARY_PRINTS,
    ));
}

#[test]
fn library_crates_do_not_print() {
    let files: Vec<_> = product_sources()
        .into_iter()
        .filter(|(path, _)| path.starts_with("crates/"))
        .collect();
    assert_clean(check(
        "library crates do not print (return the text, or send an event, to the binary)",
        &files,
        printing,
        LIBRARY_PRINTS,
    ));
}

#[test]
fn only_main_ends_the_process() {
    assert_clean(check(
        "nothing calls process::exit or abort: main returns its ExitCode, so destructors run",
        &product_sources(),
        exiting,
        EXITS,
    ));
}

#[test]
fn only_the_remote_protocol_sends_commands_to_hosts() {
    let files: Vec<_> = product_sources()
        .into_iter()
        .filter(|(path, _)| {
            path.starts_with("src/")
                || (path.starts_with("crates/hbdeploy-pipeline/src/")
                    && !path.starts_with("crates/hbdeploy-pipeline/src/remote/"))
        })
        .collect();
    assert_clean(check(
        "commands are sent to hosts from crates/hbdeploy-pipeline/src/remote/ only",
        &files,
        remote_calls,
        REMOTE_CALLS,
    ));
}

#[test]
fn shell_scripts_and_quoting_stay_in_the_remote_protocol() {
    let files: Vec<_> = sources("crates/hbdeploy-pipeline/src")
        .into_iter()
        .filter(|(path, _)| !path.starts_with("crates/hbdeploy-pipeline/src/remote/"))
        .collect();
    let shell = |text: &str| -> Vec<&'static str> {
        let mut found = Vec::new();
        if text.contains(".sh\")") {
            found.push("a shell script");
        }
        for quoter in ["shell_quote", "shell_line", "sh -c"] {
            if text.contains(quoter) {
                found.push(quoter);
            }
        }
        found
    };
    assert_clean(check(
        "shell scripts and quoting for hosts live in crates/hbdeploy-pipeline/src/remote/",
        &files,
        shell,
        SHELL_TEXT,
    ));
}

#[test]
fn integration_tests_are_one_binary_of_short_modules() {
    let tests = root().join("tests");
    let mut errors = Vec::new();
    // With `autotests = false`, a file directly in tests/ would never be compiled.
    for entry in std::fs::read_dir(&tests).expect("tests/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            errors.push(format!(
                "tests/{}: not compiled (autotests = false): move it to tests/it/ and add `mod` for it to tests/it/main.rs",
                path.file_name().expect("name").to_string_lossy()
            ));
        }
    }
    let main = std::fs::read_to_string(tests.join("it/main.rs")).expect("tests/it/main.rs");
    for (path, text) in sources("tests/it") {
        let lines = text.lines().count();
        if lines > MAX_TEST_LINES {
            errors.push(format!(
                "{path}: {lines} lines, over {MAX_TEST_LINES}: split it by topic"
            ));
        }
        let module = Path::new(&path);
        if module.parent() == Some(Path::new("tests/it")) && !path.ends_with("/main.rs") {
            let name = module.file_stem().expect("name").to_string_lossy();
            if !main.lines().any(|l| l.trim() == format!("mod {name};")) {
                errors.push(format!(
                    "{path}: no `mod {name};` in tests/it/main.rs: never compiled"
                ));
            }
        }
    }
    assert_clean(errors);
}

/// The rules find what they are for (and not what merely looks like it), on made-up sources.
#[test]
fn the_rules_catch_what_they_are_for() {
    assert_eq!(
        printing("let _ = Term::stderr().write_line(x);"),
        ["stderr()"]
    );
    assert_eq!(printing("writeln!(std::io::stdout(), \"x\")"), ["stdout()"]);
    assert_eq!(printing("eprintln!(\"x\");"), ["eprintln!"]);
    assert!(printing("cmd.stdout(Stdio::piped()); child.stderr.take()").is_empty());
    assert!(printing(&code_only("/// never println! here")).is_empty());
    assert_eq!(exiting("std::process::exit(1)"), ["process::exit"]);
    assert!(exiting("ExitCode::from(2)").is_empty());
    assert_eq!(
        remote_calls("conn\n    .run(&command, |_| {})"),
        ["conn.run("]
    );
    assert_eq!(remote_calls("x.hold_root(&c)"), [".hold_root("]);
    assert_eq!(
        remote_calls("x.run_root_with_stdin(&c, b, f)"),
        [".run_root_with_stdin("]
    );
    assert_eq!(
        remote_calls("conn.run_with_stdin(&c, b, f)"),
        ["conn.run_with_stdin("]
    );
    assert!(remote_calls("job.run().await; deployment.run(conn, name)").is_empty());
    let files = [("src/a.rs".to_owned(), "eprint!(\"x\")".to_owned())];
    assert_eq!(check("rule", &files, printing, &[]).len(), 1);
    assert_eq!(
        check("rule", &files, printing, &[("src/a.rs", "why")]).len(),
        0
    );
    assert_eq!(
        check("rule", &files, printing, &[("src/b.rs", "stale")]).len(),
        2
    );
}
