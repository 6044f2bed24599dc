//! Evaluation at fleet scale (issue 17), against the lab with the real binary and real nix:
//! evaluations run at once, a broken configuration costs no other host a second evaluation, an
//! evaluator over its memory budget is stopped and its host reported, a host is activated while
//! another is still being evaluated, and 5000 hosts evaluate (no command line grows with the
//! fleet). Nothing here measures time: overlap is proven by barriers that only a concurrent
//! evaluation or activation can open.

use std::time::Duration;

use crate::support::{apply, fleet_lab, row, token};
use hbdeploy_lab::{Activation, Buildability, Evaluation, SystemSpec, eval_cost};

fn with(evaluation: Evaluation) -> SystemSpec {
    SystemSpec {
        evaluation,
        ..SystemSpec::default()
    }
}

#[test]
fn two_evaluations_run_at_once() {
    let mut lab = fleet_lab(&["one", "two"]);
    let barrier = Evaluation::Barrier {
        count: 2,
        token: token(),
    };
    lab.set_systems(["one", "two"].map(|n| (n, with(barrier))))
        .expect("flake");
    // Each evaluation waits until the other one has started: evaluated one after the other,
    // the first would wait a minute and fail.
    let run = apply(&lab, &["--all", "--goal", "build", "--eval-workers", "2"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "one")[1], "ok", "{}", run.both());
    assert_eq!(row(&run, "two")[1], "ok", "{}", run.both());
}

#[test]
fn a_broken_configuration_is_reported_and_no_other_is_evaluated_twice() {
    let names = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"];
    let mut lab = fleet_lab(&names);
    lab.set_systems(names.map(|n| (n, with(Evaluation::Traced))))
        .expect("flake");
    let broken = SystemSpec {
        build: Buildability::EvalFails,
        ..SystemSpec::default()
    };
    lab.set_system("h2", broken).expect("flake");
    // One evaluator: h2 is in the first chunk (h1 to h4), after h1.
    let run = apply(
        &lab,
        &["--all", "--goal", "build", "--eval-workers", "1", "-v"],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "h2")[1..3],
        ["FAILED", "evaluate"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("the configuration of h2 fails to evaluate on purpose"),
        "{}",
        run.both()
    );
    for name in names.iter().filter(|n| **n != "h2") {
        assert_eq!(row(&run, name)[1], "ok", "{}", run.both());
        let said = format!("lab: evaluating {name}\n");
        let times = run.stderr.matches(&said).count();
        assert_eq!(times, 1, "{name} evaluated {times} times\n{}", run.both());
    }
}

#[test]
fn an_evaluation_over_its_memory_budget_is_stopped_and_reported() {
    let mut lab = fleet_lab(&["big", "small"]);
    // 300 MiB held for a second of CPU time, against a budget of 200 MiB.
    let costly = eval_cost(Duration::from_secs(1), 300).expect("hash speed measured");
    lab.set_system("big", with(costly)).expect("flake");
    let run = apply(
        &lab,
        &[
            "--all",
            "--goal",
            "build",
            "--eval-workers",
            "1",
            "--eval-memory",
            "200MiB",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "big")[1..3],
        ["FAILED", "evaluate"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains("more than 200 MiB of memory"),
        "{}",
        run.both()
    );
    assert!(run.stdout.contains("eval-memory"), "{}", run.both());
    assert_eq!(row(&run, "small")[1], "ok", "{}", run.both());
}

#[test]
fn a_host_is_activated_while_another_is_still_being_evaluated() {
    let mut lab = fleet_lab(&["fast", "slow"]);
    let fast = SystemSpec {
        activation: Activation::Barrier(1),
        ..SystemSpec::default()
    };
    lab.set_system("fast", fast).expect("flake");
    // slow's evaluation ends only once fast has been activated.
    let wait = Evaluation::AfterActivations {
        count: 1,
        token: token(),
    };
    lab.set_system("slow", with(wait)).expect("flake");
    let run = apply(&lab, &["--all", "--eval-workers", "2"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "fast")[1], "ok", "{}", run.both());
    assert_eq!(row(&run, "slow")[1], "ok", "{}", run.both());
}

/// A fleet of `hosts` hosts whose configurations all build one tiny system, in a directory of
/// its own; its `fleet.toml`.
fn big_fleet(dir: &std::path::Path, hosts: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("flake")).expect("mkdir");
    let system = format!("{}-linux", std::env::consts::ARCH);
    let flake = format!(
        "{{ outputs = {{ self }}: let toplevel = derivation {{ name = \"eval-scale-toy\"; \
         system = \"{system}\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo toy > $out\" ]; }}; \
         in {{ nixosConfigurations = builtins.listToAttrs (builtins.genList (i: {{ \
         name = \"host-${{toString i}}\"; value = {{ config.system.build.toplevel = toplevel; }}; \
         }}) {hosts}); }}; }}\n"
    );
    std::fs::write(dir.join("flake/flake.nix"), flake).expect("flake written");
    let mut fleet = format!(
        "[fleet]\nflake = \"path:{}\"\n\n[ssh]\nknown-hosts = \"{}\"\n",
        dir.join("flake").display(),
        dir.join("known_hosts").display()
    );
    for i in 0..hosts {
        fleet.push_str(&format!(
            "\n[hosts.host-{i}]\naddress = \"10.{}.{}.{}\"\n",
            i / 65536,
            i / 256 % 256,
            i % 256
        ));
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, fleet).expect("fleet written");
    path
}

#[test]
fn five_thousand_hosts_evaluate() {
    let dir = crate::support::Scratch::fresh("hbdeploy-eval-scale").expect("scratch");
    let fleet = big_fleet(&dir, 5000);
    let run = hbdeploy_lab::hbdeploy(
        crate::support::bin(),
        Some(&fleet),
        &["apply", "--all", "--goal", "build", "--json"],
    )
    .expect("hbdeploy runs");
    drop(dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    let hosts = json["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 5000);
    let paths: std::collections::BTreeSet<&str> = hosts
        .iter()
        .map(|h| h["new_path"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(paths.len(), 1, "one shared system: {paths:?}");
}
