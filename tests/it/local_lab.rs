//! Deploying the machine hbdeploy runs on (issue 19, part 2), in the lab: hbdeploy runs inside a
//! lab host (`Lab::inside`) with a fleet.toml whose host `self` has `address = "local"` and that
//! host's configuration. It builds into that host's own store, copies nothing and activates it
//! without SSH — the host's sshd accepts no login during any of it — as root on a namespace
//! host, and as a user with a sudo password typed on a terminal on a host running systemd.

use crate::support::lab::{fresh_box_system, one_box_with_a_sudo_user};
use crate::support::{bin, host, row};
use hbdeploy_lab::{Activation, HostKind, Lab, Run};

const PASSWORD: &str = "s3cret-local";
const PROMPT: &str = "sudo password for deploy on the hosts: ";

/// Runs hbdeploy inside `box` as root with the local fleet and `args`.
fn as_root(lab: &Lab, args: &[&str]) -> Run {
    lab.inside("box", None)
        .expect("inside as root")
        .hbdeploy(bin(), Some(&lab.local_fleet_toml("box", "")), args)
        .expect("hbdeploy runs")
}

/// Runs hbdeploy inside `box` as `deploy`, on a terminal, typing the sudo password when asked.
fn as_user_on_a_terminal(lab: &Lab, args: &[&str]) -> Run {
    let mut args = args.to_vec();
    args.push("--ask-sudo-password");
    lab.inside("box", Some("deploy"))
        .expect("inside as deploy")
        .hbdeploy_on_a_terminal(
            bin(),
            Some(&lab.local_fleet_toml("box", "")),
            &args,
            PROMPT,
            &[PASSWORD],
        )
        .expect("hbdeploy runs on a terminal")
}

/// Whether `box` was ever switched to `system`.
fn switched_to(lab: &Lab, system: &str) -> bool {
    let activations = host(lab, "box").activations().expect("read");
    activations.contains(&format!("switch {system}"))
}

/// `box` runs `system`, and its profile points at it.
fn on(lab: &Lab, system: &str) {
    let box_ = host(lab, "box");
    assert_eq!(
        box_.current_system().expect("read"),
        Some(system.to_owned())
    );
    assert_eq!(
        box_.profile_system().expect("read"),
        Some(system.to_owned())
    );
}

#[test]
fn hbdeploy_as_root_deploys_rolls_back_and_reads_the_machine_it_runs_on() {
    let mut lab = one_box_with_a_sudo_user(HostKind::Namespace, PASSWORD);
    let first = fresh_box_system(&mut lab, Activation::Succeed);
    let run = as_root(&lab, &["apply", "self"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "self")[1], "ok", "{}", run.both());
    assert!(
        run.both().contains("magic rollback skipped"),
        "the skip is said: {}",
        run.both()
    );
    on(&lab, &first);
    assert!(
        host(&lab, "box").has_store_path(&first).expect("query"),
        "built in the host's own store"
    );

    let second = fresh_box_system(&mut lab, Activation::Succeed);
    let run = as_root(&lab, &["apply", "self"]);
    assert_eq!(run.code, 0, "{}", run.both());
    on(&lab, &second);

    // status, generations and exec read the machine they run on.
    let status = as_root(&lab, &["status", "self"]);
    assert_eq!(status.code, 0, "{}", status.both());
    // The table shortens store paths to their hash's first 8 characters and their name.
    let shown = format!("{}…{}", &second[..19], &second[43..]);
    assert!(status.stdout.contains(&shown), "{shown}: {}", status.both());
    let generations = as_root(&lab, &["generations", "self"]);
    assert_eq!(generations.code, 0, "{}", generations.both());
    assert!(
        generations.stdout.contains(&first) && generations.stdout.contains(&second),
        "{}",
        generations.both()
    );
    let exec = as_root(&lab, &["exec", "self", "--", "hostname"]);
    assert_eq!(exec.code, 0, "{}", exec.both());
    assert!(exec.stdout.contains("box"), "{}", exec.both());

    // rollback puts it back on the previous generation.
    let run = as_root(&lab, &["rollback", "self"]);
    assert_eq!(run.code, 0, "{}", run.both());
    on(&lab, &first);

    // A failed activation is rolled back automatically, as on any host.
    let failing = fresh_box_system(&mut lab, Activation::Fail);
    let run = as_root(&lab, &["apply", "self"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "self")[1..3], ["rolled-back", "activate"]);
    assert!(run.stdout.contains("rolled back"), "{}", run.both());
    on(&lab, &first);
    assert!(
        switched_to(&lab, &failing),
        "the failing system was activated here"
    );

    // None of it went over SSH.
    assert_eq!(host(&lab, "box").accepted_logins(), 0);
}

#[test]
fn a_user_deploys_the_systemd_host_it_runs_on_through_sudo_with_the_typed_password() {
    let mut lab = one_box_with_a_sudo_user(HostKind::Systemd, PASSWORD);
    let first = fresh_box_system(&mut lab, Activation::Succeed);
    let run = as_user_on_a_terminal(&lab, &["apply", "self"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(run.stdout.contains(PROMPT), "{}", run.both());
    on(&lab, &first);
    assert_eq!(
        host(&lab, "box").activations().expect("read"),
        [format!("switch {first}")]
    );

    // A failing system is rolled back through sudo too.
    let failing = fresh_box_system(&mut lab, Activation::Fail);
    let run = as_user_on_a_terminal(&lab, &["apply", "self"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(run.stdout.contains("rolled back"), "{}", run.both());
    on(&lab, &first);
    assert!(switched_to(&lab, &failing));

    // Without the password, sudo refuses and nothing changes.
    let next = fresh_box_system(&mut lab, Activation::Succeed);
    let run = lab
        .inside("box", Some("deploy"))
        .expect("inside as deploy")
        .hbdeploy(
            bin(),
            Some(&lab.local_fleet_toml("box", "")),
            &["apply", "self"],
        )
        .expect("hbdeploy runs");
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(run.stdout.contains("sudo"), "{}", run.both());
    on(&lab, &first);
    assert!(!switched_to(&lab, &next));
    assert_eq!(host(&lab, "box").accepted_logins(), 0);
}
