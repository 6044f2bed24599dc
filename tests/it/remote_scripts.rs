//! The pure shell logic of the remote protocol's scripts, run with `sh` on this machine against
//! a directory of the test's own (no lab, no SSH): what they do, not how their text reads.
//!
//! `decide.sh` is the deployer's side of magic rollback's one decision (ARCHITECTURE.md: whoever
//! creates `DIR/decided` first decides; the watchdog is the other side).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::scripts::{DeploymentDir, script};

/// Runs `decide.sh DIR [JOB]` and returns what it printed.
fn decide(dir: &Path, job: Option<&str>) -> String {
    let mut command = Command::new("sh");
    command.arg(script("decide.sh")).arg(dir);
    command.args(job);
    let out = command.output().expect("sh runs");
    assert!(
        out.status.success(),
        "decide.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn decide_claims_the_decision_once_and_stops_the_watchdog() {
    let dir = DeploymentDir::new("decide-claim");
    // The watchdog: a process group of its own, as the host's watchdog is.
    let mut watchdog = Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("sleep starts");
    dir.write("watchdog.pid", &format!("{}\n", watchdog.id()));

    assert_eq!(decide(dir.path(), None), "confirmed");
    assert!(dir.path().join("decided").is_file());
    let ended = watchdog.wait().expect("the watchdog ends");
    assert!(!ended.success(), "the watchdog was not stopped: {ended}");
    // Claimed without a job: no result is written, so a second claim finds the host restoring.
    assert!(!dir.path().join("result").exists());
    assert_eq!(decide(dir.path(), None), "restoring");
}

/// Claims made at once: exactly one decides (the exclusive creation of `DIR/decided`), under
/// both shells a host's `sh` may be (dash here and on Debian, bash on NixOS).
#[test]
fn of_claims_made_at_once_exactly_one_decides() {
    for shell in ["dash", "bash"] {
        for round in 0..5 {
            let dir = DeploymentDir::new(&format!("decide-race-{shell}-{round}"));
            let claims: Vec<_> = (0..8)
                .map(|_| {
                    Command::new(shell)
                        .arg(script("decide.sh"))
                        .arg(dir.path())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .expect("the shell runs")
                })
                .collect();
            let mut said: Vec<String> = claims
                .into_iter()
                .map(|c| {
                    let out = c.wait_with_output().expect("decide.sh ends");
                    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
                })
                .collect();
            said.sort();
            let mut expected = vec!["restoring".to_owned(); 7];
            expected.insert(0, "confirmed".to_owned());
            assert_eq!(said, expected, "{shell}");
        }
    }
}

#[test]
fn decide_reports_what_the_watchdog_decided_first() {
    let dir = DeploymentDir::new("decide-watchdog");
    std::fs::create_dir(dir.path().join("decided")).expect("the watchdog decides");
    assert_eq!(decide(dir.path(), Some("activate")), "restoring");
    dir.write("result", "rolled-back:unconfirmed\n");
    assert_eq!(decide(dir.path(), None), "rolled-back:unconfirmed");
    assert_eq!(
        decide(dir.path(), Some("activate")),
        "rolled-back:unconfirmed"
    );
}

#[test]
fn decide_confirms_a_job_only_once_it_ended_with_success() {
    let dir = DeploymentDir::new("decide-job");
    assert_eq!(
        decide(dir.path(), Some("activate")),
        "undecided:the activate job has not finished"
    );
    dir.write("activate.end", "1\n");
    assert_eq!(
        decide(dir.path(), Some("activate")),
        "undecided:the activate job failed (1)"
    );
    assert!(
        !dir.path().join("decided").exists(),
        "an undecided answer decides nothing"
    );
    dir.write("activate.end", "0\n");
    assert_eq!(decide(dir.path(), Some("activate")), "confirmed");
    let result = std::fs::read_to_string(dir.path().join("result")).expect("result");
    assert_eq!(result, "confirmed\n");
    // Asked again (a lost answer), it says the same.
    assert_eq!(decide(dir.path(), Some("activate")), "confirmed");
}

#[test]
fn decide_on_a_removed_deployment_says_gone() {
    let dir = DeploymentDir::new("decide-gone");
    let path = dir.path().to_owned();
    drop(dir);
    assert_eq!(decide(&path, Some("activate")), "gone");
}

/// The pids of every descendant of `pid`, with their names, from `/proc`.
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for child in hbdeploy_lab::children(parent) {
            let name = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            found.push((child, name.trim_end().to_owned()));
            parents.push(child);
        }
    }
    found.sort();
    found
}

