//! `hbdeploy plan` and `apply --ask` against the lab (issue 6): what a deployment would change,
//! shown without changing anything.

use std::path::Path;

use crate::support::{HBDEPLOY, hbdeploy, host, settings, untouched};
use hbdeploy_lab::{Lab, SystemSpec};

/// desktop and server run generation 1; desktop's flake now builds generation 2 with a bigger
/// payload; fresh was never deployed.
fn lab_with_a_pending_change() -> Lab {
    let mut lab = Lab::start(&["desktop", "fresh", "server"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    let first = hbdeploy(&lab, &["apply", "desktop", "server"]);
    assert_eq!(first.code, 0, "{}", first.both());
    lab.set_system(
        "desktop",
        SystemSpec {
            generation: 2,
            payload_bytes: 8192,
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    lab
}

#[test]
fn plan_shows_each_hosts_change_and_changes_nothing() {
    let lab = lab_with_a_pending_change();
    let names = ["desktop", "fresh", "server"];
    let before: Vec<_> = names.map(|n| untouched(host(&lab, n))).to_vec();
    let stores: Vec<_> = names
        .map(|n| host(&lab, n).store_entries().expect("ls"))
        .to_vec();

    let run = hbdeploy(&lab, &["plan", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    settings(&lab).bind(|| insta::assert_snapshot!("plan_text", run.stdout));

    let json = hbdeploy(&lab, &["plan", "--all", "--json"]);
    assert_eq!(json.code, 0, "{}", json.both());
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON on stdout");
    assert_eq!(value["hosts"][0]["outcome"], "changes");
    settings(&lab).bind(|| insta::assert_snapshot!("plan_json", json.stdout));

    let after: Vec<_> = names.map(|n| untouched(host(&lab, n))).to_vec();
    assert_eq!(before, after, "plan changed a host");
    let stores_after: Vec<_> = names
        .map(|n| host(&lab, n).store_entries().expect("ls"))
        .to_vec();
    assert_eq!(stores, stores_after, "plan copied into a store");
}

#[test]
fn plan_copy_runs_dry_activate_and_leaves_the_system_alone() {
    let lab = lab_with_a_pending_change();
    let d = host(&lab, "desktop");
    let running = d.current_system().expect("read");
    let run = hbdeploy(&lab, &["plan", "desktop", "--copy"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stdout
            .contains("  dry-activate:\n    | would activate /nix/store/"),
        "{}",
        run.both()
    );
    assert_eq!(d.current_system().expect("read"), running);
    let activations = d.activations().expect("read");
    assert!(
        activations
            .last()
            .is_some_and(|a| a.starts_with("dry-activate ")),
        "{activations:?}"
    );
    // The closure is in the host's store now; the next apply has nothing to copy.
    let apply = hbdeploy(&lab, &["apply", "desktop"]);
    assert_eq!(apply.code, 0, "{}", apply.both());
    assert!(
        apply.stderr.contains("copied 0 of 3 paths"),
        "{}",
        apply.both()
    );
}

#[test]
fn apply_ask_without_a_terminal_refuses_and_changes_nothing() {
    let lab = lab_with_a_pending_change();
    let before = untouched(host(&lab, "desktop"));
    let logins = host(&lab, "desktop").accepted_logins();
    let run = hbdeploy(&lab, &["apply", "--all", "--ask"]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert_eq!(
        run.stderr,
        "error: apply --ask needs a terminal to ask on; nothing was changed\n\
         hint: run it on a terminal, or add --yes to apply after showing the plan\n"
    );
    assert_eq!(untouched(host(&lab, "desktop")), before);
    assert_eq!(host(&lab, "desktop").accepted_logins(), logins, "contacted");

    let yes = hbdeploy(&lab, &["apply", "desktop", "--ask", "--yes"]);
    assert_eq!(yes.code, 0, "{}", yes.both());
    assert!(
        yes.stdout.contains("desktop: /nix/store/"),
        "{}",
        yes.both()
    );
    assert!(yes.stdout.contains("1 host: 1 succeeded"), "{}", yes.both());
}

#[test]
fn apply_ask_on_a_terminal_applies_only_after_yes() {
    let lab = lab_with_a_pending_change();
    let bin = Path::new(HBDEPLOY);
    let before = untouched(host(&lab, "desktop"));
    let no = lab
        .hbdeploy_on_a_terminal(bin, &["apply", "desktop", "--ask"], "[y/N] ", &["n"])
        .expect("runs");
    assert_eq!(no.code, 2, "{}", no.stdout);
    assert!(no.stdout.contains("upgraded"), "{}", no.stdout);
    assert!(
        no.stdout.contains("not confirmed; nothing was changed"),
        "{}",
        no.stdout
    );
    assert_eq!(untouched(host(&lab, "desktop")), before);

    let yes = lab
        .hbdeploy_on_a_terminal(bin, &["apply", "desktop", "--ask"], "[y/N] ", &["y"])
        .expect("runs");
    assert_eq!(yes.code, 0, "{}", yes.stdout);
    assert_ne!(untouched(host(&lab, "desktop")), before);
}

#[test]
fn apply_ask_deploys_the_systems_it_showed_without_building_them_again() {
    let mut lab = Lab::start(&["a", "b"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    for name in ["a", "b"] {
        lab.set_system(
            name,
            SystemSpec {
                evaluation: hbdeploy_lab::Evaluation::Traced,
                ..SystemSpec::default()
            },
        )
        .expect("flake");
    }
    let shown: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| crate::support::system_path(&lab, n))
        .collect();
    let run = hbdeploy(&lab, &["apply", "--all", "--ask", "--yes", "-v"]);
    assert_eq!(run.code, 0, "{}", run.both());
    for (name, shown) in ["a", "b"].iter().zip(&shown) {
        // Evaluated once, for the plan; the deployment took the plan's system.
        let said = format!("lab: evaluating {name}\n");
        let times = run.stderr.matches(&said).count();
        assert_eq!(times, 1, "{name} evaluated {times} times\n{}", run.both());
        assert_eq!(
            host(&lab, name).current_system().expect("read").as_ref(),
            Some(shown)
        );
    }
}
