//! Encrypted identity files against the lab: the passphrase is asked once per run on a
//! terminal, and the decrypted key serves every host and every connection; `nix copy` rides
//! that connection (no login of its own, and its relay's directory goes away with the run);
//! without a terminal the run refuses before contacting anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{HBDEPLOY, SshAgent, host, system_path, untouched};
use hbdeploy_lab::{Lab, Run};

const PROMPT: &str = "Enter passphrase for ";

/// A lab whose fleet.toml logs in with a key encrypted with `secret` (and only with it).
fn lab_with_an_encrypted_key(names: &[&str]) -> (Lab, PathBuf) {
    let lab = Lab::start(names).expect("lab");
    let key = lab.encrypted_identity("id_fleet", "secret").expect("key");
    let text = lab.fleet_toml(&[], "").replace(
        &format!("identity-file = \"{}\"", lab.identity_file().display()),
        &format!("identity-file = \"{}\"", key.display()),
    );
    assert!(text.contains(&key.display().to_string()));
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("write fleet");
    (lab, key)
}

/// The temporary directory the runs of a test get (`TMPDIR`), where the relays' directories are
/// made.
fn tmpdir(lab: &Lab) -> PathBuf {
    let dir = lab.dir().join("tmp");
    std::fs::create_dir_all(&dir).expect("tmp");
    dir
}

/// Runs hbdeploy against the lab's fleet on a pseudo-terminal, with `TMPDIR` set and no
/// ssh-agent, typing `answers` at each passphrase prompt.
fn on_a_terminal(lab: &Lab, args: &[&str], answers: &[&str]) -> Run {
    let tmp = format!("TMPDIR={}", tmpdir(lab).display());
    let fleet = lab.dir().join("fleet.toml").display().to_string();
    let mut line = vec!["-u", "SSH_AUTH_SOCK", &tmp, HBDEPLOY, "--fleet", &fleet];
    line.extend(args);
    hbdeploy_lab::hbdeploy_on_a_terminal(Path::new("/usr/bin/env"), None, &line, PROMPT, answers)
        .expect("runs on a terminal")
}

/// The relay directories left in the runs' temporary directory.
fn relay_dirs(lab: &Lab) -> Vec<String> {
    std::fs::read_dir(tmpdir(lab))
        .expect("tmp")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("hbdeploy-relay-"))
        .collect()
}

/// The SHA256 fingerprint of the public key `key.pub`, as sshd logs it.
fn fingerprint(key: &Path) -> String {
    crate::support::fingerprint(Path::new(&format!("{}.pub", key.display())))
}

