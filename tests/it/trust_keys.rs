//! SSH trust against the lab, continued from `trust`: `keyscan` pinning keys into fleet.toml,
//! `--accept-new` learning unknown keys only, hostile values in fleet.toml and on the command line
//! never executed, and a host reached through its jump host with one connection.

use crate::support::trust::{fleet, host_key};
use crate::support::{hbdeploy, host, row};
use hbdeploy_lab::{Lab, SSH_PORT};

#[test]
fn keyscan_shows_the_keys_and_pins_them_into_fleet_toml() {
    let lab = Lab::start(&["first", "second"]).expect("lab");
    let empty = lab.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    fleet(&lab, &empty, &[]);
    let scan = hbdeploy(&lab, &["keyscan"]);
    assert_eq!(scan.code, 0, "{}", scan.both());
    for name in ["first", "second"] {
        let line = format!(
            "[{}]:{SSH_PORT} {}",
            host(&lab, name).address,
            host_key(&lab, name)
        );
        assert!(
            scan.stdout.lines().any(|l| l == line),
            "{line}\n{}",
            scan.both()
        );
    }
    // Scanning trusted nothing and logged in nowhere.
    assert_eq!(std::fs::read_to_string(&empty).expect("read"), "");
    assert_eq!(host(&lab, "first").accepted_logins(), 0);

    let unknown = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(
        unknown.code,
        1,
        "unknown keys are refused: {}",
        unknown.both()
    );

    let pinned = hbdeploy(&lab, &["keyscan", "--pin"]);
    assert_eq!(pinned.code, 0, "{}", pinned.both());
    let text = std::fs::read_to_string(lab.dir().join("fleet.toml")).expect("read");
    assert!(
        text.contains(&format!(
            "[hosts.first]\nhost-key = [\"{}\"]",
            host_key(&lab, "first")
        )),
        "{text}"
    );
    let again = hbdeploy(&lab, &["keyscan", "--pin"]);
    assert_eq!(again.code, 2, "pinning twice is refused: {}", again.both());
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
}

#[test]
fn accept_new_learns_unknown_keys_only() {
    let lab = Lab::start(&["fresh", "changed"]).expect("lab");
    let known = lab.dir().join("partial_known_hosts");
    let changed = host(&lab, "changed").address;
    // `changed` is listed with fresh's key: a changed key, which accept-new must still refuse.
    std::fs::write(
        &known,
        format!("[{changed}]:{SSH_PORT} {}\n", host_key(&lab, "fresh")),
    )
    .expect("write");
    fleet(&lab, &known, &[]);
    let run = hbdeploy(&lab, &["apply", "--all", "--accept-new"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "fresh")[1], "ok", "{}", run.both());
    assert_eq!(
        row(&run, "changed")[1..3],
        ["FAILED", "connect"],
        "{}",
        run.both()
    );
    assert!(run.stdout.contains("HOST KEY CHANGED"), "{}", run.both());
    let text = std::fs::read_to_string(&known).expect("read");
    let fresh = host(&lab, "fresh").address;
    assert!(
        text.contains(&format!("[{fresh}]:{SSH_PORT} {}", host_key(&lab, "fresh"))),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn hostile_values_in_fleet_toml_and_on_the_command_line_are_never_executed() {
    let lab = Lab::start(&["victim"]).expect("lab");
    let marker = lab.dir().join("pwned");
    let m = marker.display();
    let hostile = [
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("x;touch${{IFS}}{m}"),
        format!("x'$(touch${{IFS}}{m})'"),
    ];
    for evil in &hostile {
        // As the user, the identity file, the attribute, and (where the inventory lets it
        // through) the address.
        let evil_toml = evil.replace('\\', "\\\\").replace('"', "\\\"");
        for line in [
            format!("user = \"{evil_toml}\""),
            format!("identity-file = \"/tmp/{}\"", evil_toml.replace('/', "_")),
            format!("attr = \"{evil_toml}\""),
            format!("address = \"{evil_toml}\""),
        ] {
            let text = lab
                .fleet_toml(&[], "")
                .replace("[hosts.victim]\n", &format!("[hosts.victim]\n{line}\n"))
                // A later `address` wins in the table we built: drop the lab's own when replaced.
                .replace(
                    &format!("{line}\naddress = "),
                    &format!("{line}\nlab-address = "),
                );
            let text = if line.starts_with("address") {
                text.lines()
                    .filter(|l| !l.starts_with("lab-address = "))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                text.replace("lab-address = ", "address = ")
            };
            std::fs::write(lab.dir().join("fleet.toml"), text).expect("write");
            let run = hbdeploy(&lab, &["apply", "--all"]);
            assert_ne!(run.code, 0, "{line}: {}", run.both());
            assert!(!marker.exists(), "{line} was executed\n{}", run.both());
        }
        // On the command line, as a host name.
        lab.write_fleet(&[], "").expect("fleet");
        let run = hbdeploy(&lab, &["apply", evil]);
        assert_eq!(run.code, 2, "{}", run.both());
        assert!(!marker.exists(), "{evil} was executed");
    }
    assert!(
        host(&lab, "victim")
            .current_system()
            .expect("read")
            .is_none()
    );
}

#[test]
fn a_host_is_reached_through_its_jump_host_with_one_connection() {
    let lab = Lab::start(&["bastion", "inner", "other"]).expect("lab");
    let bastion = host(&lab, "bastion").address;
    let text = lab
        .fleet_toml(&[], "")
        .replace(
            "[hosts.inner]\n",
            "[hosts.inner]\nproxy-jump = \"bastion\"\n",
        )
        .replace(
            "[hosts.other]\n",
            &format!("[hosts.other]\nproxy-jump = \"root@{bastion}:{SSH_PORT}\"\n"),
        );
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("write");
    let run = hbdeploy(&lab, &["apply", "inner", "other"]);
    assert_eq!(run.code, 0, "{}", run.both());
    for name in ["inner", "other"] {
        assert_eq!(
            row(&run, name)[5],
            "3/3",
            "copied through the jump host: {}",
            run.both()
        );
        assert!(host(&lab, name).current_system().expect("read").is_some());
    }
    // bastion itself was not deployed, yet it carried both hosts' connections: one login each
    // (nix copy rode them), and one on each host behind it.
    assert!(
        host(&lab, "bastion")
            .current_system()
            .expect("read")
            .is_none()
    );
    assert_eq!(host(&lab, "bastion").accepted_logins(), 2, "{}", run.both());
    for name in ["inner", "other"] {
        assert_eq!(host(&lab, name).accepted_logins(), 1, "{}", run.both());
    }
}
