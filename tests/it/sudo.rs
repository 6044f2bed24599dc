//! Hosts reached as a user who is not root (issue 5): commands that need root go through sudo,
//! passwordless or with `--ask-sudo-password`; `nix copy` needs the user trusted by the host's
//! nix, and says so when it is not.

use crate::support::{HBDEPLOY, hbdeploy, host, row, system_path};
use hbdeploy_lab::{Lab, LabUser, Sudo, hbdeploy_on_a_terminal};

/// A lab whose hosts have a user `deploy` with `sudo` rights, and a fleet.toml that logs in as
/// `deploy` everywhere except on the hosts named in `as_root`.
fn lab_with_deploy_user(names: &[&str], sudo: Sudo, trusted: bool, as_root: &[&str]) -> Lab {
    let mut lab = Lab::start(names).expect("lab starts");
    lab.add_user(&LabUser {
        name: "deploy".to_owned(),
        sudo,
        trusted,
    })
    .expect("user added");
    let mut text = lab
        .fleet_toml(&[], "")
        .replace("user = \"root\"", "user = \"deploy\"");
    // Per-host overrides go into the host tables the lab wrote.
    for name in as_root {
        text = text.replace(
            &format!("[hosts.{name}]\n"),
            &format!("[hosts.{name}]\nuser = \"root\"\n"),
        );
    }
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("fleet written");
    lab
}

/// Runs hbdeploy with `args` on a pseudo-terminal and types `password` at the sudo prompt.
fn asked_for_the_password(lab: &Lab, args: &[&str], password: &str) -> hbdeploy_lab::Run {
    hbdeploy_on_a_terminal(
        std::path::Path::new(HBDEPLOY),
        Some(&lab.dir().join("fleet.toml")),
        args,
        "sudo password for deploy on the hosts: ",
        &[password],
    )
    .expect("runs on a terminal")
}

fn logins_as(lab: &Lab, name: &str, user: &str) -> usize {
    std::fs::read_to_string(host(lab, name).dir.join("state/sshd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("Accepted publickey for {user} ")))
        .count()
}

#[test]
fn a_user_with_passwordless_sudo_deploys_with_magic_rollback_and_rolls_back() {
    let mut lab = lab_with_deploy_user(&["alpha", "beta"], Sudo::Passwordless, true, &[]);
    let first: Vec<String> = ["alpha", "beta"]
        .iter()
        .map(|n| system_path(&lab, n))
        .collect();
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    for (name, system) in ["alpha", "beta"].iter().zip(&first) {
        let h = host(&lab, name);
        assert_eq!(h.current_system().expect("read"), Some(system.clone()));
        assert_eq!(h.profile_system().expect("read"), Some(system.clone()));
        assert_eq!(row(&run, name)[1], "ok", "{}", run.both());
        // One login, the deploy user's: nix copy rode it (its `nix-daemon --stdio` ran as
        // deploy, whom the host's nix trusts). A first deployment has nothing to roll back to,
        // so no confirmation.
        assert_eq!(logins_as(&lab, name, "deploy"), 1, "{name}");
        assert_eq!(logins_as(&lab, name, "root"), 0, "{name}");
    }

    lab.bump_all().expect("new systems");
    let second = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(second.code, 0, "{}", second.both());
    for name in ["alpha", "beta"] {
        // The connection and the magic-rollback confirmation (a new connection, which
        // confirmed as root through sudo too: the host was not rolled back).
        assert_eq!(logins_as(&lab, name, "deploy"), 3, "{name}");
        assert_eq!(logins_as(&lab, name, "root"), 0, "{name}");
    }
    let rollback = hbdeploy(&lab, &["rollback", "alpha"]);
    assert_eq!(rollback.code, 0, "{}", rollback.both());
    let alpha = host(&lab, "alpha");
    assert_eq!(
        alpha.current_system().expect("read"),
        Some(first[0].clone())
    );
    assert_eq!(
        alpha.profile_system().expect("read"),
        Some(first[0].clone())
    );
    assert_ne!(
        host(&lab, "beta").current_system().expect("read"),
        Some(first[1].clone()),
        "beta was not rolled back"
    );
    // Reading state needs no root.
    let status = hbdeploy(&lab, &["status"]);
    assert_eq!(status.code, 0, "{}", status.both());
}

#[test]
fn sudo_that_wants_a_password_fails_that_host_alone_with_what_to_do() {
    let lab = lab_with_deploy_user(
        &["alpha", "beta"],
        Sudo::Password("s3cret".to_owned()),
        true,
        &["beta"],
    );
    let system = system_path(&lab, "alpha");
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "alpha")[1], "FAILED", "{}", run.both());
    assert!(
        run.both()
            .contains("cannot run commands as root on the host"),
        "{}",
        run.both()
    );
    assert!(
        run.both().contains("NOPASSWD") && run.both().contains("--ask-sudo-password"),
        "{}",
        run.both()
    );
    let alpha = host(&lab, "alpha");
    assert_eq!(alpha.current_system().expect("read"), None);
    assert!(
        !alpha.has_store_path(&system).expect("read"),
        "nothing copied"
    );
    // The host logged in as root was deployed all the same.
    assert_eq!(row(&run, "beta")[1], "ok", "{}", run.both());
}