/// The public keys a host's sshd accepted logins with.
fn accepted_with(lab: &Lab, name: &str) -> Vec<String> {
    std::fs::read_to_string(host(lab, name).dir.join("state/sshd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// Whether `host` runs, as its system profile and current system, what the flake builds now,
/// with the closure in its own store.
fn deployed(lab: &Lab, name: &str) -> bool {
    let system = system_path(lab, name);
    let h = host(lab, name);
    h.has_store_path(&system).expect("read")
        && h.current_system().expect("read").as_deref() == Some(system.as_str())
        && h.profile_system().expect("read").as_deref() == Some(system.as_str())
}

#[test]
fn a_cold_apply_asks_once_and_the_key_serves_every_host_with_one_login() {
    let names = ["desktop", "laptop", "server"];
    let (lab, key) = lab_with_an_encrypted_key(&names);
    let run = on_a_terminal(&lab, &["apply", "--all"], &["secret"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout.matches(PROMPT).count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("{PROMPT}{}: ", key.display())),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("secret"), "the passphrase was shown");
    assert!(
        run.stdout.contains("3 hosts: 3 succeeded, 0 failed"),
        "{}",
        run.stdout
    );
    let fleet_key = fingerprint(&key);
    for name in names {
        assert!(deployed(&lab, name), "{name} not deployed\n{}", run.stdout);
        // One login, with the encrypted key: nix copy rode hbdeploy's connection.
        let logins = accepted_with(&lab, name);
        assert_eq!(logins.len(), 1, "{name}: {logins:?}");
        assert!(logins.iter().all(|k| *k == fleet_key), "{name}: {logins:?}");
    }
    assert_eq!(
        relay_dirs(&lab),
        Vec::<String>::new(),
        "relay directory left"
    );
}

#[test]
fn a_wrong_passphrase_is_asked_again_and_every_later_connection_uses_the_key() {
    let (mut lab, key) = lab_with_an_encrypted_key(&["server"]);
    let before = untouched(host(&lab, "server"));

    // Ctrl-C at the prompt ends the run as an interrupt would.
    let interrupted = on_a_terminal(&lab, &["apply", "--all"], &["\u{3}"]);
    assert_eq!(interrupted.code, 130, "{}", interrupted.stdout);
    assert!(
        interrupted.stdout.contains(&format!(
            "error: interrupted while asking for the passphrase of {}; no host was contacted",
            key.display()
        )),
        "{}",
        interrupted.stdout
    );

    // An error after the passphrase was asked (here: an unknown canary) leaves nothing behind.
    let usage = on_a_terminal(&lab, &["apply", "--all", "--canary", "nosuch"], &["secret"]);
    assert_eq!(usage.code, 2, "{}", usage.stdout);
    assert!(
        usage.stdout.contains("unknown host `nosuch`"),
        "{}",
        usage.stdout
    );
    assert_eq!(
        relay_dirs(&lab),
        Vec::<String>::new(),
        "relay directory left"
    );

    let refused = on_a_terminal(&lab, &["apply", "--all"], &["one", "two", "three"]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert_eq!(
        refused.stdout.matches(PROMPT).count(),
        3,
        "{}",
        refused.stdout
    );
    assert!(
        refused.stdout.contains(&format!(
            "error: wrong passphrase for identity file {} (3 tries); no host was contacted",
            key.display()
        )),
        "{}",
        refused.stdout
    );
    assert_eq!(untouched(host(&lab, "server")), before);
    assert_eq!(host(&lab, "server").accepted_logins(), 0, "contacted");

    let run = on_a_terminal(&lab, &["apply", "--all"], &["wrong", "secret"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout.matches(PROMPT).count(), 2, "{}", run.stdout);
    assert!(
        run.stdout.contains("wrong passphrase, try again"),
        "{}",
        run.stdout
    );
    assert!(deployed(&lab, "server"), "{}", run.stdout);

    // A second generation: magic rollback is armed, so the deployment is confirmed over a new
    // connection, which must log in with the same key without asking again.
    lab.bump_all().expect("flake");
    let logins = host(&lab, "server").accepted_logins();
    let again = on_a_terminal(&lab, &["apply", "--all"], &["secret"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(again.stdout.matches(PROMPT).count(), 1, "{}", again.stdout);
    assert!(deployed(&lab, "server"), "{}", again.stdout);
    assert_eq!(
        host(&lab, "server").accepted_logins(),
        logins + 2,
        "the connection (nix copy rides it) and the confirmation"
    );
    assert!(
        host(&lab, "server")
            .generations()
            .expect("read")
            .lines()
            .count()
            >= 2
    );

    let exec = on_a_terminal(&lab, &["exec", "--all", "--", "echo", "hi"], &["secret"]);
    assert_eq!(exec.code, 0, "{}", exec.stdout);
    assert!(exec.stdout.contains("server | hi"), "{}", exec.stdout);
    assert_eq!(
        relay_dirs(&lab),
        Vec::<String>::new(),
        "relay directory left"
    );
}

#[test]
fn without_a_terminal_it_refuses_before_contacting_anything_unless_the_agent_has_the_key() {
    let (lab, key) = lab_with_an_encrypted_key(&["desktop", "server"]);
    let before: Vec<_> = ["desktop", "server"]
        .map(|n| untouched(host(&lab, n)))
        .to_vec();
    let run =
        crate::support::hbdeploy_with_env(&lab, &["apply", "--all"], &[("SSH_AUTH_SOCK", "")]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert_eq!(
        run.stderr,
        format!(
            "error: identity file {0} is encrypted and there is no terminal to ask for its \
             passphrase on; no host was contacted\n\
             hint: run hbdeploy on a terminal: it asks once per run and uses the key for every \
             host; or add the key to ssh-agent first (ssh-add {0})\n",
            key.display()
        )
    );
    let after: Vec<_> = ["desktop", "server"]
        .map(|n| untouched(host(&lab, n)))
        .to_vec();
    assert_eq!(before, after);
    for name in ["desktop", "server"] {
        assert_eq!(host(&lab, name).accepted_logins(), 0, "{name} contacted");
    }

    // With the key in ssh-agent, nothing is asked: hbdeploy uses the agent's key.
    let agent = SshAgent::start(lab.dir());
    let socket = agent.socket.clone();
    let askpass = lab.dir().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho secret\n").expect("askpass");
    Command::new("chmod")
        .arg("+x")
        .arg(&askpass)
        .status()
        .expect("chmod");
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", "none")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let sock = socket.clone();
    let with =
        crate::support::hbdeploy_with_env(&lab, &["apply", "--all"], &[("SSH_AUTH_SOCK", &sock)]);
    assert_eq!(with.code, 0, "{}", with.both());
    for name in ["desktop", "server"] {
        assert!(deployed(&lab, name), "{name}\n{}", with.both());
    }
}

#[test]
fn a_host_behind_a_jump_host_is_reached_with_the_decrypted_key_once() {
    let (lab, key) = lab_with_an_encrypted_key(&["bastion", "inner"]);
    let fleet = lab.dir().join("fleet.toml");
    let text = std::fs::read_to_string(&fleet).expect("fleet").replace(
        "[hosts.inner]\n",
        "[hosts.inner]\nproxy-jump = \"bastion\"\n",
    );
    std::fs::write(&fleet, text).expect("write fleet");
    let run = on_a_terminal(&lab, &["apply", "inner"], &["secret"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout.matches(PROMPT).count(), 1, "{}", run.stdout);
    assert!(deployed(&lab, "inner"), "{}", run.stdout);
    let fleet_key = fingerprint(&key);
    // bastion carried inner's one connection (nix copy rode it), which logged in to both hosts
    // with the encrypted key.
    for name in ["bastion", "inner"] {
        let logins = accepted_with(&lab, name);
        assert_eq!(logins.len(), 1, "{name}: {logins:?}\n{}", run.stdout);
        assert!(logins.iter().all(|k| *k == fleet_key), "{name}: {logins:?}");
    }
    assert_eq!(
        relay_dirs(&lab),
        Vec::<String>::new(),
        "relay directory left"
    );
}
