//! The lab running programs inside its hosts (`Lab::inside`), as root and as a lab user with a
//! sudo password, on both kinds of host: what a test of hbdeploy deploying the host it runs on
//! (`address = "local"`) stands on. Each check is of a real effect: a system built by the host's
//! own nix into its own store, a deployment by hbdeploy run inside, the uid, a sudo password
//! typed on a terminal, the container's systemd reached.

use crate::support::lab::{fresh_box_system, one_box_with_a_sudo_user};
use crate::support::{bin, host};
use hbdeploy_lab::{Activation, HostKind, Lab, LabError};

const PASSWORD: &str = "s3cret-inside";
const PROMPT: &str = "[sudo] password for deploy: ";

/// Whether `path` is valid in this machine's own nix store.
fn in_machine_store(path: &str) -> bool {
    std::process::Command::new("nix-store")
        .args(["--check-validity", path])
        .output()
        .expect("nix-store runs")
        .status
        .success()
}

/// `path` is in `box`'s store and not in the machine's: it was built inside.
fn built_inside(lab: &Lab, path: &str, who: Option<&str>) {
    assert!(
        host(lab, "box").has_store_path(path).expect("query"),
        "{who:?}"
    );
    assert!(!in_machine_store(path), "{who:?}: built in the host");
}

/// nix inside the host, as `who`, builds `box`'s toplevel into the host's own store.
fn nix_builds_into_the_hosts_store(lab: &mut Lab, who: Option<&str>) {
    let expected = fresh_box_system(lab, Activation::Succeed);
    assert!(!host(lab, "box").has_store_path(&expected).expect("query"));
    let toplevel = lab.toplevel_ref("box");
    let run = lab
        .inside("box", who)
        .expect("inside")
        .run(&["nix", "build", "--no-link", "--json", &toplevel])
        .expect("nix runs");
    assert_eq!(run.code, 0, "{who:?}: {}", run.both());
    // nix 2.8 (Debian's) has no --print-out-paths.
    let built: serde_json::Value = serde_json::from_str(&run.stdout).expect("nix's JSON");
    let out = &built[0]["outputs"]["out"];
    assert_eq!(out, expected.as_str(), "{who:?}: {}", run.both());
    built_inside(lab, &expected, who);
}

/// Root is root; the user has uid 1500, its HOME as working directory, the lab's nix settings
/// and the host's own temporary directory.
fn root_and_the_user_are_who_they_are(lab: &Lab) {
    let root = lab.inside("box", None).expect("inside as root");
    let id = root.run(&["id", "-u"]).expect("id");
    assert_eq!((id.code, id.stdout.as_str()), (0, "0\n"), "{}", id.both());
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let script = "id -u; id -un; echo \"$HOME\"; pwd; hostname; echo \"$NIX_CONFIG\" | head -1";
    let id = user.run(&["sh", "-c", script]).expect("id");
    assert_eq!(id.code, 0, "{}", id.both());
    let home = user.home();
    let lines: Vec<&str> = id.stdout.lines().collect();
    let flakes = "experimental-features = nix-command flakes";
    assert_eq!(
        lines,
        ["1500", "deploy", &home, &home, "box", flakes],
        "{}",
        id.both()
    );
    // Temporary files are the host's own: not in the machine's /tmp, which every namespace host
    // sees, and where PIDs from different hosts' namespaces would meet.
    let tmp = user.run(&["mktemp"]).expect("mktemp");
    assert_eq!(tmp.code, 0, "{}", tmp.both());
    let file = tmp.stdout.trim();
    let expected = match host(lab, "box").kind() {
        HostKind::Namespace => "/var/lib/hbdeploy-lab/tmp/",
        HostKind::Systemd => "/tmp/",
    };
    assert!(file.starts_with(expected), "{file}");
    assert!(
        !std::path::Path::new(file).exists(),
        "{file} is the machine's"
    );
}

/// The hbdeploy binary runs inside for both; as the user it builds into the host's store.
fn hbdeploy_runs_inside(lab: &mut Lab) {
    for who in [None, Some("deploy")] {
        let version = lab
            .inside("box", who)
            .expect("inside")
            .hbdeploy(bin(), None, &["--version"])
            .expect("hbdeploy runs");
        assert_eq!(version.code, 0, "{who:?}: {}", version.both());
        assert!(version.stdout.starts_with("hbdeploy "), "{who:?}");
    }
    let expected = fresh_box_system(lab, Activation::Succeed);
    // `build` contacts no host: the address does not matter.
    let fleet = format!(
        "[fleet]\nflake = \"{}\"\n\n[hosts.self]\naddress = \"127.0.0.1\"\nattr = \"box\"\n",
        lab.flake_ref()
    );
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let args = ["build", "self", "--systems-out", "systems.json"];
    let built = user
        .hbdeploy(bin(), Some(&fleet), &args)
        .expect("hbdeploy runs");
    assert_eq!(built.code, 0, "{}", built.both());
    // Written in the user's home, the working directory.
    let systems = user.run(&["cat", "systems.json"]).expect("cat");
    assert!(systems.stdout.contains(&expected), "{}", systems.both());
    built_inside(lab, &expected, Some("deploy"));
}

