//! Closures the size of a real NixOS system's: thousands of store paths. What hbdeploy asks a
//! host about them travels on the channel's input, never on its command line, which the host's
//! kernel caps at 128 KiB for one argument (sshd hands the whole command to the login shell as
//! one), about 2000 store paths.

use crate::support::{hbdeploy, host, system_path};
use hbdeploy_lab::{Lab, SystemSpec};

/// Store paths beyond the toy's own: their names alone come to more than 128 KiB.
const EXTRA: u32 = 2500;

#[test]
fn a_closure_of_thousands_of_paths_is_copied_and_checked() {
    copied_and_checked(Lab::start(&["large1"]).expect("lab"));
}

/// The same on a host running systemd, whose login is the one real NixOS hosts have (PAM, the
/// login shell).
#[test]
fn a_closure_of_thousands_of_paths_is_copied_and_checked_on_a_systemd_host() {
    copied_and_checked(Lab::start_systemd(&["large1"]).expect("systemd lab starts"));
}

fn copied_and_checked(mut lab: Lab) {
    lab.set_system(
        "large1",
        SystemSpec {
            extra_paths: EXTRA,
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    lab.write_fleet(&[], "").expect("fleet");
    let path = system_path(&lab, "large1");
    // The toplevel, its payload, its etc tree, the list of extras and the extras.
    let total = EXTRA + 4;

    // Cold: the host lacks the system, and counts what it lacks.
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stderr
            .contains(&format!("[large1] copied {total} of {total} paths")),
        "{}",
        run.both()
    );
    let h = host(&lab, "large1");
    assert_eq!(h.current_system().expect("read"), Some(path.clone()));

    // The host has the system: its store checks every path of the closure.
    let run = hbdeploy(&lab, &["apply", "--all", "--reactivate"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stderr
            .contains(&format!("[large1] copied 0 of {total} paths")),
        "{}",
        run.both()
    );
}
