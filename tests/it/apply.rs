//! `hbdeploy apply` against the lab: real nix, real sshd, real russh connections (issue 2).
//!
//! Every test starts its own lab (own address range, own state directory) and the lab stops its
//! hosts when dropped, also when an assertion fails.

use crate::support::{apply, fleet_lab, host, row, system_path};
use hbdeploy_lab::{Activation, Buildability, Lab, SystemSpec};

#[test]
fn apply_all_puts_each_hosts_own_system_on_it_and_nowhere_else() {
    let lab = fleet_lab(&["desktop", "laptop", "server"]);
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
    let lab = fleet_lab(&["desktop", "laptop", "server"]);
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
    let mut lab = fleet_lab(&["desktop", "server"]);
    lab.host_mut("desktop").expect("host").stop_sshd();
    let run = apply(&lab, &["--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "desktop")[1..3], ["FAILED", "connect"]);
    assert_eq!(row(&run, "server")[1], "ok");
}

#[test]
fn a_failing_activation_is_reported_with_its_output() {
    let mut lab = fleet_lab(&["desktop", "server"]);
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
    let mut lab = fleet_lab(&["desktop", "laptop", "server"]);
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
    // Hosts are connected to while their systems are evaluated and built, so a host whose
    // configuration fails may have been logged in to; nothing ran on it.
    for broken in ["desktop", "laptop"] {
        assert_eq!(
            host(&lab, broken).sessions_started(),
            0,
            "{broken} ran a command"
        );
    }
    assert!(
        host(&lab, "server").sessions_started() > 0,
        "the count counts"
    );
    assert!(
        host(&lab, "server")
            .current_system()
            .expect("read")
            .is_some()
    );
}
