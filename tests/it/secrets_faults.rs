//! Secrets that cannot be written or read (issue 19, part 1): an unknown owner before and after
//! activation, a secret whose file or command fails (the run stops before any host), and secrets
//! written through sudo with a typed password. The lab and helpers are `secrets.rs`'s.

use std::path::Path;

use super::secrets::{assert_nowhere, lab, marker, sources, stat};
use crate::support::{hbdeploy, host, system_path};
use hbdeploy_lab::{Lab, LabUser, Sudo};

#[test]
fn an_unknown_owner_stops_the_host_before_activation_and_fails_it_after() {
    let dir = sources("owner");
    let key = marker("owner");
    std::fs::write(dir.join("k"), &key).unwrap();
    let file = dir.join("k").display().to_string();
    // alpha (no systemd) writes before activating, beta (systemd) after.
    let secrets = format!(
        "\n[hosts.alpha.secrets.k]\nfile = \"{file}\"\nowner = \"nosuchuser\"\n\
         \n[hosts.beta.secrets.k]\nfile = \"{file}\"\ngroup = \"nosuchgroup\"\n\
         upload = \"post-activation\"\n"
    );
    let lab = lab(&secrets);
    let before = crate::support::untouched(host(&lab, "alpha"));
    let run = hbdeploy(&lab, &["-v", "apply", "--all", "--json"]);
    assert_eq!(run.code, 1, "{}", run.both());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let of = |name: &str| -> serde_json::Value {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .expect("host")
    };

    let alpha = of("alpha");
    assert_eq!(alpha["outcome"], "failed", "{alpha}");
    assert_eq!(
        alpha["error"],
        "secret `k` was not written to /run/keys/k: its owner `nosuchuser` is not a user of \
         the host; the host was not activated (the file at that path is as it was)"
    );
    assert!(alpha["hint"].as_str().unwrap().contains("post-activation"));
    assert_eq!(crate::support::untouched(host(&lab, "alpha")), before);
    assert_eq!(
        host(&lab, "alpha")
            .sh("ls -A /run/keys 2>/dev/null; true")
            .unwrap()
            .trim(),
        "",
        "no file, not even a temporary one"
    );

    let beta = of("beta");
    assert_eq!(beta["outcome"], "failed", "{beta}");
    assert_eq!(
        beta["error"],
        "secret `k` was not written to /run/keys/k: its group `nosuchgroup` is not a group \
         of the host; the new system is active, but this secret was not updated (the file at \
         that path is as it was)"
    );
    assert_eq!(
        host(&lab, "beta").current_system().unwrap(),
        Some(system_path(&lab, "beta"))
    );
    assert_eq!(
        host(&lab, "beta")
            .sh("ls -A /run/keys 2>/dev/null; true")
            .unwrap()
            .trim(),
        ""
    );
    assert_nowhere(&lab, &[&run], &[&key]);
}

fn offline(dir: &Path, args: &[&str]) -> String {
    crate::support::answer_in(dir, args)
}

#[test]
fn a_secret_that_cannot_be_read_stops_the_run_before_any_host() {
    let dir = sources("unreadable");
    let head = "[fleet]\nflake = \"./nixos\"\n[hosts.server]\naddress = \"192.0.2.1\"\n";
    let shown = "content-that-must-not-be-shown";
    let cases = [
        ("missing_file", "[secrets.wifi]\nfile = \"keys/wifi.psk\"\n"),
        (
            "missing_command",
            "[secrets.wifi]\ncommand = [\"hbdeploy-no-such-pass\", \"show\", \"wifi\"]\n",
        ),
        (
            "failing_command",
            "[secrets.wifi]\ncommand = [\"sh\", \"-c\", \"echo content-that-must-not-be-shown; \
             echo 'Error: wifi is not in the password store.' >&2; exit 1\"]\n",
        ),
    ];
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&dir.display().to_string(), "[dir]");
    settings.bind(|| {
        for (name, secret) in cases {
            std::fs::write(dir.join("fleet.toml"), format!("{head}{secret}")).unwrap();
            for args in [
                &["apply", "--all"][..],
                &["plan", "--all"],
                &["secrets", "upload", "--all"],
            ] {
                let out = offline(&dir, args);
                assert!(out.starts_with("exit: 2\n"), "{args:?}: {out}");
                assert!(!out.contains(shown), "{out}");
                if args[0] == "apply" {
                    insta::assert_snapshot!(format!("secret_{name}"), out);
                }
            }
        }
    });
    // A secret table that is not right is an error of fleet.toml, located.
    std::fs::write(
        dir.join("fleet.toml"),
        format!("{head}[secrets.wifi]\ncommand = \"pass show wifi\"\n"),
    )
    .unwrap();
    settings.bind(|| {
        insta::assert_snapshot!(
            "secret_command_not_an_array",
            offline(&dir, &["apply", "--all"])
        );
    });
}

