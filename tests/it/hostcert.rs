//! OpenSSH host certificates against the lab: hosts whose sshd presents a CA-signed host
//! certificate, and a known_hosts file holding only a `@cert-authority` line. hbdeploy's russh
//! connection trusts such a host (and `nix copy` rides that connection), and refuses it when the
//! CA is unknown or revoked, the certificate expired, or it names another host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{hbdeploy, host, row, system_path};
use hbdeploy_lab::{Lab, SSH_PORT};

/// A new CA key pair in the lab directory: the private key's path and the public key as
/// `TYPE BASE64`.
fn new_ca(lab: &Lab, name: &str) -> (PathBuf, String) {
    let key = lab.dir().join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(made.status.success(), "{made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("read CA");
    let public = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    (key, public)
}

/// The SHA256 fingerprint of a public key given as `TYPE BASE64`, as ssh-keygen prints it.
fn fingerprint(lab: &Lab, public: &str) -> String {
    let file = lab.dir().join("fingerprint.pub");
    std::fs::write(&file, format!("{public}\n")).expect("write");
    crate::support::fingerprint(&file)
}

/// Signs `name`'s host key with `ca` for `principals` and `validity`, and restarts its sshd.
fn certify(lab: &mut Lab, name: &str, ca: &Path, principals: &[&str], validity: &str) {
    lab.host_mut(name)
        .expect("lab host")
        .certify(ca, principals, validity, SSH_PORT)
        .expect("certify");
}

/// The host's plain key as `TYPE BASE64`.
fn plain_key(lab: &Lab, name: &str) -> String {
    let file = host(lab, name).dir.join("state/ssh_host_ed25519_key.pub");
    let text = std::fs::read_to_string(file).expect("host key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host's address, which the certificate must name.
fn address(lab: &Lab, name: &str) -> String {
    host(lab, name).address.to_string()
}

/// Writes the lab's fleet with `known-hosts` pointing at a file holding exactly `known_hosts`,
/// and `host_lines` added to the host tables (`(host, line)`).
fn fleet(lab: &Lab, known_hosts: &str, host_lines: &[(&str, String)]) -> PathBuf {
    let file = lab.dir().join("ca_known_hosts");
    std::fs::write(&file, known_hosts).expect("write known_hosts");
    crate::support::trust::fleet(lab, &file, host_lines);
    file
}

/// `name` failed at connect, was never logged into, and got nothing in its store.
fn refused_untouched(lab: &Lab, run: &hbdeploy_lab::Run, name: &str) {
    assert_eq!(
        row(run, name)[1..3],
        ["FAILED", "connect"],
        "{}",
        run.both()
    );
    assert!(
        host(lab, name).store_entries().expect("ls").is_empty(),
        "{name} got store paths\n{}",
        run.both()
    );
    assert_eq!(host(lab, name).accepted_logins(), 0, "{}", run.both());
}

#[test]
fn certified_hosts_deploy_with_only_a_cert_authority_line() {
    let mut lab = Lab::start(&["web", "db"]).expect("lab");
    let (ca, ca_public) = new_ca(&lab, "host_ca");
    for name in ["web", "db"] {
        let principal = address(&lab, name);
        certify(&mut lab, name, &ca, &[&principal], "-1d:+1d");
    }
    // The CA vouches for the lab's whole range, on the lab's port: no host key is listed.
    fleet(
        &lab,
        &format!("@cert-authority [127.77.*]:* {ca_public}\n"),
        &[],
    );

    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    for name in ["web", "db"] {
        assert_eq!(row(&run, name)[1], "ok", "{}", run.both());
        // Copied over the one connection, which trusted the certificate through that line.
        assert_eq!(host(&lab, name).accepted_logins(), 1, "{}", run.both());
        assert_eq!(row(&run, name)[5], "3/3", "{}", run.both());
        let system = system_path(&lab, name);
        assert!(
            host(&lab, name).has_store_path(&system).expect("check"),
            "{system} is not in {name}'s store"
        );
        assert_eq!(
            host(&lab, name).current_system().expect("read").as_deref(),
            Some(system.as_str())
        );
    }
    // keyscan still fetches the plain key of a certified host, for review or pinning.
    let scan = hbdeploy(&lab, &["keyscan", "web"]);
    assert_eq!(scan.code, 0, "{}", scan.both());
    let line = format!(
        "[{}]:{SSH_PORT} {}",
        address(&lab, "web"),
        plain_key(&lab, "web")
    );
    assert!(
        scan.stdout.lines().any(|l| l == line),
        "{line}\n{}",
        scan.both()
    );
}

#[test]
fn an_unknown_ca_an_expired_certificate_and_another_name_are_refused() {
    let mut lab = Lab::start(&["stranger", "expired", "early", "misnamed", "fine"]).expect("lab");
    let (ca, ca_public) = new_ca(&lab, "host_ca");
    let (other_ca, other_public) = new_ca(&lab, "other_ca");
    let stranger = address(&lab, "stranger");
    certify(&mut lab, "stranger", &other_ca, &[&stranger], "-1d:+1d");
    let expired = address(&lab, "expired");
    certify(&mut lab, "expired", &ca, &[&expired], "-3d:-1d");
    let early = address(&lab, "early");
    certify(&mut lab, "early", &ca, &[&early], "+1d:+3d");
    certify(
        &mut lab,
        "misnamed",
        &ca,
        &["web.example.org", "web"],
        "-1d:+1d",
    );
    let fine = address(&lab, "fine");
    certify(&mut lab, "fine", &ca, &[&fine], "-1d:+1d");
    fleet(&lab, &format!("@cert-authority * {ca_public}\n"), &[]);

    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    for name in ["stranger", "expired", "early", "misnamed"] {
        refused_untouched(&lab, &run, name);
    }
    assert_eq!(row(&run, "fine")[1], "ok", "{}", run.both());

    let out = &run.stdout;
    let other = fingerprint(&lab, &other_public);
    assert!(
        out.contains(&format!(
            "host certificate of root@{stranger}:{SSH_PORT} refused: its certificate is signed \
             by CA {other}, which"
        )),
        "{}",
        run.both()
    );
    // The hint gives the line that would trust the other CA, for this host only.
    assert!(
        out.contains(&format!(
            "@cert-authority [{stranger}]:{SSH_PORT} {other_public}"
        )),
        "{}",
        run.both()
    );
    assert!(
        out.contains(&format!(
            "host certificate of root@{expired}:{SSH_PORT} refused: its certificate expired on "
        )),
        "{}",
        run.both()
    );
    assert!(
        out.contains("renew the host's certificate"),
        "{}",
        run.both()
    );
    assert!(
        out.contains(&format!(
            "host certificate of root@{early}:{SSH_PORT} refused: its certificate is not valid \
             before "
        )),
        "{}",
        run.both()
    );
    let misnamed = address(&lab, "misnamed");
    assert!(
        out.contains(&format!(
            "host certificate of root@{misnamed}:{SSH_PORT} refused: its certificate is valid \
             for web.example.org, web, not for {misnamed}"
        )),
        "{}",
        run.both()
    );
    assert!(
        out.contains("set `address` in fleet.toml to a name the certificate lists"),
        "{}",
        run.both()
    );
}

#[test]
fn a_revoked_ca_is_refused_even_though_it_is_listed() {
    let mut lab = Lab::start(&["vouched"]).expect("lab");
    let (ca, ca_public) = new_ca(&lab, "host_ca");
    let vouched = address(&lab, "vouched");
    certify(&mut lab, "vouched", &ca, &[&vouched], "-1d:+1d");
    let file = fleet(
        &lab,
        &format!("@cert-authority * {ca_public}\n@revoked * {ca_public}\n"),
        &[],
    );
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    refused_untouched(&lab, &run, "vouched");
    assert!(
        run.stdout.contains(&format!(
            "host certificate of root@{vouched}:{SSH_PORT} refused: its certificate is signed by \
             CA {}, which {}:2 marks @revoked",
            fingerprint(&lab, &ca_public),
            file.display()
        )),
        "{}",
        run.both()
    );
}

#[test]
fn pinned_keys_win_over_certificates_on_both_sides() {
    let mut lab = Lab::start(&["pinned", "mispinned"]).expect("lab");
    let (ca, ca_public) = new_ca(&lab, "host_ca");
    for name in ["pinned", "mispinned"] {
        let principal = address(&lab, name);
        certify(&mut lab, name, &ca, &[&principal], "-1d:+1d");
    }
    // Both hosts hold valid certificates, but pins ask for the plain key: the right pin deploys
    // (and copies over that connection), the wrong one is a mismatch.
    let pinned = plain_key(&lab, "pinned");
    fleet(
        &lab,
        &format!("@cert-authority * {ca_public}\n"),
        &[
            ("pinned", format!("host-key = \"{pinned}\"")),
            ("mispinned", format!("host-key = \"{pinned}\"")),
        ],
    );
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "pinned")[1], "ok", "{}", run.both());
    assert_eq!(row(&run, "pinned")[5], "3/3", "{}", run.both());
    refused_untouched(&lab, &run, "mispinned");
    assert!(run.stdout.contains("HOST KEY MISMATCH"), "{}", run.both());
}

#[test]
fn a_certified_host_is_reached_through_a_certified_jump_host() {
    let mut lab = Lab::start(&["bastion", "inner"]).expect("lab");
    let (ca, ca_public) = new_ca(&lab, "host_ca");
    for name in ["bastion", "inner"] {
        let principal = address(&lab, name);
        certify(&mut lab, name, &ca, &[&principal], "-1d:+1d");
    }
    fleet(
        &lab,
        &format!("@cert-authority * {ca_public}\n"),
        &[("inner", "proxy-jump = \"bastion\"".to_owned())],
    );
    let run = hbdeploy(&lab, &["apply", "inner"]);
    assert_eq!(run.code, 0, "{}", run.both());
    // Copied through the jump host, over the connection that checked both certificates.
    assert_eq!(row(&run, "inner")[5], "3/3", "{}", run.both());
    assert!(
        host(&lab, "inner")
            .current_system()
            .expect("read")
            .is_some()
    );
}
