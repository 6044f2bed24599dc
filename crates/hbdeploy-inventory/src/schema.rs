//! The shape of `fleet.toml`: which keys each table accepts, their defaults, and the example and
//! advice shown in hints.
//!
//! Keeping this in one place makes the error messages, the parser and `docs/fleet.md` agree; the
//! tests below check that every accepted key has an example.

/// Tables at the top level.
pub(crate) const TOP_KEYS: &[&str] = &["fleet", "ssh", "hosts", "health", "secrets"];

/// Keys of `[fleet]`.
pub(crate) const FLEET_KEYS: &[&str] = &[
    "flake",
    "parallel",
    "magic-rollback",
    "confirm-timeout",
    "activation-timeout",
    "reboot-timeout",
    "builders",
    "signing-key",
    "parallel-copy",
    "parallel-activate",
    "eval-workers",
    "eval-memory",
    "substitute",
    "compress",
    "trusted",
];

/// Keys of `[ssh]`; each may be overridden in a host table.
pub(crate) const SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "identity-file",
    "known-hosts",
    "connect-timeout",
    "keepalive-interval",
    "keepalive-count",
    "privilege-escalation",
];

/// Keys of a `[hosts.NAME]` table: its own, then the `[ssh]` overrides.
pub(crate) const HOST_KEYS: &[&str] = &[
    "address",
    "attr",
    "tags",
    "user",
    "port",
    "identity-file",
    "known-hosts",
    "connect-timeout",
    "keepalive-interval",
    "keepalive-count",
    "privilege-escalation",
    "magic-rollback",
    "confirm-timeout",
    "activation-timeout",
    "reboot-timeout",
    "wave",
    "health",
    "substitute",
    "compress",
    "trusted",
    "fast-connection",
    "build-on",
    "host-key",
    "proxy-jump",
    "secrets",
];

/// Keys of a health check (`[[health]]` or `[[hosts.NAME.health]]`).
pub(crate) const HEALTH_KEYS: &[&str] = &["command", "tcp", "http", "status", "timeout", "retries"];

/// Keys of a secret (`[secrets.NAME]` or `[hosts.HOST.secrets.NAME]`).
pub(crate) const SECRET_KEYS: &[&str] = &[
    "file", "command", "dest", "owner", "group", "mode", "upload",
];

/// Seconds one health-check attempt may take when `timeout` is not set.
pub const DEFAULT_HEALTH_TIMEOUT_SECS: u64 = 30;
/// Attempts after the first when `retries` is not set.
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;

/// Hosts handled at once when `parallel` is not set.
pub const DEFAULT_PARALLEL: usize = 10;
/// The largest `fleet.toml` that is read, in bytes (a fleet of thousands of hosts is far smaller).
pub const MAX_FLEET_BYTES: u64 = 16 * hbdeploy_files::MIB;
/// The SSH user when `user` is not set.
pub const DEFAULT_USER: &str = "root";
/// The SSH port when `port` is not set.
pub const DEFAULT_PORT: u16 = 22;
/// The known-hosts file when `known-hosts` is not set, before `~` expansion.
pub const DEFAULT_KNOWN_HOSTS: &str = "~/.ssh/known_hosts";
/// Seconds to wait for a TCP connection and SSH handshake when `connect-timeout` is not set.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Seconds between SSH keepalives when `keepalive-interval` is not set.
pub const DEFAULT_KEEPALIVE_INTERVAL_SECS: u64 = 5;
/// Unanswered keepalives before a connection is declared dead, when `keepalive-count` is not set.
pub const DEFAULT_KEEPALIVE_COUNT: u64 = 3;
/// The command that runs commands as root for a user who is not root, when
/// `privilege-escalation` is not set.
pub const DEFAULT_PRIVILEGE_ESCALATION: &str = "sudo";
/// Seconds a magic-rollback watchdog waits for the deployer's confirmation when
/// `confirm-timeout` is not set.
pub const DEFAULT_CONFIRM_TIMEOUT_SECS: u64 = 30;
/// The largest `confirm-timeout` accepted, one hour.
pub const MAX_CONFIRM_TIMEOUT_SECS: u64 = 3600;
/// Seconds an activation may run before it is stopped and the previous generation restored,
/// when `activation-timeout` is not set: real NixOS switches, which restart the services that
/// changed, take seconds to a couple of minutes; one that is still running after five has hung.
pub const DEFAULT_ACTIVATION_TIMEOUT_SECS: u64 = 300;
/// The largest `activation-timeout` accepted, a day.
pub const MAX_ACTIVATION_TIMEOUT_SECS: u64 = 86_400;
/// Seconds a checked reboot waits for the host to answer from its new boot when
/// `reboot-timeout` is not set: servers spend minutes in their firmware before the boot loader.
pub const DEFAULT_REBOOT_TIMEOUT_SECS: u64 = 600;
/// The largest `reboot-timeout` accepted, a day.
pub const MAX_REBOOT_TIMEOUT_SECS: u64 = 86_400;
/// The largest `wave` accepted.
pub const MAX_WAVE: u64 = 1000;
/// The largest `parallel` accepted: more is a typo, and would exhaust file descriptors.
pub const MAX_PARALLEL: u64 = 1000;
/// The largest `connect-timeout` accepted, one hour: more is a typo, not a timeout.
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 3600;

