//! What hbdeploy checks on a host before it switches: a path without `bin/switch-to-configuration`
//! is refused before anything is set or armed, with magic rollback (the check rides on the
//! command that arms the watchdog) and without it (a probe of its own).

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use hbdeploy_lab::{Activation, Lab, SystemSpec};
use support::{hbdeploy, host, row, untouched};

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
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    for name in ["armed", "fresh"] {
        assert_eq!(
            row(&run, name)[1..3],
            ["FAILED", "activate"],
            "{}",
            run.both()
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
    // No watchdog was armed on the host that would have had one.
    let watchdogs = host(&lab, "armed")
        .sh("ls /run/hbdeploy | grep -c '^watchdog-' || true")
        .expect("listed");
    assert_eq!(watchdogs.trim(), "0");
}
