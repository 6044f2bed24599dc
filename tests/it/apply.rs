//! `hbdeploy apply` against the lab: real nix, real sshd, real russh connections (issue 2).
//!
//! Every test starts its own lab (own address range, own state directory) and the lab stops its
//! hosts when dropped, also when an assertion fails.

use std::path::Path;

use crate::support::{HBDEPLOY, host, row, system_path};
use hbdeploy_lab::{Activation, Buildability, Lab, LabHost, Run, SystemSpec};

fn bin() -> &'static Path {
    Path::new(HBDEPLOY)
}

fn lab(names: &[&str]) -> Lab {
    let lab = Lab::start(names).expect("lab starts (needs root, nix-bin, openssh-server)");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    lab
}

fn apply(lab: &Lab, args: &[&str]) -> Run {
    let mut all = vec!["apply"];
    all.extend_from_slice(args);
    lab.hbdeploy(bin(), &all).expect("hbdeploy runs")
}

#[test]
fn apply_all_puts_each_hosts_own_system_on_it_and_nowhere_else() {
    let lab = lab(&["desktop", "laptop", "server"]);
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    for name in ["desktop", "laptop", "server"] {
        let path = system_path(&lab, name);
        let h = host(&lab, name);
        assert_eq!(
            h.current_system().expect("read").as_deref(),
            Some(path.as_str())
        );
        assert_eq!(
            h.profile_system().expect("read").as_deref(),
            Some(path.as_str())
        );
        assert_eq!(h.activations().expect("read"), [format!("switch {path}")]);
        assert!(h.generations().expect("read").contains("(current)"));
        for other in ["desktop", "laptop", "server"]
            .iter()
            .filter(|o| **o != name)
        {
            assert!(
                !host(&lab, other).has_store_path(&path).expect("query"),
                "{name}'s system leaked into {other}'s store"
            );
        }
        let cells = row(&run, name);
        assert_eq!(cells[1..4], ["ok", "activate", &cells[3]]);
        assert_eq!(cells[4], "1", "first generation: {}", run.both());
        assert_eq!(cells[5], "3/3", "whole closure copied: {}", run.both());
    }
    assert!(
        run.stdout.contains("3 hosts: 3 succeeded, 0 failed"),
        "{}",
        run.both()
    );
    // Progress went to stderr as plain lines (stderr is not a terminal here).
    assert!(run.stderr.contains("[server] activate"), "{}", run.both());
}

