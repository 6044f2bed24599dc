//! Special files where fleet.toml or the ledger expects a regular one (issue 15, item 7): the
//! real binary must refuse each at once with exit 2, naming the file and saying what to do,
//! instead of reading `/dev/zero` until memory runs out or blocking on a FIFO. No lab needed:
//! everything is refused before any host is contacted. Each run is bounded by a timeout and
//! killed after it, so a regression fails instead of hanging the suite.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Scratch;

const HBDEPLOY: &str = env!("CARGO_BIN_EXE_hbdeploy");

/// How long one run may take; a refusal takes milliseconds.
const LIMIT: Duration = Duration::from_secs(20);

/// A fresh directory for one test, removed when the guard drops.
fn scratch(test: &str) -> Scratch {
    Scratch::fresh(&format!("hbdeploy-special-files-{test}")).expect("temp dir")
}

/// A FIFO at `path`, made with mkfifo(1).
fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A fleet of one host on a port nobody listens on, with `ssh` as its `[ssh]` table's body.
fn fleet(dir: &Path, ssh: &str) {
    let text = format!(
        "[fleet]\nflake = \"./nixos\"\n[ssh]\n{ssh}\n[hosts.web]\naddress = \"127.0.0.1\"\nport = 1\n"
    );
    std::fs::write(dir.join("fleet.toml"), text).expect("write fleet.toml");
}

/// Runs hbdeploy in `dir` with `args`, killing it after [`LIMIT`]; returns the exit code and
/// stderr with `dir` written as `DIR`.
fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(HBDEPLOY)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("HOME", dir)
        .env_remove("HBDEPLOY_FLEET")
        .env_remove("HBDEPLOY_STATE_DIR")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hbdeploy starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hbdeploy {args:?} still running after {LIMIT:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("stderr");
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&dir.display().to_string(), "DIR");
    (status.code().unwrap_or(-1), stderr)
}

const KNOWN_HOSTS_HINT: &str = "hint: set `known-hosts` in fleet.toml to a regular file (or a \
     symlink to one) holding the hosts' keys, or leave it out for ~/.ssh/known_hosts\n";
const IDENTITY_HINT: &str = "hint: set `identity-file` in fleet.toml to the key file itself: a \
     regular file (or a symlink to one)\n";

#[test]
fn dev_zero_as_known_hosts() {
    let dir = scratch("known-hosts-zero");
    fleet(&dir, "known-hosts = \"/dev/zero\"");
    for command in [&["apply", "--all"][..], &["status", "--all"]] {
        assert_eq!(
            run(&dir, command),
            (
                2,
                format!(
                    "error: cannot use /dev/zero as the `known-hosts` of host web; no host was \
                     contacted\n  caused by: /dev/zero is a character device, not a regular \
                     file\n{KNOWN_HOSTS_HINT}"
                )
            ),
            "{command:?}"
        );
    }
}

#[test]
fn fifo_as_known_hosts() {
    let dir = scratch("known-hosts-fifo");
    mkfifo(&dir.join("known_hosts"));
    fleet(&dir, "known-hosts = \"known_hosts\"");
    assert_eq!(
        run(&dir, &["exec", "--all", "--", "true"]),
        (
            2,
            format!(
                "error: cannot use DIR/known_hosts as the `known-hosts` of host web; no host was \
                 contacted\n  caused by: DIR/known_hosts is a FIFO (named pipe), not a regular \
                 file\n{KNOWN_HOSTS_HINT}"
            )
        )
    );
}

#[test]
fn dev_zero_and_fifo_as_identity_file() {
    let dir = scratch("identity");
    std::fs::write(dir.join("known_hosts"), "").expect("known_hosts");
    mkfifo(&dir.join("id_fifo"));
    for (file, shown, kind) in [
        ("/dev/zero", "/dev/zero", "a character device"),
        ("id_fifo", "DIR/id_fifo", "a FIFO (named pipe)"),
    ] {
        fleet(
            &dir,
            &format!("known-hosts = \"known_hosts\"\nidentity-file = \"{file}\""),
        );
        assert_eq!(
            run(&dir, &["apply", "--all"]),
            (
                2,
                format!(
                    "error: cannot use {shown} as the `identity-file` of host web; no host was \
                     contacted\n  caused by: {shown} is {kind}, not a regular file\n{IDENTITY_HINT}"
                )
            ),
            "{file}"
        );
    }
}

#[test]
fn dev_zero_and_fifo_as_fleet_toml() {
    let dir = scratch("fleet");
    mkfifo(&dir.join("fifo.toml"));
    for (file, shown, kind) in [
        ("/dev/zero", "/dev/zero", "a character device"),
        ("fifo.toml", "fifo.toml", "a FIFO (named pipe)"),
    ] {
        assert_eq!(
            run(&dir, &["--fleet", file, "status", "--all"]),
            (
                2,
                format!(
                    "error: {shown} is {kind}, not a regular file\nhint: fleet.toml must be a \
                     regular file (or a symlink to one): choose the file with --fleet PATH or \
                     HBDEPLOY_FLEET\n"
                )
            ),
            "{file}"
        );
    }
}

#[test]
fn ledger_record_linked_to_dev_zero() {
    let dir = scratch("ledger");
    fleet(&dir, "known-hosts = \"known_hosts\"");
    let records = dir.join(".hbdeploy").join("deployments");
    std::fs::create_dir_all(&records).expect("ledger directory");
    std::os::unix::fs::symlink("/dev/zero", records.join("20260101T000000Z-1.json"))
        .expect("symlink");
    assert_eq!(
        run(&dir, &["history"]),
        (
            2,
            "error: DIR/.hbdeploy/deployments/20260101T000000Z-1.json is not a deployment record\n  \
             caused by: DIR/.hbdeploy/deployments/20260101T000000Z-1.json is a character device, \
             not a regular file\nhint: hbdeploy writes every record as a regular file of its \
             own: move DIR/.hbdeploy/deployments/20260101T000000Z-1.json out of the ledger's \
             directory (or delete it)\n"
                .to_owned()
        )
    );
}
