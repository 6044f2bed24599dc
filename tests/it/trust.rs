//! SSH trust and access against the lab (issue 5): pinned keys, known_hosts as OpenSSH writes
//! it (hashed, `[host]:port`, `@revoked`), one trust stack (`nix copy` rides the checked
//! connection and never runs OpenSSH), jump hosts, agent authentication, and a frozen host.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::trust::{fleet, host_key};
use crate::support::{SshAgent, hbdeploy, host, row};
use hbdeploy_lab::Lab;

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
    let run =
        crate::support::hbdeploy_with_env(&lab, &["apply", "--all"], &[("PATH", path.as_str())]);
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

    let without =
        crate::support::hbdeploy_with_env(&lab, &["apply", "--all"], &[("SSH_AUTH_SOCK", "")]);
    assert_eq!(without.code, 1, "{}", without.both());
    assert!(
        without.stdout.contains("ssh-agent is not usable"),
        "{}",
        without.both()
    );

    let with =
        crate::support::hbdeploy_with_env(&lab, &["apply", "--all"], &[("SSH_AUTH_SOCK", &sock)]);
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
