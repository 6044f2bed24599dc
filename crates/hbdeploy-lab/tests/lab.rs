//! The lab itself works: hosts come up with their own store, hostname and sshd, toy systems build
//! with real nix, and everything is gone after the lab is dropped.

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use hbdeploy_lab::{Lab, Medium, NIX_CONFIG};

fn nix(args: &[&str]) -> String {
    let out = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("nix runs (apt-get install nix-bin)");
    assert!(
        out.status.success(),
        "nix {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hosts_are_isolated_and_cleaned_up() {
    let lab = Lab::start(&["alpha", "beta"]).expect("lab starts");
    let alpha = lab.host("alpha").expect("alpha");
    let beta = lab.host("beta").expect("beta");
    assert_eq!(alpha.sh("hostname").expect("sh").trim(), "alpha");
    assert_eq!(beta.sh("hostname").expect("sh").trim(), "beta");
    assert_ne!(alpha.address, beta.address);

    // A toy system builds locally and its closure has several paths.
    let attr = format!(
        "{}#nixosConfigurations.alpha.config.system.build.toplevel",
        lab.flake_ref()
    );
    let json = nix(&["build", "--json", "--no-link", &attr]);
    let out = json
        .split("\"out\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("out path");
    let closure = Command::new("nix-store")
        .args(["-qR", out])
        .output()
        .expect("nix-store");
    assert!(String::from_utf8_lossy(&closure.stdout).lines().count() >= 3);

    // Copy it to alpha over ssh-ng: it lands in alpha's store only.
    let opts = format!(
        "-p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        hbdeploy_lab::SSH_PORT,
        lab.identity_file().display(),
        lab.known_hosts().display()
    );
    let status = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "copy",
            "--no-check-sigs",
            "--to",
        ])
        .arg(format!("ssh-ng://root@{}", alpha.address))
        .arg(out)
        .env("NIX_SSHOPTS", opts)
        .env("NIX_CONFIG", NIX_CONFIG)
        .status()
        .expect("nix copy runs");
    assert!(status.success());
    assert!(alpha.has_store_path(out).expect("query"));
    assert!(!beta.has_store_path(out).expect("query"));
    assert_eq!(alpha.accepted_logins(), 1);

    let dir = lab.dir().to_path_buf();
    let holders: Vec<String> = lab.hosts().map(|h| h.address.to_string()).collect();
    drop(lab);
    assert!(!dir.exists(), "lab directory removed");
    for address in holders {
        let addr = format!("{address}:{}", hbdeploy_lab::SSH_PORT);
        let sock: std::net::SocketAddr = addr.parse().expect("addr");
        assert!(
            std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_millis(300))
                .is_err(),
            "sshd at {addr} still listening after drop"
        );
    }
}

#[test]
fn parallel_labs_get_distinct_ranges() {
    let one = Lab::start(&["a"]).expect("lab one");
    let two = Lab::start(&["a"]).expect("lab two");
    let a1 = one.host("a").expect("a").address;
    let a2 = two.host("a").expect("a").address;
    assert_ne!(a1, a2);
    assert_ne!(one.dir(), two.dir());
}