#[test]
fn apply_one_host_leaves_the_others_untouched() {
    let lab = lab(&["desktop", "laptop", "server"]);
    let run = apply(&lab, &["server"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let path = system_path(&lab, "server");
    assert_eq!(
        host(&lab, "server").current_system().expect("read"),
        Some(path)
    );
    for other in ["desktop", "laptop"] {
        let h = host(&lab, other);
        assert_eq!(h.current_system().expect("read"), None);
        assert!(
            h.store_entries().expect("ls").is_empty(),
            "{other} got store paths"
        );
        assert_eq!(h.accepted_logins(), 0, "{other} was contacted");
        assert!(
            !run.stdout.contains(other),
            "{other} in the report:\n{}",
            run.both()
        );
    }
}

#[test]
fn tags_and_names_select_hosts_once() {
    let lab = Lab::start(&["desktop", "laptop", "server"]).expect("lab");
    lab.write_fleet(
        &[
            ("desktop", &["workstation"]),
            ("laptop", &["workstation", "mobile"]),
            ("server", &["infra"]),
        ],
        "",
    )
    .expect("fleet");
    // `laptop` is selected by name and by tag: it is deployed once.
    let run = apply(&lab, &["@workstation", "laptop"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(host(&lab, "laptop").activations().expect("read").len(), 1);
    assert!(
        host(&lab, "desktop")
            .current_system()
            .expect("read")
            .is_some()
    );
    assert!(
        host(&lab, "server")
            .current_system()
            .expect("read")
            .is_none()
    );
    assert!(
        run.stdout.contains("2 hosts: 2 succeeded"),
        "{}",
        run.both()
    );

    let unknown = apply(&lab, &["@infar"]);
    assert_eq!(unknown.code, 2, "{}", unknown.both());
    assert!(
        unknown.stderr.contains("did you mean `@infra`?"),
        "{}",
        unknown.both()
    );
    assert_eq!(host(&lab, "server").accepted_logins(), 0);
}

#[test]
fn an_unreachable_host_fails_alone() {
    let mut lab = Lab::start(&["desktop", "server"]).expect("lab");
    let extra = format!("\n[hosts.ghost]\naddress = \"{}\"\n", lab.dead_address());
    lab.write_fleet(&[], &extra).expect("fleet");
    lab.set_system("ghost", SystemSpec::default())
        .expect("flake");
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "ghost")[1..3], ["FAILED", "connect"]);
    assert!(
        run.stdout
            .contains("ghost: cannot reach the host; it was not changed"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("caused by: cannot connect to root@127.77."),
        "{}",
        run.both()
    );
    for name in ["desktop", "server"] {
        assert_eq!(row(&run, name)[1], "ok");
        assert!(host(&lab, name).current_system().expect("read").is_some());
    }
    assert!(
        run.stdout.contains("3 hosts: 2 succeeded, 1 failed"),
        "{}",
        run.both()
    );
}

#[test]
fn a_stopped_sshd_is_unreachable_too() {
    let mut lab = lab(&["desktop", "server"]);
    lab.host_mut("desktop").expect("host").stop_sshd();
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "desktop")[1..3], ["FAILED", "connect"]);
    assert_eq!(row(&run, "server")[1], "ok");
}

#[test]
fn a_failing_activation_is_reported_with_its_output() {
    let mut lab = lab(&["desktop", "server"]);
    let failing = SystemSpec {
        activation: Activation::Fail,
        ..SystemSpec::default()
    };
    lab.set_system("desktop", failing).expect("flake");
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "desktop")[1..3], ["FAILED", "activate"]);
    assert!(
        run.stdout
            .contains("desktop: switch-to-configuration switch failed (exit code 1)"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("the system profile already points at the new system"),
        "the report must say where the host was left:\n{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("  | error: toy activation of desktop fails on purpose"),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "server")[1], "ok");
    assert!(
        host(&lab, "server")
            .current_system()
            .expect("read")
            .is_some()
    );
}

#[test]
fn configurations_that_fail_to_build_or_evaluate_fail_alone() {
    let mut lab = lab(&["desktop", "laptop", "server"]);
    let build_fails = SystemSpec {
        build: Buildability::BuildFails,
        ..SystemSpec::default()
    };
    let eval_fails = SystemSpec {
        build: Buildability::EvalFails,
        ..SystemSpec::default()
    };
    lab.set_system("desktop", build_fails).expect("flake");
    lab.set_system("laptop", eval_fails).expect("flake");
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "desktop")[1..3], ["FAILED", "build"]);
    assert!(
        run.stdout
            .contains("lab system of desktop fails to build on purpose"),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "laptop")[1..3], ["FAILED", "evaluate"]);
    assert!(
        run.stdout
            .contains("the configuration of laptop fails to evaluate on purpose"),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "server")[1], "ok");
    for broken in ["desktop", "laptop"] {
        assert_eq!(
            host(&lab, broken).accepted_logins(),
            0,
            "{broken} was contacted"
        );
    }
    assert!(
        host(&lab, "server")
            .current_system()
            .expect("read")
            .is_some()
    );
}

#[test]
fn a_second_apply_of_an_unchanged_fleet_copies_nothing_and_activates_nothing() {
    let lab = lab(&["desktop", "server"]);
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
    let mut lab = lab(&["server"]);
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
    let lab = lab(&["server"]);
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
    let lab = lab(&["server"]);
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
    let lab = lab(&["server"]);
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
    let mut lab = lab(&["a", "b", "c", "d"]);
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
    let lab = lab(&["desktop", "laptop", "server"]);
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
