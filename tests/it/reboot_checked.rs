//! Reboots that are checked (issue 19, part 5): `apply --goal boot --reboot` and `hbdeploy
//! reboot` on lab hosts with systemd as PID 1, which really reboot. Each host's outcome — `ok`,
//! `booted-old-system`, `did-not-come-back`, `health-failed`, a refused host key, a restore by
//! the boot-time restore — in the table, the JSON and the ledger. The failing boots are the
//! lab's boot faults (`LabHost::set_boot_fault`).

use crate::support::lab::{
    Watched, deployed_once, install_boot_restore, kill_mid_activation, running, signal, spec,
};
use crate::support::{hbdeploy, host, row, system_path};
use hbdeploy_lab::{Activation, BootFault, Lab};

/// A health check that passes until the host reboots: `/run` starts empty in every boot.
const HEALTHY_THIS_BOOT: &str = "/run/lab-healthy-this-boot";

fn json(run: &hbdeploy_lab::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.both()))
}

fn outcome<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {doc:#}"))
}

#[test]
fn apply_boot_reboot_reports_each_kind_of_boot_and_reboot_checks_again() {
    let mut lab = Lab::start_systemd(&["fine", "old", "gone", "sick"]).expect("systemd lab starts");
    lab.write_fleet(
        &[],
        &format!(
            "\n[[hosts.sick.health]]\ncommand = \"test -e {HEALTHY_THIS_BOOT}\"\ntimeout = 5\n\
             retries = 0\n"
        ),
    )
    .expect("fleet");
    host(&lab, "sick")
        .sh(&format!("touch {HEALTHY_THIS_BOOT}"))
        .expect("healthy now");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    let old_before = running(&lab, "old");
    let boots: Vec<String> = ["fine", "old", "sick"]
        .iter()
        .map(|n| host(&lab, n).boot_id().expect("boot id"))
        .collect();
    host(&lab, "old")
        .set_boot_fault(BootFault::OldSystem)
        .expect("fault");
    host(&lab, "gone")
        .set_boot_fault(BootFault::NoSshd)
        .expect("fault");
    for name in ["fine", "old", "gone", "sick"] {
        lab.set_system(name, spec(2, Activation::Succeed))
            .expect("flake");
    }
    let new = system_path(&lab, "fine");

    let run = hbdeploy(
        &lab,
        &[
            "apply",
            "--all",
            "--goal",
            "boot",
            "--reboot",
            "--reboot-timeout",
            "20",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    for (name, result) in [
        ("fine", "ok"),
        ("old", "booted-old-system"),
        ("gone", "did-not-come-back"),
        ("sick", "health-failed"),
    ] {
        assert_eq!(row(&run, name)[1], result, "{name}\n{}", run.both());
    }
    assert!(
        run.stdout
            .contains("the host did not come back within 20s (reboot-timeout)"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains(&format!(
            "old: the host rebooted, but booted {} instead of {}",
            old_before,
            system_path(&lab, "old")
        )),
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains(&format!(
            "health check command `test -e {HEALTHY_THIS_BOOT}` failed"
        )),
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains("4 hosts: 1 succeeded, 3 failed"),
        "{}",
        run.both()
    );
    // Each host that answered really rebooted into a new boot.
    for (name, boot) in ["fine", "old", "sick"].iter().zip(&boots) {
        assert_ne!(
            &host(&lab, name).boot_id().expect("boot id"),
            boot,
            "{name}"
        );
    }
    assert_eq!(running(&lab, "fine"), new);
    assert_eq!(running(&lab, "old"), old_before, "the old system runs");

    // The ledger has the same words.
    let history = hbdeploy(&lab, &["history", "--json"]);
    for word in ["booted-old-system", "did-not-come-back", "health-failed"] {
        assert!(
            history.stdout.contains(&format!("\"{word}\"")),
            "{word}\n{}",
            history.both()
        );
    }

    // `hbdeploy reboot` checks against what the profile points at: the new system for all.
    let run = hbdeploy(
        &lab,
        &[
            "reboot",
            "fine",
            "old",
            "sick",
            "--json",
            "--reboot-timeout",
            "60",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    let doc = json(&run);
    assert_eq!(doc["command"], "reboot");
    assert_eq!(outcome(&doc, "fine")["outcome"], "succeeded", "{doc:#}");
    assert_eq!(outcome(&doc, "fine")["new_path"], new.as_str(), "{doc:#}");
    assert_eq!(
        outcome(&doc, "old")["outcome"],
        "booted-old-system",
        "{doc:#}"
    );
    assert_eq!(outcome(&doc, "sick")["outcome"], "health-failed", "{doc:#}");
    assert!(
        outcome(&doc, "sick")["hint"].is_null()
            && outcome(&doc, "old")["hint"]
                .as_str()
                .is_some_and(|h| h.contains("boot loader")),
        "{doc:#}"
    );

    // Without its fault, the old host boots its profile's system.
    host(&lab, "old").clear_boot_faults().expect("clear");
    let run = hbdeploy(&lab, &["reboot", "old"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "old")[1], "ok", "{}", run.both());
    assert_eq!(running(&lab, "old"), system_path(&lab, "old"));
}

#[test]
fn a_host_key_changed_by_the_reboot_is_refused_not_waited_for() {
    let lab = deployed_once(Lab::start_systemd(&["k"]).expect("systemd lab starts"));
    host(&lab, "k")
        .set_boot_fault(BootFault::NewHostKey)
        .expect("fault");
    let run = hbdeploy(&lab, &["reboot", "--all", "--reboot-timeout", "600"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "k")[1], "FAILED", "{}", run.both());
    assert!(
        run.stdout
            .contains("k: after the reboot the host's key was refused")
            && run.stdout.contains("HOST KEY CHANGED"),
        "{}",
        run.both()
    );
    // Not even --accept-new-like leniency: the known_hosts file still holds only the old key.
    let known = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts");
    assert_eq!(known.lines().count(), 1, "{known}");
}

#[test]
fn the_first_ctrl_c_ends_the_wait_for_a_host_that_does_not_come_back() {
    let mut lab = deployed_once(Lab::start_systemd(&["w"]).expect("systemd lab starts"));
    host(&lab, "w")
        .set_boot_fault(BootFault::NoSshd)
        .expect("fault");
    lab.set_system("w", spec(2, Activation::Succeed))
        .expect("flake");
    // The default reboot-timeout, 600 s: only the interrupt ends the wait early.
    let apply = Watched::spawn(&lab, &["apply", "--all", "--goal", "boot", "--reboot"]);
    apply.wait_for_line(
        "[w] rebooting; waiting up to 600s",
        std::time::Duration::from_secs(300),
    );
    signal("INT", apply.pid());
    let run = apply.finish();
    assert_eq!(run.code, 130, "{}", run.both());
    assert_eq!(row(&run, "w")[1], "interrupted", "{}", run.both());
    assert!(
        run.stdout
            .contains("w: interrupted while waiting for the host to come back from its reboot"),
        "{}",
        run.both()
    );
}

#[test]
fn a_reboot_that_the_boot_time_restore_undoes_is_reported_as_rolled_back_by_the_host() {
    let mut lab = deployed_once(Lab::start_systemd(&["r"]).expect("systemd lab starts"));
    install_boot_restore(&lab, "r");
    let before = running(&lab, "r");
    lab.set_system("r", spec(2, Activation::Gate))
        .expect("flake");
    let unconfirmed = system_path(&lab, "r");
    // A deployer killed mid-activation leaves the deployment unconfirmed and pending.
    kill_mid_activation(&lab, "r", &unconfirmed, &["apply", "--all"]);

    let run = hbdeploy(&lab, &["reboot", "r", "--json"]);
    assert_eq!(run.code, 1, "{}", run.both());
    let doc = json(&run);
    let r = outcome(&doc, "r");
    assert_eq!(r["outcome"], "rolled-back", "{doc:#}");
    let error = r["error"].as_str().expect("error");
    assert!(
        error.contains("restored an earlier generation by itself")
            && error.contains(&format!("restored generation 1 ({before})"))
            && error.contains(&format!("it runs {before}")),
        "{error}"
    );
    assert_eq!(running(&lab, "r"), before);
}

/// Runs hbdeploy in a fresh directory holding `fleet` as `fleet.toml`; the exit code and both
/// streams, as one text for a snapshot.
fn answer(test: &str, fleet: &str, args: &[&str]) -> String {
    crate::support::answer("reboot", test, &[("fleet.toml", fleet)], args)
}

const FLEET: &str =
    "[fleet]\nflake = \"./nixos\"\n\n[hosts.server]\naddress = \"server.home.arpa\"\n";

#[test]
fn reboot_with_a_goal_that_does_not_set_the_boot_default_is_refused() {
    insta::assert_snapshot!(answer(
        "goal-test",
        FLEET,
        &["apply", "--all", "--goal", "test", "--reboot"]
    ));
}

#[test]
fn a_reboot_timeout_out_of_range_is_located() {
    let fleet = FLEET.replace(
        "server.home.arpa\"\n",
        "server.home.arpa\"\nreboot-timeout = 0\n",
    );
    insta::assert_snapshot!(answer("timeout-zero", &fleet, &["reboot", "--all"]));
    insta::assert_snapshot!(answer(
        "timeout-flag",
        FLEET,
        &["reboot", "--all", "--reboot-timeout", "0"]
    ));
}
