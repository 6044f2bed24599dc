//! `hbdeploy exec` on a mixed fleet (issue 6): one host succeeds, one fails, one is unreachable.

use crate::support::{hbdeploy, settings};
use hbdeploy_lab::Lab;

/// Each lab host's hostname is its name, so `bad` can fail on purpose.
const COMMAND: &str = "echo hello from $(hostname); echo to stderr >&2; [ $(hostname) != bad ]";

fn mixed_fleet() -> Lab {
    let lab = Lab::start(&["bad", "good"]).expect("lab");
    let extra = format!("\n[hosts.ghost]\naddress = \"{}\"\n", lab.dead_address());
    lab.write_fleet(&[], &extra).expect("fleet");
    lab
}

#[test]
fn exec_prefixes_lines_by_host_and_reports_each_exit() {
    let lab = mixed_fleet();
    let run = hbdeploy(&lab, &["exec", "--all", "--", COMMAND]);
    assert_eq!(run.code, 1, "{}", run.both());
    let mut stdout: Vec<&str> = run.stdout.lines().collect();
    stdout.sort_unstable();
    assert_eq!(
        stdout,
        ["bad   | hello from bad", "good  | hello from good"]
    );
    assert!(run.stderr.contains("good  | to stderr\n"), "{}", run.both());
    settings(&lab).bind(|| {
        let summary = run
            .stderr
            .lines()
            .filter(|l| !l.contains(" | "))
            .collect::<Vec<_>>();
        insta::assert_snapshot!("exec_summary", summary.join("\n"));
    });
}

#[test]
fn exec_group_prints_each_hosts_output_together() {
    let lab = mixed_fleet();
    // Only stdout: the order of a host's stdout and stderr lines is up to its sshd.
    let command = "echo hello from $(hostname); echo bye; [ $(hostname) != bad ]";
    let run = hbdeploy(&lab, &["exec", "--all", "--group", "--", command]);
    assert_eq!(run.code, 1, "{}", run.both());
    settings(&lab).bind(|| insta::assert_snapshot!("exec_group", run.stdout));
    let ok = hbdeploy(&lab, &["exec", "good", "--", "true"]);
    assert_eq!(ok.code, 0, "{}", ok.both());
}
