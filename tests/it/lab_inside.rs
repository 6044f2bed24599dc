//! The lab running programs inside its hosts (`Lab::inside`), as root and as a lab user with a
//! sudo password, on both kinds of host: what a test of hbdeploy deploying the host it runs on
//! (`address = "local"`) stands on. Each check is of a real effect: a system built by the host's
//! own nix into its own store, the uid, a sudo password typed on a terminal, the container's
//! systemd reached.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{bin, host, system_path};
use hbdeploy_lab::{HostKind, Lab, LabError, LabUser, Sudo, SystemSpec};

const PASSWORD: &str = "s3cret-inside";

/// A lab of one host `box` of `kind` with the user `deploy`, whose sudo wants `PASSWORD` and
/// whom the host's nix does not trust.
fn lab_of(kind: HostKind) -> Lab {
    let mut lab = Lab::start_hosts(&[("box", kind)]).expect("lab starts");
    lab.add_user(&LabUser {
        name: "deploy".to_owned(),
        sudo: Sudo::Password(PASSWORD.to_owned()),
        trusted: false,
    })
    .expect("user added");
    lab
}

/// A generation no other lab builds: its system's store paths are new to every store on the
/// machine, so one valid in a store was built there.
fn fresh_generation() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    1000 + nanos % 1_000_000_000
}

/// Whether `path` is valid in this machine's own nix store.
fn in_machine_store(path: &str) -> bool {
    std::process::Command::new("nix-store")
        .args(["--check-validity", path])
        .output()
        .expect("nix-store runs")
        .status
        .success()
}