/// Starts `watchdog.sh DIR watchdog CONFIRM ACTIVATION restore PATH switch 1 activate
/// stand-in.sh` in a process group of its own (as `run.sh` is on a host), its pid in
/// `DIR/watchdog.pid` for `decide.sh`. The activation it starts is a stand-in that sleeps (run by
/// the real `run.sh`, with the real `stop.sh` beside it); returns the watchdog and the
/// activation's pid, once it runs.
fn start_watchdog(
    dir: &DeploymentDir,
    confirm: u32,
    activation: u32,
) -> (std::process::Child, u32) {
    for name in ["run.sh", "stop.sh"] {
        std::fs::copy(script(name), dir.path().join(name)).expect("copy the job scripts");
    }
    // It notes whether the watchdog's record was there when it started.
    dir.write(
        "stand-in.sh",
        "[ -f \"/nix/var/hbdeploy/pending-${1##*/}\" ] && : >\"$1/saw-the-record\"\nsleep 30\n",
    );
    let child = Command::new("sh")
        .arg(script("watchdog.sh"))
        .arg(dir.path())
        .arg("watchdog")
        .arg(confirm.to_string())
        .arg(activation.to_string())
        .args(["restore", "/nix/store/none", "switch", "1"])
        .args(["activate", "stand-in.sh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sh starts");
    dir.write("watchdog.pid", &format!("{}\n", child.id()));
    let pid_file = dir.path().join("activate.pid");
    let started = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the watchdog did not start the activation"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (child, pid)
}

/// Whether the process `pid` still runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn the_watchdog_arms_then_starts_the_activation_and_waits_without_starting_process_after_process() {
    let dir = DeploymentDir::new("watchdog-wait");
    let (mut watchdog, activation) = start_watchdog(&dir, 30, 60);

    // Armed first: the record was on disk before the activation started, and says how to
    // restore.
    let saw = dir.path().join("saw-the-record");
    let began = std::time::Instant::now();
    while !saw.exists() && began.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        saw.exists(),
        "the activation started before the watchdog's record was written"
    );
    let name = dir.path().file_name().expect("name").to_string_lossy();
    let record = std::fs::read_to_string(format!("/nix/var/hbdeploy/pending-{name}"))
        .expect("the watchdog's record");
    assert_eq!(
        record.lines().nth(1),
        Some("restore /nix/store/none switch 1"),
        "{record}"
    );
    // The activation runs in a session of its own (stop.sh stops it by its process group).
    let stat = std::fs::read_to_string(format!("/proc/{activation}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("stat")
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[2],
        activation.to_string(),
        "its own process group: {stat}"
    );

    // Whatever the watchdog waits with, it is one and the same set of processes the whole time:
    // a loop that starts a `sleep` (or anything else) again and again shows new pids.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let first = descendants(watchdog.id());
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert_eq!(
            descendants(watchdog.id()),
            first,
            "the watchdog started new processes while the activation ran"
        );
    }
    assert!(
        first.iter().any(|(pid, _)| *pid == activation),
        "the activation is not the watchdog's child: {first:?}"
    );

    // The activation ends: the confirmation window opens (the watchdog waits, undecided), and
    // the deployer's confirmation ends it.
    let killed = Command::new("kill")
        .arg("--")
        .arg(format!("-{activation}"))
        .status()
        .expect("kill runs");
    assert!(killed.success(), "stop the activation");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(!alive(activation), "the activation was not reaped");
    assert!(
        !dir.path().join("decided").exists(),
        "the watchdog decided within its window"
    );
    assert!(
        watchdog.try_wait().expect("try_wait").is_none(),
        "the watchdog left before its window closed"
    );
    assert_eq!(decide(dir.path(), None), "confirmed");
    let ended = watchdog.wait().expect("the watchdog ends");
    assert!(
        !ended.success(),
        "the confirmation did not stop the watchdog: {ended}"
    );
}

#[test]
fn the_watchdog_takes_over_an_activation_still_running_at_its_limit() {
    let dir = DeploymentDir::new("watchdog-limit");
    let started = std::time::Instant::now();
    let (watchdog, activation) = start_watchdog(&dir, 30, 1);
    let out = watchdog.wait_with_output().expect("the watchdog ends");
    let waited = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("the activation did not finish within 1s"),
        "the watchdog said: {said}"
    );
    assert!(
        dir.path().join("decided").is_file(),
        "the watchdog did not decide"
    );
    // It stopped the activation before restoring.
    assert!(said.contains("stopping the activate job"), "{said}");
    assert!(!alive(activation), "the hung activation still runs");
    // Not the confirmation window (30 s): the activation's limit of 1 s.
    assert!(
        waited < std::time::Duration::from_secs(10),
        "the watchdog took {waited:?} to act on a 1 s limit"
    );
}

#[test]
fn a_watchdog_that_cannot_arm_starts_nothing_and_says_why() {
    let dir = DeploymentDir::new("watchdog-refuse");
    for name in ["run.sh", "stop.sh"] {
        std::fs::copy(script(name), dir.path().join(name)).expect("copy the job scripts");
    }
    dir.write("stand-in.sh", "touch ran\n");
    // The pipe launch.sh follows, and a directory where the record is written: it cannot be
    // written.
    let pipe = dir.path().join("activate.started");
    let made = Command::new("mkfifo").arg(&pipe).status().expect("mkfifo");
    assert!(made.success());
    let name = dir.path().file_name().expect("name").to_string_lossy();
    let record = PathBuf::from(format!("/nix/var/hbdeploy/pending-{name}"));
    // Removed however the test ends: it is in the machine's own /nix/var/hbdeploy.
    let blocker = crate::support::Scratch::new(record.clone());
    std::fs::create_dir_all(record.join("in-the-way")).expect("block the record");
    // Read-write, as launch.sh opens it: the watchdog's write never waits.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pipe)
        .expect("open the pipe");
    let out = Command::new("sh")
        .arg(script("watchdog.sh"))
        .arg(dir.path())
        .arg("watchdog")
        .args(["30", "60", "restore", "/nix/store/none", "switch", "-"])
        .args(["activate", "stand-in.sh"])
        .output()
        .expect("sh runs");
    let written = record.is_file();
    drop(blocker);
    assert!(!out.status.success(), "the watchdog went on");
    assert!(!written, "a record was written");
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(reader), &mut said)
        .expect("read the pipe");
    assert_eq!(said, format!("failed:cannot write {}\n", record.display()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !dir.path().join("ran").exists() && !dir.path().join("activate.pid").exists(),
        "the activation started"
    );
}
