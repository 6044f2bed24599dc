//! Helpers of the SSH trust tests (`trust`, `trust_keys`, `hostcert`): host keys as the lab lists them and a
//! fleet pointing at a known_hosts file of the test's own.

use std::path::Path;

use hbdeploy_lab::{Lab, SSH_PORT};

use super::host;

/// The host key of `name` as the lab's known_hosts file lists it: `TYPE BASE64`.
pub fn host_key(lab: &Lab, name: &str) -> String {
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
pub fn fleet(lab: &Lab, known_hosts: &Path, host_lines: &[(&str, String)]) {
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