#[test]
fn an_installer_host_runs_the_toy_disko_script_with_an_overridden_device() {
    let mut lab = Lab::start(&["desktop", "server"]).expect("lab starts");
    let spec = hbdeploy_lab::SystemSpec {
        disks: [("nvme1n1".to_owned(), "/dev/nvme1n1".to_owned())].into(),
        ..hbdeploy_lab::SystemSpec::default()
    };
    lab.set_system("desktop", spec).expect("flake");
    let desktop = lab.host("desktop").expect("desktop");
    desktop
        .make_installer(Medium::LiveInstaller)
        .expect("installer");
    let disk = desktop.add_disk("nvme1n1").expect("disk");

    // The disk names, and a disko script built for another device than disk.nix's.
    let flake = format!("{}#nixosConfigurations", lab.flake_ref());
    let names = nix(&[
        "eval",
        "--json",
        &flake,
        "--apply",
        "cs: builtins.attrNames cs.desktop.config.disko.devices.disk",
    ]);
    assert_eq!(names.trim(), r#"["nvme1n1"]"#);
    let apply = format!(
        "cs: (cs.desktop.extendModules {{ modules = [ {{ disko.devices.disk.nvme1n1.device = \
         {{ _type = \"override\"; priority = 10; content = \"{disk}\"; }}; }} ]; }})\
         .config.system.build.diskoScript.drvPath"
    );
    let drv = nix(&["eval", "--raw", &flake, "--apply", &apply]);
    // `nix-store --realise` builds a .drv path the same way in every nix version (`nix build`
    // wants `DRV^out` from 2.9 on) and prints its output path.
    let realised = Command::new("nix-store")
        .args(["--realise", &drv])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("nix-store");
    assert!(realised.status.success(), "{realised:?}");
    let script = String::from_utf8_lossy(&realised.stdout).trim().to_owned();
    assert!(script.starts_with("/nix/store/"), "{script}");

    // Inside the host: the installer's face, and the script run from the host's view of the
    // deployer's store path (the lab hosts share no store, so copy the one file over).
    let os_release = desktop.sh("cat /etc/os-release").expect("sh");
    assert!(os_release.contains("VARIANT_ID=installer"), "{os_release}");
    assert!(
        !std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .contains("lab live installer"),
        "the bind mount leaked out of the host's namespace"
    );
    let which = desktop
        .sh("PATH=$PATH:/run/current-system/sw/bin command -v nixos-install")
        .expect("sh");
    assert_eq!(which.trim(), "/run/current-system/sw/bin/nixos-install");
    let text = std::fs::read_to_string(&script).expect("script");
    assert!(text.contains(&format!("disks='nvme1n1={disk}'")), "{text}");
    let copy = lab.dir().join("hosts/desktop/state/disko");
    std::fs::write(&copy, &text).expect("copy script");
    let out = desktop
        .sh("sh /var/lib/hbdeploy-lab/disko")
        .expect("disko runs");
    assert!(out.contains("mounted the new file systems"), "{out}");
    assert_eq!(desktop.install_log(), [format!("formatted nvme1n1 {disk}")]);
    assert!(
        desktop
            .disk_content("nvme1n1")
            .expect("read")
            .contains("by disko")
    );
    // The other host is no installer.
    let server = lab.host("server").expect("server");
    assert!(
        !server
            .sh("cat /etc/os-release")
            .expect("sh")
            .contains("VARIANT_ID=installer")
    );
}

/// The benchmark's login floor (issue 16): `baseline.sh logins` logs in to every host once,
/// runs nothing else, and fails when a host cannot be logged in to.
#[test]
fn the_login_floor_logs_in_once_per_host_and_fails_when_a_login_fails() {
    use hbdeploy_lab::bench::baseline::{Algorithms, Baseline, Mode, same_algorithms};

    let mut lab = Lab::start(&["alpha", "beta"]).expect("lab starts");
    let baseline = Baseline::write(&lab).expect("baseline.sh");
    let same = same_algorithms().expect("ssh -Q");
    let logins = |lab: &Lab| -> Vec<usize> { lab.hosts().map(|h| h.accepted_logins()).collect() };
    let before = logins(&lab);
    let out = baseline
        .command_with(Mode::Logins, Algorithms::Same, &same)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = logins(&lab);
    assert_eq!(
        after
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>(),
        [1, 1],
        "one login per host"
    );
    lab.host_mut("beta").expect("beta").stop_sshd();
    let out = baseline
        .command_with(Mode::Logins, Algorithms::Same, &same)
        .output()
        .expect("bash runs");
    assert!(
        !out.status.success(),
        "beta is unreachable, yet it succeeded"
    );
}
