//! The lab itself works: hosts come up with their own store, hostname and sshd, toy systems build
//! with real nix, and everything is gone after the lab is dropped.

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use hbdeploy_lab::{Lab, NIX_CONFIG};

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