/// hbdeploy inside, as root, deploys the host over SSH to its own address; its ledger goes next
/// to the fleet.toml, in HOME.
fn hbdeploy_applies_from_inside(lab: &mut Lab) {
    let expected = fresh_box_system(lab, Activation::Succeed);
    let root = lab.inside("box", None).expect("inside as root");
    let applied = root
        .hbdeploy(bin(), Some(&lab.fleet_toml(&[], "")), &["apply", "box"])
        .expect("hbdeploy runs");
    assert_eq!(applied.code, 0, "{}", applied.both());
    let box_ = host(lab, "box");
    assert_eq!(box_.current_system().expect("read"), Some(expected.clone()));
    let activations = box_.activations().expect("read");
    assert_eq!(activations, [format!("switch {expected}")]);
    built_inside(lab, &expected, None);
    let ledger = root
        .run(&["ls", "/root/.hbdeploy/deployments"])
        .expect("ls");
    assert_eq!(ledger.stdout.lines().count(), 1, "{}", ledger.both());
}

/// hbdeploy inside, as the user on a terminal, deploys the host over SSH to its own address as
/// that user, with the sudo password it asks for (`--ask-sudo-password`).
fn hbdeploy_asks_for_the_sudo_password_inside(lab: &mut Lab) {
    let expected = fresh_box_system(lab, Activation::Succeed);
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let key = std::fs::read_to_string(lab.identity_file()).expect("the lab's key");
    let key_inside = user.write_home("id_ed25519", &key).expect("key written");
    let chmod = user.run(&["chmod", "600", &key_inside]).expect("chmod");
    assert_eq!(chmod.code, 0, "{}", chmod.both());
    let fleet = lab
        .fleet_toml(&[], "")
        .replace(&lab.identity_file().display().to_string(), &key_inside)
        .replace("user = \"root\"", "user = \"deploy\"");
    let args = ["apply", "box", "--ask-sudo-password"];
    let prompt = "sudo password for deploy on the hosts: ";
    let run = user
        .hbdeploy_on_a_terminal(bin(), Some(&fleet), &args, prompt, &[PASSWORD])
        .expect("hbdeploy runs on a terminal");
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(run.stdout.contains(prompt), "{}", run.both());
    let box_ = host(lab, "box");
    assert_eq!(box_.current_system().expect("read"), Some(expected.clone()));
    built_inside(lab, &expected, Some("deploy"));
}

/// The password typed at sudo's prompt lets the user run `then` as root (`-k` forgets any
/// earlier one, so the prompt must come); a wrong one does not. Returns the last line shown.
fn sudo_takes_the_typed_password(lab: &Lab, then: &str) -> String {
    let user = lab.inside("box", Some("deploy")).expect("inside as deploy");
    let line = format!("sudo -k; sudo {then}");
    let sudo = user
        .on_a_terminal(&["sh", "-c", &line], PROMPT, &[PASSWORD])
        .expect("runs on a terminal");
    assert_eq!(sudo.code, 0, "{}", sudo.both());
    assert!(sudo.stdout.contains(PROMPT), "{}", sudo.both());
    let wrong = ["not-it"; 3];
    let refused = user
        .on_a_terminal(&["sh", "-c", &line], PROMPT, &wrong)
        .expect("runs on a terminal");
    assert_ne!(refused.code, 0, "{}", refused.both());
    sudo.stdout.lines().last().unwrap_or_default().to_owned()
}

/// What every kind of host must allow.
fn works_inside(kind: HostKind) -> Lab {
    let mut lab = one_box_with_a_sudo_user(kind, PASSWORD);
    nix_builds_into_the_hosts_store(&mut lab, None);
    nix_builds_into_the_hosts_store(&mut lab, Some("deploy"));
    root_and_the_user_are_who_they_are(&lab);
    hbdeploy_runs_inside(&mut lab);
    hbdeploy_applies_from_inside(&mut lab);
    hbdeploy_asks_for_the_sudo_password_inside(&mut lab);
    assert_eq!(sudo_takes_the_typed_password(&lab, "id -u"), "0");
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
    let mark = "echo $INVOCATION_ID > /run/lab-inside-mark";
    let argv = [
        "systemd-run",
        "--wait",
        "--quiet",
        "--collect",
        "/bin/sh",
        "-c",
        mark,
    ];
    let unit = root.run(&argv).expect("systemd-run runs");
    assert_eq!(unit.code, 0, "{}", unit.both());
    let id = host(&lab, "box")
        .sh("cat /run/lab-inside-mark")
        .expect("mark");
    assert_eq!(id.trim().len(), 32, "an invocation id: {id:?}");
    // The user reaches it through sudo, as a deployer that is not root would.
    let last = sudo_takes_the_typed_password(
        &lab,
        "systemd-run --wait --quiet --collect true && echo unit-ran",
    );
    assert_eq!(last, "unit-ran");
}