#[test]
fn ask_sudo_password_asks_once_and_every_host_uses_it() {
    let lab = lab_with_deploy_user(
        &["alpha", "beta", "gamma"],
        Sudo::Password("s3cret".to_owned()),
        true,
        &[],
    );
    let run = asked_for_the_password(&lab, &["apply", "--all", "--ask-sudo-password"], "s3cret");
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(
        run.stdout
            .matches("sudo password for deploy on the hosts:")
            .count(),
        1,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("s3cret"), "{}", run.stdout);
    for name in ["alpha", "beta", "gamma"] {
        let h = host(&lab, name);
        assert_eq!(
            h.current_system().expect("read"),
            Some(system_path(&lab, name)),
            "{name}"
        );
        let log = std::fs::read_to_string(h.dir.join("state/sshd.log")).unwrap_or_default();
        assert!(!log.contains("s3cret"), "{name}: {log}");
    }
}

#[test]
fn a_wrong_sudo_password_is_refused_and_nothing_changes() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Password("s3cret".to_owned()), true, &[]);
    let run = asked_for_the_password(&lab, &["apply", "--all", "--ask-sudo-password"], "wrong");
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout.contains("sudo password was refused"),
        "{}",
        run.stdout
    );
    assert_eq!(host(&lab, "alpha").current_system().expect("read"), None);
}

#[test]
fn ask_sudo_password_without_a_terminal_refuses_before_contacting_hosts() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Password("s3cret".to_owned()), true, &[]);
    let run = hbdeploy(&lab, &["apply", "--all", "--ask-sudo-password"]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stderr
            .contains("--ask-sudo-password needs a terminal to ask on"),
        "{}",
        run.both()
    );
    assert_eq!(logins_as(&lab, "alpha", "deploy"), 0);
}

#[test]
fn nix_copy_to_a_user_the_host_does_not_trust_says_what_to_do() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Passwordless, false, &[]);
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(run.both().contains("trusted-users"), "{}", run.both());
    assert_eq!(host(&lab, "alpha").current_system().expect("read"), None);
}

#[test]
fn plan_copy_dry_activates_as_root_with_the_asked_password() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Password("s3cret".to_owned()), true, &[]);
    let run = asked_for_the_password(
        &lab,
        &["plan", "alpha", "--copy", "--ask-sudo-password"],
        "s3cret",
    );
    assert_eq!(run.code, 0, "{}", run.both());
    let alpha = host(&lab, "alpha");
    // dry-activate ran (as root, through sudo) and changed nothing; the closure was copied.
    assert_eq!(
        alpha
            .activations()
            .expect("read")
            .last()
            .map(|l| l.split(' ').next()),
        Some(Some("dry-activate")),
        "{}",
        run.both()
    );
    assert_eq!(alpha.current_system().expect("read"), None);
    assert!(
        alpha
            .has_store_path(&system_path(&lab, "alpha"))
            .expect("read")
    );
}

/// The run's connection to `name` as `deploy`, escalating with `sudo` and the typed `password`,
/// as `--ask-sudo-password` makes it.
fn connect_as_deploy(
    lab: &Lab,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    password: &str,
) -> hbdeploy_ssh::Connection {
    let target = hbdeploy_ssh::Target {
        escalation: Some(hbdeploy_ssh::Escalation {
            command: vec!["sudo".to_owned()],
        }),
        ..crate::support::ssh_target(lab, name, "deploy")
    };
    let session = hbdeploy_ssh::Session {
        sudo_password: Some(hbdeploy_ssh::Password::new(password)),
        ..hbdeploy_ssh::Session::default()
    };
    runtime
        .block_on(hbdeploy_ssh::Connection::connect(&target, &session))
        .expect("connects as deploy")
}

/// What `command`, run as root through the connection's escalation, printed on stdout.
fn as_root(
    runtime: &tokio::runtime::Runtime,
    conn: &hbdeploy_ssh::Connection,
    command: &str,
) -> String {
    let output = runtime
        .block_on(conn.run_root(command, |_| {}))
        .expect("runs");
    assert!(output.exit.success(), "{command}: {output:?}");
    output.stdout
}

#[test]
fn a_sudo_password_never_reaches_the_command_on_a_host_whose_sudo_asks_for_none() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Passwordless, true, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let conn = connect_as_deploy(&lab, &runtime, "alpha", "s3cret");
    assert_eq!(as_root(&runtime, &conn, "id -u").trim(), "0");
    // `sudo -S` does not read stdin where sudo wants no password: anything written there would
    // be the command's input.
    let read = as_root(&runtime, &conn, "cat");
    assert!(
        !read.contains("s3cret"),
        "the command read the password: {read:?}"
    );
    assert_eq!(read, "");
    // Later commands of the same connection alike.
    assert_eq!(as_root(&runtime, &conn, "cat"), "");
}

#[test]
fn a_sudo_password_is_read_by_sudo_alone_on_a_host_whose_sudo_asks_for_it() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Password("s3cret".to_owned()), true, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let conn = connect_as_deploy(&lab, &runtime, "alpha", "s3cret");
    assert_eq!(as_root(&runtime, &conn, "id -u").trim(), "0");
    assert_eq!(as_root(&runtime, &conn, "cat"), "");
    // A wrong password is refused by sudo, not passed on.
    let wrong = connect_as_deploy(&lab, &runtime, "alpha", "wrong");
    let output = runtime
        .block_on(wrong.run_root("cat", |_| {}))
        .expect("runs");
    assert!(!output.exit.success(), "{output:?}");
    assert!(!output.stdout.contains("wrong"), "{output:?}");
}

#[test]
fn ask_sudo_password_deploys_a_host_whose_sudo_asks_for_none() {
    let lab = lab_with_deploy_user(&["alpha"], Sudo::Passwordless, true, &[]);
    let run = asked_for_the_password(&lab, &["apply", "--all", "--ask-sudo-password"], "s3cret");
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(
        host(&lab, "alpha").current_system().expect("read"),
        Some(system_path(&lab, "alpha"))
    );
}
