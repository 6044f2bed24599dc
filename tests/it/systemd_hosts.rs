//! Deployments with the real binary to lab hosts that run systemd as PID 1 (issue 14), where the
//! activation, the automatic restore and the magic-rollback watchdog run in transient units.

use crate::support::lab::{deployed_systemd, hbdeploy_units, running, spec};
use crate::support::{hbdeploy, host, row, system_path};
use hbdeploy_lab::{Activation, Lab, SystemSpec};

/// The `status --json` entry of `name`.
fn status_of(lab: &Lab, name: &str) -> serde_json::Value {
    let run = hbdeploy(lab, &["status", "--json", name]);
    assert_eq!(run.code, 0, "{}", run.both());
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    value["hosts"][0].clone()
}

#[test]
fn apply_rollback_status_and_generations_work_on_systemd_hosts() {
    let mut lab = deployed_systemd(&["a", "b"]);
    // The lab raised the machine's inotify instances per user (never lowering them): with the
    // kernel's default of 128, about twenty systemd hosts boot and the next one's systemd fails.
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances").expect("read");
    assert!(
        limit.trim().parse::<u64>().expect("a number") >= 1024,
        "{limit}"
    );
    let gen1 = system_path(&lab, "a");
    assert_eq!(running(&lab, "a"), gen1);
    assert_eq!(
        host(&lab, "a").profile_system().expect("read"),
        Some(gen1.clone())
    );
    assert_eq!(
        host(&lab, "a").activations().expect("read"),
        vec![format!("switch {gen1}")]
    );

    lab.bump_all().expect("new systems");
    let second = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(second.code, 0, "{}", second.both());
    assert_eq!(row(&second, "a")[1], "ok", "{}", second.both());
    let gen2 = system_path(&lab, "a");
    assert_ne!(gen1, gen2);
    assert_eq!(running(&lab, "a"), gen2);

    let generations = hbdeploy(&lab, &["generations", "a"]);
    assert_eq!(generations.code, 0, "{}", generations.both());
    let lines: Vec<Vec<&str>> = generations
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{}", generations.both());
    assert_eq!((lines[0][0], lines[0][3]), ("1", gen1.as_str()));
    assert_eq!((lines[1][0], lines[1][3]), ("2", gen2.as_str()));
    assert_eq!(lines[1][4..], ["current,", "running"]);

    let rolled = hbdeploy(&lab, &["rollback", "a"]);
    assert_eq!(rolled.code, 0, "{}", rolled.both());
    assert_eq!(running(&lab, "a"), gen1);
    assert_eq!(
        host(&lab, "a").profile_system().expect("read"),
        Some(gen1.clone())
    );
    assert_eq!(running(&lab, "b"), system_path(&lab, "b"), "b untouched");

    let a = status_of(&lab, "a");
    assert_eq!(a["generation"], 1, "{a}");
    assert_eq!(a["current_system"], gen1.as_str(), "{a}");
    assert_eq!(hbdeploy_units(&lab, "a"), "", "no unit of hbdeploy left");
}

#[test]
fn a_failed_activation_on_a_systemd_host_is_restored() {
    let mut lab = deployed_systemd(&["server"]);
    let old = running(&lab, "server");
    lab.set_system("server", spec(2, Activation::FailAfterSwitch))
        .expect("flake");

    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "server")[1..3],
        ["rolled-back", "activate"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("switch-to-configuration switch failed (exit code 4); rolled back"),
        "{}",
        run.both()
    );
    let h = host(&lab, "server");
    assert_eq!(running(&lab, "server"), old);
    assert_eq!(h.profile_system().expect("read"), Some(old.clone()));
    assert_eq!(h.generations().expect("read").lines().count(), 1);
    // The previous system was activated again after the broken one.
    let activations = h.activations().expect("read");
    assert_eq!(
        activations.last(),
        Some(&format!("switch {old}")),
        "{activations:?}"
    );
    assert_eq!(
        hbdeploy_units(&lab, "server"),
        "",
        "no unit of hbdeploy left"
    );
}

#[test]
fn a_system_that_stops_sshd_is_restored_by_the_watchdog_on_a_systemd_host() {
    let mut lab = deployed_systemd(&["broken"]);
    let old = running(&lab, "broken");
    lab.set_system("broken", spec(2, Activation::KillSshd))
        .expect("flake");

    let run = hbdeploy(&lab, &["apply", "--all", "--confirm-timeout", "5"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "broken")[1..3],
        ["rolled-back", "activate"],
        "{}",
        run.both()
    );
    let h = host(&lab, "broken");
    assert_eq!(running(&lab, "broken"), old, "the previous system runs");
    assert_eq!(h.profile_system().expect("read"), Some(old.clone()));
    assert_eq!(h.generations().expect("read").lines().count(), 1);
    assert_eq!(
        h.activations().expect("read").last(),
        Some(&format!("switch {old}"))
    );
    // sshd is back: a fresh login works.
    let status = hbdeploy(&lab, &["status", "broken"]);
    assert_eq!(status.code, 0, "sshd is back: {}", status.both());
    assert_eq!(
        hbdeploy_units(&lab, "broken"),
        "",
        "no unit of hbdeploy left"
    );
}

#[test]
fn status_tells_a_reboot_only_when_kernel_files_differ_on_systemd_hosts() {
    // `k` has a kernel and initrd (the same in every generation) but no kernel modules; `t`
    // has no kernel files at all, so its booted and running systems are compared.
    let mut lab = Lab::start_systemd(&["k", "t"]).expect("systemd lab starts");
    lab.write_fleet(&[], "").expect("fleet");
    let with_kernel = |generation| SystemSpec {
        generation,
        kernel: true,
        ..SystemSpec::default()
    };
    lab.set_system("k", with_kernel(1)).expect("flake");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    for name in ["k", "t"] {
        host(&lab, name).reboot().expect("reboot");
        assert_eq!(status_of(&lab, name)["reboot_needed"], false, "{name}");
    }
    lab.set_system("k", with_kernel(2)).expect("flake");
    lab.set_system("t", spec(2, Activation::Succeed))
        .expect("flake");
    let second = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(second.code, 0, "{}", second.both());

    let k = status_of(&lab, "k");
    assert_ne!(k["booted_system"], k["current_system"], "{k}");
    assert_eq!(k["reboot_needed"], false, "same kernel and initrd: {k}");
    let t = status_of(&lab, "t");
    assert_eq!(
        t["reboot_needed"], true,
        "no kernel files, other system: {t}"
    );
    let table = hbdeploy(&lab, &["status"]);
    assert_eq!(row(&table, "k")[5], "no", "{}", table.both());
    assert_eq!(row(&table, "t")[5], "yes", "{}", table.both());
}
