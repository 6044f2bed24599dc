//! Faults on lab hosts that run systemd as PID 1 (issue 14): a deployer killed or interrupted
//! mid-activation, a hung activation it leaves behind, an activation that kills every sshd.

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use hbdeploy_lab::{Activation, Lab};
use support::lab::{
    deployed_once, generation_systems, hbdeploy_units, kill_mid_activation, running, spec,
    wait_until,
};
use support::{hbdeploy, host, row, system_path};

/// A lab of systemd hosts that all run generation 1 (deployed once, successfully).
fn deployed(names: &[&str]) -> Lab {
    deployed_once(Lab::start_systemd(names).expect("systemd lab starts"))
}

/// Leaves a hung activation of generation 2 on `name`, by a deployer killed while it ran
/// (without a watchdog, so that only the hung activation is left behind); returns the hung
/// system.
fn leave_a_hung_activation(lab: &mut Lab, name: &str) -> String {
    lab.set_system(name, spec(2, Activation::Gate))
        .expect("flake");
    let hung = system_path(lab, name);
    kill_mid_activation(lab, name, &hung, &["apply", "--all", "--no-magic-rollback"]);
    assert_ne!(
        hbdeploy_units(lab, name),
        "",
        "the activation still runs on the host"
    );
    assert_eq!(
        host(lab, name).profile_system().expect("read"),
        Some(hung.clone()),
        "the killed deployment set the profile"
    );
    hung
}

#[test]
fn a_hung_activation_left_by_a_killed_deployer_is_settled_by_the_next_apply() {
    let mut lab = deployed(&["h"]);
    let before = running(&lab, "h");
    let hung = leave_a_hung_activation(&mut lab, "h");

    lab.set_system("h", spec(3, Activation::Succeed))
        .expect("flake");
    let next = system_path(&lab, "h");
    let started = Instant::now();
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "h")[1], "ok", "{}", run.both());
    assert!(
        run.stderr
            .contains("an earlier deployment's activate job (")
            && run
                .stderr
                .contains("was still running: stopped it after 20s"),
        "{}",
        run.both()
    );
    // Settling put the host back where it was before the stopped deployment, and said so.
    assert!(
        run.stderr.contains(&format!(
            "restored generation 1 ({before}), the host's generation before that deployment"
        )),
        "{}",
        run.both()
    );
    assert!(started.elapsed() < Duration::from_secs(90), "bounded");
    assert_eq!(running(&lab, "h"), next);
    assert_eq!(
        host(&lab, "h").profile_system().expect("read"),
        Some(next.clone())
    );
    // The generation that never finished activating is gone; the one before it is kept.
    assert_eq!(
        generation_systems(&lab, "h"),
        [before.clone(), next.clone()]
    );
    // The system before the hung one was activated again before the new one.
    assert_eq!(
        host(&lab, "h").activations().expect("read"),
        [
            format!("switch {before}"),
            format!("switch {hung}"),
            format!("switch {before}"),
            format!("switch {next}"),
        ]
    );
    assert_eq!(
        hbdeploy_units(&lab, "h"),
        "",
        "the hung activation was stopped"
    );
}

#[test]
fn a_failed_activation_after_settling_is_restored_to_the_generation_before_the_hung_one() {
    let mut lab = deployed(&["f"]);
    let before = running(&lab, "f");
    let hung = leave_a_hung_activation(&mut lab, "f");

    lab.set_system("f", spec(3, Activation::FailAfterSwitch))
        .expect("flake");
    let started = Instant::now();
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "f")[1..3],
        ["rolled-back", "activate"],
        "{}",
        run.both()
    );
    assert!(started.elapsed() < Duration::from_secs(90), "bounded");
    // Restored to the generation before the hung deployment, not to the hung system.
    let h = host(&lab, "f");
    assert_eq!(running(&lab, "f"), before);
    assert_eq!(h.profile_system().expect("read"), Some(before.clone()));
    assert_eq!(generation_systems(&lab, "f"), [before.as_str()]);
    assert!(
        !h.activations()
            .expect("read")
            .iter()
            .skip(2)
            .any(|a| a.ends_with(&hung)),
        "the hung system was activated again"
    );
    assert_eq!(hbdeploy_units(&lab, "f"), "", "no unit of hbdeploy left");
}

#[test]
fn a_deployer_killed_mid_activation_leaves_the_host_restored_never_half() {
    let mut lab = deployed(&["k"]);
    let old = running(&lab, "k");
    lab.set_system("k", spec(2, Activation::Slow(3)))
        .expect("flake");
    let new = system_path(&lab, "k");
    kill_mid_activation(
        &lab,
        "k",
        &new,
        &["apply", "--all", "--confirm-timeout", "10"],
    );
    // The activation finishes in its unit although its deployer is gone ...
    assert!(
        wait_until(Duration::from_secs(30), || running(&lab, "k") == new),
        "the activation did not finish without its deployer"
    );
    // ... and, as nobody confirmed it, the watchdog restores the previous generation.
    let h = host(&lab, "k");
    assert!(
        wait_until(Duration::from_secs(60), || running(&lab, "k") == old
            && h.profile_system().expect("read") == Some(old.clone())),
        "not restored: running {:?}, profile {:?}",
        h.current_system(),
        h.profile_system()
    );
    assert!(wait_until(Duration::from_secs(30), || hbdeploy_units(
        &lab, "k"
    )
    .is_empty()));
    assert_eq!(h.generations().expect("read").lines().count(), 1);
    let status = hbdeploy(&lab, &["status", "k"]);
    assert_eq!(status.code, 0, "{}", status.both());
}