/// A line of TOML showing the key used correctly, for hints.
pub(crate) fn example(key: &str) -> &'static str {
    match key {
        "fleet" => "[fleet] followed by flake = \"./nixos\"",
        "ssh" => "[ssh] followed by user = \"root\"",
        "hosts" => "[hosts.server] followed by address = \"server.example.org\"",
        "flake" => "flake = \"./nixos\"",
        "parallel" => "parallel = 10",
        "user" => "user = \"root\"",
        "port" => "port = 22",
        "identity-file" => "identity-file = \"~/.ssh/id_ed25519\"",
        "known-hosts" => "known-hosts = \"~/.ssh/known_hosts\"",
        "connect-timeout" => "connect-timeout = 10",
        "keepalive-interval" => "keepalive-interval = 5",
        "keepalive-count" => "keepalive-count = 3",
        "privilege-escalation" => "privilege-escalation = [\"sudo\"]",
        "address" => "address = \"server.example.org\"",
        "attr" => "attr = \"server\"",
        "tags" => "tags = [\"infra\"]",
        "magic-rollback" => "magic-rollback = true",
        "confirm-timeout" => "confirm-timeout = 30",
        "activation-timeout" => "activation-timeout = 300",
        "reboot-timeout" => "reboot-timeout = 600",
        "wave" => "wave = 1",
        "builders" => "builders = \"ssh://builder x86_64-linux\"",
        "signing-key" => "signing-key = \"~/.config/nix/deploy-key.sec\"",
        "parallel-copy" => "parallel-copy = 4",
        "parallel-activate" => "parallel-activate = 10",
        "eval-workers" => "eval-workers = 4",
        "eval-memory" => "eval-memory = \"8GiB\"",
        "substitute" => "substitute = false",
        "compress" => "compress = true",
        "trusted" => "trusted = false",
        "fast-connection" => "fast-connection = true",
        "build-on" => "build-on = \"target\"",
        "proxy-jump" => "proxy-jump = \"bastion\"",
        "host-key" => "host-key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA…\"",
        "health" => "[[health]] followed by command = \"systemctl is-system-running\"",
        "command" => "command = \"systemctl is-system-running\"",
        "tcp" => "tcp = \"server.example.org:443\"",
        "http" => "http = \"http://server.example.org/health\"",
        "status" => "status = 200",
        "timeout" => "timeout = 30",
        "retries" => "retries = 3",
        "secrets" => "[secrets.NAME] followed by file = \"keys/NAME\"",
        "file" => "file = \"keys/wifi.psk\"",
        "dest" => "dest = \"/run/keys/wifi\"",
        "owner" => "owner = \"root\"",
        "group" => "group = \"root\"",
        "mode" => "mode = \"0400\"",
        "upload" => "upload = \"pre-activation\"",
        // A host's own table: the key is its name, so no fixed example fits better.
        _ => "[hosts.NAME] followed by address = \"…\"",
    }
}

/// What to do about an out-of-range number.
pub(crate) fn range_advice(key: &str) -> &'static str {
    match key {
        "parallel" => "`parallel` is how many hosts are handled at once; use 1 for one at a time",
        "port" => "use the port the host's sshd listens on; the default is 22",
        "connect-timeout" => "`connect-timeout` is a number of seconds; the default is 10",
        "keepalive-interval" => {
            "`keepalive-interval` is a number of seconds, 0 for no keepalives; the default is 5"
        }
        "keepalive-count" => {
            "`keepalive-count` is how many keepalives may go unanswered; the default is 3"
        }
        "confirm-timeout" => "`confirm-timeout` is a number of seconds; the default is 30",
        "activation-timeout" => {
            "`activation-timeout` is a number of seconds, at most a day; the default is 300"
        }
        "reboot-timeout" => {
            "`reboot-timeout` is a number of seconds, at most a day; the default is 600"
        }
        "timeout" => "`timeout` is a number of seconds for one attempt; the default is 30",
        "retries" => "`retries` is how many times a failed check is tried again; the default is 3",
        "status" => "`status` is an HTTP status code, 100 to 599",
        "eval-workers" => {
            "`eval-workers` is how many nix evaluator processes run at once; the default is one \
             per core"
        }
        "wave" => "`wave` orders hosts into waves: 0 (the default) goes first, then 1, 2, …",
        _ => "see docs/fleet.md for the allowed values",
    }
}

/// What to add when a required key is missing.
pub(crate) fn missing_advice(key: &str) -> String {
    match key {
        "fleet" => "add a [fleet] table naming the flake that defines the hosts' \
                    nixosConfigurations, e.g. [fleet] followed by flake = \"./nixos\""
            .to_owned(),
        "flake" => "add the flake that defines the hosts' nixosConfigurations, \
                    e.g. flake = \"./nixos\""
            .to_owned(),
        "address" => "add the host's DNS name or IP address, e.g. address = \"server.example.org\""
            .to_owned(),
        other => format!("add it, e.g. {}", example(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_an_example() {
        for key in TOP_KEYS
            .iter()
            .chain(FLEET_KEYS)
            .chain(SSH_KEYS)
            .chain(HOST_KEYS)
            .chain(HEALTH_KEYS)
            .chain(SECRET_KEYS)
        {
            let line = example(key);
            assert!(line.contains(key) || *key == "hosts", "{key}: {line}");
        }
    }

    #[test]
    fn host_tables_accept_every_ssh_key() {
        for key in SSH_KEYS {
            assert!(HOST_KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn advice_names_the_key_or_default() {
        assert!(range_advice("port").contains("22"));
        assert!(range_advice("parallel").contains("parallel"));
        assert!(missing_advice("address").contains("address ="));
        assert_eq!(missing_advice("user"), "add it, e.g. user = \"root\"");
    }
}