/// Builds `box`'s toplevel, of a fresh generation, with nix inside the host as `user`, and
/// checks that the host's own store has it and the machine's does not.
fn builds_into_the_hosts_store(lab: &mut Lab, user: Option<&str>) {
    lab.set_system(
        "box",
        SystemSpec {
            generation: fresh_generation(),
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    let expected = system_path(lab, "box");
    let box_ = host(lab, "box");
    assert!(
        !box_.has_store_path(&expected).expect("query"),
        "not built yet"
    );

    let inside = lab.inside("box", user).expect("inside");
    let toplevel = lab.toplevel_ref("box");
    let run = inside
        .run(&["nix", "build", "--no-link", "--json", &toplevel])
        .expect("nix runs");
    assert_eq!(run.code, 0, "{user:?}: {}", run.both());
    // nix 2.8 (Debian's) has no --print-out-paths.
    let built: serde_json::Value = serde_json::from_str(&run.stdout).expect("nix's JSON");
    assert_eq!(
        built[0]["outputs"]["out"],
        expected.as_str(),
        "{user:?}: {}",
        run.both()
    );
    assert!(box_.has_store_path(&expected).expect("query"), "{user:?}");
    assert!(!in_machine_store(&expected), "{user:?}: built in the host");
}

/// What every kind of host must allow: builds as root and as the user, the user's uid and
/// environment, hbdeploy reachable by both, the user's sudo with its password on a terminal.
fn works_inside(kind: HostKind) -> Lab {
    let mut lab = lab_of(kind);
    builds_into_the_hosts_store(&mut lab, None);
    builds_into_the_hosts_store(&mut lab, Some("deploy"));

    let root = lab.inside("box", None).expect("inside as root");
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let id = root.run(&["id", "-u"]).expect("id");
    assert_eq!((id.code, id.stdout.as_str()), (0, "0\n"), "{}", id.both());
    let script = "id -u; id -un; echo \"$HOME\"; pwd; hostname; echo \"$NIX_CONFIG\" | head -1";
    let id = user.run(&["sh", "-c", script]).expect("id");
    assert_eq!(id.code, 0, "{}", id.both());
    let home = user.home();
    let lines: Vec<&str> = id.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "1500",
            "deploy",
            home.as_str(),
            home.as_str(),
            "box",
            "experimental-features = nix-command flakes"
        ],
        "{}",
        id.both()
    );

    for inside in [&root, &user] {
        let version = inside
            .hbdeploy(bin(), None, &["--version"])
            .expect("hbdeploy runs");
        assert_eq!(version.code, 0, "{:?}: {}", inside.user(), version.both());
        assert!(
            version.stdout.starts_with("hbdeploy "),
            "{:?}: {}",
            inside.user(),
            version.both()
        );
    }

    // hbdeploy's own nix builds into the host's store too, as the user. (`address` is any: `build`
    // contacts no host.)
    lab.set_system(
        "box",
        SystemSpec {
            generation: fresh_generation(),
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    let expected = system_path(&lab, "box");
    let fleet = format!(
        "[fleet]\nflake = \"{}\"\n\n[hosts.self]\naddress = \"127.0.0.1\"\nattr = \"box\"\n",
        lab.flake_ref()
    );
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let built = user
        .hbdeploy(
            bin(),
            Some(&fleet),
            &["build", "self", "--systems-out", "systems.json"],
        )
        .expect("hbdeploy runs");
    assert_eq!(built.code, 0, "{}", built.both());
    // Written in the user's home, the working directory.
    let systems = user.run(&["cat", "systems.json"]).expect("cat");
    assert!(systems.stdout.contains(&expected), "{}", systems.both());
    assert!(host(&lab, "box").has_store_path(&expected).expect("query"));
    assert!(!in_machine_store(&expected), "built in the host");

    // The password typed at sudo's prompt lets the user run as root; `-k` forgets any earlier
    // one, so the prompt must come.
    let prompt = "[sudo] password for deploy: ";
    let sudo = user
        .on_a_terminal(&["sh", "-c", "sudo -k; sudo id -u"], prompt, &[PASSWORD])
        .expect("runs on a terminal");
    assert_eq!(sudo.code, 0, "{}", sudo.both());
    assert!(sudo.stdout.contains(prompt), "{}", sudo.both());
    assert_eq!(sudo.stdout.lines().last(), Some("0"), "{}", sudo.both());
    let wrong = ["not-it"; 3];
    let refused = user
        .on_a_terminal(&["sh", "-c", "sudo -k; sudo id -u"], prompt, &wrong)
        .expect("runs on a terminal");
    assert_ne!(refused.code, 0, "{}", refused.both());
    lab
}

#[test]
fn a_namespace_host_runs_programs_inside_as_root_and_as_a_sudo_user() {
    let lab = works_inside(HostKind::Namespace);
    assert!(matches!(
        lab.inside("box", Some("nobody")),
        Err(LabError::NoSuchUser { .. })
    ));
}

#[test]
fn a_systemd_host_runs_programs_inside_that_reach_its_systemd() {
    let lab = works_inside(HostKind::Systemd);
    let root = lab.inside("box", None).expect("inside as root");
    let state = root
        .run(&["systemctl", "is-system-running"])
        .expect("systemctl runs");
    assert!(
        ["running\n", "degraded\n"].contains(&state.stdout.as_str()),
        "{}",
        state.both()
    );
    // A transient unit of the container's systemd, as hbdeploy's activation is launched: its
    // mark is in the container's /run, which the machine does not see.
    let unit = root
        .run(&[
            "systemd-run",
            "--wait",
            "--quiet",
            "--collect",
            "/bin/sh",
            "-c",
            "echo $INVOCATION_ID > /run/lab-inside-mark",
        ])
        .expect("systemd-run runs");
    assert_eq!(unit.code, 0, "{}", unit.both());
    let mark = host(&lab, "box")
        .sh("cat /run/lab-inside-mark")
        .expect("mark");
    assert_eq!(mark.trim().len(), 32, "an invocation id: {mark:?}");

    // The user reaches it through sudo, as a deployer that is not root would.
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let through_sudo = user
        .on_a_terminal(
            &[
                "sh",
                "-c",
                "sudo -k; sudo systemd-run --wait --quiet --collect true && echo unit-ran",
            ],
            "[sudo] password for deploy: ",
            &[PASSWORD],
        )
        .expect("runs on a terminal");
    assert_eq!(through_sudo.code, 0, "{}", through_sudo.both());
    assert_eq!(
        through_sudo.stdout.lines().last(),
        Some("unit-ran"),
        "{}",
        through_sudo.both()
    );
}
