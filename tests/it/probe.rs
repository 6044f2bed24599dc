//! What hbdeploy checks before it switches: a built path without `bin/switch-to-configuration` is
//! refused before it is copied, so nothing is copied, set or armed, on a host with a first
//! generation (magic rollback would be armed) and on a fresh one.

use crate::support::{hbdeploy, host, row, untouched};
use hbdeploy_lab::{Activation, Lab, SystemSpec};

#[test]
fn a_path_that_is_not_a_nixos_system_is_refused_before_anything_changes() {
    let mut lab = Lab::start(&["armed", "fresh"]).expect("lab starts");
    lab.write_fleet(&[], "").expect("fleet");
    // `armed` runs a first generation, so the next apply arms magic rollback there; `fresh`
    // has none, so it is probed without a watchdog.
    let first = hbdeploy(&lab, &["apply", "armed"]);
    assert_eq!(first.code, 0, "{}", first.both());
    let before = untouched(host(&lab, "armed"));
    for name in ["armed", "fresh"] {
        lab.set_system(
            name,
            SystemSpec {
                generation: 2,
                activation: Activation::NotASystem,
                ..SystemSpec::default()
            },
        )
        .expect("system");
    }
    let paths: Vec<String> = ["armed", "fresh"]
        .iter()
        .map(|n| crate::support::system_path(&lab, n))
        .collect();
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    for (name, path) in ["armed", "fresh"].iter().zip(&paths) {
        assert_eq!(row(&run, name)[1..3], ["FAILED", "build"], "{}", run.both());
        assert!(
            !host(&lab, name).has_store_path(path).expect("read"),
            "{name}: nothing was copied"
        );
    }
    assert_eq!(
        run.stdout
            .matches("is not a NixOS system (no bin/switch-to-configuration)")
            .count(),
        2,
        "{}",
        run.both()
    );
    assert_eq!(untouched(host(&lab, "armed")), before);
    assert_eq!(host(&lab, "fresh").current_system().expect("read"), None);
    assert_eq!(host(&lab, "fresh").profile_system().expect("read"), None);
    // No deployment was begun on the host that would have had a watchdog (the first apply's
    // directory went when its lock was let go).
    let deployments = host(&lab, "armed")
        .sh("find /run/hbdeploy -mindepth 1 -maxdepth 1 -type d | wc -l")
        .expect("listed");
    assert_eq!(deployments.trim(), "0");
}

#[test]
fn rolling_back_to_a_generation_whose_system_was_collected_says_so() {
    let mut lab = Lab::start(&["g"]).expect("lab starts");
    lab.write_fleet(&[], "").expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    let gen1 = host(&lab, "g")
        .current_system()
        .expect("read")
        .expect("deployed");
    lab.bump_all().expect("new systems");
    let second = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(second.code, 0, "{}", second.both());
    // Generation 1's system is gone from the store (as if garbage-collected) while its link
    // stays.
    host(&lab, "g")
        .sh(&format!(
            "nix-store --delete --ignore-liveness {gen1} >/dev/null 2>&1"
        ))
        .expect("delete");
    let before = untouched(host(&lab, "g"));
    let run = hbdeploy(&lab, &["rollback", "g"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout.contains(&format!(
            "g: {gen1} is not in the host's store (garbage-collected?); the host was not changed"
        )) && run.stdout.contains("hbdeploy generations HOST"),
        "{}",
        run.both()
    );
    assert!(!run.stdout.contains("not a NixOS system"), "{}", run.both());
    assert_eq!(untouched(host(&lab, "g")), before);
}
