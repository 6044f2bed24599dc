//! Health checks against lab hosts of both kinds: a command check that hangs is stopped on the
//! host when its timeout expires, with every process it started (issue 15, item 6).

use std::time::Duration;

use crate::support::hbdeploy;
use crate::support::lab::{deployed_once, wait_until};
use hbdeploy_lab::{HostKind, Lab};

/// The command lines of every process on this machine that mention `marker` (the lab's hosts
/// are namespaces and containers of this machine, so their processes are seen here too).
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let path = entry.expect("entry").path();
        let Ok(raw) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(marker) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    found
}

#[test]
fn a_hanging_command_check_leaves_no_process_on_either_kind_of_host() {
    let lab = deployed_once(
        Lab::start_hosts(&[("plain", HostKind::Namespace), ("unit", HostKind::Systemd)])
            .expect("lab"),
    );

    // A check that never answers and leaves a child of its own behind: both must go.
    let extra = "\n[[health]]\ncommand = \"sleep 7717 & sleep 7718\"\ntimeout = 1\nretries = 1\n";
    lab.write_fleet(&[], extra).expect("fleet");
    let run = hbdeploy(&lab, &["check"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        run.stdout.matches("no answer within 1s").count(),
        2,
        "{}",
        run.both()
    );

    // `timeout -k 2` has stopped the group by the time the second attempt returned; allow the
    // kernel a moment to reap.
    let gone = wait_until(Duration::from_secs(5), || {
        processes_with("sleep 771").is_empty()
    });
    assert!(
        gone,
        "still running: {:?}\n{}",
        processes_with("sleep 771"),
        run.both()
    );
}
