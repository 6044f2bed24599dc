//! Ctrl-C during a deployment against the lab (issue 4), continued from `safety`: one Ctrl-C
//! lets running activations finish and starts nothing new; a second one exits at once and the
//! activations already started still complete on the hosts.

use std::path::Path;
use std::time::Duration;

use crate::support::lab::{Watched, deployed, running, signal, spec, wait_until};
use crate::support::{HBDEPLOY, host, row};
use hbdeploy_lab::{Activation, Lab};

#[test]
fn ctrl_c_lets_running_activations_finish_and_starts_nothing_new() {
    let mut lab = deployed(&["a", "b", "c", "d"]);
    for name in ["a", "b", "c", "d"] {
        lab.set_system(name, spec(2, Activation::Gate))
            .expect("flake");
    }
    let before: Vec<String> = ["a", "b", "c", "d"].map(|n| running(&lab, n)).to_vec();
    let apply = Watched::spawn(&lab, &["apply", "--all", "--parallel", "2"]);
    let activating = || {
        ["a", "b", "c", "d"]
            .iter()
            .filter(|n| host(&lab, n).activations().expect("read").len() == 2)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || activating() == 2),
        "two hosts never started activating"
    );
    signal("INT", apply.pid());
    // Read stderr as it comes, to know when hbdeploy has taken the interrupt in.
    apply.wait_for_line("interrupted: starting nothing new", Duration::from_secs(30));
    // Only now may the two running activations finish.
    lab.open_gate().expect("gate");
    let run = apply.finish();
    assert_eq!(run.code, 130, "{}", run.both());
    assert!(
        run.stderr.contains("interrupted: starting nothing new"),
        "{}",
        run.both()
    );

    let mut finished = 0;
    for (name, old) in ["a", "b", "c", "d"].iter().zip(&before) {
        let cells = row(&run, name);
        let h = host(&lab, name);
        let now = running(&lab, name);
        // Every host is on its old or its new generation, consistent with the report.
        assert_eq!(
            h.profile_system().expect("read"),
            Some(now.clone()),
            "{name}"
        );
        match cells[1].as_str() {
            "ok" => {
                finished += 1;
                assert_ne!(&now, old, "{name} reported ok but runs the old system");
            }
            "interrupted" => {
                assert_eq!(&now, old, "{name} reported interrupted but changed");
                assert_eq!(
                    h.activations().expect("read").len(),
                    1,
                    "{name} was activated"
                );
            }
            other => panic!("{name}: unexpected result {other}\n{}", run.both()),
        }
    }
    assert_eq!(finished, 2, "{}", run.both());
    assert!(
        run.stdout
            .contains("4 hosts: 2 succeeded, 0 failed, 2 interrupted"),
        "{}",
        run.both()
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_started_activations_still_complete() {
    let mut lab = Lab::start(&["a", "b"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    for name in ["a", "b"] {
        lab.set_system(name, spec(1, Activation::Gate))
            .expect("flake");
    }
    let child = lab
        .spawn_hbdeploy(Path::new(HBDEPLOY), &["apply", "--all"])
        .expect("start apply");
    let started = || {
        ["a", "b"]
            .iter()
            .all(|n| host(&lab, n).activations().expect("read").len() == 1)
    };
    assert!(
        wait_until(Duration::from_secs(60), started),
        "activations never started"
    );
    for _ in 0..2 {
        signal("INT", child.id());
        std::thread::sleep(Duration::from_millis(300));
    }
    let run = hbdeploy_lab::finish(child).expect("apply ends");
    assert_eq!(run.code, 130, "{}", run.both());
    assert!(
        run.stderr.contains("interrupted again: exiting now"),
        "{}",
        run.both()
    );
    // The deployer is gone; the activations it started were detached on the hosts and finish
    // once they may: each host ends with its profile and its running system on the new one.
    lab.open_gate().expect("gate");
    for name in ["a", "b"] {
        let h = host(&lab, name);
        assert!(
            wait_until(Duration::from_secs(60), || h
                .current_system()
                .expect("read")
                .is_some()),
            "{name} never finished activating"
        );
        assert_eq!(
            h.profile_system().expect("read"),
            h.current_system().expect("read")
        );
    }
}
