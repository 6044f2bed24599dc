//! Hosts are connected to while their systems are still being evaluated and built, so the
//! handshake overlaps nix's work; nothing runs on a host before its system is built.

use std::time::{Duration, Instant};

use hbdeploy_lab::{Evaluation, SystemSpec};

use crate::support::lab::Watched;
use crate::support::{fleet_lab, host, row, token};

#[test]
fn a_host_is_logged_in_to_while_its_system_is_evaluated_and_that_connection_deploys_it() {
    let mut lab = fleet_lab(&["early"]);
    let token = token();
    let held = SystemSpec {
        evaluation: Evaluation::UntilReleased { token },
        ..SystemSpec::default()
    };
    lab.set_system("early", held).expect("flake");
    let watched = Watched::spawn(&lab, &["apply", "early"]);
    let early = host(&lab, "early");
    // The evaluation waits for the test: whatever reaches the host now came before its system.
    let deadline = Instant::now() + Duration::from_secs(30);
    while early.accepted_logins() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (logins, sessions) = (early.accepted_logins(), early.sessions_started());
    lab.release_evaluations(token).expect("evaluation let go");
    let run = watched.finish();
    assert_eq!(logins, 1, "no login while evaluating:\n{}", run.both());
    assert_eq!(sessions, 0, "a command ran before the system was built");
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "early")[1], "ok", "{}", run.both());
    // A first deployment has nothing to confirm against (no previous generation): the early
    // connection was the deployment's only one.
    assert_eq!(early.accepted_logins(), 1, "{}", run.both());
    assert!(early.sessions_started() > 0);
}
