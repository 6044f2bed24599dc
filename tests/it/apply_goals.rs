//! `hbdeploy apply` against the lab, continued from `apply`: what a second apply does with an
//! unchanged and a changed system, the goals (`boot`, `test`, `build`, `push`, `dry-activate`),
//! hosts activating in parallel, and strict host-key checking.

use crate::support::{apply, fleet_lab, host, row, system_path};
use hbdeploy_lab::{Activation, LabHost, SystemSpec};

#[test]
fn a_second_apply_of_an_unchanged_fleet_copies_nothing_and_activates_nothing() {
    let lab = fleet_lab(&["desktop", "server"]);
    let first = apply(&lab, &["--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    let logins: Vec<usize> = lab.hosts().map(LabHost::accepted_logins).collect();
    // One login per host: `nix copy` rode the russh connection instead of making its own
    // (issue 16); a first deployment has no magic-rollback confirmation.
    assert_eq!(logins, [1, 1], "{}", first.both());
    let stores: Vec<Vec<String>> = lab
        .hosts()
        .map(|h| h.store_entries().expect("ls"))
        .collect();

    // Issue 3: hosts that already run the new system are `unchanged`: no copy, no activation.
    let second = apply(&lab, &["--all"]);
    assert_eq!(second.code, 0, "{}", second.both());
    for name in ["desktop", "server"] {
        let cells = row(&second, name);
        assert_eq!(cells[1], "unchanged", "{}", second.both());
        assert_eq!(cells[4], "1", "still generation 1: {}", second.both());
        assert_eq!(cells[5], "-", "no copy stage: {}", second.both());
        assert_eq!(host(&lab, name).activations().expect("read").len(), 1);
    }
    assert!(second.stdout.contains("2 hosts: 2 succeeded, 0 failed"));
    // Only the russh connection this time: `nix copy` was not even started.
    let logins: Vec<usize> = lab.hosts().map(LabHost::accepted_logins).collect();
    assert_eq!(logins, [2, 2]);

    // --reactivate activates again, and still copies nothing.
    let third = apply(&lab, &["--all", "--reactivate"]);
    assert_eq!(third.code, 0, "{}", third.both());
    for name in ["desktop", "server"] {
        let cells = row(&third, name);
        assert_eq!(cells[1..3], ["ok", "activate"], "{}", third.both());
        assert_eq!(cells[5], "0/3", "{}", third.both());
        assert_eq!(host(&lab, name).activations().expect("read").len(), 2);
    }
    // The russh connection, and the new connection that confirms the activation (magic rollback
    // is armed now that there is a previous generation).
    let logins: Vec<usize> = lab.hosts().map(LabHost::accepted_logins).collect();
    assert_eq!(logins, [4, 4]);
    let after: Vec<Vec<String>> = lab
        .hosts()
        .map(|h| h.store_entries().expect("ls"))
        .collect();
    assert_eq!(stores, after);
}

#[test]
fn a_changed_system_is_copied_and_activated_as_a_new_generation() {
    let mut lab = fleet_lab(&["server"]);
    assert_eq!(apply(&lab, &["server"]).code, 0);
    let old = system_path(&lab, "server");
    lab.bump_all().expect("new generation");
    let new = system_path(&lab, "server");
    assert_ne!(old, new);
    let run = apply(&lab, &["server"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let h = host(&lab, "server");
    assert_eq!(h.current_system().expect("read"), Some(new.clone()));
    assert!(
        h.has_store_path(&old).expect("query"),
        "old generation kept"
    );
    let generations = h.generations().expect("read");
    assert_eq!(generations.lines().count(), 2, "{generations}");
    assert!(
        generations
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("(current)"))
    );
}

#[test]
fn goal_boot_sets_the_profile_but_leaves_the_running_system() {
    let lab = fleet_lab(&["server"]);
    let run = apply(&lab, &["server", "--goal", "boot"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let path = system_path(&lab, "server");
    let h = host(&lab, "server");
    assert_eq!(h.current_system().expect("read"), None);
    assert_eq!(h.profile_system().expect("read"), Some(path.clone()));
    assert_eq!(h.boot_default().expect("read"), Some(path.clone()));
    assert_eq!(h.activations().expect("read"), [format!("boot {path}")]);
}

#[test]
fn goal_test_activates_without_touching_the_profile() {
    let lab = fleet_lab(&["server"]);
    let run = apply(&lab, &["server", "--goal", "test"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let path = system_path(&lab, "server");
    let h = host(&lab, "server");
    assert_eq!(h.current_system().expect("read"), Some(path));
    assert_eq!(h.profile_system().expect("read"), None);
    assert_eq!(h.boot_default().expect("read"), None);
}

#[test]
fn goals_build_push_and_dry_activate_stop_where_they_say() {
    let lab = fleet_lab(&["server"]);
    let path = system_path(&lab, "server");
    let h = host(&lab, "server");

    let build = apply(&lab, &["--all", "--goal", "build"]);
    assert_eq!(build.code, 0, "{}", build.both());
    assert_eq!(row(&build, "server")[1..3], ["ok", "build"]);
    assert_eq!(h.accepted_logins(), 0, "build must not contact hosts");

    let push = apply(&lab, &["--all", "--goal", "push"]);
    assert_eq!(push.code, 0, "{}", push.both());
    assert_eq!(row(&push, "server")[1..3], ["ok", "copy"]);
    assert!(h.has_store_path(&path).expect("query"));
    assert!(h.activations().expect("read").is_empty());
    assert_eq!(h.profile_system().expect("read"), None);

    let dry = apply(&lab, &["--all", "--goal", "dry-activate", "-v"]);
    assert_eq!(dry.code, 0, "{}", dry.both());
    assert!(dry.stderr.contains("would activate"), "{}", dry.both());
    assert_eq!(h.current_system().expect("read"), None);
    assert_eq!(h.profile_system().expect("read"), None);
}

#[test]
fn hosts_activate_in_parallel() {
    // Four hosts whose activations each wait until all four are activating (a barrier on the
    // lab's disk). One after another, the first would wait in vain and fail; in parallel all four
    // are activating before the first one is done. The progress lines show the order.
    let mut lab = fleet_lab(&["a", "b", "c", "d"]);
    for name in ["a", "b", "c", "d"] {
        let slow = SystemSpec {
            activation: Activation::Barrier(4),
            ..SystemSpec::default()
        };
        lab.set_system(name, slow).expect("flake");
    }
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let lines: Vec<&str> = run.stderr.lines().collect();
    let first_done = lines
        .iter()
        .position(|l| l.ends_with("] done"))
        .expect("a host finished");
    let activating = lines[..first_done]
        .iter()
        .filter(|l| l.ends_with("] activate"))
        .count();
    assert_eq!(activating, 4, "{}", run.both());
}

#[test]
fn host_keys_are_checked_strictly() {
    let lab = fleet_lab(&["desktop", "laptop", "server"]);
    // desktop: not in known_hosts at all; server: listed with laptop's key (a changed key).
    let original = std::fs::read_to_string(lab.known_hosts()).expect("read known_hosts");
    let lines: Vec<&str> = original.lines().collect();
    let laptop_key = lines[1].split_once(' ').expect("host and key").1;
    let server_name = lines[2].split_once(' ').expect("host and key").0;
    let edited = format!(
        "# edited by the test\n{}\n{server_name} {laptop_key}\n",
        lines[1]
    );
    std::fs::write(lab.known_hosts(), edited).expect("write known_hosts");

    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "desktop")[1..3], ["FAILED", "connect"]);
    assert!(run.stdout.contains("unknown key SHA256:"), "{}", run.both());
    assert!(
        run.stdout.contains(&format!(
            "hint: verify the fingerprint out of band, then add this line to {}",
            lab.known_hosts().display()
        )),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "server")[1..3], ["FAILED", "connect"]);
    assert!(
        run.stdout
            .contains("HOST KEY CHANGED: the host offered SHA256:"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains(&format!(
            "{}:3 holds a different key",
            lab.known_hosts().display()
        )),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "laptop")[1], "ok");
    for refused in ["desktop", "server"] {
        let h = host(&lab, refused);
        assert_eq!(
            h.accepted_logins(),
            0,
            "{refused} authenticated despite its key"
        );
        assert!(h.store_entries().expect("ls").is_empty());
    }
}
