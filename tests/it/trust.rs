//! SSH trust and access against the lab (issue 5): pinned keys, known_hosts as OpenSSH writes
//! it (hashed, `[host]:port`, `@revoked`), one trust stack (`nix copy` rides the checked
//! connection and never runs OpenSSH), jump hosts, agent authentication, and a frozen host.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{HBDEPLOY, SshAgent, hbdeploy, host, row};
use hbdeploy_lab::{Lab, SSH_PORT};

/// The host key of `name` as the lab's known_hosts file lists it: `TYPE BASE64`.
fn host_key(lab: &Lab, name: &str) -> String {
    let address = host(lab, name).address;
    let text = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("[{address}]:{SSH_PORT} ")))
        .expect("host listed");
    line.split_whitespace()
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the lab's fleet with `known-hosts` pointing at `known_hosts` and `host_lines` added to
/// the host tables (`(host, line)`).
fn fleet(lab: &Lab, known_hosts: &Path, host_lines: &[(&str, String)]) {
    let mut text = lab.fleet_toml(&[], "").replace(
        &format!("known-hosts = \"{}\"", lab.known_hosts().display()),
        &format!("known-hosts = \"{}\"", known_hosts.display()),
    );
    for (name, line) in host_lines {
        text = text.replace(
            &format!("[hosts.{name}]\n"),
            &format!("[hosts.{name}]\n{line}\n"),
        );
    }
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("write fleet");
}

#[test]
fn pinned_keys_are_trusted_and_a_wrong_pin_refused() {
    let lab = Lab::start(&["pinned", "wrong"]).expect("lab");
    let empty = lab.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let pinned = host_key(&lab, "pinned");
    fleet(
        &lab,
        &empty,
        &[
            ("pinned", format!("host-key = \"{pinned}\"")),
            // The other host's key: wrong for this host.
            ("wrong", format!("host-key = [\"{pinned}\"]")),
        ],
    );
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    // Copied (over the connection that checked the pin) and activated.
    assert_eq!(row(&run, "pinned")[1], "ok", "{}", run.both());
    assert_eq!(row(&run, "pinned")[5], "3/3", "{}", run.both());
    assert_eq!(
        row(&run, "wrong")[1..3],
        ["FAILED", "connect"],
        "{}",
        run.both()
    );
    assert!(run.stdout.contains("HOST KEY MISMATCH"), "{}", run.both());
    assert!(host(&lab, "wrong").store_entries().expect("ls").is_empty());
    assert_eq!(host(&lab, "wrong").accepted_logins(), 0);
}

#[test]
fn hashed_known_hosts_are_accepted_and_revoked_keys_refused() {
    let lab = Lab::start(&["hashed", "revoked"]).expect("lab");
    let hashed = lab.dir().join("hashed_known_hosts");
    std::fs::copy(lab.known_hosts(), &hashed).expect("copy");
    let status = Command::new("ssh-keygen")
        .args(["-H", "-f"])
        .arg(&hashed)
        .output()
        .expect("ssh-keygen");
    assert!(status.status.success());
    let text = std::fs::read_to_string(&hashed).expect("read");
    assert!(text.lines().all(|l| l.starts_with("|1|")), "{text}");
    let revoked_key = host_key(&lab, "revoked");
    std::fs::write(&hashed, format!("{text}@revoked * {revoked_key}\n")).expect("write");
    fleet(&lab, &hashed, &[]);

    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "hashed")[1],
        "ok",
        "hashed names are read: {}",
        run.both()
    );
    assert_eq!(
        row(&run, "revoked")[1..3],
        ["FAILED", "connect"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains("which ") && run.stdout.contains("marks @revoked"),
        "{}",
        run.both()
    );
    assert_eq!(host(&lab, "revoked").accepted_logins(), 0);
}

#[test]
fn nix_copy_rides_the_connection_and_never_runs_openssh() {
    // Issue 16: one SSH stack. An OpenSSH `ssh` first on PATH that only records that it ran
    // (and fails) must never run: nix copy's `ssh` is hbdeploy standing in, on the one russh
    // connection, so each host sees one login and no second handshake.
    let lab = Lab::start(&["a", "b"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    let bin = lab.dir().join("fake-openssh");
    std::fs::create_dir_all(&bin).expect("dir");
    let marker = lab.dir().join("openssh-ran");
    let fake = bin.join("ssh");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> {}\nexit 255\n", marker.display()),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = lab
        .hbdeploy_with_env(
            Path::new(HBDEPLOY),
            &["apply", "--all"],
            &[("PATH", path.as_str())],
        )
        .expect("runs");
    assert_eq!(run.code, 0, "{}", run.both());
    for name in ["a", "b"] {
        assert_eq!(row(&run, name)[5], "3/3", "{}", run.both());
        assert_eq!(host(&lab, name).accepted_logins(), 1, "{}", run.both());
    }
    assert!(
        !marker.exists(),
        "OpenSSH ran: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
}

#[test]
fn the_ssh_agent_authenticates_when_no_identity_file_is_set() {
    let lab = Lab::start(&["server"]).expect("lab");
    let agent = SshAgent::start(lab.dir());
    let sock = agent.socket.clone();
    let added = Command::new("ssh-add")
        .arg(lab.identity_file())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let text = lab.fleet_toml(&[], "").replace(
        &format!("identity-file = \"{}\"\n", lab.identity_file().display()),
        "",
    );
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("write");

    let without = lab
        .hbdeploy_with_env(
            Path::new(HBDEPLOY),
            &["apply", "--all"],
            &[("SSH_AUTH_SOCK", "")],
        )
        .expect("run");
    assert_eq!(without.code, 1, "{}", without.both());
    assert!(
        without.stdout.contains("ssh-agent is not usable"),
        "{}",
        without.both()
    );

    let with = lab
        .hbdeploy_with_env(
            Path::new(HBDEPLOY),
            &["apply", "--all"],
            &[("SSH_AUTH_SOCK", &sock)],
        )
        .expect("run");
    assert_eq!(with.code, 0, "{}", with.both());
    assert!(
        host(&lab, "server")
            .current_system()
            .expect("read")
            .is_some()
    );
}

#[test]
fn a_frozen_host_fails_within_the_timeout_while_the_others_finish() {
    let lab = Lab::start(&["frozen", "fine"]).expect("lab");
    let text = lab
        .fleet_toml(&[], "")
        .replace("connect-timeout = 5", "connect-timeout = 2");
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("write");
    let pid = host(&lab, "frozen").sshd_pid().expect("sshd pid");
    let stop = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(stop.success());
    struct Thaw(u32);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }
    let _thaw = Thaw(pid);
    let started = Instant::now();
    let run = hbdeploy(&lab, &["apply", "--all"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "frozen")[1..3],
        ["FAILED", "connect"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains("within 2s (connect-timeout)"),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "fine")[1], "ok", "{}", run.both());
    // Bounded by the timeout, not by the frozen host (a hang guard, not a speed target).
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

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