/// Through `sudo` that wants a password (typed at `--ask-sudo-password`): the password goes
/// first on the root command's stdin and sudo reads only its line, so the file holds exactly the
/// secret, and the password is in no output either.
#[test]
fn secrets_go_through_sudo_with_a_password_and_the_file_holds_only_the_secret() {
    let dir = sources("sudo");
    let key = marker("sudo");
    std::fs::write(
        dir.join("k"),
        format!("{key}\nsecond line, no newline at the end"),
    )
    .unwrap();
    let mut lab = Lab::start(&["gamma"]).expect("lab starts");
    let password = marker("password");
    lab.add_user(&LabUser {
        name: "deploy".to_owned(),
        sudo: Sudo::Password(password.clone()),
        trusted: true,
    })
    .expect("user added");
    let text = lab
        .fleet_toml(
            &[],
            &format!(
                "\n[secrets.k]\nfile = \"{}\"\nowner = \"deploy\"\nmode = \"0600\"\n",
                dir.join("k").display()
            ),
        )
        .replace("user = \"root\"", "user = \"deploy\"");
    std::fs::write(lab.dir().join("fleet.toml"), text).unwrap();
    let run = hbdeploy_lab::hbdeploy_on_a_terminal(
        Path::new(crate::support::HBDEPLOY),
        Some(&lab.dir().join("fleet.toml")),
        &["secrets", "upload", "--all", "--ask-sudo-password"],
        "sudo password for deploy on the hosts: ",
        &[password.as_str()],
    )
    .expect("runs on a terminal");
    assert_eq!(run.code, 0, "{}", run.both());
    let written = std::fs::read(dir.join("k")).unwrap();
    let on_host = host(&lab, "gamma").sh("cat /run/keys/k").unwrap();
    assert_eq!(on_host.as_bytes(), written.as_slice());
    assert_eq!(stat(&lab, "gamma", "/run/keys/k"), "deploy root 600");
    assert!(!run.stdout.contains(&key) && !run.stderr.contains(&key));
    assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password));
}

#[test]
fn secrets_upload_leaves_a_host_alone_while_a_deployment_holds_its_lock() {
    let dir = sources("locked");
    let key = marker("locked");
    std::fs::write(dir.join("k"), &key).unwrap();
    let file = dir.join("k").display().to_string();
    let mut lab = lab(&format!("\n[hosts.alpha.secrets.k]\nfile = \"{file}\"\n"));
    let gated = hbdeploy_lab::SystemSpec {
        activation: hbdeploy_lab::Activation::Gate,
        ..hbdeploy_lab::SystemSpec::default()
    };
    lab.set_system("alpha", gated).unwrap();
    let apply = lab
        .spawn_hbdeploy(Path::new(crate::support::HBDEPLOY), &["apply", "alpha"])
        .expect("apply starts");
    let alpha = host(&lab, "alpha");
    let activating = crate::support::lab::wait_until(std::time::Duration::from_secs(60), || {
        !alpha.activations().unwrap().is_empty()
    });
    assert!(activating, "the apply never reached its activation");
    // The apply wrote the secret before activating; take it away to see whether upload writes.
    alpha.sh("rm -f /run/keys/k").unwrap();
    let upload = hbdeploy(&lab, &["secrets", "upload", "alpha"]);
    assert_eq!(upload.code, 1, "{}", upload.both());
    assert!(
        upload
            .stdout
            .contains("the host is locked by another deployment (hbdeploy apply by "),
        "{}",
        upload.both()
    );
    assert_eq!(
        alpha.sh("ls -A /run/keys").unwrap().trim(),
        "",
        "written under another deployment's lock"
    );
    lab.open_gate().unwrap();
    let applied = hbdeploy_lab::finish(apply).unwrap();
    assert_eq!(applied.code, 0, "{}", applied.both());
    let upload = hbdeploy(&lab, &["secrets", "upload", "alpha"]);
    assert_eq!(upload.code, 0, "{}", upload.both());
    assert_eq!(stat(&lab, "alpha", "/run/keys/k"), "root root 400");
}
