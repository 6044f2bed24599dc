//! A host that reboots in the middle of a deployment under magic rollback (issue 15), on lab
//! hosts with systemd as PID 1 and a real reboot: `/run` and the watchdog go with it, the pending
//! record in `/nix/var/hbdeploy` stays. With the boot-time restore of hbdeploy's NixOS module
//! (`nixos/modules/hbdeploy/boot-restore.sh`, installed as the module would) the host restores
//! itself; without it the next `apply` does. Either way the report says what the host runs.

use std::path::Path;

use crate::support::lab::{
    activation_started, deployed_once, generation_systems, install_boot_restore, running, spec,
};
use crate::support::{HBDEPLOY, hbdeploy, host, row, system_path};
use hbdeploy_lab::{Activation, Lab};

/// Starts `apply --all` (magic rollback armed), waits until `name` is activating `system` (its
/// activation waits at the gate), reboots the host, and returns the deployer's result.
fn reboot_mid_activation(lab: &Lab, name: &str, system: &str) -> hbdeploy_lab::Run {
    let child = lab
        .spawn_hbdeploy(
            Path::new(HBDEPLOY),
            &["apply", "--all", "--confirm-timeout", "8"],
        )
        .expect("start apply");
    assert!(activation_started(lab, name, system), "activation started");
    host(lab, name).reboot().expect("reboot");
    hbdeploy_lab::finish(child).expect("apply ends")
}

fn pending_records(lab: &Lab, name: &str) -> String {
    host(lab, name)
        .sh("ls /nix/var/hbdeploy/ 2>/dev/null || true")
        .expect("ls")
}

#[test]
fn a_reboot_mid_activation_is_restored_by_the_boot_time_restore_and_reported_so() {
    let mut lab = deployed_once(Lab::start_systemd(&["r"]).expect("systemd lab starts"));
    install_boot_restore(&lab, "r");
    let before = running(&lab, "r");
    lab.set_system("r", spec(2, Activation::Gate))
        .expect("flake");
    let unconfirmed = system_path(&lab, "r");

    let run = reboot_mid_activation(&lab, "r", &unconfirmed);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "r")[1], "rolled-back", "{}", run.both());
    assert!(
        run.stdout
            .contains("the host rebooted, or a later deployment settled it")
            && run.stdout.contains("it runs its previous generation again"),
        "{}",
        run.both()
    );
    let h = host(&lab, "r");
    assert_eq!(running(&lab, "r"), before);
    assert_eq!(h.profile_system().expect("read"), Some(before.clone()));
    assert_eq!(
        generation_systems(&lab, "r"),
        [before.as_str()],
        "the unconfirmed generation was deleted"
    );
    assert_eq!(pending_records(&lab, "r").trim(), "", "the record is gone");
    assert!(
        h.sh("journalctl -b -u hbdeploy-boot-restore --no-pager")
            .expect("journal")
            .contains("was never confirmed before the host rebooted: restoring generation 1"),
        "the boot-time restore did it"
    );
}

#[test]
fn without_the_boot_time_restore_a_reboot_is_reported_as_found_and_the_next_apply_settles_it() {
    let mut lab = deployed_once(Lab::start_systemd(&["q"]).expect("systemd lab starts"));
    let before = running(&lab, "q");
    lab.set_system("q", spec(2, Activation::Gate))
        .expect("flake");
    let unconfirmed = system_path(&lab, "q");

    let run = reboot_mid_activation(&lab, "q", &unconfirmed);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "q")[1], "FAILED", "{}", run.both());
    // What the host really runs after the reboot: its boot default, the old system, with the
    // profile on the unconfirmed generation.
    assert!(
        run.stdout.contains(&format!(
            "it runs {before}, its profile points at generation 2; it still has an unconfirmed \
             deployment"
        )),
        "{}",
        run.both()
    );
    assert_eq!(running(&lab, "q"), before);
    assert_ne!(pending_records(&lab, "q").trim(), "");

    let status = hbdeploy(&lab, &["status"]);
    assert!(
        status.stdout.contains("q: unconfirmed deployment ("),
        "{}",
        status.both()
    );

    lab.set_system("q", spec(3, Activation::Succeed))
        .expect("flake");
    let next = system_path(&lab, "q");
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stdout
            .contains("q: before this run: an earlier deployment (")
            && run
                .stdout
                .contains("was never confirmed before the host rebooted"),
        "{}",
        run.both()
    );
    assert_eq!(running(&lab, "q"), next);
    assert_eq!(
        generation_systems(&lab, "q"),
        [before.clone(), next.clone()],
        "the unconfirmed generation was deleted before the new one was made"
    );
    assert_eq!(pending_records(&lab, "q").trim(), "", "settled");
}
