//! Safe activation under slow, hung and chatty activations and killed deployers (issue 15), on
//! both kinds of lab host: a namespace host without systemd and a host with systemd as PID 1.

use std::time::{Duration, Instant};

use crate::support::lab::{
    activation_started, deployed_once, generation_systems, hbdeploy_units, running, signal, spec,
    wait_until,
};
use crate::support::{HBDEPLOY, hbdeploy, host, row, system_path};
use hbdeploy_lab::{Activation, HostKind, Lab};

/// Both kinds of host, `n` (namespace) and `s` (systemd), running generation 1.
fn both_kinds() -> Lab {
    deployed_once(
        Lab::start_hosts(&[("n", HostKind::Namespace), ("s", HostKind::Systemd)])
            .expect("lab starts"),
    )
}

const BOTH: [&str; 2] = ["n", "s"];

#[test]
fn an_activation_slower_than_confirm_timeout_is_confirmed_not_restored() {
    let mut lab = both_kinds();
    for name in BOTH {
        lab.set_system(name, spec(2, Activation::Slow(6)))
            .expect("flake");
    }
    let new: Vec<String> = BOTH.iter().map(|n| system_path(&lab, n)).collect();
    // The window opens when the activation ends: 6 s of activation fit a 2 s window.
    let run = hbdeploy(&lab, &["apply", "--all", "--confirm-timeout", "2"]);
    assert_eq!(run.code, 0, "{}", run.both());
    // Long past the window as the watchdog would have counted it from arming.
    std::thread::sleep(Duration::from_secs(4));
    for (name, new) in BOTH.iter().zip(&new) {
        assert_eq!(row(&run, name)[1], "ok", "{}", run.both());
        assert_eq!(&running(&lab, name), new, "{name} runs the new system");
        assert_eq!(
            host(&lab, name).profile_system().expect("read").as_ref(),
            Some(new),
            "{name}'s profile points at the new system"
        );
        assert_eq!(generation_systems(&lab, name).len(), 2, "{name}");
    }
    assert_eq!(hbdeploy_units(&lab, "s"), "", "no unit of hbdeploy left");
}

#[test]
fn a_hung_activation_is_stopped_at_activation_timeout_and_restored() {
    let mut lab = both_kinds();
    let before: Vec<String> = BOTH.iter().map(|n| running(&lab, n)).collect();
    for name in BOTH {
        lab.set_system(name, spec(2, Activation::Hang))
            .expect("flake");
    }
    let started = Instant::now();
    let run = hbdeploy(&lab, &["apply", "--all", "--activation-timeout", "4"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded by activation-timeout, not by the hung activation: {:?}",
        started.elapsed()
    );
    for (name, before) in BOTH.iter().zip(&before) {
        assert_eq!(row(&run, name)[1], "rolled-back", "{}", run.both());
        assert_eq!(&running(&lab, name), before, "{name} runs its old system");
        assert_eq!(
            generation_systems(&lab, name),
            [before.as_str()],
            "{name}: the hung generation was removed"
        );
    }
    assert!(
        run.stdout
            .contains("was still running after 4s (activation-timeout) and was stopped"),
        "{}",
        run.both()
    );
    assert_eq!(
        hbdeploy_units(&lab, "s"),
        "",
        "the hung activation was stopped"
    );
}

#[test]
fn without_magic_rollback_the_deployer_stops_a_hung_activation_and_restores() {
    let mut lab = deployed_once(Lab::start(&["h"]).expect("lab starts"));
    let before = running(&lab, "h");
    lab.set_system("h", spec(2, Activation::Hang))
        .expect("flake");
    let run = hbdeploy(
        &lab,
        &[
            "apply",
            "--all",
            "--no-magic-rollback",
            "--activation-timeout",
            "3",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "h")[1], "rolled-back", "{}", run.both());
    assert!(
        run.stderr.contains("still running after 3s: stopping it"),
        "{}",
        run.both()
    );
    assert_eq!(running(&lab, "h"), before);
    assert_eq!(generation_systems(&lab, "h"), [before]);
}

#[test]
fn a_killed_deployers_watchdog_never_undoes_the_next_deployment() {
    let mut lab = both_kinds();
    for name in BOTH {
        lab.set_system(name, spec(2, Activation::Gate))
            .expect("flake");
    }
    let second: Vec<String> = BOTH.iter().map(|n| system_path(&lab, n)).collect();
    // Deployer A arms its watchdogs (6 s to confirm), starts the activations and is killed.
    let mut a = lab
        .spawn_hbdeploy(
            std::path::Path::new(HBDEPLOY),
            &["apply", "--all", "--confirm-timeout", "6"],
        )
        .expect("start A");
    for (name, system) in BOTH.iter().zip(&second) {
        assert!(activation_started(&lab, name, system), "{name}");
    }
    signal("KILL", a.id());
    let _ = a.wait();
    lab.open_gate().expect("gate");
    for (name, system) in BOTH.iter().zip(&second) {
        assert!(
            wait_until(Duration::from_secs(30), || &running(&lab, name) == system),
            "{name}'s activation finished"
        );
    }

    // Deployer B deploys generation 3 while A's watchdogs still wait for a confirmation.
    for name in BOTH {
        lab.set_system(name, spec(3, Activation::Succeed))
            .expect("flake");
    }
    let third: Vec<String> = BOTH.iter().map(|n| system_path(&lab, n)).collect();
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stderr.contains("its activation had succeeded") && run.stderr.contains("confirmed it"),
        "B says it adopted A's deployments: {}",
        run.both()
    );
    for name in BOTH {
        // And the report says so too, after the table.
        assert!(
            run.stdout
                .contains(&format!("{name}: before this run: an earlier deployment (")),
            "{}",
            run.both()
        );
    }
    // Past A's window: no watchdog of A acts.
    std::thread::sleep(Duration::from_secs(9));
    for ((name, second), third) in BOTH.iter().zip(&second).zip(&third) {
        assert_eq!(&running(&lab, name), third, "{name} stays on B's system");
        assert_eq!(
            host(&lab, name).profile_system().expect("read").as_ref(),
            Some(third)
        );
        let generations = generation_systems(&lab, name);
        assert_eq!(generations[1..], [second.clone(), third.clone()], "{name}");
    }
    assert_eq!(hbdeploy_units(&lab, "s"), "", "no unit of hbdeploy left");
}

