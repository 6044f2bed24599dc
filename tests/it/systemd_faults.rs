//! Faults on lab hosts that run systemd as PID 1 (issue 14): a deployer killed or interrupted
//! mid-activation, a hung activation it leaves behind, an activation that kills every sshd.

use std::time::{Duration, Instant};

use crate::support::lab::{
    Watched, activation_started, deployed_systemd, generation_systems, hbdeploy_units,
    kill_mid_activation, running, signal, spec, wait_until,
};
use crate::support::{hbdeploy, host, row, system_path};
use hbdeploy_lab::{Activation, Lab};

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
    let mut lab = deployed_systemd(&["h"]);
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
    let mut lab = deployed_systemd(&["f"]);
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
    let mut lab = deployed_systemd(&["k"]);
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

#[test]
fn an_activation_that_kills_every_sshd_is_restored_by_the_watchdog_on_a_systemd_host() {
    let mut lab = deployed_systemd(&["cut"]);
    let old = running(&lab, "cut");
    lab.set_system("cut", spec(2, Activation::KillAllSshd))
        .expect("flake");
    let new = system_path(&lab, "cut");

    let run = hbdeploy(&lab, &["apply", "--all", "--confirm-timeout", "5"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "cut")[1..3],
        ["rolled-back", "activate"],
        "{}",
        run.both()
    );
    let h = host(&lab, "cut");
    // The new system was activated (and cut the deployer's own session) ...
    assert_eq!(
        h.activations().expect("read")[1],
        format!("switch {new}"),
        "{}",
        run.both()
    );
    // ... and the watchdog put the previous one back, with sshd.
    assert_eq!(running(&lab, "cut"), old, "the previous system runs");
    assert_eq!(h.profile_system().expect("read"), Some(old.clone()));
    assert_eq!(generation_systems(&lab, "cut"), [old.as_str()]);
    assert_eq!(
        h.activations().expect("read").last(),
        Some(&format!("switch {old}"))
    );
    let status = hbdeploy(&lab, &["status", "cut"]);
    assert_eq!(status.code, 0, "sshd is back: {}", status.both());
    assert!(wait_until(Duration::from_secs(30), || hbdeploy_units(
        &lab, "cut"
    )
    .is_empty()));
}

#[test]
fn one_ctrl_c_lets_the_running_activation_finish_on_systemd_hosts() {
    let mut lab = deployed_systemd(&["a", "b"]);
    for name in ["a", "b"] {
        lab.set_system(name, spec(2, Activation::Gate))
            .expect("flake");
    }
    let before = ["a", "b"].map(|n| running(&lab, n));
    let new = ["a", "b"].map(|n| system_path(&lab, n));
    // One host at a time: one activates, the other waits for its turn.
    let apply = Watched::spawn(
        &lab,
        &[
            "apply",
            "--all",
            "--parallel",
            "1",
            "--confirm-timeout",
            "5",
        ],
    );
    let activating = |i: usize| host(&lab, ["a", "b"][i]).activations().expect("read").len() == 2;
    assert!(
        wait_until(Duration::from_secs(120), || activating(0) || activating(1)),
        "no host started activating"
    );
    let (first, second) = if activating(0) { (0, 1) } else { (1, 0) };
    let [first_name, second_name] = [["a", "b"][first], ["a", "b"][second]];
    signal("INT", apply.pid());
    apply.wait_for_line("interrupted: starting nothing new", Duration::from_secs(30));
    // Only now may the running activation finish.
    lab.open_gate().expect("gate");
    let run = apply.finish();
    assert_eq!(run.code, 130, "{}", run.both());
    assert_eq!(row(&run, first_name)[1], "ok", "{}", run.both());
    assert_eq!(row(&run, second_name)[1], "interrupted", "{}", run.both());
    assert!(
        run.stdout
            .contains("2 hosts: 1 succeeded, 0 failed, 1 interrupted"),
        "{}",
        run.both()
    );
    // The first was confirmed, not left to its watchdog: it still runs the new system after
    // the confirmation timeout, with no unit of hbdeploy left.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(running(&lab, first_name), new[first]);
    assert_eq!(
        host(&lab, first_name).profile_system().expect("read"),
        Some(new[first].clone())
    );
    assert_eq!(
        hbdeploy_units(&lab, first_name),
        "",
        "no unit of hbdeploy left"
    );
    // The other was not touched.
    assert_eq!(running(&lab, second_name), before[second]);
    assert_eq!(
        host(&lab, second_name).activations().expect("read").len(),
        1
    );
}

#[test]
fn two_ctrl_c_exit_at_once_and_the_unconfirmed_activation_is_restored_on_systemd_hosts() {
    let mut lab = deployed_systemd(&["a"]);
    let old = running(&lab, "a");
    lab.set_system("a", spec(2, Activation::Gate))
        .expect("flake");
    let new = system_path(&lab, "a");
    let apply = Watched::spawn(&lab, &["apply", "--all", "--confirm-timeout", "20"]);
    assert!(activation_started(&lab, "a", &new), "a never activated");
    let exiting = Instant::now();
    for _ in 0..2 {
        signal("INT", apply.pid());
        std::thread::sleep(Duration::from_millis(300));
    }
    let run = apply.finish();
    assert!(exiting.elapsed() < Duration::from_secs(5), "exits at once");
    assert_eq!(run.code, 130, "{}", run.both());
    assert!(
        run.stderr.contains("interrupted again: exiting now"),
        "{}",
        run.both()
    );
    // The deployer is gone; the activation runs to its end in its unit ...
    lab.open_gate().expect("gate");
    assert!(
        wait_until(Duration::from_secs(30), || running(&lab, "a") == new),
        "the activation did not finish without its deployer"
    );
    // ... and as nobody confirms it, the watchdog restores the previous generation.
    let h = host(&lab, "a");
    assert!(
        wait_until(Duration::from_secs(60), || running(&lab, "a") == old
            && h.profile_system().expect("read") == Some(old.clone())),
        "not restored: running {:?}, profile {:?}",
        h.current_system(),
        h.profile_system()
    );
    assert_eq!(generation_systems(&lab, "a"), [old.as_str()]);
    assert!(wait_until(Duration::from_secs(30), || hbdeploy_units(
        &lab, "a"
    )
    .is_empty()));
}