#[test]
fn a_flood_of_activation_output_keeps_host_files_and_deployer_memory_small() {
    let mut lab = both_kinds();
    // hbdeploy's peak memory for an activation that prints `mib` MiB on each host.
    let mut peak_for = |generation: u32, mib: u32| {
        for name in BOTH {
            lab.set_system(name, spec(generation, Activation::Chatty(mib)))
                .expect("flake");
        }
        let measured = hbdeploy_lab::bench::measure(
            &mut lab.hbdeploy_command(std::path::Path::new(HBDEPLOY), &["apply", "--all"]),
            Some("hbdeploy"),
        )
        .expect("hbdeploy runs");
        assert_eq!(measured.code, 0, "{}\n{}", measured.stdout, measured.stderr);
        measured.peak_rss_kib.expect("sampled") / 1024
    };
    let small = peak_for(2, 16);
    let flood = peak_for(3, 200);
    // What hbdeploy keeps of a command's output is bounded (a tail, at most 8 MiB of stdout, at
    // most 4096 lines waiting for the UI): 12 times the output costs no more memory.
    assert!(
        flood <= small + 8 && flood < 64,
        "peak RSS {small} MiB with 2 x 16 MiB of output, {flood} MiB with 2 x 200 MiB"
    );
    for name in BOTH {
        let kib: u64 = host(&lab, name)
            .sh("du -sk /run/hbdeploy | cut -f1")
            .expect("du")
            .trim()
            .parse()
            .expect("a number");
        assert!(kib < 2048, "{name}: /run/hbdeploy holds {kib} KiB");
    }
    // And the next deployment works.
    for name in BOTH {
        lab.set_system(name, spec(4, Activation::Succeed))
            .expect("flake");
    }
    let next = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(next.code, 0, "{}", next.both());
}

#[test]
fn after_a_cut_session_the_host_is_read_and_checked_over_a_new_connection() {
    let mut lab = Lab::start_hosts(&[("n", HostKind::Namespace), ("s", HostKind::Systemd)])
        .expect("lab starts");
    // The check fails on a system of generation 4 only.
    let check = "\n[[health]]\ncommand = \"readlink /run/current-system | grep -qv toy-4\"\n\
                 timeout = 5\nretries = 1\n";
    lab.write_fleet(&[], check).expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());

    for name in BOTH {
        lab.set_system(name, spec(2, Activation::CutSessions))
            .expect("flake");
    }
    let run = hbdeploy(&lab, &["apply", "--all", "--json"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    for (i, name) in BOTH.iter().enumerate() {
        let host = &json["hosts"][i];
        assert_eq!(host["host"], *name);
        assert_eq!(host["outcome"], "succeeded", "{}", run.both());
        assert_eq!(
            host["generation"],
            2,
            "read again after the cut: {}",
            run.both()
        );
    }
    assert!(
        run.stderr
            .contains("confirming over a new connection once the activation"),
        "the session was cut: {}",
        run.both()
    );

    // Generation 4 cuts the session too, and fails its check: the check still runs, over a
    // new connection, and the host goes back to generation 3 (which cuts nothing).
    for name in BOTH {
        lab.set_system(name, spec(3, Activation::Succeed))
            .expect("flake");
    }
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let third: Vec<String> = BOTH.iter().map(|n| running(&lab, n)).collect();
    for name in BOTH {
        lab.set_system(name, spec(4, Activation::CutSessions))
            .expect("flake");
    }
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    for (name, third) in BOTH.iter().zip(&third) {
        assert_eq!(
            row(&run, name)[1..3],
            ["rolled-back", "check"],
            "{}",
            run.both()
        );
        assert_eq!(
            &running(&lab, name),
            third,
            "{name} is back on generation 3"
        );
    }
}

#[test]
fn without_magic_rollback_a_cut_session_is_followed_to_its_end_over_a_new_connection() {
    let mut lab = both_kinds();
    for name in BOTH {
        lab.set_system(name, spec(2, Activation::CutSessions))
            .expect("flake");
    }
    let new: Vec<String> = BOTH.iter().map(|n| system_path(&lab, n)).collect();
    let run = hbdeploy(&lab, &["apply", "--all", "--no-magic-rollback"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stderr
            .contains("reconnecting to follow the activation to its end"),
        "the session was cut: {}",
        run.both()
    );
    for (name, new) in BOTH.iter().zip(&new) {
        let row = row(&run, name);
        assert_eq!(
            (row[1].as_str(), row[4].as_str()),
            ("ok", "2"),
            "{}",
            run.both()
        );
        assert_eq!(&running(&lab, name), new);
    }
}
